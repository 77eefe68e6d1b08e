"""Association: the correlator — reflex outcomes in, incident transitions out (issue 8).

``Correlator.observe(outcome, now)`` turns one outcome into a *fact* (a member
down, restarted or recovered), asks the rules (``association.rules``) what the
fact relates to, and opens, grows, merges or resolves incidents accordingly;
``tick(now)`` does what only time does (a flapping member stabilising, facts
expiring). It is synchronous, does no I/O and keeps every piece of state in
indexes keyed by member, device, device pair and site, so the cost of one
outcome does not grow with the number of facts held (item 4).

What counts (decided here, documented in ``docs/ASSOCIATION.md``):

* ``logged`` outcomes are facts;
* ``skipped`` outcomes (the dedup gate's duplicates) corroborate: they join the
  evidence of the incident holding their member — unless they *change* the
  member's state (a link-down after its link-up within the dedup window is
  skipped by dedup, yet the link did go down again), in which case they are
  facts too: without that a flapping link would look up while it is down;
* ``suppressed`` (maintenance: expected) and ``errored`` (no trustworthy
  result) outcomes are ignored;
* outcomes of other handlers (``config_change``, ``security_webhook``) are
  ignored for now.

Determinism: the same outcomes in the same order with the same ``now`` give the
same transitions and the same incident ids (``incident_id_for``: a hash of the
rule, the root and the opening outcome id); no iteration depends on string
hashing. Not safe for concurrent use: one task owns a correlator.
May import: contracts, config (and errors, metrics, logs).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from netcortex.association import rules
from netcortex.association._facts import BGP, DEVICE, LINK, Fact, Facts
from netcortex.association.rules import Proposal
from netcortex.association.rules.flap import FlapTracker
from netcortex.config import AssociationConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentState, IncidentTransition
from netcortex.contracts.memory import SemanticMemory
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome

__all__ = ["DOWN_HANDLERS", "UP_HANDLERS", "Correlator", "incident_id_for"]

#: handler id → member kind of the outcomes that report a member down (or restarted)
DOWN_HANDLERS: dict[str, str] = {
    "link_down": LINK,
    "bgp_drop": BGP,
    "device_down": DEVICE,
    "device_reboot": DEVICE,
}
#: handler id → member kind of the outcomes that report a member recovered
UP_HANDLERS: dict[str, str] = {"link_up": LINK, "bgp_established": BGP, "device_up": DEVICE}

_INHIBITS: dict[str, Callable[[str, Fact], bool]] = {
    rules.cable.RULE: rules.cable.inhibits,
    rules.device.RULE: rules.device.inhibits,
    rules.bgp.RULE: rules.bgp.inhibits,
    rules.site.RULE: rules.site.inhibits,
}


def incident_id_for(rule: str, root: str, outcome_id: str) -> str:
    """The incident id: the same rule, root and opening outcome always give the same id."""
    digest = hashlib.blake2b(f"{rule}\x00{root}\x00{outcome_id}".encode(), digest_size=16)
    return digest.hexdigest()


@dataclass(slots=True)
class _Open:
    """An open incident being built (the last emitted snapshot plus working sets)."""

    incident: Incident
    rank: int
    seq: int
    summary: str
    details: dict[str, object]
    facts: dict[str, Fact] = field(default_factory=dict)
    recovered: dict[str, None] = field(default_factory=dict)
    evidence: dict[str, None] = field(default_factory=dict)
    inhibited: dict[str, None] = field(default_factory=dict)
    dropped: int = 0
    severity: Severity = Severity.INFO

    @property
    def incident_id(self) -> str:
        return self.incident.incident_id

    @property
    def rule(self) -> str:
        return self.incident.rule

    @property
    def root(self) -> str:
        return self.incident.root


class Correlator:
    """Outcomes → incidents: cable pair, device root, BGP over a link, site outage, flapping.

    Args:
        memory: the inventory, for what an outcome's trace does not say (the
            cable peer of an interface, the device of a BGP peer address, the
            site of a device); ``None`` uses the trace alone.
        config: the ``association`` config section (defaults when ``None``).
    """

    def __init__(
        self, memory: SemanticMemory | None = None, config: AssociationConfig | None = None
    ) -> None:
        self._memory = memory
        self._config = config if config is not None else AssociationConfig()
        self._facts = Facts()
        self._flaps = FlapTracker(self._config)
        self._open: dict[str, _Open] = {}
        self._by_member: dict[str, str] = {}
        self._by_root: dict[str, str] = {}
        #: flapping member → its flapping incident id
        self._flapping: dict[str, str] = {}
        # When facts are forgotten: member → (expiry, outcome id), in expiry order
        # (one TTL per dict and a clock that does not go back), so a tick pops from
        # the front and a recovery removes its entry at once; nothing lingers.
        self._expiry: OrderedDict[str, tuple[datetime, str]] = OrderedDict()
        self._reboot_expiry: OrderedDict[str, tuple[datetime, str]] = OrderedDict()
        self._seq = 0
        self._ttl = timedelta(seconds=self._config.fact_ttl)
        self._reboot_ttl = timedelta(
            seconds=max(self._config.device_window, self._config.site_window)
        )

    # ------------------------------------------------------------------ public API

    def observe(self, outcome: ReflexOutcome, now: datetime) -> list[IncidentTransition]:
        """Correlate one outcome.

        Args:
            outcome: any reflex outcome (those that say nothing about a member's
                state are ignored).
            now: the correlator's clock (timezone-aware); windows are measured
                on it, and it stamps the transitions.

        Returns:
            The transitions this outcome caused, in order (often none).
        """
        if outcome.kind in (OutcomeKind.SUPPRESSED, OutcomeKind.ERRORED):
            return []
        down_kind = DOWN_HANDLERS.get(outcome.handler_id)
        if down_kind is not None:
            return self._down(self._fact(outcome, down_kind, now), outcome, now)
        up_kind = UP_HANDLERS.get(outcome.handler_id)
        if up_kind is not None:
            return self._up(self._member(outcome, up_kind), up_kind, outcome, now)
        return []

    def tick(self, now: datetime) -> list[IncidentTransition]:
        """Apply the passing of time: stabilise flapping members, forget stale facts.

        Call it every second or so (and before shutting down a replay). Cost:
        the flapping members, plus the facts whose time is up.
        """
        out: list[IncidentTransition] = []
        for member in list(self._flapping):
            if self._flaps.count(member, now) < self._flaps.low:
                out.append(self._stabilise(member, now))
        for expiry in (self._expiry, self._reboot_expiry):
            while expiry:
                member, (until, _) = next(iter(expiry.items()))
                if until > now:
                    break
                del expiry[member]
                if member not in self._by_member:
                    self._facts.remove(member)
        return out

    def open_incidents(self) -> list[Incident]:
        """The open incidents as last emitted, oldest first."""
        return [rec.incident for rec in sorted(self._open.values(), key=lambda r: r.seq)]

    def restore(self, incidents: Iterable[Incident]) -> None:
        """Rebuild the state of open incidents (from the store, after a restart).

        Resolved incidents are skipped. Members still down become facts again
        (so a later recovery resolves the incident, and a later related outcome
        joins it); a flapping member is taken to have changed state
        ``flap_high`` times at the incident's ``updated_at``, so it stabilises
        one ``flap_window`` later unless it keeps flapping.
        """
        for inc in sorted(incidents, key=lambda i: (i.opened_at, i.incident_id)):
            if inc.state != IncidentState.OPEN or inc.incident_id in self._open:
                continue
            rank = _RANKS.get(inc.rule, 0)
            rec = self._record(inc, rank, inc.summary, dict(inc.details))
            rec.evidence = dict.fromkeys(inc.evidence)
            rec.inhibited = dict.fromkeys(inc.inhibited)
            rec.severity = inc.severity
            raw_dropped = inc.details.get("evidence_dropped", 0)
            rec.dropped = raw_dropped if isinstance(raw_dropped, int) else 0
            recovered = inc.details.get("recovered", [])
            rec.recovered = dict.fromkeys(recovered if isinstance(recovered, list) else [])
            for member, fact in _facts_from_details(inc).items():
                rec.facts[member] = fact
                if inc.rule == rules.flap.RULE:
                    self._flapping[member] = inc.incident_id
                    down = inc.details.get("last_state") == "down"
                    self._flaps.seed(member, inc.updated_at, down)
                    continue
                self._by_member[member] = inc.incident_id
                if member not in rec.recovered and not fact.reboot:
                    self._hold(fact)
                    if fact.kind != DEVICE:
                        self._flaps.assume_down(member)
            if inc.rule != rules.flap.RULE:
                self._by_root[inc.root] = inc.incident_id

    @property
    def fact_count(self) -> int:
        """Facts held (members down or recently restarted)."""
        return len(self._facts)

    # ------------------------------------------------------------- outcome → fact

    def _member(self, outcome: ReflexOutcome, kind: str) -> str:
        if kind == DEVICE:
            return outcome.device or outcome.target.partition("|")[0]
        return outcome.target

    def _fact(self, outcome: ReflexOutcome, kind: str, now: datetime) -> Fact:
        member = self._member(outcome, kind)
        device = outcome.device or member.partition("|")[0]
        trace = outcome.trace
        site = outcome.site or _str(trace.get("site"))
        memory = self._memory
        if site is None and memory is not None:
            known = memory.device_by_name(device)
            site = known.site if known is not None else None
        peer: str | None = None
        if kind == LINK:
            peer = _str(trace.get("cable_peer"))
            interface = member.partition("|")[2]
            if peer is None and memory is not None and interface:
                itf = memory.cable_peer(device, interface)
                peer = f"{itf.device}|{itf.name}" if itf is not None else None
        elif kind == BGP:
            peer = _str(trace.get("peer_device"))
            address = member.partition("|")[2]
            if peer is None and memory is not None and address:
                known = memory.device_by_address(address)
                peer = known.name if known is not None else None
        return Fact(
            member=member,
            kind=kind,
            device=device,
            outcome_id=outcome.outcome_id,
            at=now,
            severity=outcome.severity,
            site=site,
            peer=peer,
            reboot=outcome.handler_id == "device_reboot",
        )

    # ------------------------------------------------------------------ down / up

    def _down(self, fact: Fact, outcome: ReflexOutcome, now: datetime) -> list[IncidentTransition]:
        member = fact.member
        existing = self._facts.get(member)
        if existing is not None and existing.reboot == fact.reboot:
            return self._corroborate(member, outcome, now)
        if outcome.kind != OutcomeKind.LOGGED and fact.kind == DEVICE:
            return []  # a skipped device report changes nothing we track
        out: list[IncidentTransition] = []
        changed = fact.kind != DEVICE and self._flaps.record(
            member, True, now, outcome.outcome_id, outcome.severity
        )
        if member in self._flapping:
            self._absorb_flap(member, outcome, "down", now, out)
        elif changed and self._flaps.count(member, now) >= self._flaps.high:
            out.append(self._open_flap(member, fact, outcome, now))
        self._hold(fact)
        if member in self._flapping:
            return out  # one flapping incident instead of a stream of downs
        out.extend(self._down_again(fact, now))
        for rule in rules.ORDER:
            proposal = rule.propose(fact, self._facts, self._config)
            if proposal is not None:
                out.extend(self._apply(proposal, fact, now))
                break
        return out

    def _up(
        self, member: str, kind: str, outcome: ReflexOutcome, now: datetime
    ) -> list[IncidentTransition]:
        out: list[IncidentTransition] = []
        if kind != DEVICE and self._flaps.record(
            member, False, now, outcome.outcome_id, outcome.severity
        ):
            if member in self._flapping:
                self._absorb_flap(member, outcome, "up", now, out)
            elif self._flaps.count(member, now) >= self._flaps.high:
                fact = self._fact(outcome, kind, now)
                out.append(self._open_flap(member, fact, outcome, now, "up"))
        self._forget(member)
        iid = self._by_member.get(member)
        if iid is None:
            return out
        rec = self._open[iid]
        if member in rec.recovered:
            return out
        rec.recovered[member] = None
        self._evidence(rec, outcome.outcome_id)
        if len(rec.recovered) >= len(rec.facts):
            out.append(self._resolve(rec, now, outcome.outcome_id))
        else:
            out.append(self._emit(rec, "updated", now, outcome.outcome_id))
        return out

    def _down_again(self, fact: Fact, now: datetime) -> list[IncidentTransition]:
        """A member of an open incident that had recovered is down again (or restarted)."""
        iid = self._by_member.get(fact.member)
        if iid is None:
            return []
        rec = self._open[iid]
        rec.facts[fact.member] = fact
        self._evidence(rec, fact.outcome_id)
        rec.severity = max(rec.severity, fact.severity, key=_severity_rank)
        if fact.reboot:
            rec.recovered[fact.member] = None  # a restart: the device is back already
        else:
            rec.recovered.pop(fact.member, None)
        out = [self._emit(rec, "updated", now, fact.outcome_id)]
        out.extend(self._resolve_if_recovered(rec, now, fact.outcome_id))
        return out

    def _corroborate(
        self, member: str, outcome: ReflexOutcome, now: datetime
    ) -> list[IncidentTransition]:
        flap = self._flapping.get(member)
        if flap is not None:
            self._evidence(self._open[flap], outcome.outcome_id)
            return []
        iid = self._by_member.get(member)
        if iid is None:
            return []
        rec = self._open[iid]
        if outcome.outcome_id in rec.evidence:
            return []  # a re-delivered outcome
        self._evidence(rec, outcome.outcome_id)
        rec.severity = max(rec.severity, outcome.severity, key=_severity_rank)
        return [self._emit(rec, "updated", now, outcome.outcome_id)]

    def _hold(self, fact: Fact) -> None:
        self._forget(fact.member)
        self._facts.add(fact)
        if fact.reboot:
            self._reboot_expiry[fact.member] = (fact.at + self._reboot_ttl, fact.outcome_id)
        else:
            self._expiry[fact.member] = (fact.at + self._ttl, fact.outcome_id)

    def _forget(self, member: str) -> None:
        self._facts.remove(member)
        self._expiry.pop(member, None)
        self._reboot_expiry.pop(member, None)

    # ------------------------------------------------------------------ proposals

    def _apply(self, proposal: Proposal, fact: Fact, now: datetime) -> list[IncidentTransition]:
        related: dict[str, _Open] = {}
        for f in proposal.facts:
            iid = self._by_member.get(f.member)
            if iid is not None:
                related[iid] = self._open[iid]
        same_iid = self._by_root.get(proposal.root)
        same = self._open.get(same_iid) if same_iid is not None else None
        if same is not None:
            related[same.incident_id] = same
        higher = [r for r in related.values() if r.rank > proposal.rank]
        target = min(higher, key=lambda r: (-r.rank, r.seq)) if higher else same
        if target is None:
            taken = {iid for iid, r in related.items() if r.rank >= proposal.rank}
            free = [f for f in proposal.facts if self._by_member.get(f.member) not in taken]
            if len(free) >= 2:
                return self._open_new(proposal, free, related, fact, now)
            if not related:
                return []
            target = min(related.values(), key=lambda r: (-r.rank, r.seq))
        return self._join(target, proposal, related, fact, now)

    def _open_new(
        self,
        proposal: Proposal,
        free: list[Fact],
        related: dict[str, _Open],
        fact: Fact,
        now: datetime,
    ) -> list[IncidentTransition]:
        iid = incident_id_for(proposal.rule, proposal.root, fact.outcome_id)
        seed = Incident(
            incident_id=iid,
            rule=proposal.rule,
            root=proposal.root,
            state=IncidentState.OPEN,
            severity=Severity.INFO,
            summary=proposal.summary,
            members=(),
            evidence=(),
            opened_at=now,
            updated_at=now,
            version=0,
        )
        rec = self._record(seed, proposal.rank, proposal.summary, dict(proposal.details))
        self._by_root[proposal.root] = iid
        out: list[IncidentTransition] = []
        for f in free:
            self._add_fact(rec, f)
        absorbed = [r for r in related.values() if r.rank < proposal.rank]
        for other in sorted(absorbed, key=lambda r: r.seq):
            out.append(self._merge(other, rec, now, fact.outcome_id))
        # "opened" already holds what the merges brought; the merged ones close after it
        out.insert(0, self._emit(rec, "opened", now, fact.outcome_id))
        out.extend(self._resolve_if_recovered(rec, now, fact.outcome_id))
        return out

    def _join(
        self,
        target: _Open,
        proposal: Proposal,
        related: dict[str, _Open],
        fact: Fact,
        now: datetime,
    ) -> list[IncidentTransition]:
        out: list[IncidentTransition] = []
        before = len(target.evidence), len(target.facts)
        for other in sorted(related.values(), key=lambda r: r.seq):
            if other is not target and other.rank < target.rank:
                out.append(self._merge(other, target, now, fact.outcome_id))
        for f in proposal.facts:
            owner = self._by_member.get(f.member)
            if owner is None:
                self._add_fact(target, f)
            elif owner == target.incident_id and f is fact:
                self._evidence(target, f.outcome_id)  # a member reported again (a reboot)
        if proposal.root == target.root and proposal.rule == target.rule:
            target.summary = proposal.summary
            target.details.update(proposal.details)
        if not out and (len(target.evidence), len(target.facts)) == before:
            return []
        out.append(self._emit(target, "updated", now, fact.outcome_id))
        out.extend(self._resolve_if_recovered(target, now, fact.outcome_id))
        return out

    def _merge(self, other: _Open, into: _Open, now: datetime, cause: str) -> IncidentTransition:
        """Move ``other``'s members and evidence into ``into``; close ``other``."""
        for member, f in other.facts.items():
            if member not in into.facts:
                self._add_fact(into, f)
                if member in other.recovered:
                    into.recovered[member] = None
        for oid in other.evidence:
            self._evidence(into, oid)
        for oid in other.inhibited:
            into.inhibited[oid] = None
        into.dropped += other.dropped
        into.severity = max(into.severity, other.severity, key=_severity_rank)
        other.details["merged_into"] = into.incident_id
        other.details["why_resolved"] = f"merged into {into.rule} incident {into.root}"
        return self._close(other, now, cause, "resolved")

    # ------------------------------------------------------------------ flapping

    def _open_flap(
        self, member: str, fact: Fact, outcome: ReflexOutcome, now: datetime, state: str = "down"
    ) -> IncidentTransition:
        config = self._config
        what = "interface" if fact.kind == LINK else "bgp"
        root = f"{what}:{member}"
        iid = incident_id_for(rules.flap.RULE, root, outcome.outcome_id)
        noun = "Interface" if fact.kind == LINK else "BGP session"
        seed = Incident(
            incident_id=iid,
            rule=rules.flap.RULE,
            root=root,
            state=IncidentState.OPEN,
            severity=Severity.INFO,
            summary=f"{noun} {member.replace('|', ' ')} flapping",
            members=(),
            evidence=(),
            opened_at=now,
            updated_at=now,
            flapping=True,
            version=0,
        )
        details: dict[str, object] = {
            "why": f"{self._flaps.high} or more state changes within {config.flap_window:g} s "
            f"(stabilised below {self._flaps.low})",
            "window_s": config.flap_window,
            "high": self._flaps.high,
            "low": self._flaps.low,
            "changes": self._flaps.high,
            "last_state": state,
        }
        rec = self._record(seed, 0, seed.summary, details)
        rec.facts[member] = fact
        # The changes that made it flap are its evidence (the last ``flap_high`` in the
        # window, the one that crossed the threshold last); the incident is as severe
        # as the worst of them (a drop, not the recovery that happened to be sixth).
        changes = self._flaps.evidence(member)
        for outcome_id, _ in changes:
            self._evidence(rec, outcome_id)
        self._evidence(rec, outcome.outcome_id)
        rec.severity = max(
            (fact.severity, *(severity for _, severity in changes)), key=_severity_rank
        )
        self._flapping[member] = iid
        return self._emit(rec, "flapping", now, outcome.outcome_id)

    def _absorb_flap(
        self,
        member: str,
        outcome: ReflexOutcome,
        state: str,
        now: datetime,
        out: list[IncidentTransition],
    ) -> None:
        """A change of a flapping member: counted quietly (no transition per change; an
        ``updated`` one at most every ``flap_update_interval`` seconds)."""
        rec = self._open[self._flapping[member]]
        self._evidence(rec, outcome.outcome_id)
        rec.severity = max(rec.severity, outcome.severity, key=_severity_rank)
        changes = rec.details.get("changes", 0)
        rec.details["changes"] = (changes if isinstance(changes, int) else 0) + 1
        rec.details["last_state"] = state
        if self._flaps.count(member, now) < self._flaps.low:
            out.append(self._stabilise(member, now, outcome.outcome_id))
        elif (now - rec.incident.updated_at).total_seconds() >= self._config.flap_update_interval:
            # Not a transition per change, but the store and the API must not show the
            # evidence of the first minute for as long as it keeps flapping.
            out.append(self._emit(rec, "updated", now, outcome.outcome_id))

    def _stabilise(
        self, member: str, now: datetime, cause: str | None = None
    ) -> IncidentTransition:
        rec = self._open[self._flapping.pop(member)]
        rec.details["why_resolved"] = (
            f"fewer than {self._flaps.low} state changes within {self._config.flap_window:g} s"
        )
        return self._close(rec, now, cause, "stabilised", flapping=False)

    # ------------------------------------------------------------------ bookkeeping

    def _record(self, seed: Incident, rank: int, summary: str, details: dict[str, object]) -> _Open:
        self._seq += 1
        rec = _Open(incident=seed, rank=rank, seq=self._seq, summary=summary, details=details)
        self._open[seed.incident_id] = rec
        return rec

    def _add_fact(self, rec: _Open, fact: Fact) -> None:
        rec.facts[fact.member] = fact
        self._by_member[fact.member] = rec.incident_id
        self._evidence(rec, fact.outcome_id)
        if _INHIBITS[rec.rule](rec.root, fact):
            rec.inhibited[fact.outcome_id] = None
        if fact.reboot:
            rec.recovered[fact.member] = None
        rec.severity = max(rec.severity, fact.severity, key=_severity_rank)

    def _evidence(self, rec: _Open, outcome_id: str) -> None:
        if outcome_id in rec.evidence:
            return
        if len(rec.evidence) >= self._config.max_evidence:
            rec.dropped += 1
            return
        rec.evidence[outcome_id] = None

    def _resolve_if_recovered(
        self, rec: _Open, now: datetime, cause: str
    ) -> list[IncidentTransition]:
        # e.g. a site outage made of device_reboots only: every device is back already
        if rec.incident_id in self._open and len(rec.recovered) >= len(rec.facts):
            return [self._resolve(rec, now, cause)]
        return []

    def _resolve(self, rec: _Open, now: datetime, cause: str | None) -> IncidentTransition:
        rec.details["why_resolved"] = "every member recovered"
        return self._close(rec, now, cause, "resolved")

    def _close(
        self,
        rec: _Open,
        now: datetime,
        cause: str | None,
        kind: str,
        *,
        flapping: bool | None = None,
    ) -> IncidentTransition:
        del self._open[rec.incident_id]
        if self._by_root.get(rec.root) == rec.incident_id:
            del self._by_root[rec.root]
        if rec.rule != rules.flap.RULE:
            for member in rec.facts:
                if self._by_member.get(member) == rec.incident_id:
                    del self._by_member[member]
                    fact = self._facts.get(member)
                    if fact is not None and fact.reboot:
                        self._forget(member)
        return self._emit(
            rec, kind, now, cause, state=IncidentState.RESOLVED, resolved_at=now, flapping=flapping
        )

    def _emit(
        self,
        rec: _Open,
        kind: str,
        now: datetime,
        cause: str | None,
        *,
        state: IncidentState = IncidentState.OPEN,
        resolved_at: datetime | None = None,
        flapping: bool | None = None,
    ) -> IncidentTransition:
        sites = {f.site for f in rec.facts.values()}
        site = sites.pop() if len(sites) == 1 else None
        details = dict(rec.details)
        details["facts"] = {m: _fact_json(f) for m, f in sorted(rec.facts.items())}
        details["recovered"] = sorted(rec.recovered)
        if rec.dropped:
            details["evidence_dropped"] = rec.dropped
        inc = replace(
            rec.incident,
            state=state,
            severity=rec.severity,
            summary=rec.summary,
            members=tuple(sorted(rec.facts)),
            evidence=tuple(rec.evidence),
            inhibited=tuple(rec.inhibited),
            updated_at=now,
            resolved_at=resolved_at,
            site=site,
            flapping=flapping if flapping is not None else rec.incident.flapping,
            version=rec.incident.version + 1,
            details=details,
        )
        rec.incident = inc
        return IncidentTransition(kind=kind, incident=inc, at=now, outcome_id=cause)


