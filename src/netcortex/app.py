"""Composition root: ``Config`` → concrete backends → a running ``Engine``.

The only module (with ``bridge/``) that picks implementations. ``Engine`` builds
the regions in the order data flows through them::

    metrics Registry → bus (memory | nats) → outcome store (sqlite)
        → reflex pipeline + handler registry + runner → receivers (trap, poll, webhook)
        → HTTP server (API, /webhooks/meraki, metrics)

and starts them in that order too, so nothing arrives before the handlers
listen: the runner's ``ready_event`` is awaited before the first receiver binds
its socket, and the HTTP server (which feeds the webhook receiver) binds last.
``stop`` runs the other way: the HTTP server first (no new requests, in-flight
ones answered), then the receivers (no new input, their accepted events
published), the recorder (``--record``: every event written), then the runner
(which processes every event already delivered to it, bounded by
``drain_timeout``), the graph mirror (``graph.enabled``: what it
can write within ``graph.timeout_seconds``), the correlator
(``association.enabled``: what is queued, bounded by ``drain_timeout``) and its
incident store, the store (flushed) and the bus. Swapping a backend is a change
of ``bus.backend`` / ``store.backend`` in the config, never of code.

``engine.role`` (``netcortex.roles``, the one place that decides it) leaves
out the reflex side on a ``receiver`` and the receivers on a ``worker``; the
order above holds for what remains.

``Engine`` also runs in-process for fast scenario tests (as Alertmanager's
``app`` package does); ``run_engine`` is what ``netcortex run`` calls.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Protocol

import structlog

from netcortex import __version__
from netcortex.association import Correlator
from netcortex.association.engine import IncidentJournal, IncidentWorker
from netcortex.association.fleet import FleetCorrelator, fleet_enabled
from netcortex.association.lease import JetStreamLease
from netcortex.bridge.http import ApiContext, HttpServer, create_app
from netcortex.bridge.http.hub import StreamHub
from netcortex.bridge.http.intake import create_intake_app
from netcortex.bridge.http.status import StatusSampler
from netcortex.bridge.record import EventRecorder
from netcortex.config import (
    BusConfig,
    Config,
    DedupConfig,
    InventoryConfig,
    MaintenanceConfig,
    StoreConfig,
)
from netcortex.contracts.bus import EventBus
from netcortex.contracts.memory import (
    DedupStore,
    MaintenanceCalendar,
    MaintenanceWindow,
    OutcomeStore,
    SemanticMemory,
)
from netcortex.errors import ConfigError
from netcortex.memory.episodic.dedup_jetstream import JetStreamDedupStore
from netcortex.memory.episodic.dedup_memory import InMemoryDedupStore
from netcortex.memory.episodic.graph import GraphMirror
from netcortex.memory.episodic.incidents import PostgresIncidentStore, SqliteIncidentStore
from netcortex.memory.episodic.outbox import JournalHook, PostgresOutbox, SqliteOutbox
from netcortex.memory.episodic.postgres import PostgresOutcomeStore
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.memory.semantic import FileInventory, NetboxInventory
from netcortex.memory.semantic.maintenance import (
    PostgresMaintenanceCalendar,
    SqliteMaintenanceCalendar,
    StoredMaintenanceCalendar,
    config_windows,
)
from netcortex.metrics import Counter, Registry
from netcortex.motor.delivery import JournalDelivery
from netcortex.motor.policy import JournalPolicy
from netcortex.reflex.pipeline import Pipeline, build_pipeline
from netcortex.reflex.protocol import Sink
from netcortex.reflex.registry import builtin_handlers, builtin_registry
from netcortex.reflex.runner import ReflexRunner
from netcortex.reflex.sinks import AssociationSink, GraphSink
from netcortex.roles import RolePlan, role_plan, role_warnings
from netcortex.sensory.poll.scheduler import PollReceiver
from netcortex.sensory.poll.shard import JetStreamMembership
from netcortex.sensory.poll.state import PollState, SqlitePollState
from netcortex.sensory.poll.state_postgres import PostgresPollState
from netcortex.sensory.trap import TrapReceiver
from netcortex.sensory.webhook.receiver import MerakiWebhookReceiver
from netcortex.thalamus.memory import InMemoryEventBus
from netcortex.thalamus.nats import NatsEventBus
from netcortex.thalamus.subjects import incident_subject

__all__ = ["Engine", "EngineSummary", "run_engine"]

log = structlog.get_logger(__name__)

#: Name of the rejected-input counter every receiver increments (brief: fixed name).
REJECTED_METRIC = "netcortex_rejected_total"


class _Receiver(Protocol):
    """What the engine needs of a receiver (``TrapReceiver`` and later webhooks)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def bound_address(self) -> tuple[str, int]: ...


