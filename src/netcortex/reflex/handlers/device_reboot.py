"""Reflex handler ``device_reboot``: a restart (coldStart/warmStart) is a ``warn`` outcome.

Pattern ``sensory.*.*.device_reboot.>``; target is the device (falling back to
the agent, then the event's raw target). May import: ``reflex.protocol``.
"""

from __future__ import annotations

from netcortex.reflex.handlers._common import echo_details
from netcortex.reflex.protocol import ReflexOutcome, SensoryEvent, Severity

__all__ = ["DeviceRebootHandler"]

_DETAIL_KEYS = ("trap", "trap_oid", "sysUpTime", "uptime", "generic_trap", "specific_trap")


class DeviceRebootHandler:
    """A device restarted: ``warn``, target ``device``."""

    id = "device_reboot"
    patterns: tuple[str, ...] = ("sensory.*.*.device_reboot.>",)
    #: a reboot often sends coldStart then warmStart (and repeats); five minutes join them
    dedup_window = 300.0
    severity = Severity.WARN

    async def handle(self, event: SensoryEvent) -> ReflexOutcome:
        """Record the restart of the device."""
        device = event.device or event.agent
        target = device or event.target
        return ReflexOutcome.for_event(
            self.id,
            event,
            severity=self.severity,
            summary=f"Device {target} restarted",
            target=target,
            device=device,
            details=echo_details(event.payload, _DETAIL_KEYS),
        )
