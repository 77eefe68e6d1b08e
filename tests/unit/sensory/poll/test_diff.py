"""Unit tests: poll snapshots diffed into events, and reachability from poll failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netcortex.contracts.events import SensoryEvent
from netcortex.memory.semantic import FileInventory
from netcortex.sensory.poll.diff import (
    BgpPeerState,
    DeviceSnapshot,
    FailureTracker,
    InterfaceState,
    diff,
)
from netcortex.sensory.trap import Normalizer
from netcortex.sensory.trap.ber import VarBind
from netcortex.sensory.trap.decode import Notification
from netcortex.thalamus.subjects import validate_subject

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
AGENT = "192.0.2.11"  # sw1-north in the shared inventory; ifIndex 3 = GigabitEthernet1/0/3
UP, DOWN = 1, 2


def itf(
    index: int = 3,
    oper: int = UP,
    admin: int = UP,
    name: str | None = "Gi1/0/3",
    last_change: int | None = None,
) -> InterfaceState:
    return InterfaceState(index, name, f"GigabitEthernet1/0/{index}", admin, oper, last_change)


def snap(
    *interfaces: InterfaceState,
    bgp: dict[str, int] | None = None,
    uptime: int = 100_000,
    at: datetime = T0,
    device: str = "sw1",
    agent: str = AGENT,
) -> DeviceSnapshot:
    return DeviceSnapshot(
        device=device,
        agent=agent,
        sys_uptime_ticks=uptime,
        interfaces={i.if_index: i for i in interfaces},
        bgp={a: BgpPeerState(a, s) for a, s in (bgp or {}).items()},
        polled_at=at,
    )


def later(
    s: DeviceSnapshot,
    *interfaces: InterfaceState,
    bgp: dict[str, int] | None = None,
    uptime: int | None = None,
) -> DeviceSnapshot:
    """The next poll of ``s``, 60 s later: uptime advanced by as much unless given."""
    return snap(
        *(interfaces or tuple(s.interfaces.values())),
        bgp={a: p.state for a, p in s.bgp.items()} if bgp is None else bgp,
        uptime=s.sys_uptime_ticks + 6000 if uptime is None else uptime,
        at=s.polled_at + timedelta(seconds=60),
        device=s.device,
        agent=s.agent,
    )


def trap_note(trap_oid: str, varbinds: list[VarBind]) -> Notification:
    return Notification(
        version="v2c",
        pdu_type="snmpv2_trap",
        request_id=1,
        trap_oid=trap_oid,
        uptime=360000,
        varbinds=tuple(varbinds),
    )


def link_down_note(if_index: int, if_name: str) -> Notification:
    """A decoded v2c linkDown as an agent sends it (ifIndex, admin, oper, ifName)."""
    return trap_note(
        "1.3.6.1.6.3.1.1.5.3",
        [
            VarBind(f"1.3.6.1.2.1.2.2.1.1.{if_index}", "INTEGER", if_index),
            VarBind(f"1.3.6.1.2.1.2.2.1.7.{if_index}", "INTEGER", UP),
            VarBind(f"1.3.6.1.2.1.2.2.1.8.{if_index}", "INTEGER", DOWN),
            VarBind(f"1.3.6.1.2.1.31.1.1.1.1.{if_index}", "OCTET STRING", if_name.encode()),
        ],
    )


def fact_key(event: SensoryEvent) -> str:
    """What the dedup gate keys on (reflex/gates.py)."""
    return f"{event.event_class}|{event.target}"


class TestBaseline:
    def test_first_poll_is_the_baseline(self) -> None:
        """With nothing stored, even a down interface and an idle peer report nothing."""
        assert diff(None, snap(itf(oper=DOWN), bgp={"10.0.0.2": 1}), memory=None) == []

    def test_identical_snapshots_report_nothing(self) -> None:
        s = snap(itf(), itf(4, oper=DOWN, name="Gi1/0/4"), bgp={"10.0.0.2": 6})
        assert diff(s, later(s), memory=None) == []


class TestInterfaces:
    def test_up_to_down_is_link_down(self) -> None:
        s = snap(itf())
        [event] = diff(s, later(s, itf(oper=DOWN)), memory=None)
        assert event.event_class == "link_down"
        assert event.source == "snmp.poll"
        assert event.subject == "sensory.snmp.poll.link_down.192%2E0%2E2%2E11.Gi1/0/3"
        assert (event.target, event.device, event.interface) == (
            "192.0.2.11|Gi1/0/3",
            AGENT,
            "Gi1/0/3",
        )
        assert event.agent == AGENT
        assert event.peer is None
        p = event.payload
        assert (p["if_index"], p["if_name"], p["if_descr"]) == (
            3,
            "Gi1/0/3",
            "GigabitEthernet1/0/3",
        )
        assert (p["if_admin_status"], p["if_oper_status"], p["if_prev_oper_status"]) == (1, 2, 1)
        assert p["admin_down"] is False
        assert p["poll_device"] == "sw1"
        assert "inventory" not in p  # no memory, no flag (as the trap normaliser)
        assert event.received_at == T0 + timedelta(seconds=60)

    def test_down_to_up_is_link_up(self) -> None:
        s = snap(itf(oper=DOWN))
        [event] = diff(s, later(s, itf(oper=UP)), memory=None)
        assert event.event_class == "link_up"
        assert event.payload["admin_down"] is False

    def test_admin_down_is_flagged(self) -> None:
        """An operator's shutdown is still reported, but flagged as not a fault."""
        s = snap(itf())
        [event] = diff(s, later(s, itf(oper=DOWN, admin=DOWN)), memory=None)
        assert event.event_class == "link_down"
        assert event.payload["admin_down"] is True
        assert event.payload["if_admin_status_name"] == "down"

    @pytest.mark.parametrize(("before", "after"), [(DOWN, 7), (7, 5), (5, DOWN), (UP, UP)])
    def test_moves_between_not_up_states_are_no_event(self, before: int, after: int) -> None:
        s = snap(itf(oper=before))
        assert diff(s, later(s, itf(oper=after)), memory=None) == []

    def test_leaving_up_for_lower_layer_down_is_link_down(self) -> None:
        s = snap(itf())
        [event] = diff(s, later(s, itf(oper=7)), memory=None)
        assert event.event_class == "link_down"
        assert event.payload["if_oper_status_name"] == "lowerLayerDown"

    def test_name_falls_back_to_descr_then_index(self) -> None:
        s = snap(itf(name=None), InterfaceState(9, None, None, UP, UP))
        events = diff(
            s,
            later(s, itf(name=None, oper=DOWN), InterfaceState(9, None, None, UP, DOWN)),
            memory=None,
        )
        assert [e.interface for e in events] == ["GigabitEthernet1/0/3", "ifIndex=9"]
        assert "if_name" not in events[0].payload

    def test_appearing_and_vanishing_interfaces_are_no_event(self) -> None:
        s = snap(itf(3), itf(4, name="Gi1/0/4"))
        assert diff(s, later(s, itf(3), itf(5, oper=DOWN, name="Gi1/0/5")), memory=None) == []

    def test_renamed_ifindex_is_a_new_baseline(self) -> None:
        """ifIndex 3 now belongs to another interface (re-numbered): not a flip of one link."""
        s = snap(itf(3, name="Gi1/0/3"))
        assert diff(s, later(s, itf(3, oper=DOWN, name="Gi1/0/9")), memory=None) == []

    def test_observed_at_comes_from_if_last_change(self) -> None:
        """ifLastChange 10 s before the poll's sysUpTime dates the event 10 s before the poll."""
        s = snap(itf(), uptime=100_000)
        cur = later(s, itf(oper=DOWN, last_change=105_000), uptime=106_000)
        [event] = diff(s, cur, memory=None)
        assert event.observed_at == cur.polled_at - timedelta(seconds=10)
        assert event.payload["if_last_change"] == 105_000

    def test_implausible_if_last_change_falls_back_to_poll_time(self) -> None:
        s = snap(itf(), uptime=100_000)
        for last in (200_000, 1_000):  # in the future; before the previous poll
            cur = later(s, itf(oper=DOWN, last_change=last), uptime=106_000)
            [event] = diff(s, cur, memory=None)
            assert event.observed_at == cur.polled_at


