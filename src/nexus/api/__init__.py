"""HTTP API (FastAPI on uvicorn, in the gateway's event loop). Routes are thin: the work
is done by the node, rooms and store that the gateway uses too."""

from .app import create_api

__all__ = ["create_api"]
