"""Association rule ``device_root``: a device down or restarted, and what that took down.

Example: ``r1-north`` restarts (``device_reboot`` at 10:00:40) after its
neighbours reported ``sw1-north|GigabitEthernet1/0/1`` and
``r1-south|GigabitEthernet0/0/0`` down (10:00:05, 10:00:06) and ``r1-south``'s
BGP session to ``r1-north`` dropped → one incident rooted at ``device:r1-north``
whose children (the link-downs of its own interfaces and of their cable peers,
and the BGP sessions of or towards it) are ``inhibited``. The order does not
matter: the root may come first or last, as long as every child is within
``device_window`` of it. Index hits: the device's fact, and the facts of and
towards the device. May import: contracts, config.
"""

from __future__ import annotations

from netcortex.association._facts import DEVICE, Fact, Facts
from netcortex.association.rules._proposal import Proposal, ordered, within
from netcortex.config import AssociationConfig

__all__ = ["RANK", "RULE", "inhibits", "propose"]

RULE = "device_root"
RANK = 3


def _candidates(fact: Fact) -> list[str]:
    if fact.kind == DEVICE:
        return [fact.device]
    other = fact.peer_device
    return [fact.device] if other is None or other == fact.device else [fact.device, other]


def propose(fact: Fact, facts: Facts, config: AssociationConfig) -> Proposal | None:
    """A device fact with at least one child within ``device_window`` → a device incident."""
    window = config.device_window
    for name in _candidates(fact):
        root = facts.device(name)
        if root is None or not within(fact.at, root.at, window):
            continue
        children = [c for c in facts.related_to_device(name) if within(c.at, root.at, window)]
        if not children:
            continue
        what = "restarted" if root.reboot else "down"
        links = sum(1 for c in children if c.kind != "bgp")
        sessions = len(children) - links
        return Proposal(
            rule=RULE,
            rank=RANK,
            root=f"device:{name}",
            facts=ordered([root, *children]),
            summary=f"Device {name} {what}: {links} link(s), {sessions} BGP session(s) affected",
            details={
                "why": f"{'device_reboot' if root.reboot else 'device_down'} of {name} with "
                f"{len(children)} link/BGP fact(s) of or towards it within "
                f"{window:g} s",
                "window_s": window,
                "device": name,
            },
        )
    return None


def inhibits(root: str, fact: Fact) -> bool:
    """Everything but the root device's own fact is a symptom of it."""
    return not (fact.kind == DEVICE and root == f"device:{fact.member}")