class TestBgp:
    def test_established_to_active_is_backward_transition(self) -> None:
        s = snap(bgp={"10.0.0.2": 6})
        [event] = diff(s, later(s, bgp={"10.0.0.2": 3}), memory=None)
        assert event.event_class == "bgp_backward_transition"
        assert event.target == "192.0.2.11|10.0.0.2"
        assert (event.peer, event.interface) == ("10.0.0.2", None)
        assert (
            event.subject
            == "sensory.snmp.poll.bgp_backward_transition.192%2E0%2E2%2E11.10%2E0%2E0%2E2"
        )
        p = event.payload
        assert (p["bgp_state"], p["bgp_prev_state"]) == (3, 6)
        assert (p["bgp_state_name"], p["bgp_prev_state_name"]) == ("active", "established")
        assert p["bgp_remote_addr"] == p["bgp_peer"] == "10.0.0.2"

    def test_reaching_established_is_bgp_established(self) -> None:
        s = snap(bgp={"2001:db8::2": 5})
        [event] = diff(s, later(s, bgp={"2001:db8::2": 6}), memory=None)
        assert event.event_class == "bgp_established"
        assert event.peer == "2001:db8::2"

    def test_moves_between_other_states_and_new_or_gone_peers_are_no_event(self) -> None:
        s = snap(bgp={"10.0.0.2": 1, "10.0.0.3": 6})
        assert diff(s, later(s, bgp={"10.0.0.2": 3, "10.0.0.4": 6}), memory=None) == []


