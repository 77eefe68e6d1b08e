"""Unit tests for the correlator's lifecycle: open, update/join, resolve, late events."""

from __future__ import annotations

from netcortex.association import Correlator, incident_id_for
from netcortex.contracts.incidents import IncidentState
from netcortex.contracts.memory import SemanticMemory
from netcortex.contracts.reflex import OutcomeKind
from tests.unit.association.conftest import (
    BGP_N_S,
    R1N_WAN,
    R1S_WAN,
    SW1N_SW2,
    SW2N_SW1,
    Scenario,
    replay,
)


class TestLifecycle:
    """open → updated … → resolved; a late event opens a new incident."""

    async def test_opened_on_the_second_related_outcome(self, scenario: Scenario) -> None:
        """It opens on the observe of the second related outcome, stamped with its time."""
        scenario.at(0).send("link_down", SW1N_SW2)
        [t] = scenario.at(1.5).send("link_down", SW2N_SW1)
        assert (t.kind, t.at, t.outcome_id) == ("opened", scenario.now, scenario.oid(2))
        assert t.incident.state == IncidentState.OPEN
        root = f"cable:{SW1N_SW2}~{SW2N_SW1}"
        assert t.incident.incident_id == incident_id_for("cable_pair", root, scenario.oid(2))

    async def test_update_bumps_the_version(self, scenario: Scenario) -> None:
        """Every transition carries the incident with version + 1."""
        scenario.at(0).send("link_down", R1N_WAN)
        scenario.at(1).send("link_down", R1S_WAN)
        scenario.at(2).send("bgp_drop", BGP_N_S)
        scenario.at(3).send("link_up", R1N_WAN)
        versions = [(t.kind, t.incident.version) for t in scenario.transitions]
        assert versions == [("opened", 1), ("updated", 2), ("updated", 3)]
        assert scenario.only().details["recovered"] == [R1N_WAN]

    async def test_resolved_when_every_member_recovered(self, scenario: Scenario) -> None:
        """link_up on both ends and bgp_established resolve the incident, in any order."""
        scenario.at(0).send("link_down", R1N_WAN)
        scenario.at(1).send("link_down", R1S_WAN)
        scenario.at(2).send("bgp_drop", BGP_N_S)
        scenario.at(60).send("bgp_established", BGP_N_S)
        scenario.at(61).send("link_up", R1S_WAN)
        [t] = scenario.at(62).send("link_up", R1N_WAN)
        assert t.kind == "resolved"
        assert t.incident.state == IncidentState.RESOLVED
        assert t.incident.resolved_at == scenario.now
        assert t.incident.version == 5  # opened + 3 updates + resolved
        assert scenario.oid(6) in t.incident.evidence
        assert scenario.open() == []

    async def test_device_root_resolves_on_device_up_and_link_ups(self, scenario: Scenario) -> None:
        """A device incident resolves once device_up and its children's link_ups arrived."""
        scenario.at(0).send("device_down", "sw2-north")
        scenario.at(1).send("link_down", "sw1-north|GigabitEthernet1/0/3")
        [t] = scenario.at(50).send("device_up", "sw2-north")
        assert t.kind == "updated"
        [t] = scenario.at(51).send("link_up", "sw1-north|GigabitEthernet1/0/3")
        assert t.kind == "resolved"

    async def test_reboot_counts_as_recovered(self, scenario: Scenario) -> None:
        """A device_reboot is already back: the incident resolves when the links are up."""
        scenario.at(0).send("link_down", "sw1-north|GigabitEthernet1/0/3")
        scenario.at(30).send("device_reboot", "sw2-north")
        [t] = scenario.at(31).send("link_up", "sw1-north|GigabitEthernet1/0/3")
        assert t.kind == "resolved"

    async def test_late_event_opens_a_new_incident(self, scenario: Scenario) -> None:
        """After resolve, the same cable failing again opens a new incident with a new id."""
        scenario.at(0).send("link_down", SW1N_SW2)
        first = scenario.at(1).send("link_down", SW2N_SW1)[0].incident
        scenario.at(10).send("link_up", SW1N_SW2)
        scenario.at(11).send("link_up", SW2N_SW1)
        scenario.at(100).send("link_down", SW2N_SW1)
        [t] = scenario.at(101).send("link_down", SW1N_SW2)
        assert t.kind == "opened"
        assert t.incident.incident_id != first.incident_id
        assert t.incident.root == first.root
        assert t.incident.version == 1

    async def test_late_recovery_after_resolve_changes_nothing(self, scenario: Scenario) -> None:
        """A recovery arriving after the incident resolved yields no transition."""
        scenario.at(0).send("link_down", SW1N_SW2)
        scenario.at(1).send("link_down", SW2N_SW1)
        scenario.at(2).send("link_up", SW1N_SW2)
        scenario.at(3).send("link_up", SW2N_SW1)
        assert scenario.at(4).send("link_up", SW2N_SW1) == []


