"""Administering the Kafka side of a deployment: its topics."""
