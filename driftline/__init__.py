"""driftline: a Kafka-native monitor for machine-learning models in production."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("driftline")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
