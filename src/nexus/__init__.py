"""Nexus: real-time rooms for people and AI agents over WebSocket."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nexus-rt")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
