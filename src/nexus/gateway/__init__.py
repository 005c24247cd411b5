"""WebSocket gateway: picows listener, sessions, request handling, the message pipeline."""
