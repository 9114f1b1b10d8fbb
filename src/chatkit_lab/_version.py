"""The package version (its own module, so the transports can report it without importing the package)."""

__version__ = "0.1.0"
