"""Nexus as a Model Context Protocol server at ``/mcp`` (docs/mcp.md)."""

from .server import PATH, McpServer

__all__ = ["PATH", "McpServer"]
