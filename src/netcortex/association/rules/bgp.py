"""Association rule ``bgp_over_link``: a BGP drop over a link that is down.

Example: ``r1-north|GigabitEthernet0/0/0`` goes down at 10:00:00 and at
10:01:30 ``r1-north``'s session to ``203.0.113.1`` (peer device ``r1-south``,
from the trace's ``peer_device`` or SemanticMemory) drops (``bgp_window``
180 s): the session runs over the cable between ``r1-north`` and ``r1-south``,
so the drop joins that link's incident (a cable or device incident when there
is one) or, alone with the link-down, opens one rooted at the cable with the
drop ``inhibited``. Either order works: a link-down after the drop finds the
drop the same way. Index hits: links (or sessions) between the two devices.

The inventory contract knows a session's local address but not its interface,
so a session whose peer is not in the inventory (a transit peer) cannot be
placed on a link; it stays a plain outcome. May import: contracts, config.
"""

from __future__ import annotations

from netcortex.association._facts import BGP, LINK, Fact, Facts, cable_key
from netcortex.association.rules._proposal import Proposal, ordered, within
from netcortex.config import AssociationConfig

__all__ = ["RANK", "RULE", "inhibits", "propose"]

RULE = "bgp_over_link"
RANK = 2


def propose(fact: Fact, facts: Facts, config: AssociationConfig) -> Proposal | None:
    """A BGP fact and a link fact between the same two devices within ``bgp_window``."""
    other = fact.peer_device
    if other is None or fact.kind not in (LINK, BGP):
        return None
    window = config.bgp_window
    links = [f for f in facts.between(fact.device, other, LINK) if within(f.at, fact.at, window)]
    sessions = [f for f in facts.between(fact.device, other, BGP) if within(f.at, fact.at, window)]
    if not links or not sessions:
        return None
    # The link the root is named after: the oldest one with a known far end.
    link = min(links, key=lambda f: (f.at, f.member))
    assert link.peer is not None  # only links with a known cable peer are indexed by pair
    root = cable_key(link.member, link.peer)
    return Proposal(
        rule=RULE,
        rank=RANK,
        root=root,
        facts=ordered([*links, *sessions]),
        summary=f"BGP down over a failed link: {len(sessions)} session(s) between "
        f"{min(fact.device, other)} and {max(fact.device, other)}",
        details={
            "why": f"BGP session(s) {', '.join(sorted(s.member for s in sessions))} dropped "
            f"within {window:g} s of link-down(s) "
            f"{', '.join(sorted(f.member for f in links))} between the same two devices",
            "window_s": window,
            "link": link.member,
        },
    )


def inhibits(root: str, fact: Fact) -> bool:
    """The sessions are symptoms of the link they run over."""
    return fact.kind == BGP
