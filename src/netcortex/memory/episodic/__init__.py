"""Memory, episodic: durable records of what the reflexes did.

``SqliteOutcomeStore`` is the embedded default (``store.backend: sqlite``).
May import: ``contracts``, ``errors``, ``config``, ``metrics``.
"""

from __future__ import annotations

from netcortex.memory.episodic.sqlite import SqliteOutcomeStore

__all__ = ["SqliteOutcomeStore"]
