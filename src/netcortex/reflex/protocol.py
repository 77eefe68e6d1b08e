"""Reflex: the handler-author surface, re-exported from ``contracts`` (nothing new here).

A handler module needs exactly these names; importing them from here keeps
handler code independent of where the contracts happen to live::

    from netcortex.reflex.protocol import ReflexOutcome, SensoryEvent, Severity

May import: ``netcortex.contracts`` only.
"""

from __future__ import annotations

from netcortex.contracts.events import SensoryEvent, Severity
from netcortex.contracts.reflex import (
    Gate,
    OutcomeKind,
    ReflexHandler,
    ReflexOutcome,
    Sink,
    outcome_id_for,
)

__all__ = [
    "Gate",
    "OutcomeKind",
    "ReflexHandler",
    "ReflexOutcome",
    "SensoryEvent",
    "Severity",
    "Sink",
    "outcome_id_for",
]
