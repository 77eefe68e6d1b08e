"""``sqlite_wal.connect_wal``: many connections switching a new file to WAL at once all
succeed (plain ``PRAGMA journal_mode=WAL`` answers "database is locked" at once for
some of them, without waiting out the busy timeout)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from netcortex.sqlite_wal import connect_wal


def test_concurrent_openers_of_a_new_file_all_get_wal(tmp_path: Path) -> None:
    """40 rounds of 8 threads opening one fresh file: no error, every connection in WAL."""
    for round_ in range(40):
        path = tmp_path / f"r{round_}.db"
        errors: list[BaseException] = []
        modes: list[str] = []

        def open_one(
            path: Path = path, errors: list[BaseException] = errors, modes: list[str] = modes
        ) -> None:
            try:
                conn = connect_wal(path)
                try:
                    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
                    modes.append(conn.execute("PRAGMA journal_mode").fetchone()[0])
                finally:
                    conn.close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert modes == ["wal"] * 8


def test_a_file_that_cannot_be_opened_is_an_sqlite_error(tmp_path: Path) -> None:
    """The error surfaces as ``sqlite3.Error`` (callers map it to ``StoreError``)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    try:
        connect_wal(blocker / "x.db")
    except sqlite3.Error:
        return
    raise AssertionError("expected sqlite3.Error")
