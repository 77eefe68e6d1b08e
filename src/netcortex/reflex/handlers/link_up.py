"""Reflex handler ``link_up``: a link recovery is kept on record as an ``info`` outcome.

Pattern ``sensory.*.*.link_up.>``; target ``device|interface`` like ``link_down``,
so a down and its recovery share a target. May import: ``reflex.protocol``.
"""

from __future__ import annotations

from netcortex.reflex.handlers._common import (
    LINK_DETAIL_KEYS,
    echo_details,
    join_target,
    link_parts,
)
from netcortex.reflex.protocol import ReflexOutcome, SensoryEvent, Severity

__all__ = ["LinkUpHandler"]


class LinkUpHandler:
    """A link came up: ``info``, target ``device|interface``."""

    id = "link_up"
    patterns: tuple[str, ...] = ("sensory.*.*.link_up.>",)
    dedup_window = 60.0
    severity = Severity.INFO

    async def handle(self, event: SensoryEvent) -> ReflexOutcome:
        """Record the link up on ``device|interface`` (parts fall back as available)."""
        device, interface = link_parts(event.device, event.interface, event.agent, event.payload)
        where = " ".join(p for p in (device, interface) if p) or event.target
        return ReflexOutcome.for_event(
            self.id,
            event,
            severity=self.severity,
            summary=f"Link up on {where}",
            target=join_target(device, interface, fallback=event.target),
            device=device,
            details=echo_details(event.payload, LINK_DETAIL_KEYS),
        )
