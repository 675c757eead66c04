"""For developers: the local and the secured test broker, and the generated documentation."""
