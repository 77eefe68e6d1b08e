"""Property tests for the correlator: invariants over random outcome sequences on the fixture."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from netcortex.association import Correlator
from netcortex.config import AssociationConfig
from netcortex.contracts.incidents import IncidentState
from netcortex.contracts.reflex import OutcomeKind
from tests.unit.association.conftest import (
    BGP_N_S,
    BGP_S_N,
    R1N_SW,
    R1N_WAN,
    R1S_WAN,
    SW1N_EDGE,
    SW1N_SW2,
    SW1N_UP,
    SW2N_SW1,
    Scenario,
    replay,
)

LINKS = [R1N_WAN, R1S_WAN, R1N_SW, SW1N_UP, SW1N_SW2, SW2N_SW1, SW1N_EDGE]
SESSIONS = [BGP_N_S, BGP_S_N]
DEVICES = ["r1-north", "r1-south", "sw1-north", "sw2-north"]

STEP = st.one_of(
    st.tuples(st.sampled_from(["link_down", "link_up"]), st.sampled_from(LINKS)),
    st.tuples(st.sampled_from(["bgp_drop", "bgp_established"]), st.sampled_from(SESSIONS)),
    st.tuples(
        st.sampled_from(["device_down", "device_up", "device_reboot"]), st.sampled_from(DEVICES)
    ),
)
SCRIPT = st.lists(
    st.tuples(STEP, st.floats(0, 40), st.sampled_from([OutcomeKind.LOGGED, OutcomeKind.SKIPPED])),
    max_size=60,
)

# trace-only (no memory): cable peers, peer devices and sites as the enrich gate fills them
PEERS = {
    R1N_WAN: R1S_WAN,
    R1S_WAN: R1N_WAN,
    R1N_SW: SW1N_UP,
    SW1N_UP: R1N_SW,
    SW1N_SW2: SW2N_SW1,
    SW2N_SW1: SW1N_SW2,
    BGP_N_S: "r1-south",
    BGP_S_N: "r1-north",
}
SITES = {"r1-north": "dc-north", "sw1-north": "dc-north", "sw2-north": "dc-north"}
SITES["r1-south"] = "dc-south"
CONFIG = AssociationConfig(site_min_devices=2, flap_high=4, flap_low=2, flap_window=60)


def _trace(target: str) -> dict[str, Any]:
    trace: dict[str, Any] = {"site": SITES[target.partition("|")[0]]}
    peer = PEERS.get(target)
    if peer is not None:
        trace["peer_device" if "|203." in target else "cable_peer"] = peer
    return trace


def _run(script: list[Any]) -> Scenario:
    scenario = Scenario(Correlator(None, CONFIG))
    t = 0.0
    for (handler, target), dt, kind in script:
        t += dt
        scenario.at(t).send(handler, target, kind=kind, trace=_trace(target))
        scenario.tick()
    return scenario


@given(SCRIPT)
def test_invariants_hold(script: list[Any]) -> None:
    """Versions go up by one per transition, resolved is terminal, open ones are consistent."""
    scenario = _run(script)
    last: dict[str, int] = {}
    resolved: set[str] = set()
    for t in scenario.transitions:
        inc = t.incident
        assert inc.incident_id not in resolved
        assert inc.version == last.get(inc.incident_id, 0) + 1
        last[inc.incident_id] = inc.version
        assert set(inc.inhibited) <= set(inc.evidence)
        assert (t.kind == "opened" or t.kind == "flapping") == (inc.version == 1)
        if inc.state == IncidentState.RESOLVED:
            resolved.add(inc.incident_id)
            assert t.kind in ("resolved", "stabilised")
    open_ids = {i.incident_id for i in scenario.open()}
    assert open_ids == set(last) - resolved
    members = [m for i in scenario.open() if i.rule != "flapping" for m in i.members]
    assert len(members) == len(set(members)), "a member is in one non-flap incident at most"


@given(SCRIPT)
def test_replay_is_deterministic(script: list[Any]) -> None:
    """Replaying the same outcomes at the same times gives the same transitions and ids."""
    scenario = _run(script)
    assert replay(scenario.sent, Correlator(None, CONFIG)) == replay(
        scenario.sent, Correlator(None, CONFIG)
    )
