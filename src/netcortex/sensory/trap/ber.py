"""Sensory / trap: a small hand-written BER codec for SNMP messages (stdlib + errors only).

Decodes exactly the SNMP grammar (RFC 3416 PDUs inside v1/v2c community messages or
the SNMPv3 message of RFC 3412 with USM parameters of RFC 3414) — not general ASN.1.
Because the grammar is fixed there is no recursion: a constructed value where a
scalar belongs is rejected, so nesting depth is bounded by construction. Every read
is bounds-checked against its enclosing TLV; any truncation, overrun, bad length,
unknown tag or trailing garbage raises ``netcortex.errors.DecodeError`` — never
``IndexError`` or ``ValueError``.

The encoder is the minimum needed to answer informs (a Response PDU) and to build
test and benchmark packets; ``decode_message(encode_message(m)) == m`` holds.

Why hand-written: the general ASN.1 stacks cost ~450 µs per trap (LIMITS.md); this
decoder costs a few µs on the hot v1/v2c path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, NamedTuple, TypeAlias

from netcortex.errors import DecodeError

__all__ = [
    "GET_BULK",
    "GET_NEXT_REQUEST",
    "GET_REQUEST",
    "INFORM_REQUEST",
    "REPORT",
    "RESPONSE",
    "SET_REQUEST",
    "SNMPV2_TRAP",
    "TRAP_V1",
    "Message",
    "Pdu",
    "UsmHeader",
    "Value",
    "VarBind",
    "decode_message",
    "decode_scoped_pdu",
    "encode_message",
    "encode_oid",
    "encode_pdu",
    "encode_response",
    "encode_tlv",
    "encode_value",
    "encode_varbinds",
]

# Universal and SNMP application tags.
_INTEGER: Final = 0x02
_OCTET_STRING: Final = 0x04
_NULL: Final = 0x05
_OID: Final = 0x06
_SEQUENCE: Final = 0x30
_IP_ADDRESS: Final = 0x40
_COUNTER32: Final = 0x41
_GAUGE32: Final = 0x42
_TIMETICKS: Final = 0x43
_OPAQUE: Final = 0x44
_NSAP: Final = 0x45
_COUNTER64: Final = 0x46
_UINTEGER32: Final = 0x47
_NO_SUCH_OBJECT: Final = 0x80
_NO_SUCH_INSTANCE: Final = 0x81
_END_OF_MIB_VIEW: Final = 0x82

# PDU tags (context-specific, constructed).
GET_REQUEST: Final = 0xA0
GET_NEXT_REQUEST: Final = 0xA1
RESPONSE: Final = 0xA2
SET_REQUEST: Final = 0xA3
TRAP_V1: Final = 0xA4
GET_BULK: Final = 0xA5
INFORM_REQUEST: Final = 0xA6
SNMPV2_TRAP: Final = 0xA7
REPORT: Final = 0xA8
_PDU_TAGS: Final = frozenset(range(0xA0, 0xA9))

#: Type name of each varbind value tag (the ``VarBind.type`` vocabulary).
TYPE_NAMES: Final[dict[int, str]] = {
    _INTEGER: "Integer",
    _OCTET_STRING: "OctetString",
    _NULL: "Null",
    _OID: "ObjectIdentifier",
    _IP_ADDRESS: "IpAddress",
    _COUNTER32: "Counter32",
    _GAUGE32: "Gauge32",
    _TIMETICKS: "TimeTicks",
    _OPAQUE: "Opaque",
    _NSAP: "NsapAddress",
    _COUNTER64: "Counter64",
    _UINTEGER32: "Unsigned32",
    _NO_SUCH_OBJECT: "noSuchObject",
    _NO_SUCH_INSTANCE: "noSuchInstance",
    _END_OF_MIB_VIEW: "endOfMibView",
}
_TAG_BY_NAME: Final[dict[str, int]] = {v: k for k, v in TYPE_NAMES.items()}
_UNSIGNED32: Final = frozenset({_COUNTER32, _GAUGE32, _TIMETICKS, _UINTEGER32})
_EMPTY_TYPES: Final = frozenset({_NULL, _NO_SUCH_OBJECT, _NO_SUCH_INSTANCE, _END_OF_MIB_VIEW})
_BYTES_TYPES: Final = frozenset({_OCTET_STRING, _OPAQUE, _NSAP})

_MAX_INT_OCTETS: Final = 9  # a 64-bit unsigned value plus its leading zero
_MAX_OID_ARCS: Final = 128  # RFC 2578 §3.5 (so an OID is at most 128 * 5 octets)
_MAX_ARC: Final = 0xFFFFFFFF
_MAX_LENGTH_OCTETS: Final = 4

#: A decoded varbind value: int (numbers), bytes (strings), str (OIDs, IpAddress), None.
Value: TypeAlias = int | bytes | str | None


class VarBind(NamedTuple):
    """One variable binding: numeric dotted ``oid``, ``type`` name, decoded ``value``."""

    oid: str
    type: str
    value: Value


@dataclass(slots=True)
class Pdu:
    """A decoded PDU. The v1 Trap-PDU fields are ``None`` for every other PDU type.

    ``raw_varbinds`` is the exact encoded VarBindList (used to echo an inform's
    varbinds in its Response without re-encoding).
    """

    tag: int
    request_id: int = 0
    error_status: int = 0
    error_index: int = 0
    varbinds: list[VarBind] = field(default_factory=list)
    enterprise: str | None = None
    agent_addr: str | None = None
    generic_trap: int | None = None
    specific_trap: int | None = None
    time_stamp: int | None = None
    raw_varbinds: bytes = field(default=b"", repr=False, compare=False)


@dataclass(slots=True)
class UsmHeader:
    """SNMPv3 header data and USM security parameters (RFC 3412 §6, RFC 3414 §2.4).

    ``auth_offset`` is the absolute offset of ``auth_params`` in the whole message
    (HMAC is computed over the message with those octets zeroed). ``scoped_data`` is
    the encrypted ScopedPDU octets when the priv flag is set, else ``b""``.
    """

    msg_id: int
    max_size: int
    flags: int
    security_model: int
    engine_id: bytes
    engine_boots: int
    engine_time: int
    user: bytes
    auth_params: bytes = field(repr=False)
    auth_offset: int
    priv_params: bytes = field(repr=False)
    scoped_data: bytes = field(default=b"", repr=False)
    context_engine_id: bytes = b""
    context_name: bytes = b""


@dataclass(slots=True)
class Message:
    """A decoded SNMP message: ``version`` 0 (v1), 1 (v2c) or 3.

    ``community`` is empty for v3; ``usm`` is set only for v3. ``pdu`` is ``None``
    for a v3 message whose ScopedPDU is still encrypted.
    """

    version: int
    community: bytes = field(default=b"", repr=False)
    pdu: Pdu | None = None
    usm: UsmHeader | None = None


# --------------------------------------------------------------------------- decoding


def _err(what: str, pos: int) -> DecodeError:
    return DecodeError(f"malformed BER: {what} at offset {pos}")


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read one TLV header at ``pos``; return ``(tag, content_start, content_end)``."""
    if pos + 2 > end:
        raise _err("truncated header", pos)
    tag = data[pos]
    n = data[pos + 1]
    start = pos + 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise _err("indefinite length", pos)
        if k > _MAX_LENGTH_OCTETS:
            raise _err("length too long", pos)
        if start + k > end:
            raise _err("truncated length", pos)
        n = int.from_bytes(data[start : start + k], "big")
        start += k
    stop = start + n
    if stop > end:
        raise _err(f"length {n} overruns its container", pos)
    return tag, start, stop


