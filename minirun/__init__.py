"""minirun: docker's union filesystem model on kernel overlayfs."""

__version__ = "0.1.0"
