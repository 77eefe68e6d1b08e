"""Unit tests for association.rules: one class per rule, on the shared fixture inventory."""

from __future__ import annotations

from netcortex.association import Correlator
from netcortex.config import AssociationConfig
from netcortex.contracts.memory import SemanticMemory
from tests.unit.association.conftest import (
    BGP_N_S,
    BGP_S_N,
    BGP_TRANSIT,
    R1N_SW,
    R1N_WAN,
    R1S_WAN,
    SW1N_EDGE,
    SW1N_SW2,
    SW1N_UP,
    SW2N_SW1,
    Scenario,
)


class TestCablePair:
    """``cable_pair``: both ends of one cable down within the window."""

    async def test_both_ends_open_one_incident_about_the_cable(self, scenario: Scenario) -> None:
        """Two link-downs on the ends of one cable open one incident about the cable."""
        assert scenario.at(0).send("link_down", SW1N_SW2) == []
        got = scenario.at(2).send("link_down", SW2N_SW1)
        assert [t.kind for t in got] == ["opened"]
        inc = got[0].incident
        assert inc.rule == "cable_pair"
        assert inc.root == f"cable:{SW1N_SW2}~{SW2N_SW1}"
        assert inc.members == (SW1N_SW2, SW2N_SW1)
        assert inc.evidence == (scenario.oid(1), scenario.oid(2))
        assert inc.inhibited == ()
        assert inc.site == "dc-north"
        assert inc.version == 1
        assert inc.opened_at == scenario.now
        assert "both ends of one cable" in str(inc.details["why"])

    async def test_ends_further_apart_than_the_window_open_nothing(
        self, scenario: Scenario, config: AssociationConfig
    ) -> None:
        """Link-downs on both ends more than ``cable_window`` apart are not one incident."""
        scenario.at(0).send("link_down", SW1N_SW2)
        assert scenario.at(config.cable_window + 1).send("link_down", SW2N_SW1) == []
        assert scenario.open() == []

    async def test_unrelated_link_downs_open_nothing(self, scenario: Scenario) -> None:
        """Link-downs on interfaces that share no cable stay plain outcomes."""
        scenario.at(0).send("link_down", SW1N_EDGE)
        scenario.at(1).send("link_down", SW2N_SW1)
        assert scenario.open() == []

    async def test_trace_alone_is_enough_without_memory(self) -> None:
        """With no SemanticMemory the trace's ``cable_peer`` pairs the ends."""
        scenario = Scenario(Correlator(None))
        scenario.at(0).send("link_down", "a|x", trace={"cable_peer": "b|y"})
        got = scenario.at(1).send("link_down", "b|y", trace={"cable_peer": "a|x"})
        assert [(t.kind, t.incident.root) for t in got] == [("opened", "cable:a|x~b|y")]


