"""The engine-neutral two-stage runner: routing events to joins and mergers, emissions, checkpoints, and the
snapshot codec of their state."""
