"""Reflex handler ``config_change``: every configuration change is kept as an ``info`` outcome.

Pattern ``sensory.*.*.config_change.>`` (Meraki "Settings changed" webhooks
today). Dedup is off (window 0): each change is its own fact and is logged.
The summary names the settings page (``alertData.name``) and the change labels
(``alertData.changes.*.label``) when the alert carries them; the target is the
event's (the device, or the network for a network-wide change). May import:
``reflex.protocol``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netcortex.reflex.handlers._common import echo_details
from netcortex.reflex.protocol import ReflexOutcome, SensoryEvent, Severity

__all__ = ["ConfigChangeHandler", "change_labels"]

#: Change labels named in a summary at most (the rest are counted).
MAX_LABELS = 3

_DETAIL_KEYS: tuple[str, ...] = (
    "alertType",
    "alertData.name",
    "alertData.url",
    "alertData.userId",
    "networkName",
    "deviceName",
    "alertId",
    "occurredAt",
)


def change_labels(data: Mapping[str, Any]) -> list[str]:
    """The ``label`` of each entry of ``alertData.changes``, in order (non-empty text only)."""
    changes = data.get("changes")
    if not isinstance(changes, Mapping):
        return []
    labels = []
    for change in changes.values():
        if isinstance(change, Mapping):
            label = change.get("label")
            if isinstance(label, str) and label.strip():
                labels.append(label.strip())
    return labels


def _flatten(payload: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level fields, ``alertData.<key>``, and ``alertData.changes.<name>.<field>``."""
    flat = {k: v for k, v in payload.items() if k != "alertData"}
    for key, value in data.items():
        if isinstance(key, str):
            flat[f"alertData.{key}"] = value
    changes = data.get("changes")
    if isinstance(changes, Mapping):
        for name, change in changes.items():
            if isinstance(name, str) and isinstance(change, Mapping):
                for key, value in change.items():
                    if isinstance(key, str):
                        flat[f"alertData.changes.{name}.{key}"] = value
    return flat


class ConfigChangeHandler:
    """A configuration change: ``info``, every one recorded (no dedup)."""

    id = "config_change"
    patterns: tuple[str, ...] = ("sensory.*.*.config_change.>",)
    #: every change is logged: two changes are two facts, however close
    dedup_window = 0.0
    severity = Severity.INFO

    async def handle(self, event: SensoryEvent) -> ReflexOutcome:
        """Record the change with what changed, as far as the alert says."""
        payload = event.payload
        raw = payload.get("alertData")
        data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        where = event.device or event.target
        summary = f"Configuration changed on {where}"
        name = data.get("name")
        if isinstance(name, str) and name.strip():
            summary += f": {name.strip()}"
        labels = change_labels(data)
        if labels:
            shown = "; ".join(labels[:MAX_LABELS])
            more = len(labels) - MAX_LABELS
            summary += f" — {shown}" + (f" (+{more} more)" if more > 0 else "")
        return ReflexOutcome.for_event(
            self.id,
            event,
            severity=self.severity,
            summary=summary,
            device=event.device,
            details=echo_details(_flatten(payload, data), _DETAIL_KEYS),
        )
