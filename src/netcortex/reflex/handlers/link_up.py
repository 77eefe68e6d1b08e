"""Reflex handler ``link_up``: a link recovery is kept on record as an ``info`` outcome.

Pattern ``sensory.*.*.link_up.>``; target ``device|interface`` like ``link_down``,
so a down and its recovery share a target. May import: ``reflex.protocol``.
"""

from __future__ import annotations

from netcortex.reflex.handlers._common import link_outcome
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
        return link_outcome(self.id, self.severity, event, "up")