class TestReboot:
    def test_uptime_going_backwards_is_device_reboot(self) -> None:
        s = snap(itf(), uptime=5_000_000)
        cur = later(s, uptime=3000)  # booted 30 s before the poll
        [event] = diff(s, cur, memory=None)
        assert event.event_class == "device_reboot"
        assert (event.target, event.device, event.interface) == (AGENT, AGENT, None)
        assert event.subject == "sensory.snmp.poll.device_reboot.192%2E0%2E2%2E11"
        assert (event.payload["uptime"], event.payload["previous_uptime"]) == (3000, 5_000_000)
        assert event.observed_at == cur.polled_at - timedelta(seconds=30)

    def test_reboot_comes_with_the_link_changes_it_caused(self) -> None:
        s = snap(itf(), uptime=5_000_000)
        events = diff(s, later(s, itf(oper=DOWN), uptime=3000), memory=None)
        assert [e.event_class for e in events] == ["device_reboot", "link_down"]

    def test_timeticks_wrap_is_not_a_reboot(self) -> None:
        """After 497 days sysUpTime wraps past 2^32 to a small value: no reboot."""
        s = snap(itf(), uptime=2**32 - 1000)
        assert diff(s, later(s, uptime=5000), memory=None) == []

    def test_large_drop_near_the_wrap_is_still_a_reboot(self) -> None:
        s = snap(itf(), uptime=2**32 - 1000)
        [event] = diff(s, later(s, uptime=10_000_000), memory=None)
        assert event.event_class == "device_reboot"


