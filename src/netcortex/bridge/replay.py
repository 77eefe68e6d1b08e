"""Bridge: ``netcortex replay FILE`` — recorded events through the reflex pipeline again.

A recording (``netcortex run --record FILE``, ``bridge.record``) is one
``SensoryEvent`` per line with its ``received_at``. ``replay_events`` sorts the
events by ``received_at`` (then id) and runs them, one at a time, through the
same parts ``netcortex run`` builds from the config — the built-in handlers
(minus ``reflex.disabled``), the enrich gate on the config's inventory, the
maintenance gate on the config's windows, the dedup gate with
``dedup.windows``, the sinks, and the correlator with the config's
``association`` section — on a **virtual clock**: whatever asks for the time
sees the replayed event's ``received_at``:

* the dedup store's clock (so dedup windows are measured between receive times);
* the maintenance gate (it already judges an event at its ``received_at``) and
  the re-evaluation of facts a window held back, run at each window end
  between two events (as the runner's window watcher does live);
* the correlator's ``now`` for every outcome, and its ``tick`` every second of
  virtual time (as ``IncidentWorker`` does live);
* the outcomes' ``recorded_at``.

Outcome ids are ``outcome_id_for(handler_id, event.id)`` and incident ids
derive from rule, root and opening outcome, so a replay reproduces the live
run's ids. ``speed`` only decides how long to wait between events in wall-clock
time (``0``: not at all; ``1``: the recorded pacing; ``10``: ten times
faster); the results are the same at any speed.

Replay never touches the config's store, bus, receivers, HTTP server, journal
or graph: it uses an in-memory bus and an in-memory outcome list, or a SQLite
file of its own (``store``: outcomes and the final incidents are written
there). Maintenance windows are the config's (``maintenance.windows``); windows
added at run time with ``netcortex maintenance add`` live in the store and are
not read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import structlog

from netcortex.bridge.record import BadLine, read_recording
from netcortex.contracts.codec import outcome_to_dict
from netcortex.contracts.events import SensoryEvent
from netcortex.contracts.incidents import Incident, IncidentStore, IncidentTransition
from netcortex.contracts.memory import (
    BgpSession,
    Device,
    Interface,
    OutcomeQuery,
    SemanticMemory,
)
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome

if TYPE_CHECKING:
    from netcortex.config import Config

__all__ = [
    "ReplayResult",
    "VirtualClock",
    "add_replay_parser",
    "replay_events",
    "replay_file",
    "sort_events",
]

log = structlog.get_logger(__name__)

#: seconds of virtual time between correlator ticks (``IncidentWorker``'s default)
TICK_INTERVAL: Final = 1.0
#: held facts are re-evaluated this long after a window's end (the runner's slack)
_WINDOW_SLACK: Final = timedelta(seconds=0.05)
#: a gap between two events longer than this many ticks is not ticked through second
#: by second: one tick at its start, then the tick grid jumps to the next event
_MAX_TICKS_PER_GAP: Final = 86_400
_KINDS: Final = tuple(k.value for k in OutcomeKind)


class VirtualClock:
    """The replay's "now": set to each event's ``received_at``; never goes back."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a VirtualClock needs a timezone-aware start")
        self._now = start

    def now(self) -> datetime:
        """The current virtual time (timezone-aware)."""
        return self._now

    def monotonic(self) -> float:
        """The current virtual time in seconds (for clocks that want a float)."""
        return self._now.timestamp()

    def advance(self, to: datetime) -> datetime:
        """Move to ``to`` unless that is earlier than now; return now."""
        if to > self._now:
            self._now = to
        return self._now


def sort_events(events: Sequence[SensoryEvent]) -> list[SensoryEvent]:
    """``events`` in replay order: by ``received_at``, then by id (ULIDs sort by time)."""
    return sorted(events, key=lambda e: (e.received_at, e.id))


