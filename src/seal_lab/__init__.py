"""seal-lab shared library: what every service needs (settings, logging, gRPC bootstrap, store, models)."""

__version__ = "0.1.0"
