"""Bridge, demo: the built-in scenario — what ``netcortex demo`` sends and expects.

Four acts on the fixture network (``network.yaml`` beside this module), each a
list of *beats*; a beat's sends may arrive in any order, the next beat is sent
only once the engine has recorded every outcome of the previous one, so the
correlator sees the facts in the order the story needs:

1. **core switch reboot**: ``sw1-north`` sends coldStart, then link-downs of its
   two cabled ports and of their cable peers (``r1-north`` Gi0/0/1, ``sw2-north``
   Gi1/0/3) → one ``device_root`` incident, the four links inhibited;
2. **cable cut**: both ends of the WAN cable ``r1-north`` Gi0/0/0 ⇄ ``r1-south``
   Gi0/0/0 go down → ``cable_pair``; ``r1-north``'s iBGP session to
   203.0.113.1 (``r1-south``, over that cable) drops → joins it; links and
   session come back → resolved;
3. **BGP flap**: ``r1-north``'s transit session to 203.0.113.9 goes down and up,
   at least ``association.flap_high`` + 2 state changes → one ``flapping``
   incident (a transit peer is not in the inventory, so no other rule takes
   the drops);
4. **Meraki IDS alert**: the shared fixture's ``security_ids_alert.json`` body on
   ``mx-west``, with a fresh ``alertId``/``sentAt``/``occurredAt`` per run (the
   receiver drops a repeated ``alertId``) → one ``security_webhook`` outcome.

Traps are SNMPv1 with the device's address as agent-addr (the receiver maps it
to the inventory name; the UDP source is 127.0.0.1), varbinds as in the shared
SNMP catalog (``linkDown``/``linkUp``: ifIndex, ifAdminStatus, ifOperStatus,
ifDescr, ifName; ``bgpBackwardTransition``/``bgpEstablished``: bgpPeerLastError,
bgpPeerState). May import everything (bridge).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from netcortex.sensory.trap.ber import TRAP_V1, Message, Pdu, VarBind, encode_message

__all__ = [
    "DEVICES",
    "INTERFACES",
    "Act",
    "Beat",
    "Expected",
    "ExpectedIncident",
    "Trap",
    "Webhook",
    "build_scenario",
    "encode_trap",
    "ids_alert",
    "scenario_devices",
]

#: The demo's devices and the address each sends its traps from (agent-addr).
DEVICES: Final[dict[str, str]] = {
    "r1-north": "192.0.2.1",
    "sw1-north": "192.0.2.11",
    "sw2-north": "192.0.2.12",
    "r1-south": "198.51.100.1",
}
#: Meraki devices the scenario names (by serial in the webhook body).
MERAKI_DEVICES: Final[dict[str, str]] = {"mx-west": "Q2ZZ-0001-MXW1"}

#: (device, interface) → ifIndex of every interface the scenario names.
INTERFACES: Final[dict[tuple[str, str], int]] = {
    ("sw1-north", "GigabitEthernet1/0/1"): 1,
    ("sw1-north", "GigabitEthernet1/0/3"): 3,
    ("r1-north", "GigabitEthernet0/0/1"): 2,
    ("sw2-north", "GigabitEthernet1/0/3"): 3,
    ("r1-north", "GigabitEthernet0/0/0"): 1,
    ("r1-south", "GigabitEthernet0/0/0"): 1,
}

_STD: Final = "1.3.6.1.6.3.1.1.5."
_NET_SNMP: Final = "1.3.6.1.4.1.8072.3.2.10"  # net-snmp's agent OID, as the catalog's traps
_BGP_TRAPS: Final = "1.3.6.1.2.1.15.7"
_IF: Final = "1.3.6.1.2.1.2.2.1."
_IFX_NAME: Final = "1.3.6.1.2.1.31.1.1.1.1."
_BGP_PEER: Final = "1.3.6.1.2.1.15.3.1."
_UPTIME: Final = 360000

_SHORT: Final = {"GigabitEthernet": "Gi"}


def _short(name: str) -> str:
    for long, short in _SHORT.items():
        if name.startswith(long):
            return short + name[len(long) :]
    return name


@dataclass(frozen=True, slots=True)
class Trap:
    """One SNMPv1 trap: ``what`` is ``cold_start``, ``link_down``, ``link_up``,
    ``bgp_down`` or ``bgp_up``; ``interface`` for links, ``peer`` (an address) for BGP."""

    what: str
    device: str
    interface: str | None = None
    peer: str | None = None

    @property
    def handler(self) -> str:
        """The reflex handler that answers it."""
        return {
            "cold_start": "device_reboot",
            "link_down": "link_down",
            "link_up": "link_up",
            "bgp_down": "bgp_drop",
            "bgp_up": "bgp_established",
        }[self.what]

    @property
    def target(self) -> str:
        """The outcome target the engine gives it (inventory names)."""
        second = self.interface if self.interface is not None else self.peer
        return self.device if second is None else f"{self.device}|{second}"

    def describe(self) -> str:
        """A few words for the progress line."""
        return {
            "cold_start": "coldStart",
            "link_down": "linkDown",
            "link_up": "linkUp",
            "bgp_down": "bgpBackwardTransition",
            "bgp_up": "bgpEstablished",
        }[self.what] + f" {self.target}"

    def pdu(self) -> Pdu:
        """The v1 Trap-PDU (agent-addr = the device's address)."""
        agent = DEVICES[self.device]
        varbinds: list[VarBind] = []
        enterprise, generic, specific = _NET_SNMP, 0, 0
        if self.what in ("link_down", "link_up"):
            assert self.interface is not None
            index = INTERFACES[(self.device, self.interface)]
            generic = 2 if self.what == "link_down" else 3
            varbinds = [
                VarBind(f"{_IF}1.{index}", "Integer", index),
                VarBind(f"{_IF}7.{index}", "Integer", 1),  # ifAdminStatus up
                VarBind(f"{_IF}8.{index}", "Integer", 2 if self.what == "link_down" else 1),
                VarBind(f"{_IF}2.{index}", "OctetString", self.interface.encode()),
                VarBind(f"{_IFX_NAME}{index}", "OctetString", _short(self.interface).encode()),
            ]
        elif self.what in ("bgp_down", "bgp_up"):
            assert self.peer is not None
            enterprise, generic = _BGP_TRAPS, 6
            specific = 2 if self.what == "bgp_down" else 1
            error = bytes.fromhex("0400" if self.what == "bgp_down" else "0000")
            varbinds = [
                VarBind(f"{_BGP_PEER}14.{self.peer}", "OctetString", error),
                VarBind(
                    f"{_BGP_PEER}2.{self.peer}", "Integer", 1 if self.what == "bgp_down" else 6
                ),
            ]
        elif self.what != "cold_start":  # pragma: no cover - the scenario is fixed
            raise ValueError(f"unknown trap {self.what!r}")
        return Pdu(
            tag=TRAP_V1,
            varbinds=varbinds,
            enterprise=enterprise,
            agent_addr=agent,
            generic_trap=generic,
            specific_trap=specific,
            time_stamp=_UPTIME,
        )


def encode_trap(trap: Trap, community: str) -> bytes:
    """The SNMPv1 datagram of ``trap`` with ``community`` (the project's own BER encoder)."""
    return encode_message(Message(version=0, community=community.encode(), pdu=trap.pdu()))


@dataclass(frozen=True, slots=True)
class Webhook:
    """One Meraki webhook POST (the body gets the shared secret when sent)."""

    body: dict[str, Any]
    device: str

    @property
    def handler(self) -> str:
        """The reflex handler that answers it."""
        return "security_webhook"

    def describe(self) -> str:
        """A few words for the progress line."""
        return f"Meraki {self.body.get('alertType')} webhook on {self.device}"


@dataclass(frozen=True, slots=True)
class Beat:
    """Sends that may arrive in any order; the next beat waits for their outcomes."""

    sends: tuple[Trap | Webhook, ...]


@dataclass(frozen=True, slots=True)
class ExpectedIncident:
    """An incident an act must produce: its rule, root, final state and members."""

    rule: str
    root: str
    state: str
    members: frozenset[str]
    flapping: bool | None = None


@dataclass(frozen=True, slots=True)
class Act:
    """One act of the scenario: a title, a line of story, beats, expected incidents."""

    title: str
    story: str
    beats: tuple[Beat, ...]
    incidents: tuple[ExpectedIncident, ...] = ()

    @property
    def sends(self) -> list[Trap | Webhook]:
        """Every send of the act, in order."""
        return [s for beat in self.beats for s in beat.sends]


@dataclass(frozen=True, slots=True)
class Expected:
    """What one send must produce: an outcome of ``handler`` on ``device`` (and ``target``)."""

    handler: str
    device: str
    target: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def matches(self, outcome: dict[str, Any]) -> bool:
        """Whether the API's outcome object is this one."""
        if outcome.get("handler_id") != self.handler or outcome.get("device") != self.device:
            return False
        return self.target is None or outcome.get("target") == self.target


def expected_outcome(send: Trap | Webhook) -> Expected:
    """The outcome ``send`` must produce."""
    if isinstance(send, Trap):
        return Expected(send.handler, send.device, send.target)
    return Expected(send.handler, send.device)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: The Meraki IDS alert of ../shared/fixtures/meraki/security_ids_alert.json (without
#: its sharedSecret, which the demo takes from the config).
_IDS_ALERT: Final[dict[str, Any]] = {
    "version": "0.1",
    "organizationId": "1234567",
    "organizationName": "Example Networks Ltd",
    "organizationUrl": "https://dashboard.example.com/o/Xk3Lp9/manage/organization/overview",
    "networkId": "L_100000000000000001",
    "networkName": "Branch West",
    "networkUrl": "https://dashboard.example.com/Branch-West/n/Ab12Cd/manage/usage/list",
    "networkTags": ["branch", "west"],
    "deviceSerial": "Q2ZZ-0001-MXW1",
    "deviceMac": "00:00:5e:00:53:01",
    "deviceName": "mx-west",
    "deviceUrl": "https://dashboard.example.com/Branch-West/n/Ab12Cd/manage/nodes/new_wired_status",
    "deviceTags": ["edge"],
    "deviceModel": "MX85",
    "alertType": "IDS alert",
    "alertTypeId": "ids_alerted",
    "alertLevel": "warning",
    "alertData": {
        "eventType": "IDS Alert",
        "signature": "1:41944:2",
        "priority": "1",
        "classification": "4",
        "message": "SERVER-WEBAPP fictional exploit attempt (netcortex fixture)",
        "blocked": True,
        "direction": "ingress",
        "protocol": "tcp/ip",
        "srcIp": "198.51.100.77:51515",
        "destIp": "192.0.2.40:443",
        "clientMac": "00:00:5e:00:53:aa",
        "ruleId": "meraki:intrusion/snort/GID/1/SID/41944",
    },
}


def ids_alert(now: datetime | None = None) -> dict[str, Any]:
    """The IDS alert body with a fresh ``alertId`` (18 digits, like Meraki's, from the
    clock and a random part) and ``occurredAt``/``sentAt`` = now."""
    moment = now or datetime.now(UTC)
    body = dict(_IDS_ALERT)
    body["alertId"] = f"{time.time_ns() // 1_000_000:013d}{random.randrange(100_000):05d}"
    body["occurredAt"] = _iso(moment - timedelta(seconds=1))
    body["sentAt"] = _iso(moment)
    return body


_WAN_NORTH: Final = "GigabitEthernet0/0/0"
_R1S_ADDR: Final = "203.0.113.1"
_TRANSIT: Final = "203.0.113.9"


def build_scenario(flap_high: int = 6) -> list[Act]:
    """The four acts; the flap sends at least ``flap_high`` + 2 state changes (down/up pairs)."""
    reboot = Act(
        title="core switch reboot",
        story="sw1-north restarts; its 2 cabled ports and their cable peers go down",
        beats=(
            Beat((Trap("cold_start", "sw1-north"),)),
            Beat(
                (
                    Trap("link_down", "r1-north", "GigabitEthernet0/0/1"),
                    Trap("link_down", "sw2-north", "GigabitEthernet1/0/3"),
                    Trap("link_down", "sw1-north", "GigabitEthernet1/0/1"),
                    Trap("link_down", "sw1-north", "GigabitEthernet1/0/3"),
                )
            ),
        ),
        incidents=(
            ExpectedIncident(
                "device_root",
                "device:sw1-north",
                "open",
                frozenset(
                    {
                        "sw1-north",
                        "r1-north|GigabitEthernet0/0/1",
                        "sw2-north|GigabitEthernet1/0/3",
                        "sw1-north|GigabitEthernet1/0/1",
                        "sw1-north|GigabitEthernet1/0/3",
                    }
                ),
            ),
        ),
    )
    cut = Act(
        title="cable cut",
        story="WAN cable r1-north ⇄ r1-south cut, the iBGP session over it drops; repaired",
        beats=(
            Beat(
                (
                    Trap("link_down", "r1-north", _WAN_NORTH),
                    Trap("link_down", "r1-south", _WAN_NORTH),
                )
            ),
            Beat((Trap("bgp_down", "r1-north", peer=_R1S_ADDR),)),
            Beat(
                (
                    Trap("link_up", "r1-north", _WAN_NORTH),
                    Trap("link_up", "r1-south", _WAN_NORTH),
                    Trap("bgp_up", "r1-north", peer=_R1S_ADDR),
                )
            ),
        ),
        incidents=(
            ExpectedIncident(
                "cable_pair",
                f"cable:r1-north|{_WAN_NORTH}~r1-south|{_WAN_NORTH}",
                "resolved",
                frozenset(
                    {f"r1-north|{_WAN_NORTH}", f"r1-south|{_WAN_NORTH}", f"r1-north|{_R1S_ADDR}"}
                ),
            ),
        ),
    )
    pairs = (flap_high + 3) // 2  # down/up pairs: at least flap_high + 2 changes
    flap = Act(
        title="BGP flap",
        story=f"r1-north's transit BGP session to {_TRANSIT} goes down and up {pairs} times",
        beats=tuple(
            Beat((Trap(what, "r1-north", peer=_TRANSIT),))
            for _ in range(pairs)
            for what in ("bgp_down", "bgp_up")
        ),
        incidents=(
            ExpectedIncident(
                "flapping",
                f"bgp:r1-north|{_TRANSIT}",
                "open",
                frozenset({f"r1-north|{_TRANSIT}"}),
                flapping=True,
            ),
        ),
    )
    ids = Act(
        title="Meraki IDS alert",
        story="mx-west (branch-west) sends an IDS alert webhook",
        beats=(Beat((Webhook(ids_alert(), "mx-west"),)),),
    )
    return [reboot, cut, flap, ids]


def scenario_devices() -> list[str]:
    """Every device the scenario names (traps and webhooks), sorted."""
    return sorted({*DEVICES, *MERAKI_DEVICES})
