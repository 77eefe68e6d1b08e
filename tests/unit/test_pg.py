"""Unit tests for ``netcortex.pg``: the one asyncpg error mapping, DSN redaction and
pool creation (every failure a ``StoreError``, never a password in a message)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg
import pytest
from structlog.testing import capture_logs

from netcortex.config import StoreConfig
from netcortex.contracts.memory import MaintenanceWindow
from netcortex.errors import StoreError
from netcortex.memory.episodic import postgres as postgres_module
from netcortex.memory.episodic.postgres import PostgresOutcomeStore
from netcortex.memory.semantic.maintenance import PostgresMaintenanceCalendar
from netcortex.memory.semantic.maintenance_storage import PostgresWindowStorage
from netcortex.pg import create_pool, pg_errors, redact_dsn
from netcortex.sensory.poll.state_postgres import PostgresPollState
from tests.servers import free_port


def _asyncpg_error_classes() -> list[type[BaseException]]:
    """Every exception class asyncpg defines (server, client and internal ones)."""
    found: set[type[BaseException]] = set()
    for module in (asyncpg, asyncpg.exceptions, asyncpg.exceptions._base):
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, Exception) and value.__module__.startswith("asyncpg"):
                found.add(value)
    # Notices and warnings are delivered to log listeners, never raised.
    notices = (Warning, asyncpg.exceptions._base.PostgresLogMessage)
    todo = list(found)
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found and sub.__module__.startswith("asyncpg"):
                found.add(sub)
                todo.append(sub)
    raised = (
        c
        for c in found
        if not issubclass(c, notices) and c is not asyncpg.exceptions._base.PostgresMessage
    )
    return sorted(raised, key=lambda c: f"{c.__module__}.{c.__qualname__}")


class TestPgErrors:
    """``pg_errors``: the mapping covers the library."""

    @pytest.mark.parametrize("cls", _asyncpg_error_classes(), ids=lambda c: c.__qualname__)
    async def test_every_asyncpg_error_becomes_a_store_error(self, cls: type[Exception]) -> None:
        """Each asyncpg exception class (``InternalClientError``'s ``ProtocolError`` and
        ``OutdatedSchemaCacheError`` too) is raised as ``StoreError`` chained to it."""
        exc = cls("boom")
        with pytest.raises(StoreError) as info:
            async with pg_errors("test", "somewhere"):
                raise exc
        assert info.value.__cause__ is exc


class TestRedactDsn:
    """``redact_dsn``: whatever form the DSN has, the password stays out."""

    @pytest.mark.parametrize(
        ("dsn", "shown"),
        [
            ("postgresql://alice:hunter2@db:5432/nc", "postgresql://**redacted**@db:5432/nc"),
            (
                "postgresql://alice@db/nc?password=hunter2&sslmode=require",
                "postgresql://**redacted**@db/nc?password=**redacted**&sslmode=require",
            ),
            (
                "postgresql://db/nc?sslpassword=hunter2",
                "postgresql://db/nc?sslpassword=**redacted**",
            ),
            ("postgresql://alice:hun/ter2@db/nc", "postgresql://**redacted**@db/nc"),
            ("postgresql://alice:hun?ter2@db/nc", "postgresql://**redacted**@db/nc"),
            ("host=db password=hunter2 user=alice", "host=db password=**redacted** user=alice"),
            ("host=db password='hun ter2'", "host=db password=**redacted**"),
            ("postgresql://db:5432/nc", "postgresql://db:5432/nc"),
        ],
    )
    def test_no_password_survives(self, dsn: str, shown: str) -> None:
        """User-info, password query parameters and key/value passwords are redacted;
        the host, port, database and other parameters stay for the reader."""
        assert redact_dsn(dsn) == shown


#: DSNs asyncpg's parser rejects with plain Python errors (ValueError, OverflowError);
#: "hun" is part of the password in the second.
_UNPARSABLE = [
    "postgresql://alice:hunter2@127.0.0.1:notaport/test",
    "postgresql://alice:hun/ter2@127.0.0.1:5432/test",
    "postgresql://alice:hunter2@127.0.0.1:99999/test",
]


class TestCreatePool:
    """``create_pool``: every way of failing to connect is a ``StoreError``."""

    @pytest.mark.parametrize(
        "dsn", _UNPARSABLE, ids=["port-not-a-number", "unencoded-slash", "port-out-of-range"]
    )
    async def test_a_dsn_that_does_not_parse_is_a_store_error(self, dsn: str) -> None:
        """A DSN asyncpg cannot parse fails with ``StoreError`` naming the redacted DSN,
        without quoting the parser (it may echo part of the password)."""
        where = redact_dsn(dsn)
        with pytest.raises(StoreError) as info:
            await create_pool(dsn, where=where, min_size=1, max_size=1, timeout=3)
        message = str(info.value)
        assert "does not parse" in message
        assert where in message
        assert "hun" not in message

    @pytest.mark.parametrize(
        "dsn",
        [
            *_UNPARSABLE,
            "host=127.0.0.1 password=hunter2",
            f"postgresql://alice@127.0.0.1:{free_port()}/test?password=hunter2",
        ],
        ids=["port-not-a-number", "unencoded-slash", "port-out-of-range", "key-value", "query"],
    )
    async def test_components_fail_start_with_a_store_error_and_no_password(self, dsn: str) -> None:
        """The calendar and the poll state fail ``start`` on a bad or unreachable DSN
        with ``StoreError``, and neither the message nor a log line holds the password."""
        calendar = PostgresMaintenanceCalendar(dsn, "t_pg_unit", reload_interval=0)
        state = PostgresPollState(dsn, "t_pg_unit", connect_timeout=3)
        with capture_logs() as logs:
            for start in (calendar.start, state.start):
                with pytest.raises(StoreError) as info:
                    await start()
                assert "hun" not in str(info.value)
            await calendar.close()
            await state.close()
        assert "hun" not in repr(logs)


class _FreezingProxy:
    """A TCP proxy in front of the test server that can stop answering (a server that
    hangs, or a network that drops packets), and counts the client connections open."""

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query))
        self._unix = f"{query['host']}/.s.PGSQL.{parts.port or 5432}" if "host" in query else None
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._user = parts.username or "postgres"
        self._database = parts.path.lstrip("/") or "postgres"
        self.frozen = False
        #: stop passing the client's messages on once it sent one holding these bytes
        #: (the server still answers that one)
        self.freeze_after: bytes | None = None
        self._deaf = False
        self.open = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"postgresql://{self._user}@127.0.0.1:{port}/{self._database}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.open += 1
        if self._unix is not None:
            server_r, server_w = await asyncio.open_unix_connection(self._unix)
        else:
            server_r, server_w = await asyncio.open_connection(*self._target)
        up = asyncio.create_task(self._pipe(client_r, server_w, upstream=True))
        down = asyncio.create_task(self._pipe(server_r, client_w, upstream=False))
        self._tasks |= {up, down}
        await asyncio.wait({up}, return_when=asyncio.FIRST_COMPLETED)  # the client left
        self.open -= 1
        down.cancel()
        server_w.close()
        client_w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                # frozen: swallow everything, answer nothing; deaf: the server hears nothing
                if not self.frozen and not (upstream and self._deaf):
                    writer.write(data)
                    await writer.drain()
                    if upstream and self.freeze_after is not None and self.freeze_after in data:
                        self._deaf = True


class TestCloseOnAServerThatStoppedAnswering:
    """``close`` is bounded and drops its connections when the server hangs."""

    async def test_window_storage_close_is_bounded(
        self, postgres_dsn: str, postgres_schema: str
    ) -> None:
        """The maintenance storage's ``close`` gives up after its timeout with
        ``StoreError``, and its sockets end up closed."""
        proxy = _FreezingProxy(postgres_dsn)
        async with proxy as proxy_dsn:
            storage = PostgresWindowStorage(proxy_dsn, postgres_schema, close_timeout=0.3)
            await storage.open()
            proxy.frozen = True
            with pytest.raises(StoreError, match="close"):
                await storage.close()
            await _eventually(lambda: proxy.open == 0, "the storage's sockets are closed")

    async def test_read_only_store_close_is_quiet_and_terminates(
        self, postgres_dsn: str, postgres_schema: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A read-only outcome store (``netcortex outcomes``) whose server stopped
        answering closes within its timeout without raising (nothing was written) and
        closes its sockets."""
        monkeypatch.setattr(postgres_module, "_CLOSE_TIMEOUT_S", 0.3)
        config = StoreConfig(
            backend="postgres", postgres_dsn=postgres_dsn, postgres_schema=postgres_schema
        )
        async with PostgresOutcomeStore(config):
            pass  # creates the schema
        proxy = _FreezingProxy(postgres_dsn)
        async with proxy as proxy_dsn:
            reader = PostgresOutcomeStore(
                StoreConfig(
                    backend="postgres", postgres_dsn=proxy_dsn, postgres_schema=postgres_schema
                ),
                read_only=True,
            )
            await reader.start()
            proxy.frozen = True
            await reader.close()
            await _eventually(lambda: proxy.open == 0, "the reader's sockets are closed")


