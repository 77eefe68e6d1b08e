"""Memory, episodic: the one connection-on-its-own-thread scaffolding of the tables
kept beside the outcomes in the SQLite file (journal outbox, incidents).

Each such store owns one ``sqlite3`` connection (``sqlite_wal.connect_wal``: WAL,
``synchronous=NORMAL``, busy timeout) used only from one worker thread; ``_call`` runs a read on it,
``_tx`` a write in one ``BEGIN IMMEDIATE`` transaction. Every ``sqlite3``,
file-system and binding error becomes ``StoreError`` naming the store and file.

May import: ``errors``, ``sqlite_wal``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Self, TypeVar

from netcortex.errors import StoreError
from netcortex.sqlite_wal import connect_wal

__all__ = ["SqliteSideStore"]

_T = TypeVar("_T")
_BUSY_TIMEOUT_S: Final = 5.0


class SqliteSideStore:
    """Base of a store with its own connection and thread on a SQLite file.

    Subclasses set ``what`` (for messages) and implement ``_create`` (tables and
    indexes; runs on the thread right after the connection is opened).
    """

    #: the store's name in messages, e.g. ``"journal outbox"``
    what = "store"

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self.where = f"sqlite {self._path}"
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        """Open the file (created if missing) and create the tables. Idempotent.

        Raises:
            StoreError: ``:memory:``, or the file cannot be opened or created.
        """
        if self._executor is not None:
            return
        if str(self._path) == ":memory:":
            raise StoreError(f"{self.what} path must be a file, not ':memory:'")
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"netcortex-{self.what.replace(' ', '-')}"
        )
        try:
            await self._run(self._open)
        except BaseException:
            await self.close()
            raise

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection and its thread. Idempotent."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_conn)
        finally:
            executor.shutdown(wait=True)

    def _create(self, conn: sqlite3.Connection) -> None:
        """On the thread: create the tables (subclasses)."""
        raise NotImplementedError

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Map every ``sqlite3``, file-system and binding error to ``StoreError``."""
        try:
            yield
        except (sqlite3.Error, sqlite3.Warning, OSError, OverflowError) as exc:
            # OverflowError: an integer SQLite cannot bind (beyond 64 bits)
            raise StoreError(f"{self.what}: sqlite {action} failed on {self._path}: {exc}") from exc

    def _not_open(self) -> StoreError:
        return StoreError(f"{self.what} is not open (call start() first, or it was closed)")

    async def _run(self, fn: Callable[[], _T]) -> _T:
        executor = self._executor
        if executor is None:
            raise self._not_open()
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    async def _call(self, action: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` (a read) on the connection, on the thread."""

        def run() -> _T:
            with self._errors(action):
                return fn(self._connection())

        return await self._run(run)

    async def _tx(self, action: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, on the thread."""

        def run() -> _T:
            conn = self._connection()
            with self._errors(action), conn:
                conn.execute("BEGIN IMMEDIATE")
                return fn(conn)

        return await self._run(run)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise self._not_open()
        return self._conn

    def _open(self) -> None:
        with self._errors("open"):
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect_wal(self._path, timeout=_BUSY_TIMEOUT_S)
            try:
                self._create(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with self._errors("close"):
                conn.close()
