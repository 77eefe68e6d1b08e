"""``TrapDecoder`` and ``Normalizer``: security checks, RFC 3584, classes, payload."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from netcortex.errors import AuthenticationError, DecodeError, IngestError, PayloadTooLarge
from netcortex.sensory.trap import Normalizer, TrapDecoder, ber, normalize
from netcortex.sensory.trap.ber import Message, Pdu, VarBind
from netcortex.thalamus.subjects import validate_subject
from tests.unit.sensory.trap import _seeds
from tests.unit.sensory.trap._helpers import trap_config

_IF_NAME = "1.3.6.1.2.1.31.1.1.1.1.5"
_UPTIME = VarBind("1.3.6.1.2.1.1.3.0", "TimeTicks", 100)


def _trap_oid(oid: str) -> VarBind:
    return VarBind("1.3.6.1.6.3.1.1.4.1.0", "ObjectIdentifier", oid)


def _v2c(trap_oid: str, *vbs: VarBind, community: bytes = b"public", tag: int = 0xA7) -> bytes:
    pdu = Pdu(tag, request_id=9, varbinds=[_UPTIME, _trap_oid(trap_oid), *vbs])
    return ber.encode_message(Message(1, community, pdu))


def _v1(
    enterprise: str, generic: int, specific: int, *vbs: VarBind, agent: str = "192.0.2.7"
) -> bytes:
    pdu = Pdu(
        0xA4,
        varbinds=list(vbs),
        enterprise=enterprise,
        agent_addr=agent,
        generic_trap=generic,
        specific_trap=specific,
        time_stamp=360000,
    )
    return ber.encode_message(Message(0, b"public", pdu))


@pytest.fixture(scope="module")
def decoder() -> TrapDecoder:
    """A decoder with the default ``public`` community and the test v3 users."""
    return TrapDecoder(trap_config())


class TestDecoder:
    """The security and syntax boundary."""

    def test_communities_are_an_allow_list(self) -> None:
        """Any listed community is accepted; others are ``bad_community``; none = no v1/v2c."""
        d = TrapDecoder(trap_config(communities=[SecretStr("alpha"), SecretStr("beta")]))
        assert d.decode(_v2c("1.3.6.1.6.3.1.1.5.1", community=b"beta")).trap_oid
        for bad in (b"public", b"", b"alph", b"alphaa"):
            with pytest.raises(AuthenticationError) as info:
                d.decode(_v2c("1.3.6.1.6.3.1.1.5.1", community=bad))
            assert info.value.reason == "bad_community"
        with pytest.raises(AuthenticationError):
            TrapDecoder(trap_config(communities=[])).decode(_v2c("1.3.6.1.6.3.1.1.5.1"))

    def test_too_large(self) -> None:
        """A datagram over ``max_message_size`` is ``too_large`` before any parsing."""
        d = TrapDecoder(trap_config(max_message_size=484))
        big = _v2c("1.3.6.1.6.3.1.1.5.1", VarBind("1.3.6.1.2.1.1.5.0", "OctetString", bytes(500)))
        with pytest.raises(PayloadTooLarge) as info:
            d.decode(big)
        assert info.value.reason == "too_large"

    @pytest.mark.parametrize(
        ("generic", "specific", "enterprise", "oid"),
        [
            (0, 0, "1.3.6.1.4.1.9", "1.3.6.1.6.3.1.1.5.1"),
            (5, 0, "1.3.6.1.4.1.9", "1.3.6.1.6.3.1.1.5.6"),
            (6, 1, "1.3.6.1.2.1.15.7", "1.3.6.1.2.1.15.7.0.1"),
            (6, 17, "1.3.6.1.4.1.9.9.187", "1.3.6.1.4.1.9.9.187.0.17"),
        ],
    )
    def test_rfc3584_translation(
        self, decoder: TrapDecoder, generic: int, specific: int, enterprise: str, oid: str
    ) -> None:
        """v1 generic traps map to snmpTraps.(g+1); enterpriseSpecific to enterprise.0.specific."""
        note = decoder.decode(_v1(enterprise, generic, specific))
        assert note.trap_oid == oid
        assert note.uptime == 360000
        assert (note.enterprise, note.agent_addr) == (enterprise, "192.0.2.7")

    def test_v1_specific_trap_must_be_an_oid_arc(self, decoder: TrapDecoder) -> None:
        """A negative enterprise-specific trap number is malformed, not a bogus snmpTrapOID."""
        with pytest.raises(DecodeError) as info:
            decoder.decode(_v1("1.3.6.1.4.1.9", 6, -1))
        assert info.value.reason == "malformed"
        assert decoder.decode(_v1("1.3.6.1.4.1.9", 2, -1)).trap_oid == "1.3.6.1.6.3.1.1.5.3"

    def test_non_notification_pdus(self, decoder: TrapDecoder) -> None:
        """Get/Set/Response/Report and a v2c-wrapped Trap-PDU are ``unexpected_pdu``."""
        for tag in (0xA0, 0xA1, 0xA2, 0xA3, 0xA5, 0xA8):
            with pytest.raises(DecodeError) as info:
                decoder.decode(_v2c("1.3.6.1.6.3.1.1.5.1", tag=tag))
            assert info.value.reason == "unexpected_pdu"
        v1_in_v2c = ber.encode_message(
            Message(1, b"public", Pdu(0xA4, enterprise="1.3", agent_addr="1.2.3.4"))
        )
        with pytest.raises(DecodeError, match="Trap-PDU"):
            decoder.decode(v1_in_v2c)
        v1_get = ber.encode_message(Message(0, b"public", Pdu(0xA0)))
        with pytest.raises(DecodeError) as info:
            decoder.decode(v1_get)
        assert info.value.reason == "unexpected_pdu"

    def test_missing_trap_oid_and_reordered_varbinds(self, decoder: TrapDecoder) -> None:
        """snmpTrapOID.0 is required; out-of-order sysUpTime/snmpTrapOID are tolerated."""
        no_oid = ber.encode_message(Message(1, b"public", Pdu(0xA7, varbinds=[_UPTIME])))
        with pytest.raises(DecodeError, match="snmpTrapOID"):
            decoder.decode(no_oid)
        extra = VarBind("1.3.6.1.2.1.2.2.1.1.4", "Integer", 4)
        swapped = Pdu(0xA7, varbinds=[extra, _trap_oid("1.3.6.1.6.3.1.1.5.3"), _UPTIME])
        note = decoder.decode(ber.encode_message(Message(1, b"public", swapped)))
        assert (note.trap_oid, note.uptime, note.varbinds) == ("1.3.6.1.6.3.1.1.5.3", 100, (extra,))

    def test_v3_notification_fields(self, decoder: TrapDecoder) -> None:
        """A v3 trap carries user, engine ID and level, never keys."""
        note = decoder.decode(_seeds.V3_AES_LINKDOWN)
        assert (note.version, note.user, note.security_level) == ("v3", "netcortex", "authPriv")
        assert note.engine_id == "0x80001f880472312d6c6162"
        assert note.response is None

    def test_inform_response_built(self, decoder: TrapDecoder) -> None:
        """A v2c inform's Notification carries the encoded Response with its request-id."""
        note = decoder.decode(_v2c("1.3.6.1.6.3.1.1.5.1", tag=0xA6))
        assert note.pdu_type == "inform"
        assert note.response is not None
        resp = ber.decode_message(note.response)
        assert resp.pdu is not None
        assert (resp.pdu.tag, resp.pdu.request_id) == (0xA2, 9)
        assert repr(note.response) not in repr(note)  # holds the community: never printed


