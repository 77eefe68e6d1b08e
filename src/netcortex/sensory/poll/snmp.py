"""Sensory / poll: an asynchronous SNMP v2c client for polling (GET and GETBULK walks).

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

Not here (yet): SNMPv3/USM polling (needs engine-ID discovery and time
synchronisation, RFC 3414 §4 — the trap side's ``usm`` only verifies incoming
messages), SNMPv1, SET. Hostnames are resolved on every request: pass IP
literals on hot paths.

Imports: stdlib, structlog, pydantic (``SecretStr``), netcortex.errors,
netcortex.sensory.trap.ber.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import structlog
from pydantic import SecretStr

from netcortex.errors import AgentError, DecodeError, PollError, PollTimeout
from netcortex.sensory.trap.ber import (
    GET_BULK,
    GET_REQUEST,
    RESPONSE,
    Message,
    Pdu,
    VarBind,
    decode_message,
    encode_message,
)

__all__ = ["ERROR_STATUS", "PollTarget", "SnmpClient"]

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
    """

    host: str
    port: int = 161
    community: SecretStr | str = field(default="public", repr=False)
    timeout: float = 1.0
    retries: int = 1

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
    """One request in flight: what to re-send, where, and who waits for it."""

    future: asyncio.Future[Pdu]
    data: bytes
    sockaddr: tuple[str, int] | tuple[str, int, int, int]
    community: bytes
    target: PollTarget
    transport: asyncio.DatagramTransport
    attempts_left: int
    timer: asyncio.TimerHandle | None = None


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

    # ----------------------------------------------------------------- requests

    async def get(self, target: PollTarget, oids: list[str] | tuple[str, ...]) -> list[VarBind]:
        """GET ``oids`` (numeric, dotted) from ``target``; varbinds in request order.

        A missing object comes back as a varbind of type ``noSuchObject`` or
        ``noSuchInstance`` with value ``None``.

        Raises:
            PollTimeout: no answer after every retry.
            AgentError: the agent answered with an error-status.
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
            PollError: the client is closed or the host cannot be resolved.
            ValueError: ``root_oid`` is not numeric and dotted or
                ``max_repetitions < 1``.
        """
        if max_repetitions < 1:
            raise ValueError(f"max_repetitions must be >= 1, got {max_repetitions}")
        root = root_oid.strip(".")
        prefix = root + "."
        out: list[VarBind] = []
        current = root
        current_key = _oid_key(root)
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
                key = _oid_key(vb.oid)
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
        loop = asyncio.get_running_loop()
        rid = self._new_request_id()
        community = target.community_bytes()
        pdu = Pdu(
            tag,
            request_id=rid,
            error_status=non_repeaters,
            error_index=max_repetitions,
            varbinds=[VarBind(oid, "Null", None) for oid in oids],
        )
        data = encode_message(Message(_V2C, community, pdu))
        pending = _Pending(
            loop.create_future(), data, sockaddr, community, target, transport, target.retries
        )
        self._pending[rid] = pending
        try:
            transport.sendto(data, sockaddr)
            pending.timer = loop.call_later(target.timeout, self._on_timeout, rid)
            answer = await pending.future
        finally:
            if pending.timer is not None:
                pending.timer.cancel()
            self._pending.pop(rid, None)
        if answer.error_status:
            status = _status_name(answer.error_status)
            raise AgentError(
                f"agent {target.address} answered {status} (index {answer.error_index})",
                target=target.address,
                status=status,
                index=answer.error_index,
            )
        return answer

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
        pdu = message.pdu
        if message.version != _V2C or pdu is None or pdu.tag != RESPONSE:
            self._ignore("not_v2c_response", addr)
            return
        p = self._pending.get(pdu.request_id)
        if p is None or p.future.done():
            self._ignore("unknown_request_id", addr)
            return
        if addr[0] != p.sockaddr[0] or addr[1] != p.sockaddr[1]:
            self._ignore("wrong_source", addr)
            return
        if message.community != p.community:
            self._ignore("wrong_community", addr)
            return
        p.future.set_result(pdu)

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
        try:
            ip = ipaddress.ip_address(target.host)
        except ValueError:
            pass
        else:
            if ip.version == 4:
                return socket.AF_INET, (str(ip), target.port)
            return socket.AF_INET6, (str(ip), target.port, 0, 0)
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


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(a) for a in oid.split("."))


def _status_name(status: int) -> str:
    return ERROR_STATUS[status] if 0 <= status < len(ERROR_STATUS) else f"status{status}"