class TestSameFactAsTheTrap:
    """A poll-seen and a trap-seen change of one thing have one dedup key."""

    def test_link_down_with_inventory(self, inventory: FileInventory) -> None:
        trap = Normalizer(memory=inventory).normalize(
            link_down_note(3, "Gi1/0/3"), AGENT, datetime.now(UTC)
        )
        s = snap(itf())
        [poll] = diff(s, later(s, itf(oper=DOWN)), memory=inventory)
        assert (poll.target, poll.device, poll.interface) == (
            trap.target,
            trap.device,
            trap.interface,
        )
        assert poll.target == "sw1-north|GigabitEthernet1/0/3"
        assert fact_key(poll) == fact_key(trap)
        assert poll.subject.split(".")[4:] == trap.subject.split(".")[4:]
        assert poll.payload["inventory"] == trap.payload["inventory"] == "device+interface"
        for key in ("if_index", "if_name", "if_admin_status", "if_oper_status"):
            assert poll.payload[key] == trap.payload[key], key

    def test_link_down_without_inventory(self) -> None:
        trap = Normalizer().normalize(link_down_note(3, "Gi1/0/3"), AGENT, datetime.now(UTC))
        s = snap(itf())
        [poll] = diff(s, later(s, itf(oper=DOWN)), memory=None)
        assert (poll.target, poll.device, poll.interface) == (
            trap.target,
            trap.device,
            trap.interface,
        )

    def test_ifindex_wins_over_an_unknown_name(self, inventory: FileInventory) -> None:
        """The inventory's ifIndex names the interface even when ifName is unknown to it."""
        trap = Normalizer(memory=inventory).normalize(
            link_down_note(3, "port-three"), AGENT, datetime.now(UTC)
        )
        s = snap(InterfaceState(3, "port-three", "third port", UP, UP))
        cur = later(s, InterfaceState(3, "port-three", "third port", UP, DOWN))
        [poll] = diff(s, cur, memory=inventory)
        assert fact_key(poll) == fact_key(trap) == "link_down|sw1-north|GigabitEthernet1/0/3"

    def test_unknown_interface_of_a_known_device(self, inventory: FileInventory) -> None:
        trap = Normalizer(memory=inventory).normalize(
            link_down_note(999, "Gi9/9/9"), AGENT, datetime.now(UTC)
        )
        s = snap(itf(999, name="Gi9/9/9"))
        [poll] = diff(s, later(s, itf(999, oper=DOWN, name="Gi9/9/9")), memory=inventory)
        assert fact_key(poll) == fact_key(trap) == "link_down|sw1-north|Gi9/9/9"
        assert poll.payload["inventory"] == trap.payload["inventory"] == "device"

    def test_unknown_device(self, inventory: FileInventory) -> None:
        trap = Normalizer(memory=inventory).normalize(
            link_down_note(3, "Gi1/0/3"), "127.0.0.99", datetime.now(UTC)
        )
        s = snap(itf(), agent="127.0.0.99", device="lab-box")
        [poll] = diff(s, later(s, itf(oper=DOWN)), memory=inventory)
        assert fact_key(poll) == fact_key(trap) == "link_down|127.0.0.99|Gi1/0/3"
        assert poll.payload["inventory"] == trap.payload["inventory"] == "unknown"

    def test_bgp_backward_transition(self, inventory: FileInventory) -> None:
        trap = Normalizer(memory=inventory).normalize(
            trap_note(
                "1.3.6.1.2.1.15.0.2",
                [
                    VarBind("1.3.6.1.2.1.15.3.1.14.10.0.0.2", "OCTET STRING", b"\x06\x02"),
                    VarBind("1.3.6.1.2.1.15.3.1.2.10.0.0.2", "INTEGER", 3),
                ],
            ),
            AGENT,
            datetime.now(UTC),
        )
        s = snap(bgp={"10.0.0.2": 6})
        [poll] = diff(s, later(s, bgp={"10.0.0.2": 3}), memory=inventory)
        assert (poll.target, poll.device, poll.peer) == (trap.target, trap.device, trap.peer)
        assert fact_key(poll) == fact_key(trap) == "bgp_backward_transition|sw1-north|10.0.0.2"
        assert poll.payload["bgp_state"] == trap.payload["bgp_state"]

    def test_poller_device_name_is_used_when_the_address_is_unknown(
        self, inventory: FileInventory
    ) -> None:
        """A device polled by inventory name through an address NetBox lacks keeps its name."""
        s = snap(itf(), agent="127.0.0.5", device="sw1-north")
        [poll] = diff(s, later(s, itf(oper=DOWN)), memory=inventory)
        assert poll.target == "sw1-north|GigabitEthernet1/0/3"
        assert poll.agent == "127.0.0.5"


class TestSnapshot:
    def test_naive_time_is_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            snap(at=datetime(2026, 1, 1))  # naive: the point of the test

    def test_mismatched_keys_are_refused(self) -> None:
        with pytest.raises(ValueError, match="ifIndex"):
            DeviceSnapshot("d", AGENT, 1, interfaces={4: itf(3)}, polled_at=T0)
        with pytest.raises(ValueError, match="bgp key"):
            DeviceSnapshot(
                "d", AGENT, 1, bgp={"10.0.0.1": BgpPeerState("10.0.0.2", 6)}, polled_at=T0
            )

    def test_mappings_are_read_only(self) -> None:
        s = snap(itf())
        with pytest.raises(TypeError):
            s.interfaces[4] = itf(4)  # type: ignore[index]