_RANKS = {
    rules.site.RULE: rules.site.RANK,
    rules.device.RULE: rules.device.RANK,
    rules.cable.RULE: rules.cable.RANK,
    rules.bgp.RULE: rules.bgp.RANK,
}


def _severity_rank(severity: Severity) -> int:
    return severity.rank


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _fact_json(fact: Fact) -> dict[str, object]:
    """A fact as JSON-serialisable ``details`` (what ``restore`` reads back)."""
    return {
        "kind": fact.kind,
        "device": fact.device,
        "outcome_id": fact.outcome_id,
        "at": fact.at.isoformat(),
        "severity": fact.severity.value,
        "site": fact.site,
        "peer": fact.peer,
        "reboot": fact.reboot,
    }


def _facts_from_details(inc: Incident) -> dict[str, Fact]:
    """The facts ``_fact_json`` wrote into ``inc.details`` (best effort)."""
    raw = inc.details.get("facts")
    out: dict[str, Fact] = {}
    if not isinstance(raw, dict):
        return out
    for member, data in raw.items():
        if not isinstance(member, str) or not isinstance(data, dict):
            continue
        try:
            at = datetime.fromisoformat(str(data["at"]))
            if at.tzinfo is None:  # compared with the aware clock: naive would raise on tick
                at = at.replace(tzinfo=UTC)
            out[member] = Fact(
                member=member,
                kind=str(data["kind"]),
                device=str(data["device"]),
                outcome_id=str(data["outcome_id"]),
                at=at,
                severity=Severity(str(data["severity"])),
                site=_str(data.get("site")),
                peer=_str(data.get("peer")),
                reboot=bool(data.get("reboot", False)),
            )
        except (KeyError, ValueError):
            continue
    return out
