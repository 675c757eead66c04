"""ClickHouse storage: the client, the DDL applied at start-up and (later) the bulk sink loop."""