class TestOutcomeKinds:
    """Which outcomes count: logged facts, skipped corroboration, suppressed/errored ignored."""

    async def test_suppressed_and_errored_are_ignored(self, scenario: Scenario) -> None:
        """Outcomes held back by maintenance or from a failing handler open nothing."""
        scenario.at(0).send("link_down", SW1N_SW2, kind=OutcomeKind.SUPPRESSED)
        scenario.at(1).send("link_down", SW2N_SW1, kind=OutcomeKind.ERRORED)
        assert scenario.open() == []

    async def test_skipped_duplicate_adds_evidence(self, scenario: Scenario) -> None:
        """A skipped duplicate of a member's down joins the incident's evidence."""
        scenario.at(0).send("link_down", SW1N_SW2)
        scenario.at(1).send("link_down", SW2N_SW1)
        [t] = scenario.at(2).send("link_down", SW1N_SW2, kind=OutcomeKind.SKIPPED)
        assert t.kind == "updated"
        assert t.incident.evidence[-1] == scenario.oid(3)
        assert t.incident.members == (SW1N_SW2, SW2N_SW1)

    async def test_skipped_report_that_changes_state_is_a_fact(self, scenario: Scenario) -> None:
        """A skipped link-down after a link-up (dedup window) is still the link going down."""
        scenario.at(0).send("link_down", SW1N_SW2)
        scenario.at(1).send("link_up", SW1N_SW2)
        scenario.at(2).send("link_down", SW1N_SW2, kind=OutcomeKind.SKIPPED)
        [t] = scenario.at(3).send("link_down", SW2N_SW1)
        assert t.kind == "opened"
        assert t.incident.evidence == (scenario.oid(3), scenario.oid(4))

    async def test_redelivered_outcome_is_idempotent(self, scenario: Scenario) -> None:
        """Observing the same outcome twice changes nothing the second time."""
        scenario.at(0).send("link_down", SW1N_SW2)
        scenario.at(1).send("link_down", SW2N_SW1)
        outcome, _ = scenario.sent[1]
        assert scenario.correlator.observe(outcome, scenario.now) == []

    async def test_other_handlers_are_ignored(self, scenario: Scenario) -> None:
        """config_change and security_webhook outcomes are not correlated (yet)."""
        assert scenario.at(0).send("config_change", "r1-north") == []
        assert scenario.at(0).send("security_webhook", "mx-west") == []


class TestDeterminism:
    """The same outcomes in the same order at the same times give the same incidents."""

    async def test_replay_twice_gives_the_same_ids(self, memory: SemanticMemory) -> None:
        """Two correlators fed the same sequence emit identical transitions and ids."""
        scenario = Scenario(Correlator(memory))
        script = [
            ("link_down", SW1N_SW2),
            ("link_down", SW2N_SW1),
            ("device_down", "r1-north"),
            ("link_down", R1S_WAN),
            ("bgp_drop", BGP_N_S),
            ("link_up", SW1N_SW2),
            ("link_up", SW2N_SW1),
            ("device_up", "r1-north"),
        ]
        for i, (handler, target) in enumerate(script):
            scenario.at(i).send(handler, target)
        first = replay(scenario.sent, Correlator(memory))
        second = replay(scenario.sent, Correlator(memory))
        assert first == second
        assert len({iid for _, iid, _, _ in first}) == 2