@dataclass(frozen=True, slots=True)
class EngineSummary:
    """Totals for the ``engine_stopped`` line (read from the engine's metrics).

    Attributes:
        events: sensory events published by the receivers.
        outcomes: reflex outcomes produced by the runner (every kind).
        rejected: inputs the receivers rejected (``netcortex_rejected_total``).
        uptime_s: seconds between ``start`` and ``stop``.
    """

    events: int
    outcomes: int
    rejected: int
    uptime_s: float


def _make_bus(config: BusConfig, metrics: Registry) -> EventBus:
    if config.backend == "nats":
        return NatsEventBus(config, metrics)
    return InMemoryEventBus(config, metrics)


def make_store(
    config: StoreConfig, metrics: Registry, *, journal: JournalHook | None = None
) -> OutcomeStore:
    """The outcome store ``store.backend`` names (not started). Used by the CLI too.

    With ``journal`` the store writes a journal job with every outcome the policy
    wants, in the same transaction (issue 7)."""
    if config.backend == "postgres":
        return PostgresOutcomeStore(config, metrics, journal=journal)
    return SqliteOutcomeStore(config, metrics, journal=journal)


def make_outbox(config: StoreConfig) -> SqliteOutbox | PostgresOutbox:
    """The journal outbox beside the outcomes (not started): the same SQLite file or
    PostgreSQL schema as ``store.backend``. Used by the CLI and the API too."""
    if config.backend == "postgres":
        assert config.postgres_dsn is not None  # validated by StoreConfig
        return PostgresOutbox(config.postgres_dsn.get_secret_value(), config.postgres_schema)
    return SqliteOutbox(config.sqlite_path)


def make_incident_store(config: StoreConfig) -> SqliteIncidentStore | PostgresIncidentStore:
    """The incident store beside the outcomes (not started): the same SQLite file or
    PostgreSQL schema as ``store.backend`` (issue 8). Used by the CLI and the API too."""
    if config.backend == "postgres":
        assert config.postgres_dsn is not None  # validated by StoreConfig
        return PostgresIncidentStore(config.postgres_dsn.get_secret_value(), config.postgres_schema)
    return SqliteIncidentStore(config.sqlite_path)


def make_calendar(
    config: Config,
    windows: Sequence[MaintenanceWindow],
    metrics: Registry | None = None,
    *,
    reload_interval: float | None = None,
) -> StoredMaintenanceCalendar:
    """The maintenance calendar (not started): run-time windows beside the outcomes,
    in PostgreSQL with ``store.backend: postgres``, else in ``store.sqlite_path``.
    Used by the CLI too (``reload_interval=0``: no background reloading)."""
    store = config.store
    extra: dict[str, float] = (
        {} if reload_interval is None else {"reload_interval": reload_interval}
    )
    if store.backend == "postgres":
        assert store.postgres_dsn is not None  # validated by StoreConfig
        return PostgresMaintenanceCalendar(
            store.postgres_dsn.get_secret_value(),
            store.postgres_schema,
            windows=windows,
            metrics=metrics,
            **extra,
        )
    return SqliteMaintenanceCalendar(store.sqlite_path, windows=windows, metrics=metrics, **extra)


def make_poll_state(config: Config) -> PollState:
    """The poller's state (not started): beside the outcomes in PostgreSQL with
    ``store.backend: postgres`` (issue 6), else SQLite on ``poll.state_path``."""
    store = config.store
    if store.backend == "postgres":
        assert store.postgres_dsn is not None  # validated by StoreConfig
        return PostgresPollState(store.postgres_dsn.get_secret_value(), store.postgres_schema)
    return SqlitePollState(config.poll.state_path)


def poll_sharding(config: Config) -> bool:
    """Whether the poller shares its targets with the other receivers (``poll.sharding``):
    ``auto`` means on for a ``receiver`` on ``bus.backend: nats``.

    Raises:
        ConfigError: ``poll.sharding: on`` without ``bus.backend: nats`` (naming the
            key and the file).
    """
    mode = config.poll.sharding
    if mode == "on" and config.bus.backend != "nats":
        msg = (
            f"is 'on', but bus.backend is {config.bus.backend!r}: the receivers meet "
            "in a JetStream key-value bucket (set bus.backend: nats, or poll.sharding: off)"
        )
        raise ConfigError(
            f"1 configuration problem(s):\n  {config.source}: poll.sharding: {msg}",
            [(config.source, "poll.sharding", msg)],
        )
    if mode == "auto":
        return config.bus.backend == "nats" and config.engine.role == "receiver"
    return mode == "on"


