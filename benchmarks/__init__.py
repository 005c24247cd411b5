"""Load generation and scenarios for Nexus (see README.md)."""
