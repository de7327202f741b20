"""The version of symgrad (one place: the package, the compile cache key and pyproject.toml read it)."""
__version__ = "0.1.0"
