"""Tasks created in chat: a projection of ``task.*`` events of the room log (docs/tasks.md)."""
