"""Plain metric and drift classes over numpy, scipy and River: no Kafka, no Faust, tested in microseconds."""
