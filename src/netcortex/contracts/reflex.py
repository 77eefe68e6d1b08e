"""Contracts: reflex handlers, gates, sinks and the frozen ``ReflexOutcome`` (stdlib only).

A handler is tiny: ``id``, ``patterns``, ``dedup_window`` and ``async handle``.
The runner walks an ordered list of ``Gate``s before the handler and ``Sink``s
after it; that list is built once, in ``reflex/pipeline.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from netcortex.contracts.events import SCHEMA_VERSION, SensoryEvent, Severity

__all__ = [
    "TRACE_DECIDERS",
    "Gate",
    "OutcomeKind",
    "ReflexHandler",
    "ReflexOutcome",
    "Sink",
    "outcome_id_for",
]


class OutcomeKind(StrEnum):
    """What became of one (handler, event) pair."""

    LOGGED = "logged"  #: the handler ran and produced a record
    SKIPPED = "skipped"  #: duplicate within the dedup window (corroboration)
    SUPPRESSED = "suppressed"  #: an active maintenance window covers the target
    ERRORED = "errored"  #: the handler raised; ``diagnostic`` holds the traceback


#: Values of ``ReflexOutcome.trace["decided_by"]``: the gate that stopped the
#: event, or ``handler`` when every gate passed it (a raising gate names itself).
TRACE_DECIDERS: frozenset[str] = frozenset({"enrich", "maintenance", "dedup", "handler"})


def outcome_id_for(handler_id: str, event_id: str) -> str:
    """Derive the outcome id from handler id and event id.

    The same pair always yields the same id, so a re-delivered event produces the
    same outcome id and stores can write idempotently.
    """
    digest = hashlib.blake2b(f"{handler_id}\x00{event_id}".encode(), digest_size=16)
    return digest.hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ReflexOutcome:
    """The record of what a reflex did with one event.

    Attributes:
        outcome_id: ``outcome_id_for(handler_id, event_id)``; idempotency key.
        handler_id: the handler's ``id``.
        event_id: the ``SensoryEvent.id`` that caused it.
        subject: the event's subject.
        kind: ``OutcomeKind``.
        severity: ``Severity``.
        target: canonical target (``device|interface`` ...).
        device: device part of the target, if known.
        site: site of the device, if known (semantic memory, via the enrich gate).
        summary: one human line.
        diagnostic: truncated traceback for ``errored``, reason for ``suppressed``.
        fact_key: ``event_class|target`` — the dedup key.
        occurred_at: when it happened on the network (the event's ``observed_at``).
        recorded_at: when the outcome was produced (UTC).
        details: up to a handful of upstream payload fields, JSON-serialisable.
        role: device role slug, if known (semantic memory, via the enrich gate).
        trace: the decision trace, JSON-serialisable, read-only (filled by the
            runner from what the gates recorded). Keys, each present when it
            applies: ``decided_by`` (one of ``TRACE_DECIDERS``, or the name of a
            gate that raised); ``inventory`` (``device+interface``, ``device``
            or ``unknown``); ``snapshot_age_s`` (inventory age, ``None`` before
            the first snapshot); the enrichment facts used (``device``,
            ``site``, ``role``, ``tags``, ``interface``, ``if_index``,
            ``cable_peer`` as ``device|interface``, ``bgp_session``,
            ``bgp_local_asn``, ``bgp_remote_asn``, ``peer_device``,
            ``raw_target`` when enrichment renamed the target); ``window_id``
            (maintenance); ``fact_key``, ``dedup_key``, ``dedup_window_s``,
            ``first_event_id``, ``corroboration`` (dedup). Empty on outcomes
            made before issue 3 (and on ones decoded from such records).
    """

    outcome_id: str
    handler_id: str
    event_id: str
    subject: str
    kind: OutcomeKind
    severity: Severity
    target: str
    device: str | None = None
    site: str | None = None
    summary: str = ""
    diagnostic: str = ""
    fact_key: str = ""
    occurred_at: datetime = field(default_factory=_utcnow)
    recorded_at: datetime = field(default_factory=_utcnow)
    details: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    # Added in issue 3; last so positional construction of the older fields still works.
    role: str | None = None
    trace: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", OutcomeKind(self.kind))
        object.__setattr__(self, "severity", Severity(self.severity))
        if not isinstance(self.details, MappingProxyType):
            object.__setattr__(self, "details", MappingProxyType(dict(self.details)))
        if not isinstance(self.trace, MappingProxyType):
            object.__setattr__(self, "trace", MappingProxyType(dict(self.trace)))

    @classmethod
    def for_event(
        cls,
        handler_id: str,
        event: SensoryEvent,
        *,
        severity: Severity,
        summary: str,
        kind: OutcomeKind = OutcomeKind.LOGGED,
        target: str | None = None,
        device: str | None = None,
        site: str | None = None,
        diagnostic: str = "",
        details: Mapping[str, Any] | None = None,
        role: str | None = None,
        trace: Mapping[str, Any] | None = None,
    ) -> ReflexOutcome:
        """Build the outcome of ``handler_id`` for ``event`` (ids and times derived)."""
        tgt = target if target is not None else event.target
        return cls(
            outcome_id=outcome_id_for(handler_id, event.id),
            handler_id=handler_id,
            event_id=event.id,
            subject=event.subject,
            kind=kind,
            severity=severity,
            target=tgt,
            device=device if device is not None else event.device,
            site=site,
            summary=summary,
            diagnostic=diagnostic,
            fact_key=f"{event.event_class}|{tgt}",
            occurred_at=event.observed_at,
            details=details or {},
            role=role,
            trace=trace or {},
        )

    def with_kind(self, kind: OutcomeKind, diagnostic: str = "") -> ReflexOutcome:
        """Return a copy with another ``kind`` (and diagnostic)."""
        return replace(self, kind=kind, diagnostic=diagnostic)


@runtime_checkable
class ReflexHandler(Protocol):
    """A fast deterministic reaction to events matching ``patterns``.

    Attributes:
        id: unique, stable, a single subject token (``[a-z0-9_-]+``).
        patterns: subject patterns (``*`` one token, ``>`` the rest) to consume.
        dedup_window: seconds within which a repeat of the same fact is ``skipped``
            (used by the dedup gate; ``0`` disables dedup).
    """

    id: str
    patterns: tuple[str, ...]
    dedup_window: float

    async def handle(self, event: SensoryEvent) -> ReflexOutcome | None:
        """React to one event.

        Args:
            event: a decoded event whose subject matches one of ``patterns``.

        Returns:
            The outcome to record, or ``None`` to record nothing.

        Raises:
            Anything: the runner turns any exception into an ``errored`` outcome
            and keeps going; a handler never stops the runner. Handlers do no I/O
            except through injected Protocols and must be safe to re-run for the
            same event (at-least-once delivery).
        """
        ...


class Gate(Protocol):
    """One step before the handler (enrich, maintenance, dedup).

    Every gate has this one signature. It returns the event (possibly enriched:
    canonical device / interface / target) to continue, or an ``OutcomeKind``
    to stop the walk with that kind:

    * ``SUPPRESSED`` (maintenance): a *shadow* outcome. The remaining gates
      are not consulted (suppression comes before dedup, as in Alertmanager,
      so a suppressed event never sets a dedup key), but the handler still
      runs, so what would have fired — its severity, summary and details — is
      on record with kind ``suppressed``. A handler returning ``None``
      records nothing.
    * ``SKIPPED`` (dedup) and any other kind: the handler does not run; the
      outcome carries the handler's nominal severity.

    ``trace`` is the per-(handler, event) decision trace, shared by the gates
    in order: a gate adds the facts it used or decided on (JSON-serialisable
    values only: str, int, float, bool, None, lists of those) and may read
    what earlier gates added (the maintenance gate reads the site, role and
    tags the enrich gate found). The runner adds ``decided_by`` and puts the
    trace on the outcome (``ReflexOutcome.trace``), and takes the outcome's
    ``site`` and ``role`` from it when the handler did not set them.
    """

    name: str

    async def __call__(
        self, handler: ReflexHandler, event: SensoryEvent, trace: dict[str, Any]
    ) -> SensoryEvent | OutcomeKind:
        """Pass, enrich, or stop one event for one handler.

        Args:
            handler: the handler the event is for (its ``id`` and ``dedup_window``).
            event: the event as the previous gate left it.
            trace: the decision trace to add to (see the class docstring).

        Returns:
            The event to hand on, or the ``OutcomeKind`` that stops it.

        Raises:
            Nothing on valid input. A gate that raises (say, a shared dedup
            store that is down) yields an ``errored`` outcome for the event; the
            runner goes on with the next one.
        """
        ...


class Sink(Protocol):
    """One destination of outcomes (store, bus, journal).

    ``emit`` must be safe to call concurrently from every handler task and
    idempotent on ``outcome_id``. A failing sink raises; the runner logs and counts
    it, and the other sinks still run.
    """

    name: str

    async def emit(self, outcome: ReflexOutcome) -> None:
        """Deliver one outcome (may buffer; see the concrete sink for durability)."""
        ...

    async def flush(self) -> None:
        """Return when every outcome emitted before the call is delivered.

        The runner calls it when it stops, after its last event, so buffering
        sinks (a pipelined bus publish, a batched store) lose nothing on a
        graceful stop. Failures are the sink's to log and count.
        """
        ...
