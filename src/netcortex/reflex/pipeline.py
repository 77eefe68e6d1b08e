"""Reflex: the pipeline — the one place where gate and sink order is written.

Read ``build_pipeline`` top to bottom for what happens to an event a handler
matched (DESIGN.md "Reflex pipeline")::

    gates (enrich → maintenance → dedup; none yet, issue 2)
      → handler.handle(event)
      → sinks: log line → outcome store → bus (reflex.<handler>.<kind>.<target>)

The runner walks ``Pipeline.gates`` and ``Pipeline.sinks`` in order; nothing
else decides that order. May import: ``contracts``, ``reflex.sinks``,
``reflex.gates`` (when gates exist).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from netcortex.contracts.bus import EventBus
from netcortex.contracts.memory import OutcomeStore
from netcortex.metrics import Registry
from netcortex.reflex.protocol import Gate, Sink
from netcortex.reflex.sinks import BusSink, LogSink, StoreSink

__all__ = ["Pipeline", "build_pipeline"]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """What the runner walks for every (handler, event): ``gates`` then ``sinks``, in order."""

    gates: tuple[Gate, ...] = ()
    sinks: tuple[Sink, ...] = ()


def build_pipeline(
    *,
    store: OutcomeStore,
    bus: EventBus,
    gates: Sequence[Gate] = (),
    metrics: Registry | None = None,
    bus_inflight: int = 256,
) -> Pipeline:
    """Assemble the reflex pipeline.

    Args:
        store: where outcomes are kept (started and closed by the caller).
        bus: where outcomes are published on ``reflex.>`` (started and closed by
            the caller).
        gates: gates to run before the handler, in order. None exist yet; the
            later issue adds ``EnrichGate``, ``MaintenanceGate``, ``DedupGate``
            here — suppression before dedup, as in Alertmanager.
        metrics: the engine's registry (sink failures are counted there).
        bus_inflight: outcome publishes awaiting their ack at once (``BusSink``).

    Returns:
        The pipeline: ``gates`` as given, sinks ``LogSink`` → ``StoreSink`` →
        ``BusSink``. The log line comes first so an outcome is visible even when
        storage or the bus fails.
    """
    return Pipeline(
        gates=tuple(gates),
        sinks=(
            LogSink(),
            StoreSink(store),
            BusSink(bus, max_inflight=bus_inflight, metrics=metrics),
        ),
    )
