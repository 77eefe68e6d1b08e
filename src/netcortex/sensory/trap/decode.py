"""Sensory / trap: datagram → ``Notification`` (size, BER, community or USM, RFC 3584).

``TrapDecoder.decode`` is the whole security and syntax boundary of the receiver:
it rejects oversized datagrams, non-SNMP bytes, unknown communities (compared in
constant time), v3 messages that fail USM, and PDUs that are not notifications —
each with an ``IngestError`` whose ``reason`` labels ``netcortex_rejected_total``.
A v1 Trap-PDU is translated to the SNMPv2 form (RFC 3584 §3.1) while keeping its
enterprise, agent-addr and trap numbers as fields of their own.

The community never leaves this module: a v2c inform's Response is built here.
Imports: stdlib, netcortex.config/errors, the sibling ``ber`` and ``usm`` modules.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Final

from netcortex.config import TrapConfig
from netcortex.errors import AuthenticationError, DecodeError, PayloadTooLarge
from netcortex.sensory.trap.ber import (
    INFORM_REQUEST,
    SNMPV2_TRAP,
    TRAP_V1,
    Message,
    Pdu,
    VarBind,
    decode_message,
    encode_response,
)
from netcortex.sensory.trap.usm import LEVELS, UsmSecurity

__all__ = ["SNMP_TRAP_OID", "SYS_UPTIME", "Notification", "TrapDecoder"]

SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID: Final = "1.3.6.1.6.3.1.1.4.1.0"
_GENERIC_TRAPS: Final = "1.3.6.1.6.3.1.1.5."  # RFC 3584 §3.1 (2): generic + 1
_VERSIONS: Final = {0: "v1", 1: "v2c", 3: "v3"}
_PDU_NAMES: Final = {TRAP_V1: "trap", SNMPV2_TRAP: "snmpv2_trap", INFORM_REQUEST: "inform"}
_OTHER_PDU_NAMES: Final = {
    0xA0: "get",
    0xA1: "getnext",
    0xA2: "response",
    0xA3: "set",
    0xA5: "getbulk",
    0xA8: "report",
}


@dataclass(frozen=True, slots=True)
class Notification:
    """One accepted SNMP notification, in SNMPv2 form.

    Attributes:
        version: ``"v1"``, ``"v2c"`` or ``"v3"``.
        pdu_type: ``"trap"`` (v1), ``"snmpv2_trap"`` or ``"inform"``.
        request_id: the PDU's request-id (0 for v1).
        trap_oid: snmpTrapOID.0 (translated for v1).
        uptime: sysUpTime.0 in TimeTicks (the v1 time-stamp), ``None`` if absent.
        varbinds: the varbinds after sysUpTime.0 and snmpTrapOID.0.
        user, engine_id, security_level: v3 only (engine ID as ``0x...`` hex).
        enterprise, agent_addr, generic_trap, specific_trap: v1 only.
        response: the encoded Response for a v2c inform (never printed).
    """

    version: str
    pdu_type: str
    request_id: int
    trap_oid: str
    uptime: int | None
    varbinds: tuple[VarBind, ...]
    user: str | None = None
    engine_id: str | None = None
    security_level: str | None = None
    enterprise: str | None = None
    agent_addr: str | None = None
    generic_trap: int | None = None
    specific_trap: int | None = None
    response: bytes | None = field(default=None, repr=False)


def _v1_trap_oid(pdu: Pdu) -> str:
    generic = pdu.generic_trap
    if generic is not None and 0 <= generic <= 5:
        return f"{_GENERIC_TRAPS}{generic + 1}"
    # enterpriseSpecific(6) — and, leniently, any other value — is
    # enterprise.0.specific (RFC 3584 §3.1 (2)): specific becomes an OID arc.
    if not 0 <= (pdu.specific_trap or 0) <= 0xFFFFFFFF:
        raise DecodeError(f"v1 specific-trap {pdu.specific_trap} is not a valid OID arc")
    return f"{pdu.enterprise}.0.{pdu.specific_trap}"


class TrapDecoder:
    """Validates, authenticates and decodes trap datagrams; no I/O.

    The only state that changes is the v3 timeliness table (one entry per
    configured engine ID): share one decoder per event loop, not across threads.
    """

    def __init__(self, config: TrapConfig) -> None:
        """Precompute the community list and localise every v3 user's keys.

        An empty ``config.communities`` accepts no v1/v2c traps at all.
        """
        self._communities: tuple[bytes, ...] = tuple(
            c.get_secret_value().encode() for c in config.communities
        )
        self._usm = UsmSecurity(config.v3_users)
        self._max_size = config.max_message_size

    def _check_community(self, community: bytes) -> None:
        ok = False
        for allowed in self._communities:  # no short-circuit: constant time over the list
            ok |= hmac.compare_digest(allowed, community)
        if not ok:
            raise AuthenticationError("community not accepted", reason="bad_community")

    def decode(self, data: bytes) -> Notification:
        """Decode one datagram into a ``Notification``.

        Raises:
            PayloadTooLarge: over ``max_message_size`` (``too_large``).
            DecodeError: not SNMP / bad BER (``malformed``), ``unsupported_version``,
                ``unsupported_security_model``, a PDU that is not a notification
                (``unexpected_pdu``), or a v3 inform (``v3_inform_unsupported``).
            AuthenticationError: ``bad_community``, ``auth_failed``,
                ``not_in_time_window``, ``decrypt_failed``,
                ``insufficient_security_level``, ``unsupported_security_level``.
            UnknownSource: ``unknown_user``, ``unknown_engine_id``.
        """
        if len(data) > self._max_size:
            raise PayloadTooLarge(f"datagram of {len(data)} octets exceeds {self._max_size}")
        message = decode_message(data)
        user = engine_id = level = None
        if message.version == 3:
            entry = self._usm.process(data, message)
            usm = message.usm
            assert usm is not None  # set by decode_message for v3
            user = entry.name.decode(errors="replace")
            engine_id = "0x" + usm.engine_id.hex()
            level = LEVELS[entry.level]
        else:
            self._check_community(message.community)
        pdu = message.pdu
        assert pdu is not None  # v1/v2c always carry one; USM fills it for v3
        return self._notification(message, pdu, user, engine_id, level)

    def _notification(
        self,
        message: Message,
        pdu: Pdu,
        user: str | None,
        engine_id: str | None,
        level: str | None,
    ) -> Notification:
        version = _VERSIONS[message.version]
        tag = pdu.tag
        if message.version == 0:
            if tag != TRAP_V1:
                raise DecodeError(
                    f"v1 {_OTHER_PDU_NAMES.get(tag, hex(tag))} PDU is not a notification",
                    reason="unexpected_pdu",
                )
            return Notification(
                version=version,
                pdu_type="trap",
                request_id=0,
                trap_oid=_v1_trap_oid(pdu),
                uptime=pdu.time_stamp,
                varbinds=tuple(pdu.varbinds),
                enterprise=pdu.enterprise,
                agent_addr=pdu.agent_addr,
                generic_trap=pdu.generic_trap,
                specific_trap=pdu.specific_trap,
            )
        if tag not in (SNMPV2_TRAP, INFORM_REQUEST):
            raise DecodeError(
                f"{version} {_OTHER_PDU_NAMES.get(tag, 'Trap-PDU' if tag == TRAP_V1 else hex(tag))}"
                " PDU is not a notification",
                reason="unexpected_pdu",
            )
        if tag == INFORM_REQUEST and message.version == 3:
            # A v3 inform makes the receiver the authoritative engine (it needs its
            # own engine ID, boots and time, and discovery); not supported yet.
            raise DecodeError(
                "SNMPv3 InformRequest is not supported (send v3 traps or v2c informs)",
                reason="v3_inform_unsupported",
            )
        varbinds = pdu.varbinds
        uptime: int | None = None
        trap_oid: str | None = None
        # RFC 3416 §4.2.6: sysUpTime.0 then snmpTrapOID.0 come first; the fast path
        # checks exactly that, the slow path tolerates agents that reorder them.
        if (
            len(varbinds) >= 2
            and varbinds[0].oid == SYS_UPTIME
            and varbinds[1].oid == SNMP_TRAP_OID
            and isinstance(varbinds[1].value, str)
        ):
            up = varbinds[0].value
            uptime = up if isinstance(up, int) else None
            trap_oid = varbinds[1].value
            body = tuple(varbinds[2:])
        else:
            rest: list[VarBind] = []
            for vb in varbinds:
                if vb.oid == SYS_UPTIME and uptime is None and isinstance(vb.value, int):
                    uptime = vb.value
                elif vb.oid == SNMP_TRAP_OID and trap_oid is None and isinstance(vb.value, str):
                    trap_oid = vb.value
                else:
                    rest.append(vb)
            body = tuple(rest)
        if trap_oid is None:
            raise DecodeError("notification without snmpTrapOID.0")
        response = None
        if tag == INFORM_REQUEST:
            response = encode_response(
                message.version, message.community, pdu.request_id, pdu.raw_varbinds
            )
        return Notification(
            version=version,
            pdu_type=_PDU_NAMES[tag],
            request_id=pdu.request_id,
            trap_oid=trap_oid,
            uptime=uptime,
            varbinds=body,
            user=user,
            engine_id=engine_id,
            security_level=level,
            response=response,
        )
