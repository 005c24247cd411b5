"""Storage: the room log and its indexes (LMDB), and the group-commit writer thread."""

from .keys import room_key
from .lmdb_store import LmdbStore, LogEntry, StoreFull, WriteBatch
from .writer import GroupCommitWriter

__all__ = ["GroupCommitWriter", "LmdbStore", "LogEntry", "StoreFull", "WriteBatch", "room_key"]