class TestFailedStartOnAServerThatStoppedAnswering:
    """A ``start`` that fails gives up its connections at once: it never waits for a
    server that stopped answering to acknowledge a polite close."""

    async def test_read_only_store(self, postgres_dsn: str, postgres_schema: str) -> None:
        """The read-only reader on a schema without outcomes fails at once with its
        advice, even when the server hangs once the check's connection went back to
        the pool."""
        proxy = _FreezingProxy(postgres_dsn)
        async with proxy as proxy_dsn:
            proxy.freeze_after = b"RESET ALL"  # the pool's release is answered, then nothing
            reader = PostgresOutcomeStore(
                StoreConfig(
                    backend="postgres", postgres_dsn=proxy_dsn, postgres_schema=postgres_schema
                ),
                read_only=True,
            )
            with pytest.raises(StoreError, match="no outcome store"):
                await asyncio.wait_for(reader.start(), 5)
            await _eventually(lambda: proxy.open == 0, "the reader's sockets are closed")

    async def test_window_storage(self, postgres_dsn: str, postgres_schema: str) -> None:
        """The maintenance storage on a schema of a newer netcortex fails at once with
        "upgrade netcortex", even when the server hangs once the connection went back
        to the pool."""
        async with PostgresMaintenanceCalendar(postgres_dsn, postgres_schema, reload_interval=0):
            pass
        admin = await asyncpg.connect(postgres_dsn)
        try:
            await admin.execute(
                f'INSERT INTO "{postgres_schema}".maintenance_migrations (version) VALUES (99)'
            )
        finally:
            await admin.close()
        proxy = _FreezingProxy(postgres_dsn)
        async with proxy as proxy_dsn:
            proxy.freeze_after = b"RESET ALL"  # the pool's release is answered, then nothing
            storage = PostgresWindowStorage(proxy_dsn, postgres_schema)
            with pytest.raises(StoreError, match="upgrade netcortex"):
                await asyncio.wait_for(storage.open(), 5)
            await _eventually(lambda: proxy.open == 0, "the storage's sockets are closed")