class TestFailureTracker:
    def test_threshold_failures_make_one_device_down_then_one_device_up(self) -> None:
        tracker = FailureTracker(3)
        at = [T0 + timedelta(seconds=60 * i) for i in range(6)]
        assert tracker.failure("sw1", AGENT, at[0], reason="timeout") is None
        assert tracker.failure("sw1", AGENT, at[1]) is None
        down = tracker.failure("sw1", AGENT, at[2], reason="timeout")
        assert down is not None
        assert down.event_class == "device_down"
        assert (down.source, down.target, down.agent) == ("snmp.poll", AGENT, AGENT)
        assert down.subject == "sensory.snmp.poll.device_down.192%2E0%2E2%2E11"
        assert down.observed_at == at[0]  # it went away at the first failure
        assert down.payload["consecutive_failures"] == 3
        assert down.payload["reason"] == "timeout"
        assert tracker.down == frozenset({"sw1"})
        assert tracker.failure("sw1", AGENT, at[3]) is None  # only one device_down
        up = tracker.success("sw1", AGENT, at[4])
        assert up is not None
        assert up.event_class == "device_up"
        assert up.payload["consecutive_failures"] == 4
        assert tracker.down == frozenset()
        assert tracker.success("sw1", AGENT, at[5]) is None

    def test_a_success_before_the_threshold_resets_the_count(self) -> None:
        tracker = FailureTracker(2)
        assert tracker.failure("sw1", AGENT, T0) is None
        assert tracker.success("sw1", AGENT, T0) is None
        assert tracker.failures("sw1") == 0
        assert tracker.failure("sw1", AGENT, T0) is None
        assert tracker.failure("sw1", AGENT, T0) is not None

    def test_devices_are_counted_separately(self) -> None:
        tracker = FailureTracker(2)
        assert tracker.failure("a", "192.0.2.100", T0) is None
        assert tracker.failure("b", "192.0.2.101", T0) is None
        event = tracker.failure("a", "192.0.2.100", T0)
        assert event is not None
        assert event.device == "192.0.2.100"
        assert tracker.failures("b") == 1

    def test_restored_down_state_neither_refires_nor_forgets(self) -> None:
        tracker = FailureTracker(1, down={"sw1"})
        assert tracker.failure("sw1", AGENT, T0) is None
        up = tracker.success("sw1", AGENT, T0)
        assert up is not None
        assert up.event_class == "device_up"

    def test_device_is_canonicalised(self, inventory: FileInventory) -> None:
        event = FailureTracker(1, memory=inventory).failure("sw1", AGENT, T0)
        assert event is not None
        assert event.target == "sw1-north"
        assert event.payload["inventory"] == "device"

    def test_threshold_below_one_is_refused(self) -> None:
        with pytest.raises(ValueError, match="threshold"):
            FailureTracker(0)

    def test_checkpoint_takes_back_an_unreported_device_down(self) -> None:
        """A ``device_down`` whose report was not published is taken back: the next
        failure yields it again, with the same first failure and the failures counted."""
        tracker = FailureTracker(2)
        at = [T0 + timedelta(seconds=60 * i) for i in range(3)]
        assert tracker.failure("sw1", AGENT, at[0]) is None
        undo = tracker.checkpoint("sw1")
        assert tracker.failure("sw1", AGENT, at[1]) is not None
        undo()
        assert tracker.down == frozenset()
        again = tracker.failure("sw1", AGENT, at[2])
        assert again is not None
        assert again.event_class == "device_down"
        assert again.observed_at == at[0]
        assert again.payload["consecutive_failures"] == 3
        assert tracker.down == frozenset({"sw1"})

    def test_checkpoint_takes_back_an_unreported_device_up(self) -> None:
        """A ``device_up`` whose report was not published is taken back: the device is
        down again and the next success yields the same ``device_up`` payload."""
        tracker = FailureTracker(1)
        assert tracker.failure("sw1", AGENT, T0) is not None
        assert tracker.failure("sw1", AGENT, T0 + timedelta(seconds=60)) is None
        undo = tracker.checkpoint("sw1")
        up = tracker.success("sw1", AGENT, T0 + timedelta(seconds=120))
        assert up is not None
        undo()
        assert tracker.down == frozenset({"sw1"})
        again = tracker.success("sw1", AGENT, T0 + timedelta(seconds=180))
        assert again is not None
        assert again.event_class == "device_up"
        assert again.payload == up.payload
        assert tracker.down == frozenset()

    def test_checkpoint_keeps_what_reported_nothing(self) -> None:
        """Undoing a poll that changed no reported state keeps its count: a failure
        below the threshold stays counted, a success of an up device stays a reset."""
        tracker = FailureTracker(3)
        undo = tracker.checkpoint("sw1")
        assert tracker.failure("sw1", AGENT, T0) is None
        undo()
        assert tracker.failures("sw1") == 1
        undo = tracker.checkpoint("sw1")
        assert tracker.success("sw1", AGENT, T0) is None
        undo()
        assert tracker.failures("sw1") == 0
        assert tracker.down == frozenset()


