"""The hand-written BER codec: exact decoding, strict bounds, round trips, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netcortex.errors import DecodeError
from netcortex.sensory.trap import ber
from netcortex.sensory.trap.ber import Message, Pdu, VarBind
from tests.unit.sensory.trap import _seeds

_FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SEEDS = [
    _seeds.V1_LINKDOWN,
    _seeds.V2C_CBGP6,
    _seeds.V3_AES_LINKDOWN,
    _seeds.V3_MD5DES,
    _seeds.V3_AUTHONLY,
]


class TestDecode:
    """Decoding real net-snmp datagrams."""

    def test_v1_trap_pdu(self) -> None:
        """A v1 Trap-PDU yields enterprise, agent-addr, trap numbers and varbinds."""
        msg = ber.decode_message(_seeds.V1_LINKDOWN)
        assert msg.version == 0
        assert msg.community == b"public"
        pdu = msg.pdu
        assert pdu is not None
        assert pdu.tag == ber.TRAP_V1
        assert pdu.enterprise == "1.3.6.1.4.1.8072.3.2.10"
        assert pdu.agent_addr == "192.0.2.11"
        assert (pdu.generic_trap, pdu.specific_trap, pdu.time_stamp) == (2, 0, 360000)
        assert pdu.varbinds[0] == VarBind("1.3.6.1.2.1.2.2.1.1.3", "Integer", 3)
        assert pdu.varbinds[-1] == VarBind("1.3.6.1.2.1.31.1.1.1.1.3", "OctetString", b"Gi1/0/3")

    def test_v2c_multi_octet_oid_arcs(self) -> None:
        """Sub-identifiers above 127 (IPv6 index octets) decode exactly."""
        msg = ber.decode_message(_seeds.V2C_CBGP6)
        assert msg.pdu is not None
        oids = [vb.oid for vb in msg.pdu.varbinds]
        assert oids[1] == "1.3.6.1.6.3.1.1.4.1.0"
        assert oids[2] == "1.3.6.1.4.1.9.9.187.1.2.5.1.17.2.16.32.1.13.184.0.0.0.9.0.0.0.0.0.0.0.1"
        assert msg.pdu.varbinds[2].value == b"\x04\x00"

    def test_v3_encrypted_left_for_usm(self) -> None:
        """A v3 authPriv message exposes its USM header and keeps the ScopedPDU encrypted."""
        msg = ber.decode_message(_seeds.V3_AES_LINKDOWN)
        assert msg.version == 3
        assert msg.pdu is None
        assert msg.usm is not None
        assert msg.usm.engine_id == bytes.fromhex("80001f880472312d6c6162")
        assert msg.usm.user == b"netcortex"
        assert msg.usm.flags & 0x03 == 0x03
        assert len(msg.usm.auth_params) == 24
        raw = _seeds.V3_AES_LINKDOWN
        off = msg.usm.auth_offset
        assert raw[off : off + 24] == msg.usm.auth_params
        assert msg.usm.scoped_data

    def test_v3_plaintext_scoped_pdu(self) -> None:
        """A v3 authNoPriv message has its ScopedPDU decoded directly."""
        msg = ber.decode_message(_seeds.V3_AUTHONLY)
        assert msg.pdu is not None
        assert msg.pdu.tag == ber.SNMPV2_TRAP
        assert msg.pdu.varbinds[1].value == "1.3.6.1.6.3.1.1.5.2"

    def test_every_value_type(self) -> None:
        """Each SNMP value type decodes to its Python form."""
        vbs = [
            VarBind("1.3.6.1.2.1.1.3.0", "TimeTicks", 4294967295),
            VarBind("1.3.6.1.4.1.1.1", "Integer", -2147483648),
            VarBind("1.3.6.1.4.1.1.2", "OctetString", b"\x00\xff"),
            VarBind("1.3.6.1.4.1.1.3", "Null", None),
            VarBind("1.3.6.1.4.1.1.4", "ObjectIdentifier", "2.999.1"),
            VarBind("1.3.6.1.4.1.1.5", "IpAddress", "10.0.0.255"),
            VarBind("1.3.6.1.4.1.1.6", "Counter32", 4294967295),
            VarBind("1.3.6.1.4.1.1.7", "Gauge32", 0),
            VarBind("1.3.6.1.4.1.1.8", "Opaque", b"\x9f\x78\x04"),
            VarBind("1.3.6.1.4.1.1.9", "Counter64", 18446744073709551615),
            VarBind("1.3.6.1.4.1.1.10", "Unsigned32", 7),
            VarBind("1.3.6.1.4.1.1.11", "noSuchObject", None),
            VarBind("1.3.6.1.4.1.1.12", "noSuchInstance", None),
            VarBind("1.3.6.1.4.1.1.13", "endOfMibView", None),
            VarBind("0.0", "NsapAddress", b"\x01"),
        ]
        for tag in (ber.SNMPV2_TRAP, ber.INFORM_REQUEST, ber.RESPONSE, ber.REPORT):
            msg = Message(1, b"c", Pdu(tag, request_id=-5, varbinds=vbs))
            assert ber.decode_message(ber.encode_message(msg)) == msg

    def test_unsigned_without_leading_zero_is_accepted(self) -> None:
        """A Counter32 sent without its leading zero octet reads as unsigned."""
        body = ber.encode_oid("1.3.6.1") + b"\x41\x04\xff\xff\xff\xff"
        vbl = ber.encode_tlv(0x30, ber.encode_tlv(0x30, body))
        pdu = ber.encode_tlv(0xA7, b"\x02\x01\x01\x02\x01\x00\x02\x01\x00" + vbl)
        data = ber.encode_tlv(0x30, b"\x02\x01\x01\x04\x01c" + pdu)
        msg = ber.decode_message(data)
        assert msg.pdu is not None
        assert msg.pdu.varbinds[0].value == 0xFFFFFFFF

    def test_response_echoes_inform_varbinds(self) -> None:
        """The inform Response carries the same request-id and the same VarBindList octets."""
        vbs = [VarBind("1.3.6.1.2.1.1.3.0", "TimeTicks", 1)]
        inform = ber.decode_message(
            ber.encode_message(Message(1, b"pub", Pdu(ber.INFORM_REQUEST, 42, varbinds=vbs)))
        )
        assert inform.pdu is not None
        raw = ber.encode_response(1, b"pub", 42, inform.pdu.raw_varbinds)
        resp = ber.decode_message(raw)
        assert resp.pdu == Pdu(ber.RESPONSE, 42, varbinds=vbs)
        assert resp.community == b"pub"


def _msg(pdu_body: bytes, tag: int = 0xA7) -> bytes:
    return ber.encode_tlv(0x30, b"\x02\x01\x01\x04\x01c" + ber.encode_tlv(tag, pdu_body))


_HDR = b"\x02\x01\x01\x02\x01\x00\x02\x01\x00"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x30", id="one-octet"),
        pytest.param(bytes.fromhex("3082ffff020101"), id="length-overruns"),
        pytest.param(bytes.fromhex("3080020101"), id="indefinite-length"),
        pytest.param(bytes.fromhex("3085000000000102"), id="length-of-length-5"),
        pytest.param(bytes.fromhex("30030201"), id="truncated-integer"),
        pytest.param(bytes.fromhex("3003020101") + b"\x00", id="trailing-octet"),
        pytest.param(bytes.fromhex("300302010104"), id="trailing-in-message"),
        pytest.param(bytes.fromhex("30020200"), id="empty-integer"),
        pytest.param(bytes.fromhex("300c020a") + bytes(10), id="integer-too-long"),
        pytest.param(_msg(_HDR + b"\x30\x04\x30\x02\x06\x00"), id="empty-oid"),
        pytest.param(_msg(_HDR + b"\x30\x06\x30\x04\x06\x02\x2b\x86"), id="oid-cut-arc"),
        pytest.param(_msg(_HDR + b"\x30\x05\x30\x03\x06\x01\x2b"), id="varbind-no-value"),
        pytest.param(_msg(_HDR + b"\x30\x03\x02\x01\x00"), id="varbind-not-sequence"),
        pytest.param(
            _msg(_HDR + b"\x30\x09\x30\x07\x06\x01\x2b\x40\x02\x01\x02"), id="ipaddress-2-octets"
        ),
        pytest.param(
            _msg(_HDR + b"\x30\x08\x30\x06\x06\x01\x2b\x05\x01\x00"), id="null-with-content"
        ),
        pytest.param(
            _msg(_HDR + b"\x30\x08\x30\x06\x06\x01\x2b\x99\x01\x00"), id="unknown-value-tag"
        ),
        pytest.param(
            _msg(_HDR + b"\x30\x0c\x30\x0a\x06\x01\x2b\x30\x05\x30\x03\x30\x01\x00"),
            id="nested-constructed-value",
        ),
        pytest.param(
            _msg(_HDR + b"\x30\x0c\x30\x0a\x06\x01\x2b\x41\x05\x01\x00\x00\x00\x00"),
            id="counter32-overflow",
        ),
        pytest.param(
            _msg(_HDR + b"\x30\x84" + (1 << 30).to_bytes(4, "big")), id="huge-varbind-length"
        ),
        pytest.param(_msg(_HDR + b"\x30\x00", tag=0xA9), id="unknown-pdu-tag"),
        pytest.param(_msg(b"\x02\x01\x01\x30\x00"), id="pdu-missing-fields"),
        pytest.param(_msg(_HDR + b"\x30\x00" + b"\x05\x00"), id="trailing-in-pdu"),
        pytest.param(
            _msg(
                _HDR
                + ber.encode_tlv(
                    0x30,
                    ber.encode_tlv(
                        0x30, ber.encode_tlv(0x06, b"\x2b" + b"\x01" * 130) + b"\x05\x00"
                    ),
                )
            ),
            id="oid-too-many-arcs",
        ),
        pytest.param(
            _msg(
                _HDR
                + ber.encode_tlv(
                    0x30, ber.encode_tlv(0x30, b"\x06\x06\x2b\x90\x80\x80\x80\x01\x05\x00")
                )
            ),
            id="oid-arc-over-32-bits",
        ),
        pytest.param(
            _msg(_HDR + b"\x30\x09\x30\x07\x06\x03\x2b\x80\x01\x05\x00"), id="oid-0x80-last-arc"
        ),
        pytest.param(
            _msg(_HDR + b"\x30\x09\x30\x07\x06\x03\x80\x2b\x05\x05\x00"), id="oid-0x80-first-arc"
        ),
        pytest.param(
            _msg(
                _HDR
                + ber.encode_tlv(
                    0x30,
                    ber.encode_tlv(
                        0x30,
                        ber.encode_tlv(0x06, b"\x2b" + b"\x80" * 4000 + b"\x01\x05") + b"\x05\x00",
                    ),
                )
            ),
            id="oid-padded-to-4k-octets",
        ),
    ],
)
def test_malformed_raises_decode_error(data: bytes) -> None:
    """Every truncation, overrun, bad length or bad type raises ``DecodeError`` (malformed)."""
    with pytest.raises(DecodeError) as info:
        ber.decode_message(data)
    assert info.value.reason == "malformed"


def test_unknown_version_and_security_model() -> None:
    """Version 2 (v2u) and a non-USM v3 security model get their own reasons."""
    with pytest.raises(DecodeError) as info:
        ber.decode_message(bytes.fromhex("3003020102"))
    assert info.value.reason == "unsupported_version"
    v3 = bytearray(_seeds.V3_AUTHONLY)
    # msgSecurityModel is the last INTEGER of msgGlobalData: 02 01 03 right before 04 <len> 30
    i = v3.index(b"\x02\x01\x03\x04")
    v3[i + 2] = 0x02
    with pytest.raises(DecodeError) as info:
        ber.decode_message(bytes(v3))
    assert info.value.reason == "unsupported_security_model"


def test_oid_encoding_rejects_nonsense() -> None:
    """The encoder refuses OIDs that BER cannot express."""
    for bad in ("1", "3.1", "1.40", "1.-2"):
        with pytest.raises(ValueError, match="invalid OID"):
            ber.encode_oid(bad)


# --------------------------------------------------------------------------- properties

_arc = st.integers(min_value=0, max_value=0xFFFFFFFF)
_oids = st.builds(
    lambda first, second, rest: ".".join(map(str, [first, second, *rest])),
    st.integers(0, 2),
    st.integers(0, 39),
    st.lists(_arc, min_size=0, max_size=20),
)
_values = st.one_of(
    st.tuples(st.just("Integer"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("OctetString"), st.binary(max_size=300)),
    st.tuples(st.just("Null"), st.none()),
    st.tuples(st.just("ObjectIdentifier"), _oids),
    st.tuples(st.just("IpAddress"), st.ip_addresses(v=4).map(str)),
    st.tuples(st.sampled_from(["Counter32", "Gauge32", "TimeTicks", "Unsigned32"]), _arc),
    st.tuples(st.just("Counter64"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("Opaque"), st.binary(max_size=20)),
    st.tuples(st.sampled_from(["noSuchObject", "noSuchInstance", "endOfMibView"]), st.none()),
)
_varbinds = st.lists(
    st.builds(lambda oid, tv: VarBind(oid, tv[0], tv[1]), _oids, _values), max_size=12
)
_int32 = st.integers(-(2**31), 2**31 - 1)
_v2_pdus = st.builds(
    Pdu,
    st.sampled_from([0xA0, 0xA1, 0xA2, 0xA3, 0xA5, 0xA6, 0xA7, 0xA8]),
    _int32,
    st.integers(0, 18),
    st.integers(0, 100),
    _varbinds,
)
_v1_pdus = st.builds(
    lambda ent, agent, g, s, t, vbs: Pdu(
        0xA4,
        varbinds=vbs,
        enterprise=ent,
        agent_addr=agent,
        generic_trap=g,
        specific_trap=s,
        time_stamp=t,
    ),
    _oids,
    st.ip_addresses(v=4).map(str),
    st.integers(0, 6),
    _int32,
    _arc,
    _varbinds,
)
_messages = st.builds(
    Message, st.sampled_from([0, 1]), st.binary(max_size=40), st.one_of(_v1_pdus, _v2_pdus)
)


@_FUZZ
@given(_messages)
def test_round_trip(message: Message) -> None:
    """``decode_message(encode_message(m)) == m`` for every well-formed v1/v2c message."""
    assert ber.decode_message(ber.encode_message(message)) == message


@_FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    """Arbitrary bytes either decode or raise ``DecodeError`` — never anything else."""
    with contextlib.suppress(DecodeError):
        ber.decode_message(data)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        i = draw(st.integers(0, len(data) - 1)) if data else 0
        if not data:
            break
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xFF]))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[i : i + draw(st.integers(1, 8))]
    return bytes(data)


@_FUZZ
@given(_mutated())
def test_mutated_packets_only_raise_decode_error(data: bytes) -> None:
    """Bit flips, cuts and insertions in real packets decode or raise ``DecodeError``."""
    with contextlib.suppress(DecodeError):
        ber.decode_message(data)
