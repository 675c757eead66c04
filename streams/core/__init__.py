"""The stream core: window summaries and what is computed from them (plain numpy; no Faust, Kafka or clock)."""
