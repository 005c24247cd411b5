"""Agents as MCP clients: the operator's MCP servers, their tools in agents' turns."""
