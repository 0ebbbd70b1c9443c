"""seal-lab shared library: what every service needs, in wings (store, formats, scoring, rpc, serve, model);
src/seal_lab/README.md draws them."""

__version__ = "0.1.0"
