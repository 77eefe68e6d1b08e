"""Association: the facts the rules look at, held in indexes (not public).

A *fact* is one member (an interface, a device or a BGP session) reported down
(or, for ``device_reboot``, restarted) by a reflex outcome. ``Facts`` keeps the
current ones in dictionaries keyed by member, device, device pair and site, so a
rule finds the facts related to a new one with a few dict hits whatever the
number of facts held (issue 8, item 4: never a scan of all open facts).
Dictionaries with ``None`` values serve as insertion-ordered sets, so iteration
order never depends on string hashing and replays stay deterministic.
May import: contracts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from netcortex.contracts.events import Severity

__all__ = ["BGP", "DEVICE", "LINK", "Fact", "Facts", "cable_key", "pair"]

LINK = "link"
DEVICE = "device"
BGP = "bgp"


@dataclass(frozen=True, slots=True)
class Fact:
    """One member down (or restarted), as one outcome reported it.

    Attributes:
        member: the target: ``device|interface`` (link), ``device`` (device),
            ``device|peer`` (BGP session).
        kind: ``LINK``, ``DEVICE`` or ``BGP``.
        device: the device the member belongs to.
        outcome_id: the outcome that reported it.
        at: when the correlator saw it (its ``now``).
        severity: the outcome's severity.
        site: the device's site, if known.
        peer: link: the cable peer as ``device|interface``; BGP: the peer
            device's name; ``None`` when the inventory does not know it.
        reboot: a ``device_reboot``: the device is already back, so this member
            counts as recovered from the start.
    """

    member: str
    kind: str
    device: str
    outcome_id: str
    at: datetime
    severity: Severity
    site: str | None = None
    peer: str | None = None
    reboot: bool = False

    @property
    def peer_device(self) -> str | None:
        """The device at the other end (cable peer's device, BGP peer device)."""
        if self.peer is None:
            return None
        return self.peer.partition("|")[0] if self.kind == LINK else self.peer


def pair(a: str, b: str) -> tuple[str, str]:
    """An unordered device pair as a sorted tuple (index key)."""
    return (a, b) if a <= b else (b, a)


def cable_key(end_a: str, end_b: str) -> str:
    """``cable:<a-end>~<b-end>`` with the ends sorted (``contracts.incidents`` root format)."""
    lo, hi = sorted((end_a, end_b))
    return f"cable:{lo}~{hi}"


def _add(index: dict[str, dict[str, None]], key: str, member: str) -> None:
    index.setdefault(key, {})[member] = None


def _discard(index: dict[str, dict[str, None]], key: str, member: str) -> None:
    bucket = index.get(key)
    if bucket is not None:
        bucket.pop(member, None)
        if not bucket:
            del index[key]


class Facts:
    """The current facts and their indexes (by member, device, peer device, pair, site)."""

    def __init__(self) -> None:
        self.by_member: dict[str, Fact] = {}
        #: links and BGP sessions of a device
        self.of_device: dict[str, dict[str, None]] = {}
        #: links whose cable peer, and BGP sessions whose peer, is on a device
        self.towards_device: dict[str, dict[str, None]] = {}
        #: links (kind LINK) and sessions (kind BGP) between two devices
        self.links_between: dict[tuple[str, str], dict[str, None]] = {}
        self.bgp_between: dict[tuple[str, str], dict[str, None]] = {}
        #: device facts per site
        self.devices_of_site: dict[str, dict[str, None]] = {}

    def __len__(self) -> int:
        return len(self.by_member)

    def get(self, member: str) -> Fact | None:
        """The fact about ``member``, or ``None``."""
        return self.by_member.get(member)

    def device(self, name: str) -> Fact | None:
        """The device fact (down or restarted) of ``name``, or ``None``."""
        fact = self.by_member.get(name)
        return fact if fact is not None and fact.kind == DEVICE else None

    def add(self, fact: Fact) -> None:
        """Hold ``fact`` (replacing an older fact about the same member)."""
        self.remove(fact.member)
        self.by_member[fact.member] = fact
        if fact.kind == DEVICE:
            if fact.site is not None:
                _add(self.devices_of_site, fact.site, fact.member)
            return
        _add(self.of_device, fact.device, fact.member)
        other = fact.peer_device
        if other is not None:
            _add(self.towards_device, other, fact.member)
            between = self.links_between if fact.kind == LINK else self.bgp_between
            between.setdefault(pair(fact.device, other), {})[fact.member] = None

    def remove(self, member: str) -> Fact | None:
        """Forget the fact about ``member``; return it (``None`` if there was none)."""
        fact = self.by_member.pop(member, None)
        if fact is None:
            return None
        if fact.kind == DEVICE:
            if fact.site is not None:
                _discard(self.devices_of_site, fact.site, member)
            return fact
        _discard(self.of_device, fact.device, member)
        other = fact.peer_device
        if other is not None:
            _discard(self.towards_device, other, member)
            between = self.links_between if fact.kind == LINK else self.bgp_between
            key = pair(fact.device, other)
            bucket = between.get(key)
            if bucket is not None:
                bucket.pop(member, None)
                if not bucket:
                    del between[key]
        return fact

    def related_to_device(self, name: str) -> list[Fact]:
        """Link and BGP facts of ``name`` and of its neighbours towards it."""
        members = dict(self.of_device.get(name, {}))
        members.update(self.towards_device.get(name, {}))
        return [self.by_member[m] for m in members]

    def between(self, a: str, b: str, kind: str) -> list[Fact]:
        """Facts of ``kind`` (LINK or BGP) between devices ``a`` and ``b``."""
        index = self.links_between if kind == LINK else self.bgp_between
        return [self.by_member[m] for m in index.get(pair(a, b), {})]

    def devices_at(self, site: str) -> list[Fact]:
        """Device facts of ``site``."""
        return [self.by_member[m] for m in self.devices_of_site.get(site, {})]
