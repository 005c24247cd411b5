"""Scale-out on NATS JetStream (docs/cluster.md): the engine the pipeline stores room
logs through in cluster mode, shared metadata and cluster-wide presence."""

from .engine import JetStreamEngine

__all__ = ["JetStreamEngine"]