@dataclass(slots=True)
class ReplayResult:
    """What a replay did.

    Attributes:
        events: events replayed.
        outcomes: every outcome, in the order they were produced.
        incidents: the last version of every incident, in the order they opened.
        transitions: incident transitions, in order.
        bad: lines of the file that were not events (``replay_file``).
        first_at, last_at: ``received_at`` of the first and last event.
        wall_seconds: wall-clock time the replay took.
    """

    events: int = 0
    outcomes: list[ReflexOutcome] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    transitions: list[IncidentTransition] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    first_at: datetime | None = None
    last_at: datetime | None = None
    wall_seconds: float = 0.0

    def by_kind(self) -> dict[str, int]:
        """Outcomes per kind (every kind present, zeros included)."""
        tally = Tally(o.kind.value for o in self.outcomes)
        return {kind: tally.get(kind, 0) for kind in _KINDS}

    def summary_line(self) -> str:
        """``N events → M outcomes (logged/suppressed/skipped) → K incidents``."""
        kinds = self.by_kind()
        parts = [f"{kinds[k]} {k}" for k in ("logged", "suppressed", "skipped")]
        if kinds["errored"]:
            parts.append(f"{kinds['errored']} errored")
        return (
            f"{_plural(self.events, 'event')} → {_plural(len(self.outcomes), 'outcome')} "
            f"({', '.join(parts)}) → {_plural(len(self.incidents), 'incident')}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (outcomes as ``netcortex outcomes --json``, incidents
        as ``netcortex incidents --json``)."""
        from netcortex.bridge.views import incident_dict

        return {
            "events": self.events,
            "outcomes_total": len(self.outcomes),
            "by_kind": self.by_kind(),
            "incidents_total": len(self.incidents),
            "first_received_at": None if self.first_at is None else self.first_at.isoformat(),
            "last_received_at": None if self.last_at is None else self.last_at.isoformat(),
            "bad_lines": [{"line": b.line, "error": b.error} for b in self.bad],
            "outcomes": [outcome_to_dict(o) for o in self.outcomes],
            "incidents": [incident_dict(i) for i in self.incidents],
        }


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class _ReplayMemory:
    """The config's inventory, as of now, for every replayed event: lookups pass
    through; ``snapshot_age`` is 0 (on the virtual clock the snapshot is current),
    so a decision trace does not depend on how long the replay has been running."""

    def __init__(self, inner: SemanticMemory) -> None:
        self._inner = inner

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    def devices(self) -> Sequence[Device]:
        return self._inner.devices()

    def device_by_address(self, address: str) -> Device | None:
        return self._inner.device_by_address(address)

    def device_by_name(self, name: str) -> Device | None:
        return self._inner.device_by_name(name)

    def device_by_serial(self, serial: str) -> Device | None:
        return self._inner.device_by_serial(serial)

    def device_by_mac(self, mac: str) -> Device | None:
        return self._inner.device_by_mac(mac)

    def interface(
        self, device: str, *, if_index: int | None = None, name: str | None = None
    ) -> Interface | None:
        return self._inner.interface(device, if_index=if_index, name=name)

    def cable_peer(self, device: str, interface: str) -> Interface | None:
        return self._inner.cable_peer(device, interface)

    def bgp_session(self, device: str, remote_address: str) -> BgpSession | None:
        return self._inner.bgp_session(device, remote_address)

    def snapshot_age(self) -> float:
        return 0.0


class _ListStore:
    """An in-memory ``OutcomeStore`` (idempotent on ``outcome_id``): replay's default."""

    def __init__(self) -> None:
        self.rows: dict[str, ReflexOutcome] = {}

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def record(self, outcome: ReflexOutcome) -> None:
        self.rows[outcome.outcome_id] = outcome

    async def flush(self) -> None:
        """Nothing is buffered."""

    async def query(self, query: OutcomeQuery) -> list[ReflexOutcome]:
        rows = sorted(self.rows.values(), key=lambda o: (o.recorded_at, o.outcome_id))
        return list(reversed(rows))[: query.limit]

    async def get(self, outcome_id: str) -> ReflexOutcome | None:
        return self.rows.get(outcome_id)

    async def prune(self, now: datetime | None = None) -> int:
        return 0

    async def ping(self) -> None:
        """Always writable."""


