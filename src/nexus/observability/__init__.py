"""Logging (and later metrics and tracing) setup."""
