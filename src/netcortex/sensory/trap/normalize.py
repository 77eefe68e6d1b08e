"""Sensory / trap: ``Notification`` → ``SensoryEvent`` (class, target, readable payload).

Maps the notifications netcortex understands to event classes — IF-MIB linkDown /
linkUp (standard and Cisco legacy varbinds), coldStart / warmStart, authentication
failure, BGP4-MIB (RFC 1657 v2 and v1-translated spellings, RFC 4273) and
CISCO-BGP4-MIB (cbgp* and cbgpPeer2* with IPv4/IPv6 index decoding) — and turns
everything else into class ``other`` with numeric OIDs: nothing is dropped.
The device is the agent address (semantic memory canonicalises it later).
The payload never holds the community or any key.

Imports: stdlib, netcortex.contracts, netcortex.thalamus.subjects, sibling modules.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from netcortex.contracts.events import SensoryEvent, new_event_id
from netcortex.contracts.memory import SemanticMemory
from netcortex.sensory.trap.ber import Value, VarBind
from netcortex.sensory.trap.decode import Notification
from netcortex.thalamus.subjects import bounded_part, sensory_subject

__all__ = ["SOURCE", "TRAP_CLASSES", "TRAP_NAMES", "Normalizer", "normalize"]

#: ``SensoryEvent.source`` of every trap event.
SOURCE: Final = "snmp.trap"

_STD: Final = "1.3.6.1.6.3.1.1.5."
_BGP: Final = "1.3.6.1.2.1.15."
_CBGP: Final = "1.3.6.1.4.1.9.9.187."

#: snmpTrapOID → event class (both spellings of the RFC 1657 v1-translated OIDs).
TRAP_CLASSES: Final[dict[str, str]] = {
    _STD + "1": "device_reboot",
    _STD + "2": "device_reboot",
    _STD + "3": "link_down",
    _STD + "4": "link_up",
    _STD + "5": "auth_failure",
    _BGP + "7.1": "bgp_established",  # RFC 1657 bgpEstablished (v2)
    _BGP + "7.0.1": "bgp_established",  # ... as translated from a v1 trap
    _BGP + "7.2": "bgp_backward_transition",
    _BGP + "7.0.2": "bgp_backward_transition",
    _BGP + "0.1": "bgp_established",  # RFC 4273 bgpEstablishedNotification
    _BGP + "0.2": "bgp_backward_transition",  # RFC 4273 bgpBackwardTransNotification
    _CBGP + "0.2": "bgp_backward_transition",  # cbgpBackwardTransition
    _CBGP + "0.5": "bgp_established",  # cbgpPeer2EstablishedNotification
    _CBGP + "0.6": "bgp_backward_transition",  # cbgpPeer2BackwardTransNotification
    _CBGP + "0.8": "bgp_backward_transition",  # cbgpPeer2BackwardTransition
}
# cbgpFsmStateChange / cbgpPeer2FsmStateChange: the class depends on the states.
_FSM_CHANGE: Final = frozenset({_CBGP + "0.1", _CBGP + "0.7"})

#: snmpTrapOID → MIB name, for the payload's ``trap_name``.
TRAP_NAMES: Final[dict[str, str]] = {
    _STD + "1": "coldStart",
    _STD + "2": "warmStart",
    _STD + "3": "linkDown",
    _STD + "4": "linkUp",
    _STD + "5": "authenticationFailure",
    _STD + "6": "egpNeighborLoss",
    _BGP + "7.1": "bgpEstablished",
    _BGP + "7.0.1": "bgpEstablished",
    _BGP + "7.2": "bgpBackwardTransition",
    _BGP + "7.0.2": "bgpBackwardTransition",
    _BGP + "0.1": "bgpEstablishedNotification",
    _BGP + "0.2": "bgpBackwardTransNotification",
    _CBGP + "0.1": "cbgpFsmStateChange",
    _CBGP + "0.2": "cbgpBackwardTransition",
    _CBGP + "0.5": "cbgpPeer2EstablishedNotification",
    _CBGP + "0.6": "cbgpPeer2BackwardTransNotification",
    _CBGP + "0.7": "cbgpPeer2FsmStateChange",
    _CBGP + "0.8": "cbgpPeer2BackwardTransition",
}

_BGP_STATES: Final = {
    1: "idle",
    2: "connect",
    3: "active",
    4: "opensent",
    5: "openconfirm",
    6: "established",
}
_ESTABLISHED: Final = 6

_SNMP_TRAP_ADDRESS: Final = "1.3.6.1.6.3.18.1.3.0"
_IF_TABLE: Final = "1.3.6.1.2.1.2.2.1."  # ifEntry columns
_IFX_TABLE: Final = "1.3.6.1.2.1.31.1.1.1."  # ifXEntry columns
_LOC_IF_REASON: Final = "1.3.6.1.4.1.9.2.2.1.1.20."  # OLD-CISCO-INTERFACES-MIB
_BGP_PEER_TABLE: Final = _BGP + "3.1."  # bgpPeerEntry, index = remote IPv4
_CBGP_PEER_TABLE: Final = _CBGP + "1.2.1.1."  # cbgpPeerEntry, index = remote IPv4
_CBGP_PEER2_TABLE: Final = _CBGP + "1.2.5.1."  # cbgpPeer2Entry, index = InetAddress

# column number → payload key, per table
_IF_COLUMNS: Final = {
    "1": "if_index",
    "2": "if_descr",
    "3": "if_type",
    "7": "if_admin_status",
    "8": "if_oper_status",
}
_IFX_COLUMNS: Final = {"1": "if_name", "18": "if_alias"}
_BGP_COLUMNS: Final = {"2": "bgp_state", "7": "bgp_remote_addr", "14": "bgp_last_error"}
_CBGP_COLUMNS: Final = {"7": "bgp_last_error_text", "8": "bgp_prev_state"}
_CBGP2_COLUMNS: Final = {
    "3": "bgp_state",
    "17": "bgp_last_error",
    "28": "bgp_last_error_text",
    "29": "bgp_prev_state",
}
_HEX_KEYS: Final = frozenset({"bgp_last_error"})
_TEXT_KEYS: Final = frozenset(
    {"if_descr", "if_name", "if_alias", "if_reason", "bgp_last_error_text"}
)
_LINK_CLASSES: Final = frozenset({"link_down", "link_up"})
_BGP_CLASSES: Final = frozenset({"bgp_established", "bgp_backward_transition"})


@lru_cache(maxsize=16_384)
def _subject(event_class: str, device: str, second: str | None) -> str:
    # Real traffic repeats (device, interface/peer) pairs; building and validating
    # a subject costs more than decoding a varbind, so remember recent ones.
    if second is None:
        return sensory_subject(SOURCE, event_class, device)
    return sensory_subject(SOURCE, event_class, device, second)


# A subject may be at most 1024 characters (thalamus.subjects); an interface name
# whose token would be longer than this is shortened by ``bounded_part``.
_MAX_TOKEN: Final = 512


def _text(raw: bytes) -> str | None:
    """Printable UTF-8 text, or ``None`` when the octets are binary."""
    try:
        s = raw.decode()
    except UnicodeDecodeError:
        return None
    return s if s.isprintable() else None


def _json_varbind(vb: VarBind) -> dict[str, Any]:
    value = vb.value
    if isinstance(value, bytes):
        text = _text(value)
        if text is None:
            return {"oid": vb.oid, "type": vb.type, "value": value.hex(), "encoding": "hex"}
        return {"oid": vb.oid, "type": vb.type, "value": text}
    return {"oid": vb.oid, "type": vb.type, "value": value}


def _ipv4_suffix(index: str) -> str | None:
    parts = index.split(".")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(bytes(int(p) for p in parts)))
    except ValueError:
        return None


def _inet_address_index(index: str) -> str | None:
    """Decode an ``InetAddressType.length.octets`` index (CISCO-BGP4-MIB cbgpPeer2)."""
    try:
        arcs = [int(p) for p in index.split(".")]
        addr_type, length, octets = arcs[0], arcs[1], bytes(arcs[2:])
    except (ValueError, IndexError):
        return None
    if len(octets) != length:
        return None
    try:
        if addr_type == 1 and length == 4:
            return str(ipaddress.IPv4Address(octets))
        if addr_type == 2 and length == 16:
            return str(ipaddress.IPv6Address(octets))
        if addr_type == 3 and length == 8:  # ipv4z: address + 4-octet zone index
            zone = int.from_bytes(octets[4:], "big")
            return f"{ipaddress.IPv4Address(octets[:4])}%{zone}"
        if addr_type == 4 and length == 20:  # ipv6z
            zone = int.from_bytes(octets[16:], "big")
            return f"{ipaddress.IPv6Address(octets[:16])}%{zone}"
    except ValueError:
        return None
    return None


def _field_value(key: str, value: Value) -> Value:
    if isinstance(value, bytes):
        if key in _HEX_KEYS:
            return value.hex()
        if key in _TEXT_KEYS:
            return value.decode(errors="replace")
        return _text(value) or value.hex()
    return value


class Normalizer:
    """Turns ``Notification`` objects into ``SensoryEvent`` objects (pure CPU, no I/O).

    Args:
        honour_trap_address: take a relayed trap's ``snmpTrapAddress.0`` as the
            agent (``TrapConfig.honour_trap_address``).
        memory: when given, targets are canonicalised (DESIGN.md: receivers
            canonicalise before publishing): the agent address becomes the
            inventory's device name and the ifIndex (or ifName/ifDescr) the
            interface name, so the same fact from two sources gets one target and
            one dedup key. What the inventory does not know stays raw, and the
            payload says so in ``inventory`` (``device+interface``, ``device``
            or ``unknown``). Lookups are in-memory dict hits.
    """

    def __init__(
        self, *, honour_trap_address: bool = True, memory: SemanticMemory | None = None
    ) -> None:
        self._honour_trap_address = honour_trap_address
        self._memory = memory

    def _canonical(
        self, device: str, interface: str | None, fields: dict[str, Any], event_class: str
    ) -> tuple[str, str | None, str]:
        """Inventory names for ``device`` (an address) and ``interface``, and the match."""
        memory = self._memory
        assert memory is not None
        dev = memory.device_by_address(device.partition("%")[0])
        if dev is None:
            return device, interface, "unknown"
        if event_class not in _LINK_CLASSES:
            return dev.name, interface, "device"
        itf = None
        index = fields.get("if_index")
        if isinstance(index, int):
            itf = memory.interface(dev.name, if_index=index)
        if itf is None:
            for key in ("if_name", "if_descr"):
                name = fields.get(key)
                if isinstance(name, str) and name:
                    itf = memory.interface(dev.name, name=name)
                    if itf is not None:
                        break
        if itf is None:
            return dev.name, interface, "device"
        return dev.name, itf.name, "device+interface"

    def normalize(
        self, note: Notification, udp_source: str, received_at: datetime | None = None
    ) -> SensoryEvent:
        """Build the event for ``note`` received from ``udp_source`` (IP string)."""
        fields: dict[str, Any] = {}
        peer: str | None = None
        relayed_from: str | None = None
        for oid, _type, value in note.varbinds:
            if oid.startswith(_IF_TABLE):
                col, _, index = oid[len(_IF_TABLE) :].partition(".")
                key = _IF_COLUMNS.get(col)
                if key is not None:
                    fields[key] = _field_value(key, value)
                    if index.isdigit():
                        fields.setdefault("if_index", int(index))
            elif oid.startswith(_IFX_TABLE):
                col, _, index = oid[len(_IFX_TABLE) :].partition(".")
                key = _IFX_COLUMNS.get(col)
                if key is not None:
                    fields[key] = _field_value(key, value)
                    if index.isdigit():
                        fields.setdefault("if_index", int(index))
            elif oid.startswith(_BGP_PEER_TABLE):
                col, _, index = oid[len(_BGP_PEER_TABLE) :].partition(".")
                key = _BGP_COLUMNS.get(col)
                if key is not None:
                    fields[key] = _field_value(key, value)
                    if key == "bgp_remote_addr" and isinstance(value, str):
                        peer = value
                if peer is None:
                    peer = _ipv4_suffix(index)
            elif oid.startswith(_CBGP_PEER2_TABLE):
                col, _, index = oid[len(_CBGP_PEER2_TABLE) :].partition(".")
                key = _CBGP2_COLUMNS.get(col)
                if key is not None:
                    fields[key] = _field_value(key, value)
                if peer is None:
                    peer = _inet_address_index(index)
            elif oid.startswith(_CBGP_PEER_TABLE):
                col, _, index = oid[len(_CBGP_PEER_TABLE) :].partition(".")
                key = _CBGP_COLUMNS.get(col)
                if key is not None:
                    fields[key] = _field_value(key, value)
                if peer is None:
                    peer = _ipv4_suffix(index)
            elif oid.startswith(_LOC_IF_REASON):
                fields["if_reason"] = _field_value("if_reason", value)
                index = oid[len(_LOC_IF_REASON) :]
                if index.isdigit():
                    fields.setdefault("if_index", int(index))
            elif oid == _SNMP_TRAP_ADDRESS and isinstance(value, str):
                relayed_from = value

        trap_oid = note.trap_oid
        event_class = TRAP_CLASSES.get(trap_oid, "other")
        if trap_oid in _FSM_CHANGE:
            event_class = self._fsm_class(fields)

        agent = udp_source
        if note.agent_addr and note.agent_addr != "0.0.0.0":
            agent = note.agent_addr
        if relayed_from is not None and self._honour_trap_address:
            agent = relayed_from
        device = agent

        interface: str | None = None
        if event_class in _LINK_CLASSES:
            name = fields.get("if_name") or fields.get("if_descr")
            if isinstance(name, str) and name:
                interface = bounded_part(name, _MAX_TOKEN)
            elif "if_index" in fields:
                interface = f"ifIndex={fields['if_index']}"
        if peer is None and isinstance(fields.get("bgp_remote_addr"), str):
            peer = fields["bgp_remote_addr"]
        if event_class not in _BGP_CLASSES and not trap_oid.startswith((_BGP, _CBGP)):
            event_peer = None
        else:
            event_peer = peer
            if peer is not None:
                fields["bgp_peer"] = peer
        last_error = fields.get("bgp_last_error")
        if isinstance(last_error, str) and len(last_error) >= 4:
            fields["bgp_error_code"] = int(last_error[:2], 16)
            fields["bgp_error_subcode"] = int(last_error[2:4], 16)
        for key in ("bgp_state", "bgp_prev_state"):
            state = fields.get(key)
            if isinstance(state, int) and state in _BGP_STATES:
                fields[key + "_name"] = _BGP_STATES[state]

        if self._memory is not None:
            device, interface, fields["inventory"] = self._canonical(
                device, interface, fields, event_class
            )

        second = interface if event_class in _LINK_CLASSES else event_peer
        parts = [device] if second is None else [device, second]

        payload: dict[str, Any] = {
            "version": note.version,
            "pdu_type": note.pdu_type,
            "trap_oid": trap_oid,
            "uptime": note.uptime,
            "udp_source": udp_source,
        }
        name = TRAP_NAMES.get(trap_oid)
        if name is not None:
            payload["trap_name"] = name
        if note.version == "v1":
            payload["enterprise"] = note.enterprise
            payload["agent_addr"] = note.agent_addr
            payload["generic_trap"] = note.generic_trap
            payload["specific_trap"] = note.specific_trap
        elif note.version == "v3":
            payload["user"] = note.user
            payload["engine_id"] = note.engine_id
            payload["security_level"] = note.security_level
        if relayed_from is not None:
            payload["trap_address"] = relayed_from
        payload.update(fields)
        payload["varbinds"] = [_json_varbind(vb) for vb in note.varbinds]

        now = received_at or datetime.now(UTC)
        return SensoryEvent(
            id=new_event_id(),
            subject=_subject(event_class, device, second),
            event_class=event_class,
            source=SOURCE,
            target="|".join(parts),
            device=device,
            interface=interface,
            peer=event_peer,
            agent=agent,
            observed_at=now,
            received_at=now,
            payload=payload,
        )

    @staticmethod
    def _fsm_class(fields: dict[str, Any]) -> str:
        state = fields.get("bgp_state")
        prev = fields.get("bgp_prev_state")
        if state == _ESTABLISHED:
            return "bgp_established"
        if isinstance(state, int) and isinstance(prev, int) and state < prev:
            return "bgp_backward_transition"
        return "other"


_DEFAULT = Normalizer()


def normalize(
    note: Notification, udp_source: str, received_at: datetime | None = None
) -> SensoryEvent:
    """``Normalizer().normalize`` with ``honour_trap_address=True``."""
    return _DEFAULT.normalize(note, udp_source, received_at)
