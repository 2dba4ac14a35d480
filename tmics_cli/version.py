"""The installed package's version (a leaf module: any module may import it without a cycle)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tmics")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
