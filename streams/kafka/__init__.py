"""Kafka input and output beside Faust (confluent-kafka): the profile store, the publishers, deliveries."""