class _Collect:
    """The last sink: keeps every outcome in order (the replay's result)."""

    name = "replay"

    def __init__(self, out: list[ReflexOutcome]) -> None:
        self._out = out

    async def emit(self, outcome: ReflexOutcome) -> None:
        self._out.append(outcome)

    async def flush(self) -> None:
        """Nothing is buffered."""


async def replay_events(
    events: Sequence[SensoryEvent],
    config: Config,
    *,
    speed: float = 0.0,
    store: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    progress_interval: float = 2.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    wall: Callable[[], float] = time.monotonic,
) -> ReplayResult:
    """Replay ``events`` (sorted here) through the pipeline ``config`` describes.

    Args:
        events: the recorded events, in any order.
        config: the configuration (handlers, inventory, windows, dedup, association).
        speed: ``0`` as fast as possible; ``N > 0`` waits so that N seconds of
            recorded time pass in one second of wall-clock time.
        store: a SQLite file to keep the outcomes and the final incidents in
            (``None``: in memory only).
        progress: called with ``(done, total)`` about every ``progress_interval``
            wall-clock seconds, and once at the end.
        sleep, wall: the wall-clock wait and clock (injectable for tests).

    Raises:
        ValueError: ``speed`` is negative or not finite.
        netcortex.errors.StoreError: ``store`` cannot be opened or written.
    """
    if not (speed >= 0 and speed != float("inf")):
        raise ValueError(f"speed must be >= 0, got {speed!r}")
    ordered = sort_events(events)
    result = ReplayResult(events=len(ordered))
    started = wall()
    if not ordered:
        return result
    result.first_at, result.last_at = ordered[0].received_at, ordered[-1].received_at
    async with _Replayer(config, ordered[0].received_at, store, result) as replayer:
        t0 = ordered[0].received_at
        last_report = started
        for done, event in enumerate(ordered):
            if speed > 0:
                due = started + (event.received_at - t0).total_seconds() / speed
                delay = due - wall()
                if delay > 0:
                    await sleep(delay)
            await replayer.feed(event)
            if progress is not None and wall() - last_report >= progress_interval:
                last_report = wall()
                progress(done + 1, len(ordered))
        await replayer.finish()
    if progress is not None:
        progress(len(ordered), len(ordered))
    result.wall_seconds = wall() - started
    return result