class TestDeviceRoot:
    """``device_root``: a device down or restarted, with its links' downs inhibited."""

    async def test_root_first_then_children(self, scenario: Scenario) -> None:
        """device_down then a link-down of its interface: one device incident, child inhibited."""
        assert scenario.at(0).send("device_down", "r1-north") == []
        got = scenario.at(5).send("link_down", R1N_SW)
        assert [t.kind for t in got] == ["opened"]
        inc = got[0].incident
        assert (inc.rule, inc.root) == ("device_root", "device:r1-north")
        assert inc.members == ("r1-north", R1N_SW)
        assert inc.inhibited == (scenario.oid(2),)

    async def test_children_first_then_root(self, scenario: Scenario) -> None:
        """Cable peers' link-downs, then the device's restart: one incident rooted at the device."""
        scenario.at(0).send("link_down", SW1N_UP)  # peer of r1-north Gi0/0/1
        scenario.at(1).send("link_down", R1S_WAN)  # peer of r1-north Gi0/0/0
        assert scenario.open() == []
        got = scenario.at(40).send("device_reboot", "r1-north")
        assert [t.kind for t in got] == ["opened"]
        inc = scenario.only()
        assert inc.root == "device:r1-north"
        assert inc.members == ("r1-north", R1S_WAN, SW1N_UP)
        assert set(inc.inhibited) == {scenario.oid(1), scenario.oid(2)}
        assert "device_reboot" in str(inc.details["why"])

    async def test_order_does_not_change_the_incident(self, memory: SemanticMemory) -> None:
        """Root first or children first within the window: same root, members and inhibited set."""
        orders = [
            [("device_down", "r1-north"), ("link_down", R1N_SW), ("link_down", R1S_WAN)],
            [("link_down", R1N_SW), ("link_down", R1S_WAN), ("device_down", "r1-north")],
            [("link_down", R1S_WAN), ("device_down", "r1-north"), ("link_down", R1N_SW)],
        ]
        seen = set()
        for order in orders:
            scenario = Scenario(Correlator(memory))
            for i, (handler, target) in enumerate(order):
                scenario.at(i).send(handler, target)
            inc = scenario.only()
            inhibited_targets = sorted(
                o.target for o, _ in scenario.sent if o.outcome_id in inc.inhibited
            )
            seen.add((inc.rule, inc.root, inc.members, tuple(inhibited_targets)))
        assert seen == {
            ("device_root", "device:r1-north", ("r1-north", R1N_SW, R1S_WAN), (R1N_SW, R1S_WAN))
        }

    async def test_cable_incident_is_absorbed_by_the_device_root(self, scenario: Scenario) -> None:
        """A cable incident of a device's link closes, merged into the device incident."""
        opened = scenario.at(0).send("link_down", R1N_WAN)
        opened = scenario.at(1).send("link_down", R1S_WAN)
        cable = opened[0].incident
        got = scenario.at(10).send("device_down", "r1-north")
        assert [t.kind for t in got] == ["opened", "resolved"]
        device, merged = got[0].incident, got[1].incident
        assert device.root == "device:r1-north"
        assert merged.incident_id == cable.incident_id
        assert merged.details["merged_into"] == device.incident_id
        assert merged.version == cable.version + 1
        assert set(device.evidence) >= set(cable.evidence)
        assert set(device.inhibited) == set(cable.evidence)
        assert [i.incident_id for i in scenario.open()] == [device.incident_id]

    async def test_lone_device_down_opens_nothing(self, scenario: Scenario) -> None:
        """A device_down with no related outcome is not an incident (the second one opens it)."""
        assert scenario.at(0).send("device_down", "sw2-north") == []
        assert scenario.open() == []


