"""driftline's confluent-kafka clients, shared by the worker, the sink and the client: topic administration,
deliveries, publishers, and the store of reference profiles read from their topic."""
