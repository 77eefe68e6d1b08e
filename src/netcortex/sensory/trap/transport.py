"""Sensory / trap: the UDP receiver — datagram → decode → normalize → bounded queue → bus.

``TrapReceiver`` owns one UDP socket (large ``SO_RCVBUF``; what the kernel
granted is logged) and a pool of publisher tasks. Decoding runs synchronously in
the datagram callback (a few µs on the v2c path), the event goes on a bounded
``asyncio.Queue``, and the publishers drain it concurrently so a NATS bus can
pipeline its acks. A full queue is counted (``netcortex_trap_queue_full_total``)
and the datagram rejected as ``overloaded`` — never silently lost. Every datagram
is counted in ``netcortex_received_total{source="snmp.trap"}`` (the name every
receiver counts on) and in ``netcortex_trap_received_total``; accepted events
not yet published are ``netcortex_queue_depth{queue="trap_publish"}``.

A bus outage (nats-server restarting) is ridden out for ``outage_buffer_seconds``
(``bus.outage_buffer_seconds``, see ``sensory._publish``): accepted events stay
in the queue (and with the publishers), retried with back-off, and go out once
the bus is back, each counted ``published`` once. Past the budget, while the
bus is still not connected, held events are counted in
``netcortex_trap_publish_failed_total{error="bus_outage"}`` and new datagrams are
rejected as ``bus_unavailable`` (informs are then not answered, so their
senders retry).

Datagrams the kernel dropped before the receiver saw them (its socket's receive
buffer was full) are read from the ``drops`` column of ``/proc/net/udp`` and
``/proc/net/udp6`` for this receiver's own socket (matched by inode, not port)
and exported as ``netcortex_udp_kernel_drops_total{listener="trap"}`` — read at
every scrape and every ``log_interval`` seconds, logged as ``udp_kernel_drops``
(a warning, at most once per ``log_interval``) when it rises. Where that is not
readable (not Linux) the metric is absent and one debug line says why.

Every ``IngestError`` stops at this boundary: counted in
``netcortex_rejected_total{source="snmp.trap",reason}`` and logged as
``trap_rejected`` at most once per (agent, reason) per ``log_interval`` seconds
(with the number suppressed meanwhile), and for at most ``log_new_agents`` new
(agent, reason) pairs per interval — beyond that (a flood from many, possibly
spoofed, sources) one ``trap_rejected`` line per reason with ``agent="*"``
carries the count — so a flood cannot flood the logs. The receiver never dies
on input.

Imports: stdlib, structlog, netcortex.aio/config/contracts/errors/logs/metrics, siblings.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import structlog

from netcortex.aio import stop_tasks
from netcortex.config import TrapConfig
from netcortex.contracts.bus import EventBus
from netcortex.contracts.events import SensoryEvent
from netcortex.contracts.memory import SemanticMemory
from netcortex.errors import IngestError
from netcortex.logs import RejectionLog
from netcortex.metrics import Registry
from netcortex.sensory._batch import take_batch
from netcortex.sensory._publish import BusOutage, publish_event
from netcortex.sensory.trap.decode import TrapDecoder
from netcortex.sensory.trap.normalize import SOURCE, Normalizer

__all__ = ["TrapReceiver", "read_udp_rcvbuf_errors", "read_udp_socket_drops"]

log = structlog.get_logger(__name__)

_LOG_KEYS_MAX: Final = 10_000  # bound on remembered (agent, reason) pairs and sources
_BATCH: Final = 32  # events a publisher takes per wake-up


def read_udp_rcvbuf_errors(
    paths: tuple[str, ...] = ("/proc/net/snmp", "/proc/net/snmp6"),
) -> int | None:
    """Kernel-wide UDP receive-buffer drops (``RcvbufErrors``, v4 + v6), best effort.

    Returns ``None`` where ``/proc/net/snmp`` is not readable (non-Linux).
    """
    total: int | None = None
    for path in paths:
        try:
            text = Path(path).read_text(encoding="ascii")
        except OSError:
            continue
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Udp: ") and i + 1 < len(lines) and "RcvbufErrors" in line:
                names, values = line.split()[1:], lines[i + 1].split()[1:]
                with contextlib.suppress(ValueError, IndexError):
                    total = (total or 0) + int(values[names.index("RcvbufErrors")])
                break
            if line.startswith("Udp6RcvbufErrors"):
                with contextlib.suppress(ValueError, IndexError):
                    total = (total or 0) + int(line.split()[1])
    return total


#: ``/proc/net/udp*`` row fields (whitespace-split): the socket's inode and its drops.
_INODE_FIELD: Final = 9
_DROPS_FIELD: Final = 12
UDP_SOCKET_TABLES: Final = ("/proc/net/udp", "/proc/net/udp6")


def read_udp_socket_drops(inode: int, paths: tuple[str, ...] = UDP_SOCKET_TABLES) -> int | None:
    """Datagrams the kernel dropped for the UDP socket with ``inode`` (its ``drops`` column).

    Reads ``/proc/net/udp`` and ``/proc/net/udp6`` (one row per socket; the
    inode is ``os.fstat(sock.fileno()).st_ino``). Returns ``None`` when no table
    is readable (not Linux) or no row has that inode.
    """
    wanted = str(inode)
    for path in paths:
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, ValueError):
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > _DROPS_FIELD and fields[_INODE_FIELD] == wanted:
                try:
                    return int(fields[_DROPS_FIELD])
                except ValueError:
                    return None
    return None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, receiver: TrapReceiver) -> None:
        self._receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._receiver._datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.warning("trap_socket_error", error=str(exc))


class TrapReceiver:
    """SNMP trap/inform receiver publishing ``SensoryEvent`` on the injected bus.

    Args:
        config: the ``trap`` section.
        bus: where events go (``encode_event`` bytes, ``msg_id=event.id``, on the
            event's ``sensory.snmp.trap.<class>.<target>`` subject).
        metrics: registry for the counters (a private one by default).
        queue_size: accepted events waiting for a publisher, at most.
        publishers: concurrent publisher tasks (pipelining on NATS).
        drain_timeout: how long ``close`` waits for accepted events to publish.
        outage_buffer_seconds: how long a bus outage is ridden out (see the module
            docstring; ``bus.outage_buffer_seconds``).
        log_interval: at most one ``trap_rejected`` line per (agent, reason) per
            this many seconds; the socket's kernel drops are read every this many
            seconds (at least 1) and at every scrape, a rise logged as
            ``udp_kernel_drops`` at most once per interval.
        log_new_agents: at most this many (agent, reason) pairs start logging per
            ``log_interval``; the rest are summed into one ``agent="*"`` line per
            reason (at the next interval, or at ``close``).
        memory: semantic memory to canonicalise targets with (see ``Normalizer``);
            started and closed by its owner.
    """

    def __init__(
        self,
        config: TrapConfig,
        bus: EventBus,
        metrics: Registry | None = None,
        *,
        queue_size: int = 10_000,
        publishers: int = 32,
        drain_timeout: float = 10.0,
        outage_buffer_seconds: float = 120.0,
        log_interval: float = 10.0,
        log_new_agents: int = 100,
        memory: SemanticMemory | None = None,
    ) -> None:
        self._config = config
        self._bus = bus
        self._decoder = TrapDecoder(config)
        self._normalizer = Normalizer(honour_trap_address=config.honour_trap_address, memory=memory)
        self._allowed = tuple(ipaddress.ip_network(s, strict=False) for s in config.allowed_sources)
        self._allow_cache: dict[str, bool] = {}
        self._queue_size = queue_size
        self._publishers = publishers
        self._drain_timeout = drain_timeout
        self._outage = BusOutage(
            outage_buffer_seconds,
            what="trap",
            logger=log,
            connected=lambda: bool(getattr(bus, "connected", True)),
        )
        self._rejections = RejectionLog(
            log,
            "trap_rejected",
            who_field="agent",
            interval=log_interval,
            new_pairs=log_new_agents,
            max_keys=_LOG_KEYS_MAX,
        )
        self._queue: asyncio.Queue[SensoryEvent] | None = None
        self._in_hand = 0  # events publishers took off the queue and have not finished
        self._tasks: list[asyncio.Task[None]] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._bound: tuple[str, int] | None = None
        self._closed = False
        self._rcvbuf_errors_start: int | None = None
        self._log_interval = log_interval
        self._inode: int | None = None  # the bound socket's, for its kernel drops
        self._drops_seen = 0  # kernel drops already counted
        self._drops_exported = False
        self._drops_readable = True  # until a read fails (then one debug line, no metric)
        self._drops_logged_at = -math.inf

        reg = metrics if metrics is not None else Registry()
        self.metrics = reg
        self._received = reg.counter(
            "netcortex_trap_received_total", "UDP datagrams received by the trap receiver"
        )
        self._received_by_source = reg.counter(
            "netcortex_received_total", "inputs received by a receiver", ["source"]
        )
        self._decoded = reg.counter(
            "netcortex_trap_decoded_total", "traps decoded into events", ["event_class"]
        )
        self._published = reg.counter(
            "netcortex_trap_published_total", "trap events published on the bus", ["event_class"]
        )
        self._rejected = reg.counter(
            "netcortex_rejected_total", "inputs rejected by a receiver", ["source", "reason"]
        )
        self._queue_full = reg.counter(
            "netcortex_trap_queue_full_total", "trap events refused because the queue was full"
        )
        self._publish_failed = reg.counter(
            "netcortex_trap_publish_failed_total", "trap events the bus did not accept", ["error"]
        )
        self._informs = reg.counter(
            "netcortex_trap_informs_answered_total", "v2c InformRequests answered"
        )
        self._decode_seconds = reg.histogram(
            "netcortex_trap_decode_seconds", "datagram → SensoryEvent time (decode + normalize)"
        )
        self._rcvbuf_gauge = reg.gauge(
            "netcortex_udp_rcvbuf_errors",
            "kernel UDP RcvbufErrors (system-wide, from /proc/net/snmp) at start/close",
        )
        self._kernel_drops = reg.counter(
            "netcortex_udp_kernel_drops_total",
            "UDP datagrams the kernel dropped for a listener's socket (receive buffer full)",
            ["listener"],
        )
        reg.queue_depth("trap_publish", self.queue_depth)
        reg.add_collector(self._collect_kernel_drops)

    # ------------------------------------------------------------------ lifecycle

    def queue_depth(self) -> int:
        """Accepted events not yet published: queued, or taken by a publisher."""
        queue = self._queue
        return (queue.qsize() if queue is not None else 0) + self._in_hand

    @property
    def bound_address(self) -> tuple[str, int]:
        """``(host, port)`` the socket is bound to (the real port when 0 was asked).

        Raises:
            RuntimeError: not started.
        """
        if self._bound is None:
            raise RuntimeError("TrapReceiver is not started")
        return self._bound

    async def start(self) -> None:
        """Bind the UDP socket and start the publishers. Idempotent.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: the receiver was closed (it is not restartable).
        """
        if self._closed:
            raise RuntimeError("TrapReceiver is closed")
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        sock = self._make_socket()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        except BaseException:
            sock.close()
            raise
        self._transport = transport
        addr = sock.getsockname()
        self._bound = (str(addr[0]), int(addr[1]))
        self._queue = asyncio.Queue(maxsize=self._queue_size)
        self._tasks = [
            asyncio.create_task(self._publisher(), name=f"trap-publisher-{i}")
            for i in range(self._publishers)
        ]
        self._rcvbuf_errors_start = self.refresh_kernel_stats()
        with contextlib.suppress(OSError):
            self._inode = os.fstat(sock.fileno()).st_ino
        self.refresh_kernel_drops()
        self._tasks.append(asyncio.create_task(self._watch_drops(), name="trap-kernel-drops"))
        log.info(
            "trap_receiver_started",
            host=self._bound[0],
            port=self._bound[1],
            communities=len(self._config.communities),
            v3_users=len(self._config.v3_users),
            allowed_sources=len(self._allowed),
        )

    def _make_socket(self) -> socket.socket:
        host, port = self._config.host, self._config.port
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            wanted = self._config.recv_buffer
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
            granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            force = getattr(socket, "SO_RCVBUFFORCE", None)
            if granted < wanted and force is not None:
                # Beyond net.core.rmem_max only with CAP_NET_ADMIN; harmless otherwise.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, force, wanted)
                granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            # Linux reports twice the usable size (bookkeeping overhead included).
            event = "trap_socket_buffer" if granted >= wanted else "trap_socket_buffer_small"
            (log.info if granted >= wanted else log.warning)(
                event,
                requested=wanted,
                granted=granted,
                hint=None if granted >= wanted else "raise net.core.rmem_max",
            )
            sock.bind(sockaddr)
        except BaseException:
            sock.close()
            raise
        return sock

    def refresh_kernel_stats(self) -> int | None:
        """Read ``RcvbufErrors`` into the ``netcortex_udp_rcvbuf_errors`` gauge."""
        value = read_udp_rcvbuf_errors()
        if value is not None:
            self._rcvbuf_gauge.set(value)
        return value

    def refresh_kernel_drops(self) -> int | None:
        """Read the socket's kernel drops into ``netcortex_udp_kernel_drops_total``.

        Cheap (one read of ``/proc/net/udp*``); run at every scrape. A rise is
        logged as ``udp_kernel_drops`` (warning) at most once per ``log_interval``.
        Returns the socket's drops, or ``None`` when they cannot be read.
        """
        if not self._drops_readable or self._inode is None or self._transport is None:
            return None
        if self._closed:
            return self._drops_seen
        drops = read_udp_socket_drops(self._inode)
        if drops is None:
            self._drops_readable = False
            log.debug(
                "udp_kernel_drops_unavailable",
                listener="trap",
                reason="/proc/net/udp has no row for the socket (not Linux?)",
            )
            return None
        rise = drops - self._drops_seen
        if rise > 0 or not self._drops_exported:
            self._kernel_drops.inc(max(rise, 0), listener="trap")  # 0: the series exists
            self._drops_exported = True
        if rise > 0:
            self._drops_seen = drops
            now = time.monotonic()
            if now - self._drops_logged_at >= self._log_interval:
                self._drops_logged_at = now
                log.warning(
                    "udp_kernel_drops",
                    listener="trap",
                    drops=drops,
                    hint="the socket receive buffer overflowed: raise trap.recv_buffer "
                    "and net.core.rmem_max",
                )
        return drops

    def _collect_kernel_drops(self) -> None:
        self.refresh_kernel_drops()

    async def _watch_drops(self) -> None:
        # Also without scrapes, a rise is logged within one interval.
        while self._drops_readable:
            await asyncio.sleep(max(self._log_interval, 1.0))
            self.refresh_kernel_drops()

    async def close(self) -> None:
        """Stop receiving, publish what was already accepted, stop the publishers.

        Idempotent; safe without ``start``. Events still queued or being published
        after ``drain_timeout`` are counted as ``publish_failed{error="drain_timeout"}``.
        """
        if self._closed:
            return
        if self._transport is None:
            self._closed = True
            return
        self.refresh_kernel_drops()  # the last read, while the socket still exists
        self._closed = True
        self._transport.close()
        queue = self._queue
        if queue is not None and self._tasks:
            drained = True
            try:
                async with asyncio.timeout(self._drain_timeout):
                    await queue.join()
            except TimeoutError:
                drained = False
            if not drained:
                # Queued and held by a publisher (retrying through a bus outage):
                # the publishers are cancelled next, so both are lost — and counted.
                left = queue.qsize() + self._in_hand
                self._publish_failed.inc(left, error="drain_timeout")
                log.error("trap_drain_timeout", left=left)
        # bounded, cancelled again and again: a publish through NATS may drop a
        # cancel (nats-py's wait_for, see netcortex.aio)
        await stop_tasks(
            self._tasks, timeout=self._drain_timeout, what="trap publishers", logger=log
        )
        self._tasks = []
        self._rejections.flush()
        errors = self.refresh_kernel_stats()
        log.info(
            "trap_receiver_stopped",
            received=int(self._received.total()),
            published=int(self._published.total()),
            rejected=int(self._rejected.by_label("source").get(SOURCE, 0)),
            kernel_drops=self._drops_seen if self._drops_exported else None,
            kernel_rcvbuf_errors_delta=(
                None
                if errors is None or self._rcvbuf_errors_start is None
                else errors - self._rcvbuf_errors_start
            ),
        )

    async def __aenter__(self) -> TrapReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ hot path

    def _source_allowed(self, host: str) -> bool:
        allowed = self._allow_cache.get(host)
        if allowed is None:
            try:
                ip = ipaddress.ip_address(host.partition("%")[0])
            except ValueError:
                allowed = False
            else:
                allowed = any(ip in net for net in self._allowed)
            if len(self._allow_cache) >= _LOG_KEYS_MAX:
                self._allow_cache.clear()
            self._allow_cache[host] = allowed
        return allowed

    def _datagram(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._received.inc()
        self._received_by_source.inc(source=SOURCE)
        host = str(addr[0])
        if host.startswith("::ffff:") and "." in host:  # IPv4 via a dual-stack socket
            host = host[7:]
        if self._closed:
            return
        if self._allowed and not self._source_allowed(host):
            self._reject(host, "unknown_source", f"source {host} is not allowed")
            return
        t0 = time.perf_counter()
        try:
            note = self._decoder.decode(data)
            event = self._normalizer.normalize(note, host, datetime.now(UTC))
        except IngestError as exc:
            self._reject(host, exc.reason, str(exc))
            return
        except Exception as exc:  # a bug must not kill the receiver; make it loud
            self._reject(host, "internal_error", repr(exc))
            log.exception("trap_decode_crashed", agent=host)
            return
        self._decode_seconds.observe(time.perf_counter() - t0)
        self._decoded.inc(event_class=event.event_class)
        if self._outage.down and self._outage.shedding():
            # The bus has been gone longer than the budget: accepting would only
            # turn the datagram into a bus_outage failure a moment later.
            self._reject(event.agent or host, "bus_unavailable", "the bus is unavailable")
            return
        queue = self._queue
        assert queue is not None  # set in start() before the transport delivers
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            # An unanswered inform is retried by its sender: the right back-pressure.
            self._queue_full.inc()
            self._reject(event.agent or host, "overloaded", "publish queue full")
            return
        if note.response is not None and self._transport is not None:
            self._transport.sendto(note.response, addr)
            self._informs.inc()

    def _reject(self, agent: str, reason: str, detail: str) -> None:
        self._rejected.inc(source=SOURCE, reason=reason)
        self._rejections.reject(agent, reason, detail=detail)

    async def _publisher(self) -> None:
        # Each wake-up takes what is queued (up to _BATCH) so a burst costs one task
        # switch per batch, not per event; several publishers keep publishes
        # concurrent (JetStream acks pipeline across them).
        queue = self._queue
        assert queue is not None
        while True:
            batch = await take_batch(queue, _BATCH)
            self._in_hand += len(batch)
            for event in batch:
                try:
                    await self._publish(event)
                finally:
                    self._in_hand -= 1
                    queue.task_done()

    async def _publish(self, event: SensoryEvent) -> None:
        await publish_event(
            self._bus,
            event,
            what="trap",
            published=self._published,
            failed=self._publish_failed,
            logger=log,
            outage=self._outage,
        )