class TestBgpOverLink:
    """``bgp_over_link``: a BGP drop over a down link joins that link's incident."""

    async def test_drop_joins_the_cable_incident(self, scenario: Scenario) -> None:
        """A bgp_drop between the cable's two routers joins the cable incident, inhibited."""
        scenario.at(0).send("link_down", R1N_WAN)
        cable = scenario.at(1).send("link_down", R1S_WAN)[0].incident
        got = scenario.at(30).send("bgp_drop", BGP_N_S)
        assert [t.kind for t in got] == ["updated"]
        inc = got[0].incident
        assert inc.incident_id == cable.incident_id
        assert inc.rule == "cable_pair"
        assert BGP_N_S in inc.members
        assert inc.inhibited == (scenario.oid(3),)
        assert inc.version == 2

    async def test_drop_and_one_link_down_open_a_link_incident(self, scenario: Scenario) -> None:
        """One link-down plus a drop over it: an incident rooted at the cable, drop inhibited."""
        scenario.at(0).send("link_down", R1N_WAN)
        got = scenario.at(90).send("bgp_drop", BGP_N_S)
        inc = got[0].incident
        assert (got[0].kind, inc.rule) == ("opened", "bgp_over_link")
        assert inc.root == f"cable:{R1N_WAN}~{R1S_WAN}"
        assert inc.inhibited == (scenario.oid(2),)
        assert "dropped within" in str(inc.details["why"])

    async def test_link_down_after_the_drop_finds_it(self, scenario: Scenario) -> None:
        """Either order: a link-down after the drop opens the same kind of incident."""
        scenario.at(0).send("bgp_drop", BGP_S_N)
        got = scenario.at(3).send("link_down", R1N_WAN)
        inc = got[0].incident
        assert (inc.rule, inc.root) == ("bgp_over_link", f"cable:{R1N_WAN}~{R1S_WAN}")
        assert inc.members == (R1N_WAN, BGP_S_N)

    async def test_other_end_joins_the_link_incident(self, scenario: Scenario) -> None:
        """The far end's link-down later joins the same incident (same cable root)."""
        scenario.at(0).send("link_down", R1N_WAN)
        first = scenario.at(5).send("bgp_drop", BGP_N_S)[0].incident
        got = scenario.at(6).send("link_down", R1S_WAN)
        assert [t.kind for t in got] == ["updated"]
        assert got[0].incident.incident_id == first.incident_id
        assert got[0].incident.members == (BGP_N_S, R1N_WAN, R1S_WAN)

    async def test_drop_joins_a_device_incident(self, scenario: Scenario) -> None:
        """A drop towards a device that is down joins that device's incident."""
        scenario.at(0).send("device_down", "r1-south")
        scenario.at(1).send("link_down", R1N_WAN)
        got = scenario.at(20).send("bgp_drop", BGP_N_S)
        inc = got[0].incident
        assert (got[0].kind, inc.root) == ("updated", "device:r1-south")
        assert scenario.oid(3) in inc.inhibited

    async def test_transit_drop_cannot_be_placed(self, scenario: Scenario) -> None:
        """A session to a peer outside the inventory stays a plain outcome."""
        scenario.at(0).send("link_down", "r1-north|GigabitEthernet0/0/3")
        assert scenario.at(1).send("bgp_drop", BGP_TRANSIT) == []


class TestSiteOutage:
    """``site_outage``: at least N devices of one site down within the window."""

    async def test_three_devices_of_a_site_open_a_site_incident(self, scenario: Scenario) -> None:
        """The third device down at branch-west opens one site incident."""
        scenario.at(0).send("device_down", "mx-west")
        assert scenario.at(20).send("device_down", "ms-west") == []
        got = scenario.at(70).send("device_down", "mr-west")
        inc = got[0].incident
        assert (got[0].kind, inc.rule, inc.root) == ("opened", "site_outage", "site:branch-west")
        assert inc.members == ("mr-west", "ms-west", "mx-west")
        assert inc.site == "branch-west"
        assert inc.inhibited == ()
        assert inc.details["threshold"] == 3

    async def test_device_incidents_of_the_site_are_absorbed(self, scenario: Scenario) -> None:
        """A device incident of the site closes into the site incident; its children inhibited."""
        scenario.at(0).send("device_down", "mx-west")
        device = scenario.at(1).send("link_down", "ms-west|Port 1")[0].incident
        assert device.root == "device:mx-west"
        scenario.at(2).send("device_down", "ms-west")
        got = scenario.at(3).send("device_down", "mr-west")
        kinds = [(t.kind, t.incident.rule) for t in got]
        assert ("opened", "site_outage") in kinds
        assert ("resolved", "device_root") in kinds
        site = scenario.only()
        assert site.root == "site:branch-west"
        assert "ms-west|Port 1" in site.members
        assert scenario.oid(2) in site.inhibited
        # a later link-down of a device of the site joins the site incident
        got = scenario.at(4).send("link_down", "mr-west|Ethernet 0")
        assert [t.incident.root for t in got] == ["site:branch-west"]
        assert scenario.oid(5) in got[0].incident.inhibited

    async def test_fewer_devices_or_outside_the_window_open_no_site_incident(
        self, memory: SemanticMemory
    ) -> None:
        """Devices down further apart than ``site_window`` do not count together."""
        config = AssociationConfig(site_window=60)
        scenario = Scenario(Correlator(memory, config))
        scenario.at(0).send("device_down", "mx-west")
        scenario.at(50).send("device_down", "ms-west")
        assert scenario.at(100).send("device_down", "mr-west") == []
        assert scenario.open() == []
