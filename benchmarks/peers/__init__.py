"""Peer servers for side-by-side runs. Each speaks the minimal room protocol of
benchmarks/README.md: join a room, send to a room, every member (sender included)
receives the message frame; no auth, no storage."""
