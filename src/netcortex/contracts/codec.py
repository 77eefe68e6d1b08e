"""Contracts: the one JSON codec for value types on the bus and in stores (stdlib only).

``encode_*`` produce compact UTF-8 JSON with the DESIGN.md field names; ``decode_*``
check ``schema_version`` and raise ``netcortex.errors.DecodeError`` on anything that
is not a valid record. Fields added later without a version bump (an outcome's
``role`` and ``trace``, issue 3) are optional on decode, so older records still
decode.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from netcortex.contracts.events import SCHEMA_VERSION, SensoryEvent, Severity
from netcortex.contracts.incidents import Incident, IncidentState
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import DecodeError

__all__ = [
    "decode_event",
    "decode_incident",
    "decode_outcome",
    "encode_event",
    "encode_incident",
    "encode_outcome",
    "event_to_dict",
    "incident_from_dict",
    "incident_to_dict",
    "outcome_from_dict",
    "outcome_to_dict",
]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def event_to_dict(event: SensoryEvent) -> dict[str, Any]:
    """Plain-JSON dict of ``event``."""
    return {
        "id": event.id,
        "subject": event.subject,
        "event_class": event.event_class,
        "source": event.source,
        "target": event.target,
        "device": event.device,
        "interface": event.interface,
        "peer": event.peer,
        "agent": event.agent,
        "observed_at": event.observed_at.isoformat(),
        "received_at": event.received_at.isoformat(),
        "payload": dict(event.payload),
        "schema_version": event.schema_version,
    }


def encode_event(event: SensoryEvent) -> bytes:
    """Encode ``event`` as UTF-8 JSON bytes."""
    return _dumps(event_to_dict(event)).encode()


def _load(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"{what}: invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise DecodeError(f"{what}: expected a JSON object, got {type(obj).__name__}")
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DecodeError(
            f"{what}: unsupported schema_version {version!r} (expected {SCHEMA_VERSION})",
            reason="schema_version",
        )
    return obj


def decode_event(data: bytes | str) -> SensoryEvent:
    """Decode bytes made by ``encode_event``. Raises ``DecodeError``."""
    obj = _load(data, "SensoryEvent")
    try:
        return SensoryEvent(
            id=obj["id"],
            subject=obj["subject"],
            event_class=obj["event_class"],
            source=obj["source"],
            target=obj["target"],
            device=obj.get("device"),
            interface=obj.get("interface"),
            peer=obj.get("peer"),
            agent=obj.get("agent"),
            observed_at=datetime.fromisoformat(obj["observed_at"]),
            received_at=datetime.fromisoformat(obj["received_at"]),
            payload=obj.get("payload") or {},
            schema_version=obj["schema_version"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"SensoryEvent: invalid field: {exc!r}") from exc


def outcome_to_dict(outcome: ReflexOutcome) -> dict[str, Any]:
    """Plain-JSON dict of ``outcome`` with the DESIGN.md field names."""
    return {
        "outcome_id": outcome.outcome_id,
        "handler_id": outcome.handler_id,
        "event_id": outcome.event_id,
        "subject": outcome.subject,
        "kind": outcome.kind.value,
        "severity": outcome.severity.value,
        "target": outcome.target,
        "device": outcome.device,
        "site": outcome.site,
        "summary": outcome.summary,
        "diagnostic": outcome.diagnostic,
        "fact_key": outcome.fact_key,
        "occurred_at": outcome.occurred_at.isoformat(),
        "recorded_at": outcome.recorded_at.isoformat(),
        "details": dict(outcome.details),
        "role": outcome.role,
        "trace": dict(outcome.trace),
        "schema_version": outcome.schema_version,
    }


def encode_outcome(outcome: ReflexOutcome) -> bytes:
    """Encode ``outcome`` as UTF-8 JSON bytes."""
    return _dumps(outcome_to_dict(outcome)).encode()


def outcome_from_dict(obj: dict[str, Any]) -> ReflexOutcome:
    """Build a ``ReflexOutcome`` from ``outcome_to_dict`` output. Raises ``DecodeError``."""
    try:
        return ReflexOutcome(
            outcome_id=obj["outcome_id"],
            handler_id=obj["handler_id"],
            event_id=obj["event_id"],
            subject=obj["subject"],
            kind=obj["kind"],
            severity=obj["severity"],
            target=obj["target"],
            device=obj.get("device"),
            site=obj.get("site"),
            summary=obj.get("summary", ""),
            diagnostic=obj.get("diagnostic", ""),
            fact_key=obj.get("fact_key", ""),
            occurred_at=datetime.fromisoformat(obj["occurred_at"]),
            recorded_at=datetime.fromisoformat(obj["recorded_at"]),
            details=obj.get("details") or {},
            schema_version=obj.get("schema_version", SCHEMA_VERSION),
            # ``role`` and ``trace`` came with issue 3 (same schema_version: the
            # change is additive); records written before them decode without.
            role=obj.get("role"),
            trace=obj.get("trace") or {},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"ReflexOutcome: invalid field: {exc!r}") from exc


def decode_outcome(data: bytes | str) -> ReflexOutcome:
    """Decode bytes made by ``encode_outcome``. Raises ``DecodeError``."""
    return outcome_from_dict(_load(data, "ReflexOutcome"))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def incident_to_dict(incident: Incident) -> dict[str, Any]:
    """Plain-JSON dict of ``incident`` (the ``Incident`` field names; times ISO-8601)."""
    return {
        "incident_id": incident.incident_id,
        "rule": incident.rule,
        "root": incident.root,
        "state": incident.state.value,
        "severity": incident.severity.value,
        "summary": incident.summary,
        "members": list(incident.members),
        "evidence": list(incident.evidence),
        "inhibited": list(incident.inhibited),
        "opened_at": incident.opened_at.isoformat(),
        "updated_at": incident.updated_at.isoformat(),
        "resolved_at": _iso(incident.resolved_at),
        "site": incident.site,
        "flapping": incident.flapping,
        "version": incident.version,
        "details": dict(incident.details),
    }


def encode_incident(incident: Incident) -> bytes:
    """Encode ``incident`` as UTF-8 JSON bytes (the ``incident.<state>.<id>`` payload)."""
    return _dumps(incident_to_dict(incident)).encode()


def _check_types(details: object, version: object) -> None:
    if not isinstance(details, dict):
        raise TypeError(f"details must be an object, got {type(details).__name__}")
    if not isinstance(version, int) or isinstance(version, bool):
        raise TypeError(f"version must be an integer, got {version!r}")


def incident_from_dict(obj: dict[str, Any]) -> Incident:
    """Build an ``Incident`` from ``incident_to_dict`` output. Raises ``DecodeError``."""
    try:
        flapping = obj.get("flapping")
        resolved = obj.get("resolved_at")
        details = obj.get("details") or {}
        version = obj.get("version", 1)
        _check_types(details, version)
        return Incident(
            incident_id=str(obj["incident_id"]),
            rule=str(obj["rule"]),
            root=str(obj["root"]),
            state=IncidentState(obj["state"]),
            severity=Severity(obj["severity"]),
            summary=str(obj.get("summary", "")),
            members=tuple(str(m) for m in obj.get("members") or ()),
            evidence=tuple(str(e) for e in obj.get("evidence") or ()),
            inhibited=tuple(str(i) for i in obj.get("inhibited") or ()),
            opened_at=datetime.fromisoformat(obj["opened_at"]),
            updated_at=datetime.fromisoformat(obj["updated_at"]),
            resolved_at=None if resolved is None else datetime.fromisoformat(resolved),
            site=obj.get("site"),
            flapping=None if flapping is None else bool(flapping),
            version=version,
            details=dict(details),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"Incident: invalid field: {exc!r}") from exc


def decode_incident(data: bytes | str) -> Incident:
    """Decode bytes made by ``encode_incident``. Raises ``DecodeError``.

    ``incident_to_dict`` carries no ``schema_version`` (the incident payload came
    with issue 8, after the last bump); one that is present must match.
    """
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"Incident: invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise DecodeError(f"Incident: expected a JSON object, got {type(obj).__name__}")
    version = obj.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise DecodeError(
            f"Incident: unsupported schema_version {version!r} (expected {SCHEMA_VERSION})",
            reason="schema_version",
        )
    return incident_from_dict(obj)
