"""Memory: search over room history and memory records (docs/memory.md).

- ``store.SearchStore`` — the search file (SQLite FTS5): message index, memory records.
- ``indexer.SearchIndexer`` — the commit observer that keeps the index in step with the log.
- ``service.Memory`` — search and memory records for a principal, with permissions and
  the memory events.
- ``rebuild.rebuild`` — the index rebuilt from the log (``nexus reindex``).
"""

from .indexer import SearchIndexer
from .service import AUDIT_ROOM, Memory
from .store import FILE_NAME, SearchStore

__all__ = ["AUDIT_ROOM", "FILE_NAME", "Memory", "SearchIndexer", "SearchStore"]
