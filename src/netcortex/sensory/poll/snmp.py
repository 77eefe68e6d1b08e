"""Sensory / poll: an asynchronous SNMP v2c/v3 client for polling (GET and GETBULK walks).

``SnmpClient`` owns one UDP socket per address family (created on first use) and
multiplexes every request over it: each request gets a fresh request-id, its
future waits in a table keyed by that id, and the datagram callback completes it.
So any number of requests to any number of agents can be in flight at once, and
a slow or dead agent only costs its own timer. A request is sent, re-sent with
the *same* request-id on each timeout (a late answer to an earlier copy still
counts) and fails with ``netcortex.errors.PollTimeout`` after ``retries`` re-sends.

A datagram completes a request only if it decodes as a v2c Response whose
request-id is pending, whose source address is the agent's and whose community
is the request's; anything else (garbage, another protocol, a stray or spoofed
answer) is ignored and counted in ``SnmpClient.ignored`` by reason. An
error-status raises ``netcortex.errors.AgentError``; per-varbind exceptions
(``noSuchObject``, ``noSuchInstance``, ``endOfMibView``) are data: ``get``
returns them as varbinds with that ``type`` and value ``None``.

Messages are encoded and decoded by the trap receiver's hand-written BER codec
(``sensory.trap.ber``). Communities never reach logs or error messages.

SNMPv3 (a target with ``usm`` credentials) is RFC 3414's command generator: the
first request to an agent discovers its engine (an empty-user noAuthNoPriv GET
answered by a Report carrying the engine ID, boots and time; cached per agent
address), keys are localised to that engine ID (``sensory.trap.usm``), requests
are signed (HMAC-MD5/SHA/SHA-2) and encrypted (DES, AES-128/192/256) and the
answer must carry our msgID, the agent's engine ID and user and a valid digest
before it is decrypted. A ``usmStatsNotInTimeWindows`` Report (agent restarted,
clock drifted) resynchronises boots/time and the request is retried once; an
``usmStatsUnknownEngineIDs`` Report (engine ID changed) re-discovers once. Other
usmStats Reports (wrong digest, unknown user, unsupported level, decryption
error) raise ``netcortex.errors.PollAuthError``. Agents such as net-snmp silently
drop a request they cannot decrypt, so an authPriv request that times out on a
discovered engine is followed by one authNoPriv probe: an authenticated answer to
it proves the agent is alive and the auth key right, and the poll fails with
``PollAuthError`` (``decryption_error``) instead of ``PollTimeout`` (a dead
authPriv agent thus costs one more ``timeout``). A v3 answer that fails a check
(msgID, source, engine ID/user, digest, decryption, level) is ignored and counted
like a stray v2c datagram. Keys and passphrases never reach logs, reprs or errors.

Not here: SNMPv1, SET, contexts other than the default one. Hostnames are
resolved on every request: pass IP literals on hot paths.

Imports: stdlib, structlog, pydantic (``SecretStr``), netcortex.errors,
netcortex.config (``V3User``), netcortex.sensory.trap.ber / .usm.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import random
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import structlog
from pydantic import SecretStr

from netcortex.config import V3User
from netcortex.errors import (
    AgentError,
    AuthenticationError,
    DecodeError,
    PollAuthError,
    PollError,
    PollTimeout,
)
from netcortex.sensory.trap.ber import (
    GET_BULK,
    GET_REQUEST,
    REPORT,
    RESPONSE,
    Message,
    Pdu,
    VarBind,
    decode_message,
    decode_scoped_pdu,
    encode_message,
    encode_pdu,
    encode_tlv,
    encode_value,
)
from netcortex.sensory.trap.usm import (
    AUTH_PROTOCOLS,
    LEVELS,
    MAX_BOOTS,
    PRIV_PROTOCOLS,
    UsmUser,
    decrypt_scoped_pdu,
    encrypt_scoped_pdu,
    sign_message,
    verify_digest,
)

__all__ = ["ERROR_STATUS", "PollTarget", "SnmpClient", "UsmCredentials"]

log = structlog.get_logger(__name__)

_V2C: Final = 1
_MAX_REQUEST_ID: Final = 0x7FFFFFFF
_RCVBUF: Final = 1024 * 1024
_END_TYPES: Final = frozenset({"endOfMibView", "noSuchObject", "noSuchInstance"})

#: RFC 3416 §3 error-status names by value.
ERROR_STATUS: Final[tuple[str, ...]] = (
    "noError",
    "tooBig",
    "noSuchName",
    "badValue",
    "readOnly",
    "genErr",
    "noAccess",
    "wrongType",
    "wrongLength",
    "wrongEncoding",
    "wrongValue",
    "noCreation",
    "inconsistentValue",
    "resourceUnavailable",
    "commitFailed",
    "undoFailed",
    "authorizationError",
    "notWritable",
    "inconsistentName",
)
_TOO_BIG: Final = 1

_V3: Final = 3
_USM: Final = 3
_MAX_MSG_SIZE: Final = 65507
_REPORTABLE: Final = 0x04
#: msgFlags auth/priv bits by security level (LEVELS index)
_LEVEL_FLAGS: Final = (0x00, 0x01, 0x03)
_USM_STATS: Final = "1.3.6.1.6.3.15.1.1."
#: RFC 3414 usmStats counters (last arc but one) → PollAuthError reason
_USM_REPORTS: Final[dict[str, str]] = {
    "1": "unsupported_security_level",
    "2": "not_in_time_window",
    "3": "unknown_user",
    "4": "unknown_engine_id",
    "5": "wrong_digest",
    "6": "decryption_error",
}
_REPORT_TEXT: Final[dict[str, str]] = {
    "unsupported_security_level": "does not support the security level for this user",
    "not_in_time_window": "still reports the request outside its time window",
    "unknown_user": "does not know the user",
    "unknown_engine_id": "keeps rejecting its own engine ID",
    "wrong_digest": "rejected the digest (wrong authentication key or protocol)",
    "decryption_error": "could not decrypt the request (wrong privacy key or protocol)",
}


@dataclass(frozen=True, slots=True)
class UsmCredentials:
    """SNMPv3 USM credentials for polling (keys are localised per discovered engine).

    Attributes:
        user: the USM user name.
        auth_protocol: ``MD5``, ``SHA``, ``SHA-224`` .. ``SHA-512`` or ``None``
            (noAuthNoPriv).
        auth_key: the authentication passphrase (kept out of ``repr``).
        priv_protocol: ``DES``, ``AES``, ``AES-192``, ``AES-256`` (Blumenthal key
            extension), ``AES-192-C``/``AES-256-C`` (Reeder) or ``None``.
        priv_key: the privacy passphrase (kept out of ``repr``).
    """

    user: str
    auth_protocol: str | None = None
    auth_key: SecretStr | None = field(default=None, repr=False)
    priv_protocol: str | None = None
    priv_key: SecretStr | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0 < len(self.user.encode()) <= 32:
            raise ValueError("user must be 1..32 octets")
        if self.auth_protocol is not None and self.auth_protocol not in AUTH_PROTOCOLS:
            raise ValueError(f"unknown auth protocol {self.auth_protocol!r}")
        if self.priv_protocol is not None and self.priv_protocol not in PRIV_PROTOCOLS:
            raise ValueError(f"unknown priv protocol {self.priv_protocol!r}")
        if (self.auth_protocol is None) != (self.auth_key is None):
            raise ValueError("auth_protocol and auth_key go together")
        if (self.priv_protocol is None) != (self.priv_key is None):
            raise ValueError("priv_protocol and priv_key go together")
        if self.priv_protocol is not None and self.auth_protocol is None:
            raise ValueError("privacy needs authentication")
        for name, key in (("auth_key", self.auth_key), ("priv_key", self.priv_key)):
            if key is not None and len(key.get_secret_value()) < 8:
                raise ValueError(f"{name} must be at least 8 characters (RFC 3414)")

    @classmethod
    def from_config(cls, user: V3User) -> UsmCredentials:
        """The credentials of a configured ``trap.v3_users`` entry (its engine ID,
        the trap sender's, is not used: the agent's is discovered)."""
        return cls(
            user.user,
            user.auth_protocol,
            SecretStr(user.auth_key.get_secret_value()) if user.auth_key is not None else None,
            user.priv_protocol,
            SecretStr(user.priv_key.get_secret_value()) if user.priv_key is not None else None,
        )

    @property
    def level(self) -> int:
        """Security level as an index into ``LEVELS`` (0 noAuthNoPriv .. 2 authPriv)."""
        return 2 if self.priv_protocol else 1 if self.auth_protocol else 0

    def localize(self, engine_id: bytes) -> UsmUser:
        """Keys localised to ``engine_id`` (the passphrase hash is cached in ``usm``)."""
        return UsmUser.localize(
            self.user.encode(),
            engine_id,
            auth_protocol=self.auth_protocol,
            auth_passphrase=(
                self.auth_key.get_secret_value().encode() if self.auth_key is not None else None
            ),
            priv_protocol=self.priv_protocol,
            priv_passphrase=(
                self.priv_key.get_secret_value().encode() if self.priv_key is not None else None
            ),
        )


@dataclass(slots=True)
class _Engine:
    """What discovery learnt of one agent's authoritative engine."""

    engine_id: bytes
    boots: int
    engine_time: int
    at: float  # local monotonic time when (boots, engine_time) was learnt

    def now(self) -> tuple[int, int]:
        """(boots, estimated engine time) to put in a request."""
        return self.boots, min(MAX_BOOTS, self.engine_time + int(time.monotonic() - self.at))

    def update(self, boots: int, engine_time: int) -> None:
        if (boots, engine_time) > self.now():
            self.boots, self.engine_time, self.at = boots, engine_time, time.monotonic()

    def reset(self, boots: int, engine_time: int) -> None:
        self.boots, self.engine_time, self.at = boots, engine_time, time.monotonic()