# ----------------------------------------------------------------------- properties

_statuses = st.integers(min_value=1, max_value=7)
_names = st.one_of(st.none(), st.text(max_size=80))
_peers = st.sampled_from(["10.0.0.1", "10.0.0.2", "2001:db8::1", "192.0.2.200"])


@st.composite
def snapshot_pairs(draw: st.DrawFn) -> tuple[DeviceSnapshot, DeviceSnapshot]:
    """Two polls of one device: shared, appearing and vanishing rows, any states."""
    indexes = draw(st.lists(st.integers(1, 10_000), unique=True, max_size=12))
    prev_itf, cur_itf = [], []
    for i in indexes:
        name = draw(_names)
        descr = draw(_names)
        where = draw(st.sampled_from(["both", "both", "both", "prev", "cur"]))
        last = draw(st.one_of(st.none(), st.integers(0, 2**32 - 1)))
        if where in ("both", "prev"):
            prev_itf.append(InterfaceState(i, name, descr, draw(_statuses), draw(_statuses), last))
        if where in ("both", "cur"):
            cur_itf.append(InterfaceState(i, name, descr, draw(_statuses), draw(_statuses), last))
    prev_bgp = draw(st.dictionaries(_peers, st.integers(1, 6)))
    cur_bgp = draw(st.dictionaries(_peers, st.integers(1, 6)))
    gap = timedelta(seconds=draw(st.integers(1, 86_400)))
    prev = snap(
        *prev_itf, bgp=prev_bgp, uptime=draw(st.integers(0, 2**32 - 1)), device=draw(st.text())
    )
    cur = DeviceSnapshot(
        prev.device,
        prev.agent,
        draw(st.integers(0, 2**32 - 1)),
        {i.if_index: i for i in cur_itf},
        {a: BgpPeerState(a, s) for a, s in cur_bgp.items()},
        prev.polled_at + gap,
    )
    return prev, cur


class TestProperties:
    @given(snapshot_pairs())
    def test_identical_snapshots_never_report(
        self, pair: tuple[DeviceSnapshot, DeviceSnapshot]
    ) -> None:
        prev, _ = pair
        assert diff(prev, prev, memory=None) == []

    @given(snapshot_pairs())
    def test_events_count_exactly_the_flips(
        self, pair: tuple[DeviceSnapshot, DeviceSnapshot]
    ) -> None:
        prev, cur = pair
        events = diff(prev, cur, memory=None)  # never raises
        link_flips = sum(
            1
            for i, c in cur.interfaces.items()
            if (p := prev.interfaces.get(i)) is not None
            and not (p.name and c.name and p.name != c.name)
            and (p.oper_status == 1) != (c.oper_status == 1)
        )
        bgp_flips = sum(
            1
            for a, c in cur.bgp.items()
            if a in prev.bgp and (prev.bgp[a].state == 6) != (c.state == 6)
        )
        classes = [e.event_class for e in events]
        assert classes.count("link_down") + classes.count("link_up") == link_flips
        assert classes.count("bgp_established") + classes.count("bgp_backward_transition") == (
            bgp_flips
        )
        assert classes.count("device_reboot") <= 1
        for e in events:
            assert e.source == "snmp.poll"
            validate_subject(e.subject)
            assert e.subject.startswith(f"sensory.snmp.poll.{e.event_class}.")
            assert e.observed_at <= cur.polled_at

    # The inventory is only read, so sharing one across examples is safe.
    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(pair=snapshot_pairs())
    def test_canonicalised_diff_never_raises(
        self, inventory: FileInventory, pair: tuple[DeviceSnapshot, DeviceSnapshot]
    ) -> None:
        """Any names on a known device (192.0.2.11 is sw1-north) canonicalise or stay raw."""
        prev, cur = pair
        for e in diff(prev, cur, memory=inventory):
            assert e.device == "sw1-north"
            assert e.payload["inventory"] in {"device", "device+interface"}
            validate_subject(e.subject)
