"""Contracts: the sensory event and its closed vocabularies (stdlib only, no I/O).

A ``SensoryEvent`` is what every receiver produces and everything downstream
consumes; where it came from is only ``source``. ``EVENT_CLASSES`` is the closed
vocabulary used as the fourth subject token — adding a class is a one-line change
here plus its test.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "EVENT_CLASSES",
    "SCHEMA_VERSION",
    "SensoryEvent",
    "Severity",
    "new_event_id",
]

#: Wire schema version of ``SensoryEvent`` and ``ReflexOutcome``; checked on decode.
SCHEMA_VERSION = 1

#: The closed vocabulary of event classes (the subject's ``event_class`` token).
EVENT_CLASSES: frozenset[str] = frozenset(
    {
        "link_down",
        "link_up",
        "bgp_backward_transition",
        "bgp_established",
        "device_reboot",
        "device_down",
        "device_up",
        "security",
        "config_change",
        "auth_failure",
        "other",  # recognised transport, unmapped notification
    }
)


class Severity(StrEnum):
    """Four-level outcome severity, ordered: ``info < warn < high < critical``."""

    INFO = "info"
    WARN = "warn"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Position in the order info(0) < warn(1) < high(2) < critical(3)."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARN: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_id_lock = threading.Lock()
_id_last_ms = 0
_id_last_rand = 0


def new_event_id() -> str:
    """Return a new ULID: 26 Crockford base32 characters, sortable by creation time.

    Ids made in the same millisecond by one process are strictly increasing (the
    random part is incremented), so lexical order is creation order. Thread-safe.
    """
    global _id_last_ms, _id_last_rand
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _id_last_ms:
            ms = _id_last_ms
            rand = (_id_last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _id_last_ms, _id_last_rand = ms, rand
    value = (ms << 80) | rand
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SensoryEvent:
    """One perception of the network, in canonical form.

    Attributes:
        id: time-sortable unique id (ULID); also the bus message id, so a
            re-publish is deduplicated by JetStream.
        subject: ``sensory.<modality>.<channel>.<event_class>.<target tokens...>``.
        event_class: one of ``EVENT_CLASSES``.
        source: ``<modality>.<channel>``, e.g. ``"snmp.trap"``.
        target: canonical ``device|interface`` (or ``device|peer``, ``device``);
            the raw identifier when nothing better is known.
        device, interface, peer: the target's parts, ``None`` when unknown.
        agent: the sender's address (UDP source, or the relayed origin).
        observed_at: when the network says it happened (UTC).
        received_at: when netcortex received it (UTC).
        payload: decoded fields, JSON-serialisable, never secrets. Read-only.
        schema_version: wire schema version.
    """

    id: str
    subject: str
    event_class: str
    source: str
    target: str
    device: str | None = None
    interface: str | None = None
    peer: str | None = None
    agent: str | None = None
    observed_at: datetime = field(default_factory=_utcnow)
    received_at: datetime = field(default_factory=_utcnow)
    payload: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.event_class not in EVENT_CLASSES:
            raise ValueError(f"unknown event_class {self.event_class!r}")
        for name in ("observed_at", "received_at"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware (UTC)")
        if not isinstance(self.payload, MappingProxyType):
            object.__setattr__(self, "payload", MappingProxyType(dict(self.payload)))