def _make_poll_membership(config: Config, metrics: Registry) -> JetStreamMembership | None:
    """The pollers' membership (not started) when ``poll_sharding``, else ``None``.

    ``auto`` is off for role ``all``, which cannot tell whether it runs alone: it
    logs ``poll_shard_off_for_all`` (warning) on NATS, where several ``all``
    processes with the same targets would each poll every device.
    """
    if not poll_sharding(config):
        if (
            config.poll.sharding == "auto"
            and config.engine.role == "all"
            and config.bus.backend == "nats"
        ):
            log.warning(
                "poll_shard_off_for_all",
                hint="poll.sharding is 'auto', which is off for role 'all': several 'all' "
                "processes polling the same targets each poll every device; set "
                "poll.sharding: on to share them (or off to silence this)",
            )
        return None
    if config.store.backend != "postgres":
        # Each receiver's SQLite state is its own: a device taken over is diffed
        # against what this receiver last saw of it (possibly long ago).
        log.warning(
            "poll_shard_unshared_state",
            store=config.store.backend,
            hint="with poll sharding, store.backend: postgres shares the poll state",
        )
    return JetStreamMembership(
        nats_url=config.bus.nats_url,
        bucket=config.poll.membership_bucket,
        namespace=config.bus.namespace,
        heartbeat=config.poll.membership_heartbeat_seconds,
        metrics=metrics,
        replicas=config.bus.replicas,
        storage=config.bus.storage,
    )


def _make_memory(config: InventoryConfig, metrics: Registry) -> SemanticMemory | None:
    if config.backend == "file":
        assert config.path is not None  # validated by InventoryConfig
        return FileInventory(config.path, metrics=metrics)
    if config.backend == "netbox":
        assert config.netbox_url is not None  # validated by InventoryConfig
        assert config.netbox_token is not None
        return NetboxInventory(
            config.netbox_url,
            config.netbox_token,
            refresh_seconds=config.refresh_seconds,
            verify_tls=config.verify_tls,
            metrics=metrics,
        )
    return None


def _make_dedup(config: DedupConfig, bus: BusConfig, metrics: Registry) -> DedupStore:
    if config.backend == "nats":
        return JetStreamDedupStore(
            nats_url=bus.nats_url,
            bucket=config.bucket,
            namespace=bus.namespace,
            max_window=max([3600.0, *config.windows.values()]),
            metrics=metrics,
            replicas=bus.replicas,
        )
    return InMemoryDedupStore(max_keys=config.max_keys, metrics=metrics)


def _check_dedup_windows(config: DedupConfig, source: str) -> None:
    """``dedup.windows`` must name built-in handlers: a typo would silently keep the default.

    Raises:
        ConfigError: naming ``dedup.windows``, the unknown ids and the known ones.
    """
    known = [h.id for h in builtin_handlers()]
    unknown = sorted(set(config.windows).difference(known))
    if unknown:
        msg = (
            f"unknown handler id(s) {', '.join(map(repr, unknown))}; "
            f"built-in handlers are {', '.join(known)}"
        )
        raise ConfigError(
            f"1 configuration problem(s):\n  {source}: dedup.windows: {msg}",
            [(source, "dedup.windows", msg)],
        )


def _check_journal_handlers(config: Config) -> None:
    """``journal.handlers`` must name built-in handlers (a typo would write nothing).

    Raises:
        ConfigError: naming ``journal.handlers``, the unknown ids and the known ones.
    """
    known = [h.id for h in builtin_handlers()]
    unknown = sorted(set(config.journal.handlers).difference(known))
    if unknown:
        msg = (
            f"unknown handler id(s) {', '.join(map(repr, unknown))}; "
            f"built-in handlers are {', '.join(known)}"
        )
        raise ConfigError(
            f"1 configuration problem(s):\n  {config.source}: journal.handlers: {msg}",
            [(config.source, "journal.handlers", msg)],
        )


def _maintenance_windows(config: MaintenanceConfig, source: str) -> list[MaintenanceWindow]:
    """The config file's windows as contract values; every problem in one ConfigError.

    The same helper serves ``netcortex maintenance`` (bridge), so both agree.
    """
    return config_windows(config, source)


