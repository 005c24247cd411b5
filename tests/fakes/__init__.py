"""Fakes that speak real wire protocols on loopback (a fake AI provider over HTTP)."""
