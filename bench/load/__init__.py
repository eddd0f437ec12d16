"""The load tool (``python -m bench.load``): the product and a bare relay under the same
clients in one run; see ``bench/load/__main__.py``."""
