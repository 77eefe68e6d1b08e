"""Reflex handler ``bgp_drop``: a BGP backward transition is a ``high`` outcome.

Pattern ``sensory.*.*.bgp_backward_transition.>``; target ``device|peer``,
falling back to whichever part is known. May import: ``reflex.protocol``.
"""

from __future__ import annotations

from netcortex.reflex.handlers._common import (
    BGP_DETAIL_KEYS,
    bgp_parts,
    bgp_where,
    echo_details,
    join_target,
)
from netcortex.reflex.protocol import ReflexOutcome, SensoryEvent, Severity

__all__ = ["BgpDropHandler"]


class BgpDropHandler:
    """A BGP session dropped (backward transition): ``high``, target ``device|peer``."""

    id = "bgp_drop"
    patterns: tuple[str, ...] = ("sensory.*.*.bgp_backward_transition.>",)
    #: both ends (and both MIB forms) report one drop; a minute joins them
    dedup_window = 60.0
    severity = Severity.HIGH

    async def handle(self, event: SensoryEvent) -> ReflexOutcome:
        """Record the session drop on ``device|peer`` (or whichever part is known)."""
        device, peer = bgp_parts(event.device, event.peer, event.agent, event.payload)
        return ReflexOutcome.for_event(
            self.id,
            event,
            severity=self.severity,
            summary=f"BGP session down on {bgp_where(device, peer, event.target)}",
            target=join_target(device, peer, fallback=event.target),
            device=device,
            details=echo_details(event.payload, BGP_DETAIL_KEYS),
        )