_SEEDS = [_seeds.V1_LINKDOWN, _seeds.V2C_CBGP6, _seeds.V3_AES_LINKDOWN, _seeds.V3_MD5DES]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=3),
    st.integers(0, 400),
)
def test_decoder_fuzz_only_ingest_errors(
    seed: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    """Mutated real datagrams through the whole decoder raise only ``IngestError``s."""
    decoder = _FUZZ_DECODER
    data = bytearray(seed)
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
    data = data[: max(1, len(data) - cut)]
    try:
        note = decoder.decode(bytes(data))
    except IngestError:
        return
    json.dumps(dict(normalize(note, "127.0.0.1").payload))  # whatever decodes normalises


_FUZZ_DECODER = TrapDecoder(trap_config())


class TestNormalizer:
    """Classes, targets and payload from decoded notifications."""

    def _event(self, data: bytes, source: str = "127.0.0.9", **kw: Any) -> Any:
        return Normalizer(**kw).normalize(TrapDecoder(trap_config()).decode(data), source)

    def test_unknown_trap_is_other_with_numeric_oids(self) -> None:
        """An unmapped notification becomes class ``other`` with every varbind kept."""
        vb = VarBind("1.3.6.1.4.1.9.9.41.1.2.3.1.5.7", "OctetString", b"\x00\x01binary")
        event = self._event(_v2c("1.3.6.1.4.1.9.9.41.2.0.1", vb))
        assert event.event_class == "other"
        assert event.target == "127.0.0.9"
        assert event.subject == "sensory.snmp.trap.other.127%2E0%2E0%2E9"
        assert event.payload["trap_oid"] == "1.3.6.1.4.1.9.9.41.2.0.1"
        assert event.payload["varbinds"] == [
            {"oid": vb.oid, "type": "OctetString", "value": "000162696e617279", "encoding": "hex"}
        ]
        json.dumps(dict(event.payload))

    def test_overlong_interface_name_still_publishable(self) -> None:
        """An ifName whose escaped token would break the subject limit is shortened, kept unique."""
        names = ("\u3000" * 255, "\u3000" * 254 + "x")  # 255 ideographic spaces: 9 chars each
        events = [
            self._event(_v2c("1.3.6.1.6.3.1.1.5.3", VarBind(_IF_NAME, "OctetString", n.encode())))
            for n in names
        ]
        for name, event in zip(names, events, strict=True):
            validate_subject(event.subject)
            assert event.payload["if_name"] == name
            assert event.interface is not None
            assert event.interface.startswith("\u3000" * 48 + "~")
        assert events[0].subject != events[1].subject
        short = self._event(_v2c("1.3.6.1.6.3.1.1.5.3", VarBind(_IF_NAME, "OctetString", b"Gi 1")))
        assert short.interface == "Gi 1"

    def test_link_interface_fallbacks(self) -> None:
        """Interface is ifName, else ifDescr, else ``ifIndex=N`` (from value or instance)."""
        descr = VarBind("1.3.6.1.2.1.2.2.1.2.5", "OctetString", b"Ethernet5")
        event = self._event(_v2c("1.3.6.1.6.3.1.1.5.3", descr))
        assert (event.interface, event.payload["if_index"]) == ("Ethernet5", 5)
        oper = VarBind("1.3.6.1.2.1.2.2.1.8.12", "Integer", 2)
        event = self._event(_v2c("1.3.6.1.6.3.1.1.5.4", oper))
        assert event.interface == "ifIndex=12"
        assert event.target == "127.0.0.9|ifIndex=12"
        event = self._event(_v2c("1.3.6.1.6.3.1.1.5.3"))
        assert (event.interface, event.target) == (None, "127.0.0.9")

    @pytest.mark.parametrize(
        ("state", "prev", "event_class"),
        [(6, 5, "bgp_established"), (1, 6, "bgp_backward_transition"), (3, 2, "other")],
    )
    def test_cisco_fsm_state_change(self, state: int, prev: int, event_class: str) -> None:
        """cbgpPeer2FsmStateChange is established, backward, or other by its states."""
        idx = "1.4.198.51.100.7"
        event = self._event(
            _v2c(
                "1.3.6.1.4.1.9.9.187.0.7",
                VarBind(f"1.3.6.1.4.1.9.9.187.1.2.5.1.3.{idx}", "Integer", state),
                VarBind(f"1.3.6.1.4.1.9.9.187.1.2.5.1.29.{idx}", "Integer", prev),
            )
        )
        assert event.event_class == event_class
        assert event.peer == "198.51.100.7"

    def test_old_cisco_fsm_change_peer_from_suffix(self) -> None:
        """cbgpFsmStateChange takes the peer from the bgpPeerTable instance suffix."""
        event = self._event(
            _v2c(
                "1.3.6.1.4.1.9.9.187.0.1",
                VarBind("1.3.6.1.2.1.15.3.1.2.192.0.2.99", "Integer", 6),
            )
        )
        assert (event.event_class, event.peer) == ("bgp_established", "192.0.2.99")

    def test_ipv6z_and_bad_index(self) -> None:
        """ipv6z indexes keep their zone; an inconsistent index yields no peer."""
        octets = ".".join(str(b) for b in bytes.fromhex("fe800000000000000000000000000001"))
        event = self._event(
            _v2c(
                "1.3.6.1.4.1.9.9.187.0.6",
                VarBind(f"1.3.6.1.4.1.9.9.187.1.2.5.1.3.4.20.{octets}.0.0.0.3", "Integer", 1),
            )
        )
        assert event.peer == "fe80::1%3"
        event = self._event(
            _v2c(
                "1.3.6.1.4.1.9.9.187.0.6",
                VarBind("1.3.6.1.4.1.9.9.187.1.2.5.1.3.1.4.300.1.1", "Integer", 1),
            )
        )
        assert event.peer is None
        assert event.target == "127.0.0.9"

    def test_v1_agent_addr_and_zero_agent(self) -> None:
        """v1 agent-addr names the agent unless it is 0.0.0.0."""
        event = self._event(_v1("1.3.6.1.4.1.9", 0, 0))
        assert event.agent == "192.0.2.7"
        event = self._event(_v1("1.3.6.1.4.1.9", 0, 0, agent="0.0.0.0"))
        assert event.agent == "127.0.0.9"
