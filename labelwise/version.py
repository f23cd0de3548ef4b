"""The one version string: pyproject.toml reads it, `labelwise --version` prints it."""
__version__ = "0.2.0"
