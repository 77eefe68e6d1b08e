"""Unit tests for the flapping rule: high/low hysteresis over a sliding window."""

from __future__ import annotations

from netcortex.association import Correlator
from netcortex.config import AssociationConfig
from netcortex.contracts.incidents import IncidentState
from netcortex.contracts.memory import SemanticMemory
from tests.unit.association.conftest import BGP_N_S, SW1N_EDGE, Scenario

# window 100 s, flapping at 4 changes, stabilised below 2
CONFIG = AssociationConfig(flap_window=100, flap_high=4, flap_low=2)


def _flap(scenario: Scenario, member: str, times: list[float], down: str, up: str) -> None:
    for i, t in enumerate(times):
        scenario.at(t).send(down if i % 2 == 0 else up, member)


class TestFlapping:
    """An interface or BGP session changing state too often."""

    async def test_rises_above_high_opens_one_flapping_incident(
        self, memory: SemanticMemory
    ) -> None:
        """The fourth change within the window opens one ``flapping`` incident; later ones don't."""
        scenario = Scenario(Correlator(memory, CONFIG))
        _flap(scenario, SW1N_EDGE, [0, 1, 2], "link_down", "link_up")
        assert scenario.transitions == []
        [t] = scenario.at(3).send("link_up", SW1N_EDGE)  # the 4th change
        assert t.kind == "flapping"
        inc = t.incident
        assert (inc.rule, inc.root, inc.flapping) == ("flapping", f"interface:{SW1N_EDGE}", True)
        # a stream of further changes is absorbed: no transition each
        _flap(scenario, SW1N_EDGE, [4, 5, 6, 7], "link_down", "link_up")
        assert [t.kind for t in scenario.transitions] == ["flapping"]

    async def test_flapping_incident_carries_every_change_in_the_window(
        self, memory: SemanticMemory
    ) -> None:
        """The changes that made it flap are its evidence, and it is as severe as the worst
        of them: a flap crossing the threshold on a (info) link_up is still high."""
        scenario = Scenario(Correlator(memory, CONFIG))
        scenario.at(-200).send("link_down", SW1N_EDGE)  # outside the window later on
        scenario.at(-199).send("link_up", SW1N_EDGE)
        _flap(scenario, SW1N_EDGE, [0, 1, 2, 3], "link_down", "link_up")
        [t] = [t for t in scenario.transitions if t.kind == "flapping"]
        in_window = [o.outcome_id for o, _ in scenario.sent[2:]]
        assert list(t.incident.evidence) == in_window
        assert t.incident.severity.value == "high"
        assert t.outcome_id == in_window[-1]

    async def test_long_flapping_is_updated_at_most_once_per_interval(
        self, memory: SemanticMemory
    ) -> None:
        """Absorbed changes publish ``updated`` (with the new evidence) at most once per
        ``flap_update_interval``, never once per change."""
        config = AssociationConfig(
            flap_window=100, flap_high=4, flap_low=2, flap_update_interval=30
        )
        scenario = Scenario(Correlator(memory, config))
        _flap(scenario, SW1N_EDGE, [float(t) for t in range(70)], "link_down", "link_up")
        kinds = [t.kind for t in scenario.transitions]
        assert kinds == ["flapping", "updated", "updated"]  # at t=3, then t=33 and t=63
        last = scenario.transitions[-1]
        assert last.incident.version == 3
        assert last.outcome_id in last.incident.evidence
        assert len(last.incident.evidence) > len(scenario.transitions[0].incident.evidence)

    async def test_stays_flapping_between_thresholds_then_stabilises(
        self, memory: SemanticMemory
    ) -> None:
        """Between low and high it stays flapping; below low (time passing) it is stabilised."""
        scenario = Scenario(Correlator(memory, CONFIG))
        _flap(scenario, SW1N_EDGE, [0, 10, 20, 30], "link_down", "link_up")
        assert [t.kind for t in scenario.transitions] == ["flapping"]
        # at t=115 the changes at 0 and 10 left the window: 2 remain (not below low)
        assert scenario.at(115).tick() == []
        assert scenario.open()[0].flapping is True
        # at t=125 only the change at 30 remains: 1 < low → stabilised
        [t] = scenario.at(125).tick()
        assert t.kind == "stabilised"
        assert t.incident.flapping is False
        assert t.incident.state == IncidentState.RESOLVED
        assert t.incident.details["changes"] == 4
        assert scenario.open() == []

    async def test_flapping_bgp_session(self, memory: SemanticMemory) -> None:
        """BGP sessions flap too: drops and re-establishments of one session."""
        scenario = Scenario(Correlator(memory, CONFIG))
        _flap(scenario, BGP_N_S, [0, 5, 10, 15], "bgp_drop", "bgp_established")
        [t] = scenario.transitions
        assert (t.kind, t.incident.root) == ("flapping", f"bgp:{BGP_N_S}")

    async def test_slow_changes_never_flap(self, memory: SemanticMemory) -> None:
        """Changes spread wider than the window never reach the high threshold."""
        scenario = Scenario(Correlator(memory, CONFIG))
        _flap(scenario, SW1N_EDGE, [0, 40, 80, 120, 160, 200], "link_down", "link_up")
        scenario.at(400).tick()
        assert scenario.transitions == []

    async def test_flapping_again_after_stabilised_is_a_new_incident(
        self, memory: SemanticMemory
    ) -> None:
        """After stabilising, a new burst opens a new flapping incident."""
        scenario = Scenario(Correlator(memory, CONFIG))
        _flap(scenario, SW1N_EDGE, [0, 1, 2, 3], "link_down", "link_up")
        scenario.at(200).tick()
        _flap(scenario, SW1N_EDGE, [300, 301, 302, 303], "link_down", "link_up")
        kinds = [t.kind for t in scenario.transitions]
        assert kinds == ["flapping", "stabilised", "flapping"]
        ids = {t.incident.incident_id for t in scenario.transitions}
        assert len(ids) == 2

    async def test_restored_flapping_incident_stabilises_later(
        self, memory: SemanticMemory
    ) -> None:
        """A flapping incident restored after a restart stabilises one window later."""
        before = Scenario(Correlator(memory, CONFIG))
        _flap(before, SW1N_EDGE, [0, 1, 2, 3], "link_down", "link_up")
        inc = before.open()[0]
        after = Scenario(Correlator(memory, CONFIG))
        after.correlator.restore([inc])
        assert after.at(50).tick() == []
        [t] = after.at(104).tick()
        assert (t.kind, t.incident.incident_id) == ("stabilised", inc.incident_id)

    def test_low_must_be_below_high(self) -> None:
        """The config rejects flap_low >= flap_high (no hysteresis)."""
        import pydantic
        import pytest

        with pytest.raises(pydantic.ValidationError, match="flap_low"):
            AssociationConfig(flap_high=3, flap_low=3)


def test_config_from_environment() -> None:
    """The ``association`` section is read from NETCORTEX_ASSOCIATION__* and validated."""
    import pytest

    from netcortex.config import load_config
    from netcortex.errors import ConfigError

    config = load_config(None, environ={"NETCORTEX_ASSOCIATION__CABLE_WINDOW": "12"})
    assert config.association.cable_window == 12.0
    with pytest.raises(ConfigError, match="flap_low"):
        load_config(None, environ={"NETCORTEX_ASSOCIATION__FLAP_LOW": "9"})