def _expect(data: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    t, s, e = _header(data, pos, end)
    if t != tag:
        raise _err(f"expected {what} (tag 0x{tag:02x}), got tag 0x{t:02x}", pos)
    return s, e


def _int(data: bytes, s: int, e: int) -> int:
    if s == e or e - s > _MAX_INT_OCTETS:
        raise _err(f"integer of {e - s} octets", s)
    return int.from_bytes(data[s:e], "big", signed=True)


def _uint(data: bytes, s: int, e: int, limit: int) -> int:
    if s == e or e - s > _MAX_INT_OCTETS:
        raise _err(f"unsigned of {e - s} octets", s)
    # Unsigned types are two's complement with a leading zero when the top bit is
    # set; some agents omit that zero, so read the octets as unsigned and bound it.
    v = int.from_bytes(data[s:e], "big")
    if v > limit:
        raise _err("unsigned value out of range", s)
    return v


_OID_CACHE: dict[bytes, str] = {}
_HIGH_OCTET: Final = re.compile(rb"[\x80-\xff]")
_OID_CACHE_MAX: Final = 8192


def _first_arcs(first: int) -> str:
    if first < 40:
        return f"0.{first}"
    if first < 80:
        return f"1.{first - 40}"
    return f"2.{first - 80}"


def _arcs(raw: bytes, pos: int) -> list[int]:
    """Sub-identifiers of ``raw`` (base-128, high bit = more octets follow)."""
    arcs: list[int] = []
    v = 0
    for b in raw:
        if b == 0x80 and v == 0:
            # X.690 §8.19.2: a sub-identifier never starts with 0x80. Without this
            # an OID could be padded to the datagram's size (and fill the cache).
            raise _err("non-minimal OID sub-identifier", pos)
        v = (v << 7) | (b & 0x7F)
        if v > _MAX_ARC:
            raise _err("OID sub-identifier too large", pos)
        if b & 0x80:
            continue
        arcs.append(v)
        v = 0
    if raw[-1] & 0x80:
        raise _err("truncated OID sub-identifier", pos)
    return arcs


def _decode_oid_raw(raw: bytes, pos: int) -> str:
    if not raw:
        raise _err("empty OBJECT IDENTIFIER", pos)
    if raw.isascii():  # every sub-identifier fits in one octet: the common case
        if len(raw) >= _MAX_OID_ARCS:
            raise _err("too many OID arcs", pos)
        if len(raw) == 1:
            return _first_arcs(raw[0])
        return _first_arcs(raw[0]) + "." + ".".join(map(str, raw[1:]))
    # Fastest non-trivial case: one-octet arcs then a single multi-octet last arc
    # (a table column plus an instance index above 127).
    j = len(raw) - 1
    if raw[j] < 0x80:
        while j > 1 and raw[j - 1] & 0x80:
            j -= 1
        prefix = raw[:j]
        if j < len(raw) - 1 and prefix.isascii():
            if j + 1 >= _MAX_OID_ARCS or len(raw) - j > 5 or raw[j] == 0x80:
                raise _err("too many OID arcs, sub-identifier too large or non-minimal", pos)
            last = 0
            for b in raw[j:]:
                last = (last << 7) | (b & 0x7F)
            if last > _MAX_ARC:
                raise _err("OID sub-identifier too large", pos)
            head = _OID_CACHE.get(prefix)
            if head is None:
                head = _OID_CACHE[prefix] = _decode_oid_raw(prefix, pos)
            return f"{head}.{last}"
    m = _HIGH_OCTET.search(raw)
    i = m.start() if m is not None else 0
    if i == 0:  # the first (combined) sub-identifier is multi-octet: rare
        arcs = _arcs(raw, pos)
        if len(arcs) >= _MAX_OID_ARCS:
            raise _err("too many OID arcs", pos)
        return _first_arcs(arcs[0]) + "".join(f".{a}" for a in arcs[1:])
    # A one-octet-arc prefix (octet i-1 had no high bit, so it is a complete OID
    # encoding of its own: decoded once and cached — it is usually a table column)
    # followed by a multi-octet tail, typically an instance suffix.
    tail = _arcs(raw[i:], pos + i)
    if i + len(tail) >= _MAX_OID_ARCS:
        raise _err("too many OID arcs", pos)
    prefix = raw[:i]
    head = _OID_CACHE.get(prefix)
    if head is None:
        head = _decode_oid_raw(prefix, pos)
        _OID_CACHE[prefix] = head
    if len(tail) == 1:
        return f"{head}.{tail[0]}"
    return head + "." + ".".join(map(str, tail))


def _oid(data: bytes, s: int, e: int) -> str:
    raw = data[s:e]
    cached = _OID_CACHE.get(raw)
    if cached is not None:
        return cached
    oid = _decode_oid_raw(raw, s)
    if len(_OID_CACHE) >= _OID_CACHE_MAX:
        _OID_CACHE.clear()  # bounded: a flood of distinct OIDs only costs the cache
    _OID_CACHE[raw] = oid
    return oid


def _value(data: bytes, tag: int, s: int, e: int) -> Value:
    if tag == _INTEGER:
        return _int(data, s, e)
    if tag in _BYTES_TYPES:
        return data[s:e]
    if tag == _OID:
        return _oid(data, s, e)
    if tag in _UNSIGNED32:
        return _uint(data, s, e, 0xFFFFFFFF)
    if tag == _IP_ADDRESS:
        if e - s != 4:
            raise _err(f"IpAddress of {e - s} octets", s)
        return f"{data[s]}.{data[s + 1]}.{data[s + 2]}.{data[s + 3]}"
    if tag == _COUNTER64:
        return _uint(data, s, e, 0xFFFFFFFFFFFFFFFF)
    if tag in _EMPTY_TYPES:
        if e != s:
            raise _err("NULL-like value with content", s)
        return None
    raise _err(f"unsupported value type 0x{tag:02x}", s)


def _varbinds(data: bytes, pos: int, end: int) -> list[VarBind]:
    # The hot loop: short-form lengths and the common value types are decoded
    # inline (a function call per TLV costs as much as the decoding itself).
    out: list[VarBind] = []
    append = out.append
    names = TYPE_NAMES
    cache = _OID_CACHE
    new = tuple.__new__
    while pos < end:
        if pos + 2 > end or data[pos] != _SEQUENCE:
            raise _err("varbind is not a SEQUENCE", pos)
        n = data[pos + 1]
        if n < 0x80:
            s = pos + 2
            e = s + n
            if e > end:
                raise _err("varbind overruns the list", pos)
        else:
            _, s, e = _header(data, pos, end)
        if s + 2 > e or data[s] != _OID:
            raise _err("varbind name is not an OBJECT IDENTIFIER", s)
        n = data[s + 1]
        if n < 0x80:
            os_ = s + 2
            oe = os_ + n
            if oe > e:
                raise _err("varbind name overruns the varbind", s)
        else:
            _, os_, oe = _header(data, s, e)
        raw = data[os_:oe]
        oid = cache.get(raw)
        if oid is None:
            oid = _oid(data, os_, oe)
        if oe + 2 > e:
            raise _err("varbind without a value", oe)
        vtag = data[oe]
        n = data[oe + 1]
        if n < 0x80:
            vs = oe + 2
            ve = vs + n
        else:
            _, vs, ve = _header(data, oe, e)
        if ve != e:
            raise _err("varbind value does not end the varbind", oe)
        value: Value
        if vtag == _INTEGER and 0 < n <= _MAX_INT_OCTETS:
            value = int.from_bytes(data[vs:ve], "big", signed=True)
        elif vtag == _OCTET_STRING:
            value = data[vs:ve]
        elif vtag in names:
            value = _value(data, vtag, vs, ve)
        else:
            raise _err(f"unsupported value type 0x{vtag:02x}", oe)
        append(new(VarBind, (oid, names[vtag], value)))
        pos = e
    return out


def _pdu(data: bytes, pos: int, end: int) -> tuple[Pdu, int]:
    """Decode the PDU TLV at ``pos``; return it and the offset after it."""
    tag, s, e = _header(data, pos, end)
    if tag not in _PDU_TAGS:
        raise _err(f"unknown PDU tag 0x{tag:02x}", pos)
    if tag == TRAP_V1:
        es, ee = _expect(data, s, e, _OID, "enterprise")
        enterprise = _oid(data, es, ee)
        as_, ae = _expect(data, ee, e, _IP_ADDRESS, "agent-addr")
        if ae - as_ != 4:
            raise _err("agent-addr is not 4 octets", as_)
        agent = f"{data[as_]}.{data[as_ + 1]}.{data[as_ + 2]}.{data[as_ + 3]}"
        gs, ge = _expect(data, ae, e, _INTEGER, "generic-trap")
        ss, se = _expect(data, ge, e, _INTEGER, "specific-trap")
        ts, te = _expect(data, se, e, _TIMETICKS, "time-stamp")
        vs, ve = _expect(data, te, e, _SEQUENCE, "variable-bindings")
        if ve != e:
            raise _err("trailing octets in Trap-PDU", ve)
        pdu = Pdu(
            tag,
            varbinds=_varbinds(data, vs, ve),
            enterprise=enterprise,
            agent_addr=agent,
            generic_trap=_int(data, gs, ge),
            specific_trap=_int(data, ss, se),
            time_stamp=_uint(data, ts, te, 0xFFFFFFFF),
            raw_varbinds=data[te:ve],
        )
        return pdu, e
    rs, re_ = _expect(data, s, e, _INTEGER, "request-id")
    xs, xe = _expect(data, re_, e, _INTEGER, "error-status")
    is_, ie = _expect(data, xe, e, _INTEGER, "error-index")
    vs, ve = _expect(data, ie, e, _SEQUENCE, "variable-bindings")
    if ve != e:
        raise _err("trailing octets in PDU", ve)
    pdu = Pdu(
        tag,
        request_id=_int(data, rs, re_),
        error_status=_int(data, xs, xe),
        error_index=_int(data, is_, ie),
        varbinds=_varbinds(data, vs, ve),
        raw_varbinds=data[ie:ve],
    )
    return pdu, e


def decode_scoped_pdu(data: bytes, *, allow_trailing: bool = False) -> tuple[bytes, bytes, Pdu]:
    """Decode a ScopedPDU; return ``(context_engine_id, context_name, pdu)``.

    ``allow_trailing`` ignores octets after the SEQUENCE (block-cipher padding of a
    decrypted DES ScopedPDU, RFC 3414 §8.1.1.3).

    Raises:
        DecodeError: the octets are not a well-formed ScopedPDU.
    """
    s, e = _expect(data, 0, len(data), _SEQUENCE, "ScopedPDU")
    if e != len(data) and not allow_trailing:
        raise _err("trailing octets after ScopedPDU", e)
    cs, ce = _expect(data, s, e, _OCTET_STRING, "contextEngineID")
    ns, ne = _expect(data, ce, e, _OCTET_STRING, "contextName")
    pdu, after = _pdu(data, ne, e)
    if after != e:
        raise _err("trailing octets in ScopedPDU", after)
    return data[cs:ce], data[ns:ne], pdu


def _usm_header(data: bytes, pos: int, end: int) -> tuple[UsmHeader, int]:
    hs, he = _expect(data, pos, end, _SEQUENCE, "msgGlobalData")
    ms, me = _expect(data, hs, he, _INTEGER, "msgID")
    xs, xe = _expect(data, me, he, _INTEGER, "msgMaxSize")
    fs, fe = _expect(data, xe, he, _OCTET_STRING, "msgFlags")
    if fe - fs != 1:
        raise _err("msgFlags is not one octet", fs)
    ss, se = _expect(data, fe, he, _INTEGER, "msgSecurityModel")
    if se != he:
        raise _err("trailing octets in msgGlobalData", se)
    model = _int(data, ss, se)
    if model != 3:
        raise DecodeError(
            f"security model {model} is not supported (only USM, 3)",
            reason="unsupported_security_model",
        )
    # msgSecurityParameters: an OCTET STRING whose content is the BER of
    # UsmSecurityParameters; offsets stay absolute so the HMAC can zero authParams.
    ps, pe = _expect(data, he, end, _OCTET_STRING, "msgSecurityParameters")
    us, ue = _expect(data, ps, pe, _SEQUENCE, "UsmSecurityParameters")
    if ue != pe:
        raise _err("trailing octets in msgSecurityParameters", ue)
    es, ee = _expect(data, us, ue, _OCTET_STRING, "msgAuthoritativeEngineID")
    bs, be = _expect(data, ee, ue, _INTEGER, "msgAuthoritativeEngineBoots")
    ts, te = _expect(data, be, ue, _INTEGER, "msgAuthoritativeEngineTime")
    ns, ne = _expect(data, te, ue, _OCTET_STRING, "msgUserName")
    as_, ae = _expect(data, ne, ue, _OCTET_STRING, "msgAuthenticationParameters")
    vs, ve = _expect(data, ae, ue, _OCTET_STRING, "msgPrivacyParameters")
    if ve != ue:
        raise _err("trailing octets in UsmSecurityParameters", ve)
    usm = UsmHeader(
        msg_id=_int(data, ms, me),
        max_size=_int(data, xs, xe),
        flags=data[fs],
        security_model=model,
        engine_id=data[es:ee],
        engine_boots=_int(data, bs, be),
        engine_time=_int(data, ts, te),
        user=data[ns:ne],
        auth_params=data[as_:ae],
        auth_offset=as_,
        priv_params=data[vs:ve],
    )
    return usm, pe


def decode_message(data: bytes) -> Message:
    """Decode one SNMP message (v1, v2c or v3).

    For v3 the ScopedPDU is decoded when it is plaintext; when the priv flag is set
    its encrypted octets are left in ``usm.scoped_data`` and ``pdu`` is ``None``
    (``usm.UsmSecurity`` decrypts and calls ``decode_scoped_pdu``).

    Raises:
        DecodeError: not a well-formed SNMP message (reason ``malformed``), an
            unknown version (``unsupported_version``) or a non-USM v3 security
            model (``unsupported_security_model``).
    """
    end = len(data)
    s, e = _expect(data, 0, end, _SEQUENCE, "Message")
    if e != end:
        raise _err("trailing octets after Message", e)
    vs, ve = _expect(data, s, e, _INTEGER, "version")
    version = _int(data, vs, ve)
    if version in (0, 1):
        cs, ce = _expect(data, ve, e, _OCTET_STRING, "community")
        pdu, after = _pdu(data, ce, e)
        if after != e:
            raise _err("trailing octets in Message", after)
        return Message(version, data[cs:ce], pdu)
    if version != 3:
        raise DecodeError(f"SNMP version {version} is not supported", reason="unsupported_version")
    usm, pos = _usm_header(data, ve, e)
    tag, ds, de = _header(data, pos, e)
    if de != e:
        raise _err("trailing octets in Message", de)
    if usm.flags & 0x02:
        if tag != _OCTET_STRING:
            raise _err("priv flag set but msgData is not encryptedPDU", pos)
        usm.scoped_data = data[ds:de]
        return Message(3, b"", None, usm)
    if tag != _SEQUENCE:
        raise _err("msgData is not a plaintext ScopedPDU", pos)
    ctx_engine, ctx_name, pdu = decode_scoped_pdu(data[pos:de])
    usm.context_engine_id, usm.context_name = ctx_engine, ctx_name
    return Message(3, b"", pdu, usm)


# --------------------------------------------------------------------------- encoding


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def encode_tlv(tag: int, body: bytes) -> bytes:
    """Encode one TLV with the shortest length form."""
    return bytes((tag,)) + _length(len(body)) + body


def _signed(v: int) -> bytes:
    return v.to_bytes(max(1, (v + (v < 0)).bit_length() // 8 + 1), "big", signed=True)


def _unsigned(v: int, limit: int) -> bytes:
    if not 0 <= v <= limit:
        raise ValueError(f"unsigned value {v} out of range")
    return v.to_bytes(v.bit_length() // 8 + 1, "big")


def encode_oid(oid: str) -> bytes:
    """Encode a dotted OID (``"1.3.6.1..."``) as an OBJECT IDENTIFIER TLV.

    Raises:
        ValueError: fewer than two arcs, a bad first/second arc, or a non-number.
    """
    arcs = [int(a) for a in oid.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise ValueError(f"invalid OID {oid!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return encode_tlv(_OID, bytes(out))


def encode_value(type_name: str, value: Value) -> bytes:
    """Encode one varbind value of ``type_name`` (a ``TYPE_NAMES`` value).

    Raises:
        ValueError: unknown type, or a value that does not fit the type.
    """
    tag = _TAG_BY_NAME.get(type_name)
    if tag is None:
        raise ValueError(f"unknown SNMP type {type_name!r}")
    if tag == _INTEGER and isinstance(value, int):
        return encode_tlv(tag, _signed(value))
    if tag in _BYTES_TYPES and isinstance(value, bytes):
        return encode_tlv(tag, value)
    if tag == _OID and isinstance(value, str):
        return encode_oid(value)
    if tag in _UNSIGNED32 and isinstance(value, int):
        return encode_tlv(tag, _unsigned(value, 0xFFFFFFFF))
    if tag == _COUNTER64 and isinstance(value, int):
        return encode_tlv(tag, _unsigned(value, 0xFFFFFFFFFFFFFFFF))
    if tag == _IP_ADDRESS and isinstance(value, str):
        return encode_tlv(tag, bytes(int(x) for x in value.split(".")))
    if tag in _EMPTY_TYPES and value is None:
        return encode_tlv(tag, b"")
    raise ValueError(f"value {value!r} does not fit type {type_name}")


def encode_varbinds(varbinds: list[VarBind] | tuple[VarBind, ...]) -> bytes:
    """Encode a VarBindList SEQUENCE."""
    body = b"".join(
        encode_tlv(_SEQUENCE, encode_oid(vb.oid) + encode_value(vb.type, vb.value))
        for vb in varbinds
    )
    return encode_tlv(_SEQUENCE, body)


def encode_pdu(pdu: Pdu) -> bytes:
    """Encode a PDU (any tag; the v1 Trap-PDU uses its own fields)."""
    vbl = encode_varbinds(pdu.varbinds)
    if pdu.tag == TRAP_V1:
        body = (
            encode_oid(pdu.enterprise or "0.0")
            + encode_value("IpAddress", pdu.agent_addr or "0.0.0.0")
            + encode_tlv(_INTEGER, _signed(pdu.generic_trap or 0))
            + encode_tlv(_INTEGER, _signed(pdu.specific_trap or 0))
            + encode_value("TimeTicks", pdu.time_stamp or 0)
            + vbl
        )
    else:
        body = (
            encode_tlv(_INTEGER, _signed(pdu.request_id))
            + encode_tlv(_INTEGER, _signed(pdu.error_status))
            + encode_tlv(_INTEGER, _signed(pdu.error_index))
            + vbl
        )
    return encode_tlv(pdu.tag, body)


def encode_message(message: Message) -> bytes:
    """Encode a v1/v2c community message.

    Raises:
        ValueError: a v3 message or one without a PDU (USM encoding is not needed
            by a trap receiver).
    """
    if message.version not in (0, 1) or message.pdu is None:
        raise ValueError("only v1/v2c messages with a PDU can be encoded")
    return encode_tlv(
        _SEQUENCE,
        encode_tlv(_INTEGER, _signed(message.version))
        + encode_tlv(_OCTET_STRING, message.community)
        + encode_pdu(message.pdu),
    )


def encode_response(version: int, community: bytes, request_id: int, raw_varbinds: bytes) -> bytes:
    """Encode the v2c Response to an InformRequest: same request-id, no error, and
    the inform's VarBindList echoed byte for byte (RFC 3416 §4.2.7)."""
    body = (
        encode_tlv(_INTEGER, _signed(request_id))
        + b"\x02\x01\x00\x02\x01\x00"  # error-status 0, error-index 0
        + raw_varbinds
    )
    return encode_tlv(
        _SEQUENCE,
        encode_tlv(_INTEGER, _signed(version))
        + encode_tlv(_OCTET_STRING, community)
        + encode_tlv(RESPONSE, body),
    )