class _Replayer:
    """The pipeline of one replay on one virtual clock (built like ``app.Engine``)."""

    def __init__(
        self, config: Config, start: datetime, store: Path | None, result: ReplayResult
    ) -> None:
        from netcortex.app import (
            _check_dedup_windows,
            _maintenance_windows,
            _make_memory,
            _with_sink_after,
            make_calendar,
            make_incident_store,
            make_store,
        )
        from netcortex.association import Correlator
        from netcortex.config import BusConfig, StoreConfig
        from netcortex.contracts.memory import OutcomeStore
        from netcortex.memory.episodic.dedup_memory import InMemoryDedupStore
        from netcortex.metrics import Registry
        from netcortex.reflex.pipeline import build_pipeline
        from netcortex.reflex.registry import builtin_registry
        from netcortex.reflex.runner import ReflexRunner
        from netcortex.reflex.sinks import AssociationSink
        from netcortex.thalamus.memory import InMemoryEventBus

        self.clock = VirtualClock(start)
        self.result = result
        self.metrics = Registry()
        self.bus = InMemoryEventBus(BusConfig(), self.metrics)
        self.store: OutcomeStore = _ListStore()
        self.incident_store: IncidentStore | None = None
        if store is not None:
            # No retention: it prunes by wall-clock time, and a recording may be old.
            side = StoreConfig(backend="sqlite", sqlite_path=store, retention_days=0)
            self.store = make_store(side, self.metrics)
            self.incident_store = make_incident_store(side)
        inner = _make_memory(config.inventory, self.metrics)
        self.memory = None if inner is None else _ReplayMemory(inner)
        windows = _maintenance_windows(config.maintenance, config.source)
        # Not started: config windows only, answered from memory; nothing stored is read.
        self.calendar = make_calendar(config, windows, self.metrics, reload_interval=0)
        _check_dedup_windows(config.dedup, config.source)
        self.dedup = InMemoryDedupStore(
            max_keys=config.dedup.max_keys, metrics=self.metrics, clock=self.clock.monotonic
        )
        registry = builtin_registry(disabled=tuple(config.reflex.disabled))
        pipeline = build_pipeline(
            store=self.store,
            bus=self.bus,
            metrics=self.metrics,
            memory=self.memory,
            calendar=self.calendar,
            dedup=self.dedup,
            dedup_windows=config.dedup.windows,
        )
        self.correlator: Correlator | None = None
        if config.association.enabled:
            self.correlator = Correlator(self.memory, config.association)
            pipeline = _with_sink_after(pipeline, "store", AssociationSink(self._observe))
        pipeline = replace(pipeline, sinks=(*pipeline.sinks, _Collect(result.outcomes)))
        self.pipeline = pipeline
        self.runner = ReflexRunner(registry, self.bus, pipeline, self.metrics, clock=self.clock.now)
        self._next_tick = start + timedelta(seconds=TICK_INTERVAL)
        #: when held facts are next re-evaluated (a window's end + slack), once known
        self._release: datetime | None = None
        self._incidents: dict[str, Incident] = {}

    async def __aenter__(self) -> _Replayer:
        await self.bus.start()
        await self.store.start()
        if self.incident_store is not None:
            await self.incident_store.start()
        if self.memory is not None:
            await self.memory.start()
        await self.dedup.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for sink in self.pipeline.sinks:
            await sink.flush()
        await self.dedup.close()
        if self.memory is not None:
            await self.memory.close()
        if self.incident_store is not None:
            await self.incident_store.close()
        await self.store.close()
        await self.bus.close()

    # -- time ----------------------------------------------------------------------

    async def advance(self, to: datetime) -> None:
        """Run what time alone does up to ``to``, in time order: correlator ticks every
        ``TICK_INTERVAL`` and the release of facts held by a window that ended."""
        step = timedelta(seconds=TICK_INTERVAL)
        if (to - self._next_tick) / step > _MAX_TICKS_PER_GAP:
            self._tick(self._next_tick)
            self._next_tick += step * int((to - self._next_tick) / step)
        while True:
            if self._release is None:
                # Kept once known: a tick landing on the window's end must not hide it.
                change = self.runner.next_window_change()
                self._release = None if change is None else change + _WINDOW_SLACK
            release = self._release
            if release is not None and release <= to and release < self._next_tick:
                self.clock.advance(release)
                self._release = None
                await self.runner.release_held()
            elif self._next_tick <= to:
                self._tick(self._next_tick)
                self._next_tick += step
            else:
                break
        self.clock.advance(to)

    def _tick(self, at: datetime) -> None:
        now = self.clock.advance(at)
        if self.correlator is not None:
            self._transitions("tick", None, lambda c: c.tick(now))

    # -- events ----------------------------------------------------------------------

    async def feed(self, event: SensoryEvent) -> None:
        await self.advance(event.received_at)
        await self.runner.run_event(event)

    async def finish(self) -> None:
        """After the last event: one tick at its time; keep the final incidents."""
        self._tick(self.clock.now())
        self.result.incidents = list(self._incidents.values())
        if self.incident_store is not None:
            for incident in self.result.incidents:
                await self.incident_store.save(incident)

    def _observe(self, outcome: ReflexOutcome) -> None:
        now = self.clock.now()
        self._transitions("observe", outcome, lambda c: c.observe(outcome, now))

    def _transitions(
        self,
        op: str,
        outcome: ReflexOutcome | None,
        call: Callable[[Any], list[IncidentTransition]],
    ) -> None:
        try:
            found = call(self.correlator)
        except Exception:  # the worker's rule: a failing correlation is logged, not fatal
            log.error(
                "incident_correlation_failed",
                op=op,
                outcome_id=None if outcome is None else outcome.outcome_id,
                exc_info=True,
            )
            return
        for transition in found:
            self.result.transitions.append(transition)
            incident = transition.incident
            self._incidents[incident.incident_id] = incident


