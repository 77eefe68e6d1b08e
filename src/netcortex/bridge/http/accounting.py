"""Bridge, HTTP: ``accounting(...)`` — where every input went, from the engine's own counters.

Per intake source (``trap``, ``meraki``, ``poll``): what it received, rejected
(by reason), answered as a duplicate, published on the bus, failed to publish,
and still holds (``in_flight``: accepted, not yet published — its
``netcortex_queue_depth`` queue). A source is ``balanced`` when::

    received == published + rejected + duplicates + in_flight

so an input lost anywhere between the socket and the bus (a publish that
failed for good included) shows as ``false``. ``poll`` counts successful polls,
not events (a poll yields zero or more), so it has no identity: ``null``.

Engine-wide: events the reflex runner handled per handler
(``netcortex_reflex_handled_total``: bus messages a handler took and decoded;
each yields at most one outcome — a maintenance window that ends re-evaluates
held events and adds one each), messages it could not decode (by reason),
outcomes by kind, outcome rows stored (and ignored as already stored),
store batches that failed to commit, and kernel UDP receive-buffer drops per
listener (absent where they cannot be read).

Received and rejected come from ``status.StatusSampler.sources`` (the same
numbers ``GET /api/v1/status`` shows); everything is read in one synchronous
pass after the registry's collectors ran, so the counters are consistent with
each other.

May import: ``metrics``, ``bridge.http.status``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from netcortex.bridge.http.status import SOURCE_NAMES, StatusSampler
from netcortex.metrics import QUEUE_DEPTH, Counter, Registry

__all__ = ["INTAKE", "Intake", "accounting"]


@dataclass(frozen=True, slots=True)
class Intake:
    """The counters that account for one source's inputs after they are received."""

    published: str
    publish_failed: str
    queue: str | None = None  # its netcortex_queue_depth{queue}
    duplicates: str | None = None
    balances: bool = True  # received counts inputs that each become one event (or none)


#: Counter ``source`` label → how that receiver accounts for its inputs.
INTAKE: Final = {
    "snmp.trap": Intake(
        "netcortex_trap_published_total", "netcortex_trap_publish_failed_total", "trap_publish"
    ),
    "meraki.webhook": Intake(
        "netcortex_webhook_published_total",
        "netcortex_webhook_publish_failed_total",
        "webhook_publish",
        "netcortex_webhook_duplicates_total",
    ),
    "snmp.poll": Intake(
        "netcortex_poll_published_total", "netcortex_poll_publish_failed_total", balances=False
    ),
}

#: ``netcortex_rejected_total`` sources that are not intake (shown elsewhere or not at all).
_NOT_INTAKE: Final = frozenset({"reflex", "http.api"})

OUTCOMES: Final = "netcortex_reflex_outcomes_total"
HANDLED: Final = "netcortex_reflex_handled_total"
REJECTED: Final = "netcortex_rejected_total"
STORE_ROWS: Final = "netcortex_store_rows_total"
STORE_DUPLICATES: Final = "netcortex_store_duplicates_total"
STORE_FAILURES: Final = "netcortex_store_write_failures_total"
KERNEL_DROPS: Final = "netcortex_udp_kernel_drops_total"


def _counter(metrics: Registry, name: str) -> Counter | None:
    metric = metrics.get(name)
    return metric if isinstance(metric, Counter) else None


def _total(metrics: Registry, name: str | None) -> int:
    metric = None if name is None else _counter(metrics, name)
    return 0 if metric is None else int(metric.total())


def _by(metrics: Registry, name: str, label: str, **match: str) -> dict[str, int]:
    """Values of ``name`` summed per value of ``label``, over series matching ``match``."""
    metric = _counter(metrics, name)
    out: dict[str, int] = {}
    if metric is None:
        return out
    for labels, value in metric.samples():
        if all(labels.get(k) == v for k, v in match.items()):
            key = labels.get(label, "")
            out[key] = out.get(key, 0) + int(value)
    return dict(sorted(out.items()))


def accounting(
    metrics: Registry, sampler: StatusSampler, expected: Collection[str] = ()
) -> dict[str, Any]:
    """The accounting answer (see the module docstring), read from ``metrics`` now.

    ``expected``: source labels listed even before their first input (the
    engine's enabled receivers).
    """
    metrics.collect()  # queue depths and kernel drops are read on demand
    labels = {name: label for label, name in SOURCE_NAMES.items()}
    depth = _by(metrics, QUEUE_DEPTH, "queue")
    sources: list[dict[str, Any]] = []
    for status in sampler.sources(expected):
        label = labels.get(status.source, status.source)
        if label in _NOT_INTAKE:
            continue
        intake = INTAKE.get(label)
        published = 0 if intake is None else _total(metrics, intake.published)
        failed = 0 if intake is None else _total(metrics, intake.publish_failed)
        duplicates = 0 if intake is None else _total(metrics, intake.duplicates)
        in_flight = 0 if intake is None or intake.queue is None else depth.get(intake.queue, 0)
        balanced: bool | None = None
        if intake is not None and intake.balances:
            balanced = status.received == published + status.rejected + duplicates + in_flight
        sources.append(
            {
                "source": status.source,
                "received": status.received,
                "rejected": status.rejected,
                "rejected_by_reason": status.rejected_by_reason,
                "duplicates": duplicates,
                "published": published,
                "publish_failed": failed,
                "in_flight": in_flight,
                "balanced": balanced,
            }
        )
    by_handler = _by(metrics, HANDLED, "handler")
    undecodable = _by(metrics, REJECTED, "reason", source="reflex")
    by_kind = _by(metrics, OUTCOMES, "kind")
    return {
        "sources": sources,
        "handled": {
            "total": sum(by_handler.values()),
            "by_handler": by_handler,
            "rejected": sum(undecodable.values()),
            "rejected_by_reason": undecodable,
        },
        "outcomes": {"total": sum(by_kind.values()), "by_kind": by_kind},
        "stored": {
            "rows": _total(metrics, STORE_ROWS),
            "duplicates": _total(metrics, STORE_DUPLICATES),
        },
        "store_failures": _total(metrics, STORE_FAILURES),
        "kernel_udp_drops": _by(metrics, KERNEL_DROPS, "listener"),
    }