async def _eventually(cond: Callable[[], bool], what: str, deadline: float = 5.0) -> None:
    """Poll ``cond`` until it holds; fail after ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    while not cond():
        if loop.time() > until:
            pytest.fail(f"not within {deadline} s: {what}")
        await asyncio.sleep(0.01)


class TestApplyMigrations:
    """``apply_migrations`` on a schema that is already current."""

    async def test_a_role_without_create_rights_starts_on_a_current_schema(
        self, postgres_dsn: str, postgres_schema: str
    ) -> None:
        """Once ``db upgrade`` (as the owner) has made the schema current, every
        component starts as a least-privilege role that may only use the tables (no
        CREATE on the database or the schema): an up-to-date start runs no DDL."""
        role = f"nc_app_{uuid.uuid4().hex[:8]}"
        config = StoreConfig(
            backend="postgres", postgres_dsn=postgres_dsn, postgres_schema=postgres_schema
        )
        async with PostgresOutcomeStore(config):
            pass
        for component in (
            PostgresMaintenanceCalendar(postgres_dsn, postgres_schema, reload_interval=0),
            PostgresPollState(postgres_dsn, postgres_schema),
        ):
            await component.start()
            await component.close()
        s = f'"{postgres_schema}"'
        admin = await asyncpg.connect(postgres_dsn)
        try:
            await admin.execute(f'CREATE ROLE "{role}" LOGIN')
            await admin.execute(f'GRANT USAGE ON SCHEMA {s} TO "{role}"')
            await admin.execute(
                f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO "{role}"'
            )
            app_dsn = urlunsplit(
                urlsplit(postgres_dsn)._replace(netloc=_netloc(postgres_dsn, role))
            )
            try:
                store = PostgresOutcomeStore(
                    StoreConfig(
                        backend="postgres", postgres_dsn=app_dsn, postgres_schema=postgres_schema
                    )
                )
                calendar = PostgresMaintenanceCalendar(app_dsn, postgres_schema, reload_interval=0)
                state = PostgresPollState(app_dsn, postgres_schema)
                async with store, calendar:
                    await state.start()
                    await calendar.add(
                        MaintenanceWindow(
                            id="w1",
                            scope="device",
                            target="sw1",
                            start=datetime(2025, 6, 1, tzinfo=UTC),
                            end=datetime(2025, 6, 2, tzinfo=UTC),
                        )
                    )
                    await state.set_down("sw1", True)
                    await state.close()
            finally:
                await admin.execute(f'DROP OWNED BY "{role}"')
                await admin.execute(f'DROP ROLE "{role}"')
        finally:
            await admin.close()


def _netloc(dsn: str, user: str) -> str:
    """``dsn``'s network location with ``user`` (no password: the test server trusts)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return f"{user}@{host}"
