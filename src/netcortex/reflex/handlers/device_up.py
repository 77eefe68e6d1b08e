"""Reflex handler ``device_up``: a device came back — kept on record as ``info``.

Pattern ``sensory.*.*.device_up.>``; target is the device like ``device_down``'s,
so a down and its recovery share a target (``reflex.facts.RECOVERY_CLASSES``
pairs them). May import: ``reflex.protocol``.
"""

from __future__ import annotations

from netcortex.reflex.handlers._common import echo_details
from netcortex.reflex.handlers.device_down import DEVICE_DETAIL_KEYS, device_summary
from netcortex.reflex.protocol import ReflexOutcome, SensoryEvent, Severity

__all__ = ["DeviceUpHandler"]


class DeviceUpHandler:
    """A device came up: ``info``, target ``device``."""

    id = "device_up"
    patterns: tuple[str, ...] = ("sensory.*.*.device_up.>",)
    dedup_window = 60.0
    severity = Severity.INFO

    async def handle(self, event: SensoryEvent) -> ReflexOutcome:
        """Record the recovery of the device."""
        target = event.device or event.target
        return ReflexOutcome.for_event(
            self.id,
            event,
            severity=self.severity,
            summary=device_summary("up", target, event.payload),
            target=target,
            device=event.device,
            details=echo_details(event.payload, DEVICE_DETAIL_KEYS),
        )
