"""The one place blipviz's version is written: ``blipviz.__version__`` and ``pyproject.toml`` (its
dynamic version) read it here, and the model layer's provenance records it without importing the
package above it."""

__version__ = "0.1.0"
