"""Shared SQLite plumbing: open a connection in WAL mode, safely beside other openers.

Every component keeping state in the SQLite file (outcomes, maintenance windows,
poll state, outbox, incidents) opens its own connection in WAL mode. Switching a
new file to WAL needs an exclusive lock, and SQLite answers "database is locked"
at once (without waiting out the busy timeout) when several connections try it
together — as several engines, or several components of one, do at start. So
the switch is retried until the busy timeout has passed.

May import: nothing from netcortex (a leaf, like ``errors``).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

__all__ = ["connect_wal"]


def connect_wal(path: Path | str, *, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection to ``path`` (autocommit; ``timeout`` s busy timeout) in WAL mode with
    ``synchronous=NORMAL``.

    Raises:
        sqlite3.Error: the file cannot be opened, or stayed locked for ``timeout`` s.
    """
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn
