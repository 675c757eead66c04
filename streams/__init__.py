"""The Faust app and its agents: the stateful stream computation of the driftline worker."""
