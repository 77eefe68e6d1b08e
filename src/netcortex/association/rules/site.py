"""Association rule ``site_outage``: at least N devices of one site down together.

Example (``site_min_devices`` 3, ``site_window`` 120 s): ``mx-west``,
``ms-west`` and ``mr-west`` (site ``branch-west``) report ``device_down`` at
10:00:00, 10:00:20 and 10:01:10 → one incident rooted at ``site:branch-west``.
Device incidents of that site are absorbed (their evidence and inhibited
outcomes move to the site incident and they close with
``details.merged_into``); link and BGP facts of those devices join it as
inhibited. Index hit: the device facts of the site. May import: contracts, config.
"""

from __future__ import annotations

from netcortex.association._facts import DEVICE, Fact, Facts
from netcortex.association.rules._proposal import Proposal, ordered, within
from netcortex.config import AssociationConfig

__all__ = ["RANK", "RULE", "inhibits", "propose"]

RULE = "site_outage"
RANK = 4


def propose(fact: Fact, facts: Facts, config: AssociationConfig) -> Proposal | None:
    """``site_min_devices`` device facts of ``fact``'s site within ``site_window``."""
    if fact.kind != DEVICE or fact.site is None:
        return None
    window = config.site_window
    down = [f for f in facts.devices_at(fact.site) if within(f.at, fact.at, window)]
    if len(down) < config.site_min_devices:
        return None
    return Proposal(
        rule=RULE,
        rank=RANK,
        root=f"site:{fact.site}",
        facts=ordered(down),
        summary=f"Site {fact.site} outage: {len(down)} devices "
        + ("down or restarted" if any(f.reboot for f in down) else "down"),
        details={
            "why": f"{len(down)} devices of site {fact.site} down within {window:g} s "
            f"(threshold {config.site_min_devices})",
            "window_s": window,
            "threshold": config.site_min_devices,
        },
    )


def inhibits(root: str, fact: Fact) -> bool:
    """The site's devices are members; their links and sessions are symptoms."""
    return fact.kind != DEVICE
