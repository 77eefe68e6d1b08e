"""Reflex: the pipeline — the one place where gate and sink order is written.

Read ``build_pipeline`` top to bottom for what happens to an event a handler
matched (DESIGN.md "Reflex pipeline")::

    gates: enrich (semantic memory) → maintenance (suppressed, shadow)
           → dedup (skipped, corroboration)
      → handler.handle(event)
      → sinks: log line → outcome store → bus (reflex.<handler>.<kind>.<target>)

The runner walks ``Pipeline.gates`` and ``Pipeline.sinks`` in order; nothing
else decides that order. May import: ``contracts``, ``reflex.sinks``,
``reflex.gates``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from netcortex.contracts.bus import EventBus
from netcortex.contracts.memory import (
    DedupStore,
    MaintenanceCalendar,
    OutcomeStore,
    SemanticMemory,
)
from netcortex.metrics import Registry
from netcortex.reflex.gates import DedupGate, EnrichGate, MaintenanceGate
from netcortex.reflex.protocol import Gate, Sink
from netcortex.reflex.sinks import BusSink, LogSink, StoreSink

__all__ = ["Pipeline", "build_pipeline"]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """What the runner walks for every (handler, event): ``gates`` then ``sinks``, in order."""

    gates: tuple[Gate, ...] = ()
    sinks: tuple[Sink, ...] = ()
    #: the maintenance calendar behind the maintenance gate, if any: the runner
    #: re-evaluates suppressed facts when their window ends
    calendar: MaintenanceCalendar | None = None


def build_pipeline(
    *,
    store: OutcomeStore,
    bus: EventBus,
    gates: Sequence[Gate] = (),
    metrics: Registry | None = None,
    bus_inflight: int = 256,
    memory: SemanticMemory | None = None,
    calendar: MaintenanceCalendar | None = None,
    dedup: DedupStore | None = None,
    dedup_windows: Mapping[str, float] | None = None,
) -> Pipeline:
    """Assemble the reflex pipeline.

    A gate is included only when its dependency is given, so a caller without
    inventory, calendar or dedup state gets today's gate-less pipeline.

    Args:
        store: where outcomes are kept (started and closed by the caller).
        bus: where outcomes are published on ``reflex.>`` (started and closed by
            the caller).
        gates: extra gates, run in the given order after the built-in ones and
            before the handler.
        metrics: the engine's registry (sink failures are counted there).
        bus_inflight: outcome publishes awaiting their ack at once (``BusSink``).
        memory: semantic memory → ``EnrichGate`` (started by the caller).
        calendar: maintenance windows → ``MaintenanceGate`` (started by the caller).
        dedup: shared dedup state → ``DedupGate`` (started by the caller).
        dedup_windows: per-handler dedup windows in seconds overriding each
            handler's ``dedup_window`` (``0`` turns dedup off for that handler).

    Returns:
        The pipeline. Gates: ``EnrichGate`` → ``MaintenanceGate`` → ``DedupGate``
        (each if its dependency is given) → ``gates``. Enrichment comes first so
        the later gates see canonical names, site, role and tags; suppression
        comes before dedup (Alertmanager), so an event inside a window never sets
        a dedup key and the first one after the window is not a duplicate. Sinks:
        ``LogSink`` → ``StoreSink`` → ``BusSink``; the log line comes first so an
        outcome is visible even when storage or the bus fails.
    """
    built: list[Gate] = []
    if memory is not None:
        built.append(EnrichGate(memory))
    if calendar is not None:
        built.append(MaintenanceGate(calendar))
    if dedup is not None:
        built.append(DedupGate(dedup, dedup_windows))
    return Pipeline(
        calendar=calendar,
        gates=(*built, *gates),
        sinks=(
            LogSink(),
            StoreSink(store),
            BusSink(bus, max_inflight=bus_inflight, metrics=metrics),
        ),
    )
