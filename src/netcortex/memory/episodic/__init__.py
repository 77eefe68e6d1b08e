"""Memory, episodic: durable records of what the reflexes did.

``SqliteOutcomeStore`` is the embedded default (``store.backend: sqlite``).
Dedup state: ``InMemoryDedupStore`` (``dedup.backend: memory``) and
``JetStreamDedupStore`` (``dedup.backend: nats``, shared by workers).
May import: ``contracts``, ``errors``, ``config``, ``metrics``.
"""

from __future__ import annotations

from netcortex.memory.episodic.dedup_jetstream import JetStreamDedupStore
from netcortex.memory.episodic.dedup_memory import InMemoryDedupStore
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore

__all__ = ["InMemoryDedupStore", "JetStreamDedupStore", "SqliteOutcomeStore"]
