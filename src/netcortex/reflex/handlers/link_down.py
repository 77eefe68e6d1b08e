"""Reflex handler ``link_down``: every link down, whatever saw it, is a ``high`` outcome.

Pattern ``sensory.*.*.link_down.>`` covers SNMP traps (``sensory.snmp.trap.…``),
polls and any later modality. Target ``device|interface``; up to 16 upstream
payload fields are echoed into ``details``. May import: ``reflex.protocol``.
"""

from __future__ import annotations

from netcortex.reflex.handlers._common import link_outcome
from netcortex.reflex.protocol import ReflexOutcome, SensoryEvent, Severity

__all__ = ["LinkDownHandler"]


class LinkDownHandler:
    """A link went down: ``high``, target ``device|interface``."""

    id = "link_down"
    patterns: tuple[str, ...] = ("sensory.*.*.link_down.>",)
    #: a trap and a poll seeing the same down within a minute are one fact
    dedup_window = 60.0
    #: nominal severity (also used for outcomes a gate stops)
    severity = Severity.HIGH

    async def handle(self, event: SensoryEvent) -> ReflexOutcome:
        """Record the link down on ``device|interface`` (parts fall back as available)."""
        return link_outcome(self.id, self.severity, event, "down")
