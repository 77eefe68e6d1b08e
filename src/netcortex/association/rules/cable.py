"""Association rule ``cable_pair``: link-downs on both ends of one cable → one incident.

Example: ``r1-north|GigabitEthernet0/0/0`` goes down at 10:00:00 and its cable
peer ``r1-south|GigabitEthernet0/0/0`` at 10:00:02 (``cable_window`` 30 s) →
one incident rooted at ``cable:r1-north|GigabitEthernet0/0/0~r1-south|GigabitEthernet0/0/0``.
The cable peer comes from the outcome's trace (``cable_peer``, filled by the
enrich gate) or from SemanticMemory. One index hit: the peer end's fact.
May import: contracts, config.
"""

from __future__ import annotations

from netcortex.association._facts import LINK, Fact, Facts, cable_key
from netcortex.association.rules._proposal import Proposal, ordered, within
from netcortex.config import AssociationConfig

__all__ = ["RANK", "RULE", "inhibits", "propose"]

RULE = "cable_pair"
RANK = 2


def propose(fact: Fact, facts: Facts, config: AssociationConfig) -> Proposal | None:
    """Both ends of ``fact``'s cable down within ``cable_window`` → a cable incident."""
    if fact.kind != LINK or fact.peer is None:
        return None
    other = facts.get(fact.peer)
    if other is None or other.kind != LINK or not within(fact.at, other.at, config.cable_window):
        return None
    apart = abs((fact.at - other.at).total_seconds())
    a, b = sorted((fact.member, other.member))
    return Proposal(
        rule=RULE,
        rank=RANK,
        root=cable_key(a, b),
        facts=ordered([other, fact]),
        summary=f"Cable down: {a.replace('|', ' ')} — {b.replace('|', ' ')}",
        details={
            "why": f"link-downs on both ends of one cable {apart:.2f} s apart "
            f"(window {config.cable_window:g} s)",
            "window_s": config.cable_window,
            "ends": [a, b],
        },
    )


def inhibits(root: str, fact: Fact) -> bool:
    """In a cable incident the BGP sessions over the cable are symptoms."""
    return fact.kind != LINK
