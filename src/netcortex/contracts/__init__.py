"""Contracts: Protocols and frozen value types only — stdlib imports, no I/O.

Every seam between regions is defined here once.
"""

from netcortex.contracts.bus import BusMessage, EventBus, Subscription
from netcortex.contracts.events import (
    EVENT_CLASSES,
    SCHEMA_VERSION,
    SensoryEvent,
    Severity,
    new_event_id,
)
from netcortex.contracts.memory import (
    BgpSession,
    DedupResult,
    DedupStore,
    Device,
    Interface,
    OutcomeCursor,
    OutcomeQuery,
    OutcomeStore,
    SemanticMemory,
)
from netcortex.contracts.reflex import (
    Gate,
    OutcomeKind,
    ReflexHandler,
    ReflexOutcome,
    Sink,
    outcome_id_for,
)

__all__ = [
    "EVENT_CLASSES",
    "SCHEMA_VERSION",
    "BgpSession",
    "BusMessage",
    "DedupResult",
    "DedupStore",
    "Device",
    "EventBus",
    "Gate",
    "Interface",
    "OutcomeCursor",
    "OutcomeKind",
    "OutcomeQuery",
    "OutcomeStore",
    "ReflexHandler",
    "ReflexOutcome",
    "SemanticMemory",
    "SensoryEvent",
    "Severity",
    "Sink",
    "Subscription",
    "new_event_id",
    "outcome_id_for",
]
