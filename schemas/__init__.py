"""Event contracts, their JSON Schema export and the ClickHouse DDL. Imports nothing else of driftline."""
