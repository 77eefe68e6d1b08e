"""Reflex handler ``device_down``: a device stopped reporting — ``high``, or Meraki's own level.

Pattern ``sensory.*.*.device_down.>`` (Meraki "APs/switches/appliances went
down" webhooks today, any later modality too). Target is the device (falling
back to the event's raw target), so a later ``device_up`` on the same device
clears a fact held back by maintenance (``reflex.facts.RECOVERY_CLASSES``).
When the payload carries a Meraki ``alertLevel`` the severity follows it
(``critical`` → ``critical`` ..., as ``security_webhook`` maps it); without one,
or with a level Meraki does not define, it is ``high``. May import:
``reflex.protocol``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netcortex.reflex.handlers._common import echo_details
from netcortex.reflex.handlers.security_webhook import MERAKI_LEVELS, meraki_severity
from netcortex.reflex.protocol import ReflexOutcome, SensoryEvent, Severity

__all__ = ["DEVICE_DETAIL_KEYS", "DeviceDownHandler", "device_summary"]

#: Payload fields echoed first (the Meraki body's), then the rest by name.
DEVICE_DETAIL_KEYS: tuple[str, ...] = (
    "alertType",
    "alertTypeId",
    "alertLevel",
    "alertId",
    "occurredAt",
    "deviceName",
    "deviceSerial",
    "deviceModel",
    "networkName",
    "classified_by",
)


def device_summary(what: str, device: str, payload: Mapping[str, Any]) -> str:
    """``"Device down: mr-west (APs went down)"`` — the alert text when there is one."""
    alert = payload.get("alertType")
    if isinstance(alert, str) and alert.strip():
        return f"Device {what}: {device} ({alert.strip()})"
    return f"Device {what}: {device}"


def _severity(payload: Mapping[str, Any], default: Severity) -> Severity:
    level = payload.get("alertLevel")
    if isinstance(level, str) and level.strip().lower() in MERAKI_LEVELS:
        return meraki_severity(level)
    return default


class DeviceDownHandler:
    """A device went down: ``high`` (or the alert's Meraki level), target ``device``."""

    id = "device_down"
    patterns: tuple[str, ...] = ("sensory.*.*.device_down.>",)
    #: Meraki repeats "went down" while a device stays down; five minutes join them
    dedup_window = 300.0
    #: nominal severity (also used for outcomes a gate stops)
    severity = Severity.HIGH

    async def handle(self, event: SensoryEvent) -> ReflexOutcome:
        """Record the device down, at the alert's level when it has one."""
        target = event.device or event.target
        return ReflexOutcome.for_event(
            self.id,
            event,
            severity=_severity(event.payload, self.severity),
            summary=device_summary("down", target, event.payload),
            target=target,
            device=event.device,
            details=echo_details(event.payload, DEVICE_DETAIL_KEYS),
        )
