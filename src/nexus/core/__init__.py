"""Domain state with no sockets: rooms, membership presence, sequencing."""
