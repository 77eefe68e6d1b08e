"""Reflex handler ``bgp_drop``: a BGP backward transition is a ``high`` outcome.

Pattern ``sensory.*.*.bgp_backward_transition.>``; target ``device|peer``,
falling back to whichever part is known. May import: ``reflex.protocol``.
"""

from __future__ import annotations

from netcortex.reflex.handlers._common import bgp_outcome
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
        return bgp_outcome(self.id, self.severity, event, "down")