def _metric_total(metrics: Registry, *names: str) -> int:
    """Sum of every registered counter among ``names`` (0 when none is)."""
    total = 0.0
    for name in names:
        metric = metrics.get(name)
        if isinstance(metric, Counter):
            total += metric.total()
    return int(total)


def _with_sink_after(pipeline: Pipeline, name: str, sink: Sink) -> Pipeline:
    """``pipeline`` with ``sink`` inserted right after the sink called ``name``."""
    sinks = list(pipeline.sinks)
    at = next(i for i, s in enumerate(sinks) if s.name == name) + 1
    return replace(pipeline, sinks=(*sinks[:at], sink, *sinks[at:]))


class Engine:
    """The running netcortex: one bus, one store, the reflex runner, the receivers,
    the HTTP server.

    Args:
        config: the validated configuration tree.
        drain_timeout: longest ``stop`` waits for in-flight events (seconds).
        record: append every sensory event on the bus to this JSON-lines file
            (``netcortex run --record``; ``bridge.record.EventRecorder``).

    Attributes:
        config: the configuration it was built from.
        metrics: this engine's metrics ``Registry`` (one per engine).
        plan: what this process runs (``engine.role``; ``roles.RolePlan``): a
            ``receiver`` has no reflex side (``store``, ``calendar``, ``dedup``,
            ``pipeline``, ``runner``, correlation, journal, graph are ``None``)
            and its HTTP server carries only the webhook and health; a ``worker``
            has no receivers and no webhook.
        bus: the ``EventBus`` picked by ``bus.backend``.
        store: the ``OutcomeStore`` picked by ``store.backend`` (``None`` on a receiver).
        webhook: the Meraki webhook receiver (``http.enabled`` and ``meraki.enabled``).
        http: the HTTP server (``http.enabled``): API, webhooks, metrics.
        bound_addresses: listener name (``trap``, ``poll``, ``http``) → ``(host, port)``
            actually bound; filled by ``start`` (port 0 in the config becomes the
            kernel's choice).

    Construction does no I/O; ``start``/``stop`` (or ``async with``) do.
    """

    def __init__(
        self, config: Config, *, drain_timeout: float = 5.0, record: str | Path | None = None
    ) -> None:
        self.config = config
        self.drain_timeout = drain_timeout
        # Regions in flow order: metrics → bus → store → reflex → receivers.
        self.metrics = Registry()
        self.bus: EventBus = _make_bus(config.bus, self.metrics)
        # engine.role: which parts this process runs, decided in one place (roles.py).
        self.plan: RolePlan = role_plan(config)
        # Semantic memory serves both sides: receivers name devices, gates enrich.
        self.memory: SemanticMemory | None = _make_memory(config.inventory, self.metrics)
        windows = _maintenance_windows(config.maintenance, config.source)
        # The reflex side (roles all, worker): store, gates, runner, sinks, correlation,
        # journal, graph. A receiver has none of it (all None).
        self.outbox: SqliteOutbox | PostgresOutbox | None = None
        self.journal: JournalDelivery | None = None
        self.store: OutcomeStore | None = None
        self.calendar: MaintenanceCalendar | None = None
        self.dedup: DedupStore | None = None
        self.pipeline: Pipeline | None = None
        self.graph: GraphMirror | None = None
        self.incident_store: SqliteIncidentStore | PostgresIncidentStore | None = None
        self.incidents: IncidentWorker | None = None
        # association.fleet (issue 10): one correlator for the fleet, on the lease holder
        self.fleet: FleetCorrelator | None = None
        self.runner: ReflexRunner | None = None
        self.registry = builtin_registry(disabled=tuple(config.reflex.disabled))
        if self.plan.reflexes:
            self._build_reflexes(windows, drain_timeout)
        # --record FILE: every sensory event on the bus appended as JSON lines, off
        # the hot path (bounded; overflow dropped and counted), for `netcortex replay`.
        self.recorder: EventRecorder | None = None
        if record is not None:
            self.recorder = EventRecorder(self.bus, record, metrics=self.metrics)
        self.receivers: dict[str, _Receiver] = {}
        if self.plan.intake and config.trap.enabled:
            self.receivers["trap"] = TrapReceiver(
                config.trap,
                self.bus,
                self.metrics,
                memory=self.memory,
                outage_buffer_seconds=config.bus.outage_buffer_seconds,
            )
        if self.plan.intake and config.poll.enabled:
            # Its "listener" is the SNMP client's local UDP socket (answers come back there).
            self.receivers["poll"] = PollReceiver(
                config.poll,
                self.bus,
                self.metrics,
                memory=self.memory,
                v3_users=config.trap.v3_users,
                state=make_poll_state(config),
                # poll.sharding: only this receiver's share of the targets (issue 10)
                membership=_make_poll_membership(config, self.metrics),
                outage_buffer_seconds=config.bus.outage_buffer_seconds,
            )
        # The webhook receiver has no socket of its own: the HTTP server feeds it.
        self.webhook: MerakiWebhookReceiver | None = None
        self.http: HttpServer | None = None
        # GET /api/v1/stream: one bus subscription fanned out to the clients, and the
        # rate sampler of GET /api/v1/status; both live as long as the HTTP server.
        self.stream_hub: StreamHub | None = None
        self.status_sampler: StatusSampler | None = None
        if config.http.enabled and self.plan.intake and config.meraki.enabled:
            self.webhook = MerakiWebhookReceiver(
                config.meraki,
                self.bus,
                self.metrics,
                memory=self.memory,
                outage_buffer_seconds=config.bus.outage_buffer_seconds,
            )
        if config.http.enabled and not self.plan.api:
            # A receiver: the webhook and health only (bridge/http/intake.py).
            self.http = HttpServer(
                create_intake_app(
                    config=config,
                    metrics=self.metrics,
                    bus=self.bus,
                    memory=self.memory,
                    webhook=self.webhook,
                    ready=lambda: self._ready,
                ),
                config.http,
                metrics=self.metrics,
                trusted_proxies=config.http.trusted_proxies,
            )
        elif config.http.enabled:
            # plan.api implies plan.reflexes: the store and the calendar exist.
            assert self.store is not None
            assert self.calendar is not None
            self.stream_hub = StreamHub(
                self.bus,
                self.metrics,
                queue_size=config.http.stream_queue_size,
                max_clients=config.http.stream_max_clients,
            )
            self.status_sampler = StatusSampler(self.metrics)
            api = ApiContext(
                config=config,
                metrics=self.metrics,
                store=self.store,
                calendar=self.calendar,
                config_window_ids=frozenset(w.id for w in windows),
                bus=self.bus,
                memory=self.memory,
                webhook=self.webhook,
                ready=lambda: self._ready,
                outbox=self.outbox,
                wake_journal=None if self.journal is None else self.journal.notify,
                # the association wiring's store (issue 8); None (404) when it is off
                incidents=getattr(self, "incident_store", None),
                hub=self.stream_hub,
                sampler=self.status_sampler,
            )
            self.http = HttpServer(
                create_app(api),
                config.http,
                metrics=self.metrics,
                trusted_proxies=config.http.trusted_proxies,
            )
        self.bound_addresses: dict[str, tuple[str, int]] = {}
        self._lock = asyncio.Lock()
        self._ready = False
        self._engine_metrics()
        self._started = False
        self._stopped = False
        self._started_at = 0.0
        self._summary: EngineSummary | None = None
        self._stats_task: asyncio.Task[None] | None = None

    def _build_reflexes(self, windows: Sequence[MaintenanceWindow], drain_timeout: float) -> None:
        """The reflex side (``RolePlan.reflexes``): journal outbox, outcome store,
        calendar, dedup, pipeline (+ graph and correlator sinks) and the runner."""
        config = self.config
        # journal.enabled: the store writes a journal job with each outcome the
        # policy wants (one transaction); the delivery worker drains them to NetBox.
        hook: JournalHook | None = None
        policy: JournalPolicy | None = None
        if config.journal.enabled:
            _check_journal_handlers(config)
            self.outbox = make_outbox(config.store)
            self.journal = JournalDelivery.from_config(self.outbox, config.journal, self.metrics)
            policy = JournalPolicy.from_config(config.journal)
            # With association, one entry per incident (issue 8): outcome jobs wait
            # incident_hold_seconds, so an incident can supersede them first.
            hold = config.journal.incident_hold_seconds if config.association.enabled else 0.0
            hook = JournalHook(
                wants=policy.wants, committed=self._journal_committed, hold_seconds=hold
            )
        self.store = store = make_store(config.store, self.metrics, journal=hook)
        # Semantic memory, the maintenance calendar (kept beside the outcomes) and
        # dedup state feed the gates: enrich → maintenance → dedup.
        self.calendar = make_calendar(config, windows, self.metrics)
        _check_dedup_windows(config.dedup, config.source)
        self.dedup = _make_dedup(config.dedup, config.bus, self.metrics)
        pipeline = build_pipeline(
            store=store,
            bus=self.bus,
            metrics=self.metrics,
            bus_inflight=config.bus.max_inflight,
            memory=self.memory,
            calendar=self.calendar,
            dedup=self.dedup,
            dedup_windows=config.dedup.windows,
        )
        # graph.enabled: every outcome handed to the store is mirrored into the
        # Bolt graph too, off the hot path (issue 6, item 2).
        if config.graph.enabled:
            self.graph = GraphMirror(config.graph, self.metrics)
            pipeline = _with_sink_after(pipeline, "store", GraphSink(self.graph.submit))
        # association.enabled: every outcome handed to the store (and the graph) is
        # offered to the correlator too (bounded queue, its own task); incidents are
        # saved beside the outcomes and published on incident.<kind>.<id> (issue 8).
        if config.association.enabled:
            self.incident_store = make_incident_store(config.store)
            self.incidents = IncidentWorker(
                Correlator(self.memory, config.association),
                self.incident_store,
                self.bus,
                subject=incident_subject,
                metrics=self.metrics,
                queue_size=config.association.queue_size,
                journal=(
                    None
                    if policy is None or self.outbox is None
                    else IncidentJournal(
                        wants=policy.wants_incident,
                        outbox=self.outbox,
                        notify=self._journal_committed_now,
                        flush=store.flush,
                    )
                ),
            )
            if fleet_enabled(config):
                # association.fleet (issue 10): no AssociationSink; the lease holder
                # correlates every worker's outcomes, read back from reflex.>.
                self.fleet = FleetCorrelator(
                    self.incidents,
                    JetStreamLease(
                        nats_url=config.bus.nats_url,
                        bucket=config.association.lease_bucket,
                        namespace=config.bus.namespace,
                        ttl=config.association.lease_ttl,
                        storage=config.bus.storage,
                        replicas=config.bus.replicas,
                    ),
                    self.bus,
                    store,
                    config=config.association,
                    memory=self.memory,
                    metrics=self.metrics,
                    drain_timeout=drain_timeout,
                )
            else:
                if (
                    config.association.fleet == "auto"
                    and config.bus.backend == "nats"
                    and config.engine.role == "all"
                ):
                    # Several `all` processes on one NATS share the events, so each would
                    # correlate only its own share: say so (the default stays as it is).
                    log.warning(
                        "association_fleet_off",
                        role=config.engine.role,
                        hint="each process correlates only the outcomes it handles; with "
                        "more than one process on this NATS set association.fleet: on",
                    )
                after = "graph" if self.graph is not None else "store"
                pipeline = _with_sink_after(pipeline, after, AssociationSink(self.incidents.submit))
        self.pipeline = pipeline
        self.runner = ReflexRunner(
            self.registry,
            self.bus,
            pipeline,
            metrics=self.metrics,
            drain_timeout=drain_timeout,
            ack_wait=config.bus.ack_wait,
        )

    # -- lifecycle ---------------------------------------------------------------

    async def start(self, *, ready_timeout: float = 30.0) -> None:
        """Start bus, store and runner, wait until handlers listen, then receivers.

        Idempotent. On failure everything already started is stopped again, the
        engine cannot be started again, and the error propagates
        (``BusUnavailable``, ``StoreError``, ``OSError`` for a port in use ...).

        Raises:
            RuntimeError: the engine was stopped (or failed to start) before.
        """
        async with self._lock:
            if self._started:
                return
            if self._stopped:
                raise RuntimeError("an Engine cannot be restarted after stop(); build a new one")
            self._started = True
            self._started_at = time.monotonic()
            try:
                await self.bus.start()
                if self.store is not None:
                    await self.store.start()
                if self.outbox is not None and self.journal is not None:
                    await self.outbox.start()
                    await self.journal.start()
                if self.graph is not None:
                    await self.graph.start()  # returns at once; a down graph is retried
                if self.memory is not None:
                    await self.memory.start()
                # After the store and the inventory (the correlator asks it for cable
                # peers): open incidents are restored before the first outcome.
                if self.incident_store is not None and self.incidents is not None:
                    await self.incident_store.start()
                    if self.fleet is not None:
                        await self.fleet.start()  # contends for the lease in the background
                    else:
                        await self.incidents.start()
                if self.calendar is not None:
                    await self.calendar.start()
                if self.dedup is not None:
                    await self.dedup.start()
                if self.runner is not None:
                    await self.runner.start()
                    # Handlers must be subscribed before the first datagram is accepted.
                    async with asyncio.timeout(ready_timeout):
                        await self.runner.ready_event.wait()
                if self.recorder is not None:
                    await self.recorder.start()  # before the first event is accepted
                for name, receiver in self.receivers.items():
                    await receiver.start()
                    host, port = receiver.bound_address[:2]
                    self.bound_addresses[name] = (host, port)
                    log.info("listening", listener=name, transport="udp", host=host, port=port)
                if self.webhook is not None:
                    await self.webhook.start()
                # Last: a request may need every part above (and feeds the webhook).
                if self.http is not None:
                    if self.stream_hub is not None:
                        await self.stream_hub.start()
                    if self.status_sampler is not None:
                        self.status_sampler.start()
                    await self.http.start()
                    host, port = self.http.bound_address
                    self.bound_addresses["http"] = (host, port)
                    log.info("listening", listener="http", transport="tcp", host=host, port=port)
                self._ready = True
            except BaseException as exc:
                # The caller reports the failure; one line here, no duplicate traceback.
                log.error("engine_start_failed", error=str(exc), error_type=type(exc).__name__)
                await self._shutdown()
                # Its parts are closed now; a new Engine is needed to try again.
                self._started, self._stopped = False, True
                raise
            for warning in role_warnings(self.config):
                log.warning("role_warning", role=self.plan.role, warning=warning)
            log.info(
                "engine_started",
                role=self.plan.role,
                bus=self.config.bus.backend,
                store=self.config.store.backend,
                graph=self.config.graph.enabled,
                association=self.config.association.enabled,
                inventory=self.config.inventory.backend,
                dedup=self.config.dedup.backend,
                maintenance_windows=0 if self.calendar is None else len(self.calendar.windows()),
                handlers=[]
                if self.runner is None
                else sorted(h.id for h in self.registry.all_handlers()),
                listeners={k: f"{h}:{p}" for k, (h, p) in self.bound_addresses.items()},
            )
            if self.config.log.stats_interval > 0:
                self._stats_task = asyncio.create_task(
                    self._log_stats(self.config.log.stats_interval), name="engine-stats"
                )

    async def stop(self) -> EngineSummary:
        """Stop receivers, drain in-flight events (bounded), stop runner, store, bus.

        Idempotent (later calls return the first summary); safe without ``start``.
        Returns the totals also logged as ``engine_stopped``.
        """
        async with self._lock:
            if self._summary is not None:
                return self._summary
            if self._started:
                log.info("engine_stopping", drain_timeout=self.drain_timeout)
                await self._shutdown()
            self._stopped = True
            self._summary = self.summary()
            if self._started:
                log.info(
                    "engine_stopped",
                    events=self._summary.events,
                    outcomes=self._summary.outcomes,
                    rejected=self._summary.rejected,
                    uptime_s=self._summary.uptime_s,
                )
            return self._summary

    async def _shutdown(self) -> None:
        """Close everything in reverse flow order; one failing step never skips the rest."""
        self._ready = False
        if self._stats_task is not None:
            self._stats_task.cancel()
            await asyncio.gather(self._stats_task, return_exceptions=True)
            self._stats_task = None
        # No new requests first (in-flight ones are answered), then the webhook
        # receiver publishes what it accepted.
        # Open streams end first (they never finish by themselves).
        if self.stream_hub is not None:
            await self._step("close_stream_hub", self.stream_hub.close())
        if self.status_sampler is not None:
            await self._step("close_status_sampler", self.status_sampler.close())
        if self.http is not None:
            await self._step("close_http", self.http.close())
        if self.webhook is not None:
            await self._step("close_receiver_webhook", self.webhook.close())
        for name, receiver in self.receivers.items():
            await self._step(f"close_receiver_{name}", receiver.close())
        # Every accepted event is published now: the recording gets them all.
        if self.recorder is not None:
            await self._step("stop_recorder", self.recorder.stop(self.drain_timeout))
        # The runner's stop processes every event the receivers accepted (bounded
        # by drain_timeout) before closing its subscriptions; a forced shutdown
        # after a failed start has nothing in flight.
        if self.runner is not None:
            await self._step("stop_runner", self.runner.stop())
        # The runner has drained: the mirror writes what it can (bounded), then the store.
        if self.graph is not None:
            await self._step("close_graph", self.graph.close())
        # The runner has drained: the correlator handles what is queued (bounded),
        # then its store closes (before the outcome store).
        if self.fleet is not None:  # drains, then releases the lease (immediate takeover)
            await self._step("stop_association", self.fleet.stop(self.drain_timeout))
        elif self.incidents is not None:
            await self._step("stop_association", self.incidents.stop(self.drain_timeout))
        if self.incident_store is not None:
            await self._step("close_incident_store", self.incident_store.close())
        # Jobs committed after this stay pending in the outbox for the next start.
        if self.journal is not None:
            await self._step("stop_journal", self.journal.stop())
        if self.outbox is not None:
            await self._step("close_outbox", self.outbox.close())
        if self.dedup is not None:
            await self._step("close_dedup", self.dedup.close())
        if self.calendar is not None:
            await self._step("close_calendar", self.calendar.close())
        if self.memory is not None:
            await self._step("close_inventory", self.memory.close())
        if self.store is not None:
            await self._step("close_store", self.store.close())
        await self._step("close_bus", self.bus.close())

    def _journal_committed(self, jobs: int) -> None:
        """The store committed ``jobs`` journal jobs: wake the delivery worker."""
        if self.journal is not None:
            self.journal.notify()

    def _journal_committed_now(self) -> None:
        """An incident's journal job was written: wake the delivery worker."""
        if self.journal is not None:
            self.journal.notify()

    @staticmethod
    async def _step(name: str, aw: Awaitable[object]) -> None:
        try:
            await aw
        except Exception:
            log.error("engine_stop_step_failed", step=name, exc_info=True)

    async def _log_stats(self, interval: float) -> None:
        """Every ``interval`` seconds, one ``engine_stats`` line: totals, rates, rejections."""
        last = self.summary()
        while True:
            await asyncio.sleep(interval)
            now = self.summary()
            rejected = self.metrics.get(REJECTED_METRIC)
            by_reason = rejected.by_label("reason") if isinstance(rejected, Counter) else {}
            log.info(
                "engine_stats",
                events=now.events,
                outcomes=now.outcomes,
                rejected=now.rejected,
                events_per_s=round((now.events - last.events) / interval, 1),
                outcomes_per_s=round((now.outcomes - last.outcomes) / interval, 1),
                rejected_by_reason={k: int(v) for k, v in sorted(by_reason.items())},
            )
            last = now

    def _engine_metrics(self) -> None:
        """``netcortex_engine_up``, ``netcortex_build_info{version}`` and
        ``netcortex_inventory_age_seconds`` (absent without an inventory snapshot)."""
        up = self.metrics.gauge("netcortex_engine_up", "1 while the engine is started, else 0")
        self.metrics.gauge(
            "netcortex_build_info", "the running netcortex version (always 1)", ["version"]
        ).set(1, version=__version__)
        age = self.metrics.gauge(
            "netcortex_inventory_age_seconds", "seconds since the inventory snapshot was taken"
        )
        memory = self.memory

        def collect() -> None:
            up.set(1 if self._ready else 0)
            if memory is not None:
                seconds = memory.snapshot_age()
                if math.isfinite(seconds):
                    age.set(seconds)

        self.metrics.add_collector(collect)

    def summary(self) -> EngineSummary:
        """Current totals (events published, outcomes, rejected inputs)."""
        return EngineSummary(
            events=_metric_total(self.metrics, *_EVENT_METRICS),
            outcomes=_metric_total(self.metrics, *_OUTCOME_METRICS),
            rejected=_metric_total(self.metrics, REJECTED_METRIC),
            uptime_s=round(time.monotonic() - self._started_at, 3) if self._started else 0.0,
        )

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


