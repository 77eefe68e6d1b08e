"""Reflex handler ``bgp_established``: a BGP session coming up is kept as an ``info`` outcome.

Pattern ``sensory.*.*.bgp_established.>``; target ``device|peer`` like
``bgp_drop``, so a drop and its recovery share a target. May import:
``reflex.protocol``.
"""

from __future__ import annotations

from netcortex.reflex.handlers._common import bgp_outcome
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
        return bgp_outcome(self.id, self.severity, event, "established")