@dataclass(frozen=True, slots=True)
class PollTarget:
    """One SNMP v2c agent to poll.

    Attributes:
        host: IP address (or a hostname, resolved per request).
        port: UDP port of the agent.
        community: the v2c community (kept out of ``repr``, logs and errors).
        timeout: seconds to wait for an answer before re-sending.
        retries: re-sends after the first attempt; the request fails after
            ``timeout * (retries + 1)`` seconds without an answer.
        usm: SNMPv3 credentials; when set the target is polled with v3 and
            ``community`` is not used.
    """

    host: str
    port: int = 161
    community: SecretStr | str = field(default="public", repr=False)
    timeout: float = 1.0
    retries: int = 1
    usm: UsmCredentials | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} out of range")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")

    @property
    def address(self) -> str:
        """``host:port`` (``[host]:port`` for IPv6) — what errors and logs name."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def community_bytes(self) -> bytes:
        """The community as octets (UTF-8)."""
        c = self.community
        return (c.get_secret_value() if isinstance(c, SecretStr) else c).encode()


@dataclass(slots=True, eq=False)
class _Pending:
    """One request in flight: what to re-send, where, and who waits for it.

    For v3 the table key is the msgID (equal to the request-id), ``user`` is the
    localised user (``None`` for discovery) and ``level`` the request's level.
    """

    future: asyncio.Future[Message]
    data: bytes
    sockaddr: tuple[str, int] | tuple[str, int, int, int]
    community: bytes
    target: PollTarget
    transport: asyncio.DatagramTransport
    attempts_left: int
    timer: asyncio.TimerHandle | None = None
    v3: bool = False
    user: UsmUser | None = None
    level: int = 0


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: SnmpClient) -> None:
        self._client = client

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._client._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # An unconnected UDP socket cannot tell which request an ICMP error
        # belongs to; the request's own timer reports it.
        log.debug("snmp_poll_socket_error", error=str(exc))


class SnmpClient:
    """Asynchronous SNMP v2c GET / GETBULK client over one UDP socket per family.

    Use as ``async with SnmpClient() as client:`` or call ``start()`` /
    ``close()``. ``get`` and ``bulk_walk`` are safe to run concurrently from many
    tasks; cancelling one cancels only that request.
    """

    def __init__(self, *, rcvbuf: int = _RCVBUF) -> None:
        self._rcvbuf = rcvbuf
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._opening: dict[int, asyncio.Lock] = {}
        self._pending: dict[int, _Pending] = {}
        self._next_id = random.randrange(1, _MAX_REQUEST_ID)  # not a secret
        self._ignored: Counter[str] = Counter()
        self._closed = False
        # agent address -> its engine (v3), and a lock so one discovery runs per agent
        self._engines: dict[tuple[str, int], _Engine] = {}
        self._discovering: dict[tuple[str, int], asyncio.Lock] = {}
        self._salt = random.getrandbits(64)  # AES salt counter (RFC 3826 §3.1.2.1)

    async def __aenter__(self) -> SnmpClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def start(self) -> None:
        """Open the IPv4 socket now (IPv6 opens on its first request)."""
        await self._transport(socket.AF_INET)

    def close(self) -> None:
        """Close the sockets; requests still in flight fail with ``PollError``."""
        self._closed = True
        for p in list(self._pending.values()):
            if p.timer is not None:
                p.timer.cancel()
            if not p.future.done():
                p.future.set_exception(PollError("SNMP client closed", target=p.target.address))
        self._pending.clear()
        for t in self._transports.values():
            t.close()
        self._transports.clear()

    @property
    def local_address(self) -> tuple[str, int]:
        """``(host, port)`` of the IPv4 socket (for tests that write to it)."""
        t = self._transports.get(socket.AF_INET)
        if t is None:
            raise PollError("SNMP client not started")
        host, port = t.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def ignored(self) -> dict[str, int]:
        """Datagrams that completed no request, by reason (a copy)."""
        return dict(self._ignored)

    @property
    def in_flight(self) -> int:
        """Requests waiting for an answer."""
        return len(self._pending)

    def engine_id(self, target: PollTarget) -> bytes | None:
        """The discovered SNMPv3 engine ID of ``target`` (``None`` before discovery)."""
        engine = self._engines.get((target.host, target.port))
        return None if engine is None else engine.engine_id

    # ----------------------------------------------------------------- requests

    async def get(self, target: PollTarget, oids: list[str] | tuple[str, ...]) -> list[VarBind]:
        """GET ``oids`` (numeric, dotted) from ``target``; varbinds in request order.

        A missing object comes back as a varbind of type ``noSuchObject`` or
        ``noSuchInstance`` with value ``None``.

        Raises:
            PollTimeout: no answer after every retry.
            AgentError: the agent answered with an error-status.
            PollAuthError: SNMPv3 only: the agent refused the credentials.
            PollError: the client is closed or the host cannot be resolved.
            ValueError: an OID is not numeric and dotted.
        """
        pdu = await self._request(target, GET_REQUEST, oids, 0, 0)
        return pdu.varbinds

    async def bulk_walk(
        self, target: PollTarget, root_oid: str, max_repetitions: int = 25
    ) -> list[VarBind]:
        """Every varbind in the subtree under ``root_oid``, in OID order, by GETBULK.

        Stops at the first OID outside the subtree or at ``endOfMibView`` (or a
        ``noSuchObject``/``noSuchInstance`` from a non-conforming agent). Each
        GETBULK round has its own timeout and retries; a ``tooBig`` answer halves
        ``max_repetitions`` (down to 1) and asks again.

        Raises:
            PollTimeout: a round got no answer after every retry.
            AgentError: an error-status, or OIDs that do not increase (the walk
                would never end; ``status`` ``"oidNotIncreasing"``).
            PollAuthError: SNMPv3 only: the agent refused the credentials.
            PollError: the client is closed or the host cannot be resolved.
            ValueError: ``root_oid`` is not numeric and dotted or
                ``max_repetitions < 1``.
        """
        if max_repetitions < 1:
            raise ValueError(f"max_repetitions must be >= 1, got {max_repetitions}")
        root = root_oid.strip(".")
        prefix = root + "."
        _oid_key(root)  # ValueError for a root that is not numeric and dotted
        out: list[VarBind] = []
        current = root
        # Every OID kept is under ``prefix``: comparing the arcs after it orders them
        # like the whole OIDs, at a fraction of the cost (the walk's hot loop).
        skip = len(prefix)
        current_key: tuple[int, ...] = ()
        reps = max_repetitions
        while True:
            try:
                pdu = await self._request(target, GET_BULK, (current,), 0, reps)
            except AgentError as exc:
                if exc.status == "tooBig" and reps > 1:
                    reps = max(1, reps // 2)
                    continue
                raise
            if not pdu.varbinds:
                return out
            for vb in pdu.varbinds:
                if vb.type in _END_TYPES or not vb.oid.startswith(prefix):
                    return out
                key = _oid_key(vb.oid[skip:])
                if key <= current_key:
                    raise AgentError(
                        f"agent {target.address} returned {vb.oid} after {current} "
                        "(OIDs not increasing)",
                        target=target.address,
                        status="oidNotIncreasing",
                    )
                out.append(vb)
                current, current_key = vb.oid, key

    async def _request(
        self,
        target: PollTarget,
        tag: int,
        oids: list[str] | tuple[str, ...],
        non_repeaters: int,
        max_repetitions: int,
    ) -> Pdu:
        if self._closed:
            raise PollError("SNMP client closed", target=target.address)
        family, sockaddr = await self._resolve(target)
        transport = await self._transport(family)
        varbinds = [VarBind(oid, "Null", None) for oid in oids]
        if target.usm is not None:
            answer = await self._request_v3(
                target,
                target.usm,
                sockaddr,
                transport,
                tag,
                varbinds,
                non_repeaters,
                max_repetitions,
            )
        else:
            rid = self._new_request_id()
            community = target.community_bytes()
            pdu = Pdu(
                tag,
                request_id=rid,
                error_status=non_repeaters,
                error_index=max_repetitions,
                varbinds=varbinds,
            )
            data = encode_message(Message(_V2C, community, pdu))
            pending = _Pending(
                asyncio.get_running_loop().create_future(),
                data,
                sockaddr,
                community,
                target,
                transport,
                target.retries,
            )
            message = await self._exchange(rid, pending)
            assert message.pdu is not None
            answer = message.pdu
        if answer.error_status:
            status = _status_name(answer.error_status)
            raise AgentError(
                f"agent {target.address} answered {status} (index {answer.error_index})",
                target=target.address,
                status=status,
                index=answer.error_index,
            )
        return answer

    async def _exchange(self, rid: int, pending: _Pending) -> Message:
        """Send ``pending`` (key ``rid``), re-send on timeouts, return the answer."""
        loop = asyncio.get_running_loop()
        self._pending[rid] = pending
        try:
            pending.transport.sendto(pending.data, pending.sockaddr)
            pending.timer = loop.call_later(pending.target.timeout, self._on_timeout, rid)
            return await pending.future
        finally:
            if pending.timer is not None:
                pending.timer.cancel()
            self._pending.pop(rid, None)

    # ----------------------------------------------------------------- SNMPv3

    async def _request_v3(
        self,
        target: PollTarget,
        creds: UsmCredentials,
        sockaddr: tuple[str, int] | tuple[str, int, int, int],
        transport: asyncio.DatagramTransport,
        tag: int,
        varbinds: list[VarBind],
        non_repeaters: int,
        max_repetitions: int,
    ) -> Pdu:
        key = (target.host, target.port)
        engine = await self._discover(key, target, sockaddr, transport)
        retried = False
        while True:
            user = creds.localize(engine.engine_id)
            try:
                message = await self._send_v3(
                    target,
                    sockaddr,
                    transport,
                    engine,
                    user,
                    user.level,
                    Pdu(
                        tag,
                        request_id=0,  # set to the msgID
                        error_status=non_repeaters,
                        error_index=max_repetitions,
                        varbinds=varbinds,
                    ),
                )
            except PollTimeout:
                if user.level == 2 and await self._answers_without_priv(
                    target, sockaddr, transport, engine, user
                ):
                    raise PollAuthError(
                        f"agent {target.address} answers authenticated requests but not "
                        f"encrypted ones: wrong privacy key or protocol for user {creds.user!r}",
                        target=target.address,
                        reason="decryption_error",
                    ) from None
                raise
            pdu = message.pdu
            usm = message.usm
            assert pdu is not None
            assert usm is not None
            if pdu.tag == RESPONSE:
                engine.update(usm.engine_boots, usm.engine_time)
                return pdu
            reason = _report_reason(pdu)
            if reason == "not_in_time_window" and not retried and usm.flags & 0x01:
                # Authenticated (verified in _on_datagram): the agent's boots/time are real.
                engine.reset(usm.engine_boots, usm.engine_time)
                retried = True
                log.debug("snmp_poll_v3_time_resync", target=target.address)
                continue
            if reason == "unknown_engine_id" and not retried and usm.engine_id:
                self._engines.pop(key, None)
                engine = await self._discover(key, target, sockaddr, transport)
                retried = True
                continue
            text = _REPORT_TEXT.get(reason, f"sent a Report {reason}")
            raise PollAuthError(
                f"agent {target.address} {text} (user {creds.user!r}, {LEVELS[user.level]})",
                target=target.address,
                reason=reason,
            )

    async def _answers_without_priv(
        self,
        target: PollTarget,
        sockaddr: tuple[str, int] | tuple[str, int, int, int],
        transport: asyncio.DatagramTransport,
        engine: _Engine,
        user: UsmUser,
    ) -> bool:
        """One authNoPriv GET (no retries): does an authenticated answer come back?"""
        probe = PollTarget(target.host, target.port, timeout=target.timeout, retries=0)
        try:
            message = await self._send_v3(
                probe, sockaddr, transport, engine, user, 1, Pdu(GET_REQUEST)
            )
        except PollError:
            return False
        usm = message.usm
        return usm is not None and bool(usm.flags & 0x01)

    async def _discover(
        self,
        key: tuple[str, int],
        target: PollTarget,
        sockaddr: tuple[str, int] | tuple[str, int, int, int],
        transport: asyncio.DatagramTransport,
    ) -> _Engine:
        """The agent's engine: cached, else discovered (RFC 3414 §4), once per agent."""
        engine = self._engines.get(key)
        if engine is not None:
            return engine
        lock = self._discovering.setdefault(key, asyncio.Lock())
        async with lock:
            engine = self._engines.get(key)
            if engine is not None:
                return engine
            blank = _Engine(b"", 0, 0, time.monotonic())
            message = await self._send_v3(
                target, sockaddr, transport, blank, None, 0, Pdu(GET_REQUEST)
            )
            usm = message.usm
            assert usm is not None
            if not usm.engine_id:
                raise PollError(
                    f"agent {target.address} answered discovery without an engine ID",
                    target=target.address,
                )
            engine = _Engine(usm.engine_id, usm.engine_boots, usm.engine_time, time.monotonic())
            self._engines[key] = engine
            log.debug(
                "snmp_poll_v3_engine_discovered",
                target=target.address,
                engine_id=usm.engine_id.hex(),
                boots=usm.engine_boots,
            )
            return engine

    async def _send_v3(
        self,
        target: PollTarget,
        sockaddr: tuple[str, int] | tuple[str, int, int, int],
        transport: asyncio.DatagramTransport,
        engine: _Engine,
        user: UsmUser | None,
        level: int,
        pdu: Pdu,
    ) -> Message:
        """Encode, secure and exchange one v3 request; the answer is verified and
        decrypted (a Response or a Report)."""
        rid = self._new_request_id()
        pdu.request_id = rid
        scoped = encode_tlv(
            0x30, encode_tlv(0x04, engine.engine_id) + encode_tlv(0x04, b"") + encode_pdu(pdu)
        )
        boots, engine_time = engine.now()
        mac_len = 0
        priv_params = b""
        msg_data = scoped
        if level >= 1:
            assert user is not None
            assert user.auth_protocol is not None
            mac_len = AUTH_PROTOCOLS[user.auth_protocol][1]
        if level == 2:
            assert user is not None
            assert user.priv_protocol is not None
            if PRIV_PROTOCOLS[user.priv_protocol][0] == "des":
                priv_params = boots.to_bytes(4, "big") + os.urandom(4)
            else:
                self._salt = (self._salt + 1) & 0xFFFFFFFFFFFFFFFF
                priv_params = self._salt.to_bytes(8, "big")
            msg_data = encode_tlv(
                0x04, encrypt_scoped_pdu(scoped, priv_params, boots, engine_time, user)
            )
        name = user.name if user is not None else b""
        before_auth = (
            encode_tlv(0x04, engine.engine_id)
            + encode_value("Integer", boots)
            + encode_value("Integer", engine_time)
            + encode_tlv(0x04, name)
        )
        usm_body = before_auth + encode_tlv(0x04, bytes(mac_len)) + encode_tlv(0x04, priv_params)
        usm_seq = encode_tlv(0x30, usm_body)
        sec_params = encode_tlv(0x04, usm_seq)
        header = encode_tlv(
            0x30,
            encode_value("Integer", rid)
            + encode_value("Integer", _MAX_MSG_SIZE)
            + encode_tlv(0x04, bytes((_LEVEL_FLAGS[level] | _REPORTABLE,)))
            + encode_value("Integer", _USM),
        )
        inner = encode_value("Integer", _V3) + header + sec_params + msg_data
        data = encode_tlv(0x30, inner)
        if level >= 1:
            assert user is not None
            offset = (
                len(data)
                - len(inner)
                + len(encode_value("Integer", _V3))
                + len(header)
                + (len(sec_params) - len(usm_seq))
                + (len(usm_seq) - len(usm_body))
                + len(before_auth)
                + (len(encode_tlv(0x04, bytes(mac_len))) - mac_len)
            )
            data = sign_message(data, offset, user)
        pending = _Pending(
            asyncio.get_running_loop().create_future(),
            data,
            sockaddr,
            b"",
            target,
            transport,
            target.retries,
            v3=True,
            user=user,
            level=level,
        )
        return await self._exchange(rid, pending)

    def _on_v3_datagram(self, data: bytes, message: Message, addr: tuple[str | int, ...]) -> None:
        usm = message.usm
        assert usm is not None
        p = self._pending.get(usm.msg_id)
        if p is None or p.future.done() or not p.v3:
            self._ignore("unknown_request_id", addr)
            return
        if addr[0] != p.sockaddr[0] or addr[1] != p.sockaddr[1]:
            self._ignore("wrong_source", addr)
            return
        flags = usm.flags
        level = (flags & 0x01) + ((flags & 0x02) >> 1)
        if flags & 0x02 and not flags & 0x01:
            self._ignore("malformed", addr)
            return
        user = p.user
        if level >= 1:
            if user is None or user.level < level:
                self._ignore("unexpected_security_level", addr)
                return
            if usm.engine_id != user.engine_id or usm.user != user.name:
                self._ignore("wrong_engine_or_user", addr)
                return
            try:
                verify_digest(data, usm.auth_offset, usm.auth_params, user)
            except AuthenticationError:
                self._ignore("wrong_digest", addr)
                return
        if level == 2:
            assert user is not None
            try:
                plain = decrypt_scoped_pdu(
                    usm.scoped_data, usm.priv_params, usm.engine_boots, usm.engine_time, user
                )
                message.pdu = decode_scoped_pdu(plain, allow_trailing=True)[2]
            except (AuthenticationError, DecodeError):
                self._ignore("decrypt_failed", addr)
                return
        pdu = message.pdu
        if pdu is None or pdu.tag not in (RESPONSE, REPORT):
            self._ignore("not_v3_response", addr)
            return
        if pdu.tag == RESPONSE and (level != p.level or pdu.request_id != usm.msg_id):
            # A Response comes at the request's level, with its request-id.
            self._ignore("not_v3_response", addr)
            return
        p.future.set_result(message)

    def _on_timeout(self, rid: int) -> None:
        p = self._pending.get(rid)
        if p is None or p.future.done():
            return
        if p.attempts_left > 0 and not p.transport.is_closing():
            p.attempts_left -= 1
            p.transport.sendto(p.data, p.sockaddr)
            p.timer = asyncio.get_running_loop().call_later(p.target.timeout, self._on_timeout, rid)
            return
        tries = p.target.retries + 1
        p.future.set_exception(
            PollTimeout(
                f"no answer from {p.target.address} after {tries} "
                f"attempt{'s' if tries > 1 else ''} of {p.target.timeout:g} s",
                target=p.target.address,
            )
        )

    def _on_datagram(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            message = decode_message(data)
        except DecodeError:
            self._ignore("malformed", addr)
            return
        if message.version == _V3 and message.usm is not None:
            self._on_v3_datagram(data, message, addr)
            return
        pdu = message.pdu
        if message.version != _V2C or pdu is None or pdu.tag != RESPONSE:
            self._ignore("not_v2c_response", addr)
            return
        p = self._pending.get(pdu.request_id)
        if p is None or p.future.done() or p.v3:
            self._ignore("unknown_request_id", addr)
            return
        if addr[0] != p.sockaddr[0] or addr[1] != p.sockaddr[1]:
            self._ignore("wrong_source", addr)
            return
        if message.community != p.community:
            self._ignore("wrong_community", addr)
            return
        p.future.set_result(message)

    def _ignore(self, reason: str, addr: tuple[str | int, ...]) -> None:
        self._ignored[reason] += 1
        log.debug("snmp_poll_datagram_ignored", reason=reason, source=f"{addr[0]}:{addr[1]}")

    # ----------------------------------------------------------------- plumbing

    def _new_request_id(self) -> int:
        rid = self._next_id
        while rid in self._pending:
            rid = rid % _MAX_REQUEST_ID + 1
        self._next_id = rid % _MAX_REQUEST_ID + 1
        return rid

    async def _resolve(
        self, target: PollTarget
    ) -> tuple[int, tuple[str, int] | tuple[str, int, int, int]]:
        literal = _ip_literal(target.host, target.port)
        if literal is not None:
            return literal
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise PollError(
                f"cannot resolve {target.address}: {exc}", target=target.address
            ) from exc
        for family, _, _, _, sockaddr in infos:
            if family == socket.AF_INET:
                return family, (str(sockaddr[0]), int(sockaddr[1]))
            if family == socket.AF_INET6:
                return family, (str(sockaddr[0]), int(sockaddr[1]), 0, 0)
        raise PollError(f"no IPv4/IPv6 address for {target.address}", target=target.address)

    async def _transport(self, family: int) -> asyncio.DatagramTransport:
        t = self._transports.get(family)
        if t is not None:
            return t
        if self._closed:
            raise PollError("SNMP client closed")
        lock = self._opening.setdefault(family, asyncio.Lock())
        async with lock:
            t = self._transports.get(family)
            if t is not None:
                return t
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind(("::", 0))
                else:
                    sock.bind(("0.0.0.0", 0))  # an ephemeral client port
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            loop = asyncio.get_running_loop()
            t, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
            self._transports[family] = t
            log.debug(
                "snmp_poll_socket_open",
                family="ipv6" if family == socket.AF_INET6 else "ipv4",
                rcvbuf=sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            )
            return t


@functools.lru_cache(maxsize=8192)
def _ip_literal(
    host: str, port: int
) -> tuple[int, tuple[str, int] | tuple[str, int, int, int]] | None:
    """``(family, sockaddr)`` of an IP literal, ``None`` for a hostname (cached: every
    request of a poll resolves its target)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        return socket.AF_INET, (str(ip), port)
    return socket.AF_INET6, (str(ip), port, 0, 0)


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(map(int, oid.split(".")))


def _status_name(status: int) -> str:
    return ERROR_STATUS[status] if 0 <= status < len(ERROR_STATUS) else f"status{status}"


def _report_reason(pdu: Pdu) -> str:
    """The PollAuthError reason of a Report PDU (from its first varbind's OID)."""
    oid = pdu.varbinds[0].oid if pdu.varbinds else ""
    if oid.startswith(_USM_STATS):
        arc = oid[len(_USM_STATS) :].split(".")[0]
        if arc in _USM_REPORTS:
            return _USM_REPORTS[arc]
    return f"report {oid}" if oid else "report"