#: Metrics the summary reads (declared by the receivers and the reflex runner).
_EVENT_METRICS = (
    "netcortex_trap_published_total",
    "netcortex_webhook_published_total",
    "netcortex_poll_published_total",
)
_OUTCOME_METRICS = ("netcortex_reflex_outcomes_total",)


async def run_engine(
    config: Config, stop_event: asyncio.Event, *, record: str | Path | None = None
) -> EngineSummary:
    """Run an ``Engine`` until ``stop_event`` is set, then drain and stop it.

    Used by ``netcortex run`` (which sets ``stop_event`` on SIGINT/SIGTERM);
    ``record`` is ``--record FILE`` (the sensory events appended as JSON lines).
    """
    engine = Engine(config, record=record)
    await engine.start()
    # Start-up leaves ~100k long-lived objects (modules, config, inventory) that every
    # full collection would walk again: a 40-80 ms pause, the p99 of trap -> stored at
    # 300/s (docs/PERFORMANCE.md, "Scale-out"). Collected once, then frozen out of the
    # collector's view (here, not in Engine.start: tests run engines in-process).
    gc.collect()
    gc.freeze()
    log.info("heap_frozen", objects=gc.get_freeze_count())
    try:
        await stop_event.wait()
    finally:
        summary = await engine.stop()
    return summary