class TestRestore:
    """``restore`` rebuilds the state of open incidents after a restart."""

    async def test_restored_incident_resolves_and_grows(self, memory: SemanticMemory) -> None:
        """A correlator restored from open incidents resolves them on recovery and joins drops."""
        before = Scenario(Correlator(memory))
        before.at(0).send("link_down", R1N_WAN)
        opened = before.at(1).send("link_down", R1S_WAN)[0].incident
        after = Scenario(Correlator(memory))
        after.correlator.restore([opened])
        assert after.only() == opened
        after.sent = list(before.sent)  # keep outcome numbering going
        [t] = after.at(5).send("bgp_drop", BGP_N_S)
        assert (t.kind, t.incident.incident_id, t.incident.version) == (
            "updated",
            opened.incident_id,
            2,
        )
        after.at(10).send("bgp_established", BGP_N_S)
        after.at(11).send("link_up", R1N_WAN)
        [t] = after.at(12).send("link_up", R1S_WAN)
        assert (t.kind, t.incident.incident_id) == ("resolved", opened.incident_id)
        assert t.incident.evidence[:2] == opened.evidence

    async def test_resolved_incidents_are_not_restored(self, scenario: Scenario) -> None:
        """Only open incidents come back."""
        scenario.at(0).send("link_down", SW1N_SW2)
        scenario.at(1).send("link_down", SW2N_SW1)
        scenario.at(2).send("link_up", SW1N_SW2)
        resolved = scenario.at(3).send("link_up", SW2N_SW1)[0].incident
        fresh = Correlator(None)
        fresh.restore([resolved])
        assert fresh.open_incidents() == []


class TestTick:
    """``tick`` forgets stale facts, never the members of an open incident."""

    async def test_lone_facts_expire_incident_members_stay(self, memory: SemanticMemory) -> None:
        """After ``fact_ttl`` a lone link-down is forgotten; the open incident keeps its members."""
        from netcortex.config import AssociationConfig

        scenario = Scenario(Correlator(memory, AssociationConfig(fact_ttl=600)))
        scenario.at(0).send("link_down", SW1N_SW2)
        scenario.at(1).send("link_down", SW2N_SW1)
        scenario.at(2).send("link_down", "r1-north|GigabitEthernet0/0/2")
        assert scenario.correlator.fact_count == 3
        assert scenario.at(601).tick() == []
        assert scenario.correlator.fact_count == 3
        assert scenario.at(602).tick() == []
        assert scenario.correlator.fact_count == 2
        scenario.at(700).send("link_up", SW1N_SW2)
        [t] = scenario.at(701).send("link_up", SW2N_SW1)
        assert t.kind == "resolved"
        assert scenario.correlator.fact_count == 0


class TestMembersChangingAgain:
    """A member of an open incident that recovered and fails again, or restarts."""

    async def test_member_down_again_is_no_longer_recovered(self, scenario: Scenario) -> None:
        """Up then down again on one end of an open cable incident: it waits for that end again."""
        scenario.at(0).send("link_down", SW1N_SW2)
        scenario.at(1).send("link_down", SW2N_SW1)
        scenario.at(10).send("link_up", SW1N_SW2)
        [t] = scenario.at(100).send("link_down", SW1N_SW2)
        assert t.kind == "updated"
        assert t.incident.details["recovered"] == []
        assert scenario.at(110).send("link_up", SW2N_SW1)[0].kind == "updated"
        assert scenario.at(111).send("link_up", SW1N_SW2)[0].kind == "resolved"

    async def test_restart_after_down_counts_as_recovered(self, scenario: Scenario) -> None:
        """device_down then device_reboot of the root: the device is back, links still count."""
        scenario.at(0).send("device_down", "sw2-north")
        scenario.at(1).send("link_down", "sw1-north|GigabitEthernet1/0/3")
        [t] = scenario.at(60).send("device_reboot", "sw2-north")
        assert t.kind == "updated"
        assert t.incident.details["recovered"] == ["sw2-north"]
        [t] = scenario.at(61).send("link_up", "sw1-north|GigabitEthernet1/0/3")
        assert t.kind == "resolved"
