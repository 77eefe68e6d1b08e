"""Reflex handler ``bgp_established``: a BGP session coming up is kept as an ``info`` outcome.

Pattern ``sensory.*.*.bgp_established.>``; target ``device|peer`` like
``bgp_drop``, so a drop and its recovery share a target. May import:
``reflex.protocol``.
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

__all__ = ["BgpEstablishedHandler"]


class BgpEstablishedHandler:
    """A BGP session reached Established: ``info``, target ``device|peer``."""

    id = "bgp_established"
    patterns: tuple[str, ...] = ("sensory.*.*.bgp_established.>",)
    dedup_window = 60.0
    severity = Severity.INFO

    async def handle(self, event: SensoryEvent) -> ReflexOutcome:
        """Record the session establishment on ``device|peer``."""
        device, peer = bgp_parts(event.device, event.peer, event.agent, event.payload)
        return ReflexOutcome.for_event(
            self.id,
            event,
            severity=self.severity,
            summary=f"BGP session established on {bgp_where(device, peer, event.target)}",
            target=join_target(device, peer, fallback=event.target),
            device=device,
            details=echo_details(event.payload, BGP_DETAIL_KEYS),
        )