def replay_file(path: str | Path, config: Config, **kwargs: Any) -> ReplayResult:
    """Read ``path`` and replay its events (``replay_events`` keywords) on a new event
    loop (not from a running one); the result's ``bad`` lists the lines skipped.

    Raises:
        OSError: the file cannot be read.
    """
    recording = read_recording(path)

    async def go() -> ReplayResult:
        return await replay_events(recording.events, config, **kwargs)

    from netcortex.bridge.cli import _run_async

    result = _run_async(go())
    result.bad = list(recording.bad)
    return result


# -- the command ----------------------------------------------------------------------


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be 0 (as fast as possible) or more: {text!r}")
    return value


def add_replay_parser(sub: Any) -> None:
    """Register ``netcortex replay`` on the CLI's subparsers."""
    rep = sub.add_parser(
        "replay",
        help="replay recorded events on a virtual clock",
        description=(
            "Run the events of FILE (JSON lines, as written by 'netcortex run --record') "
            "in received_at order through the reflex pipeline and the correlator the "
            "config describes, on a virtual clock: dedup windows, maintenance windows and "
            "incident windows behave as they did live, and outcome and incident ids are "
            "the live run's. Maintenance windows are the config's maintenance.windows "
            "(windows added with 'netcortex maintenance add' live in the store and are not "
            "read). Never touches the config's store or bus. Prints a summary, "
            "then the outcomes and incidents; bad lines are reported with their numbers."
        ),
        epilog=(
            "Examples: netcortex replay var/events.jsonl -c netcortex.yaml; "
            "netcortex replay events.jsonl --speed 1 --json"
        ),
    )
    rep.add_argument("file", metavar="FILE", help="a recording: one event object per line")
    rep.add_argument(
        "--speed",
        type=_speed,
        default=0.0,
        metavar="N",
        help="0: as fast as possible (default); 1: the recorded pacing; 10: ten times faster",
    )
    rep.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="the recording engine's config file (handlers, inventory, windows, dedup, "
        "association; default: built-in defaults, which have no inventory)",
    )
    rep.add_argument(
        "--store",
        metavar="PATH",
        help="also keep the outcomes and incidents in this SQLite file (default: in memory)",
    )
    rep.add_argument("--json", action="store_true", help="print one JSON document")
    rep.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    """``netcortex replay``: exit 0, 1 (unreadable file, only bad lines, store failure)
    or 2 (configuration error)."""
    from netcortex.bridge.cli import (
        EXIT_FAILURE,
        EXIT_OK,
        EXIT_USAGE,
        _load,
        _quiet_logging,
        render_incidents,
        render_table,
    )
    from netcortex.errors import NetcortexError

    _quiet_logging()
    config = _load(args.config, sys.stderr, check_handlers=True)
    if config is None:
        return EXIT_USAGE
    err = sys.stderr

    def progress(done: int, total: int) -> None:
        if done < total:
            print(f"netcortex replay: {done}/{total} events", file=err, flush=True)

    try:
        result = replay_file(
            args.file,
            config,
            speed=args.speed,
            store=None if args.store is None else Path(args.store),
            progress=progress,
        )
    except OSError as exc:
        print(f"netcortex replay: cannot read {args.file}: {exc.strerror or exc}", file=err)
        return EXIT_FAILURE
    except NetcortexError as exc:
        print(f"netcortex replay: {exc}", file=err)
        return EXIT_FAILURE
    bad = result.bad
    for b in bad:
        print(f"netcortex replay: {args.file}:{b.line}: skipped: {b.error}", file=err)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(result.summary_line())
        if bad:
            print(f"{_plural(len(bad), 'bad line')} skipped (see stderr)")
        if result.outcomes:
            print()
            print(render_table(result.outcomes))
        if result.incidents:
            print()
            end = result.last_at if result.last_at is not None else datetime.now().astimezone()
            print(render_incidents(result.incidents, end))
    if bad and not result.events:
        print(f"netcortex replay: {args.file}: no valid event in the file", file=err)
        return EXIT_FAILURE
    return EXIT_OK
