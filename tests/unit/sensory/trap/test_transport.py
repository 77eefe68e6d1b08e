"""``TrapReceiver`` lifecycle, back-pressure and failure handling (raw UDP, no net-snmp)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from netcortex.contracts.bus import Subscription
from netcortex.errors import PublishTimeout
from netcortex.metrics import Registry
from netcortex.sensory import trap as trap_pkg
from netcortex.sensory.trap import TrapReceiver, ber
from netcortex.sensory.trap.ber import Message, Pdu, VarBind
from netcortex.sensory.trap.transport import read_udp_rcvbuf_errors
from tests.unit.sensory.trap._helpers import (
    RecordingBus,
    rejected,
    running_receiver,
    send_raw,
    trap_config,
    wait_until,
)


def _link_down(if_index: int) -> bytes:
    vbs = [
        VarBind("1.3.6.1.2.1.1.3.0", "TimeTicks", 1),
        VarBind("1.3.6.1.6.3.1.1.4.1.0", "ObjectIdentifier", "1.3.6.1.6.3.1.1.5.3"),
        VarBind(f"1.3.6.1.2.1.2.2.1.1.{if_index}", "Integer", if_index),
    ]
    return ber.encode_message(Message(1, b"public", Pdu(0xA7, if_index, varbinds=vbs)))


class GatedBus(RecordingBus):
    """A bus whose publishes wait until the test opens the gate (or fail on demand)."""

    def __init__(self, fail: int = 0) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.fail = fail

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        """Block on the gate, then fail the first ``fail`` calls, then record."""
        await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise PublishTimeout("bus full")
        await super().publish(subject, data, msg_id=msg_id)

    async def subscribe(
        self, patterns: str | Sequence[str], *, durable: str | None = None
    ) -> Subscription:
        """Not used by the receiver."""
        raise NotImplementedError


def test_public_surface() -> None:
    """The trap package exports exactly its documented names."""
    assert set(trap_pkg.__all__) == {
        "SOURCE",
        "Normalizer",
        "Notification",
        "TrapDecoder",
        "TrapReceiver",
        "UsmSecurity",
        "VarBind",
        "normalize",
    }


async def test_lifecycle_is_idempotent() -> None:
    """start/close twice are no-ops, close without start is safe, address needs start."""
    idle = TrapReceiver(trap_config(), RecordingBus())
    await idle.close()
    receiver = TrapReceiver(trap_config(), RecordingBus())
    with pytest.raises(RuntimeError):
        _ = receiver.bound_address
    with capture_logs() as logs:
        await receiver.start()
        await receiver.start()
    host, port = receiver.bound_address
    assert host == "127.0.0.1"
    assert port > 0
    events = [e["event"] for e in logs]
    assert events.count("trap_receiver_started") == 1
    assert any(e.startswith("trap_socket_buffer") for e in events)
    await receiver.close()
    await receiver.close()
    with pytest.raises(RuntimeError):
        await receiver.start()


async def test_close_drains_accepted_events() -> None:
    """Events accepted before close are all published by close()."""
    bus = GatedBus()
    registry = Registry()
    receiver = TrapReceiver(trap_config(), bus, registry, publishers=4)
    await receiver.start()
    port = receiver.bound_address[1]
    for i in range(50):
        send_raw(port, _link_down(i + 1))
    decoded = registry.counter("netcortex_trap_decoded_total", "", ["event_class"])
    await wait_until(lambda: decoded.value(event_class="link_down") == 50)
    assert bus.events == []
    closing = asyncio.create_task(receiver.close())
    await asyncio.sleep(0)
    bus.gate.set()
    await closing
    assert len(bus.events) == 50
    assert {e.payload["if_index"] for e in bus.events} == set(range(1, 51))
    assert [m for _, _, m in bus.published] == [e.id for e in bus.events]  # msg_id = event id


async def test_full_queue_is_counted_as_overloaded() -> None:
    """With the queue full, further traps are rejected ``overloaded`` and counted."""
    bus = GatedBus()
    registry = Registry()
    receiver = TrapReceiver(trap_config(), bus, registry, queue_size=3, publishers=1)
    await receiver.start()
    port = receiver.bound_address[1]
    for i in range(10):
        send_raw(port, _link_down(i + 1))
    full = registry.counter("netcortex_trap_queue_full_total", "")
    # one event is held by the blocked publisher, three wait in the queue
    await wait_until(lambda: full.value() == 6)
    assert rejected(registry, "overloaded") == 6
    # both count as accepted and not yet published
    assert receiver.queue_depth() == 4
    assert 'netcortex_queue_depth{queue="trap_publish"} 4\n' in registry.render()
    bus.gate.set()
    await receiver.close()
    assert len(bus.events) == 4
    assert 'netcortex_queue_depth{queue="trap_publish"} 0\n' in registry.render()


async def test_transient_publish_failure_is_retried_with_the_same_id() -> None:
    """A publish the bus refuses once is retried (same event id) and lands; nothing is lost."""
    bus = GatedBus(fail=1)
    bus.gate.set()
    registry = Registry()
    async with TrapReceiver(trap_config(), bus, registry, publishers=1) as receiver:
        with capture_logs() as logs:
            send_raw(receiver.bound_address[1], _link_down(1))
            await bus.wait_for(1)
    failed = registry.counter("netcortex_trap_publish_failed_total", "", ["error"])
    assert failed.total() == 0
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["trap_publish_retry"]
    assert bus.published[0][2] == logs[0]["event_id"]


async def test_publish_failure_past_retries_is_counted_and_survived() -> None:
    """A bus refusing every retry for longer than the outage budget gets the event counted
    (``bus_outage``) and logged as lost; once the bus takes publishes the next goes on."""
    bus = GatedBus(fail=1_000_000)
    bus.gate.set()
    registry = Registry()
    async with TrapReceiver(
        trap_config(), bus, registry, publishers=1, outage_buffer_seconds=0.3
    ) as receiver:
        with capture_logs() as logs:
            send_raw(receiver.bound_address[1], _link_down(1))
            failed = registry.counter("netcortex_trap_publish_failed_total", "", ["error"])
            await wait_until(lambda: failed.value(error="bus_outage") == 1, within=10)
        bus.fail = 0
        send_raw(receiver.bound_address[1], _link_down(2))
        await bus.wait_for(1)
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["trap_publish_failed"]


async def test_metrics_and_kernel_stats() -> None:
    """Received/decoded/published counters, the decode histogram and rcvbuf gauge are kept."""
    async with running_receiver() as (receiver, bus, registry):
        send_raw(receiver.bound_address[1], _link_down(4))
        await bus.wait_for(1)
        await wait_until(
            lambda: (
                registry.counter("netcortex_trap_published_total", "", ["event_class"]).value(
                    event_class="link_down"
                )
                == 1
            )
        )
    assert registry.counter("netcortex_trap_received_total", "").value() == 1
    received = registry.counter("netcortex_received_total", "", ["source"])
    assert received.value(source="snmp.trap") == 1
    assert registry.histogram("netcortex_trap_decode_seconds", "").count() == 1
    text = registry.render()
    assert "netcortex_trap_decoded_total" in text
    if read_udp_rcvbuf_errors() is not None:
        assert "netcortex_udp_rcvbuf_errors" in text


def test_rcvbuf_reader_tolerates_missing_files(tmp_path: Path) -> None:
    """Non-Linux (no /proc) gives None; a v4 table is parsed."""
    assert read_udp_rcvbuf_errors(("/nonexistent/snmp",)) is None
    snmp = tmp_path / "snmp"
    snmp.write_text(
        "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n"
        "Udp: 10 0 0 10 7 0\n"
    )
    assert read_udp_rcvbuf_errors((str(snmp),)) == 7


_TRUNCATED = bytes.fromhex("3082ffff020101")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(_TRUNCATED, "malformed", id="truncated-ber"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", "malformed", id="not-snmp"),
        pytest.param(b"", "malformed", id="empty"),
        pytest.param(b"\x30\x03\x02\x01\x02", "unsupported_version", id="v2u"),
        pytest.param(b"\x30" + b"\x82\x23\x2c" + bytes(9004), "too_large", id="oversized"),
        pytest.param(
            ber.encode_message(Message(1, b"public", Pdu(0xA0, request_id=7))),
            "unexpected_pdu",
            id="get-request",
        ),
    ],
)
async def test_bad_datagram_rejected_then_good_served(payload: bytes, reason: str) -> None:
    """Garbage, truncated, oversized and non-notification datagrams are rejected by reason."""
    good = ber.encode_message(
        Message(
            1,
            b"public",
            Pdu(
                0xA7,
                request_id=1,
                varbinds=[
                    VarBind("1.3.6.1.2.1.1.3.0", "TimeTicks", 5),
                    VarBind("1.3.6.1.6.3.1.1.4.1.0", "ObjectIdentifier", "1.3.6.1.6.3.1.1.5.1"),
                ],
            ),
        )
    )
    async with running_receiver() as (receiver, bus, registry):
        port = receiver.bound_address[1]
        send_raw(port, payload)
        await wait_until(lambda: rejected(registry, reason) == 1)
        send_raw(port, good)
        (event,) = await bus.wait_for(1)
    assert event.event_class == "device_reboot"
    assert registry.counter("netcortex_trap_received_total", "").value() == 2
    # every datagram, rejected or not, counts as received from its source
    received = registry.counter("netcortex_received_total", "", ["source"])
    assert received.by_label("source") == {"snmp.trap": 2}


async def test_rejection_logs_are_rate_limited() -> None:
    """A flood of one bad input logs once per (agent, reason) and counts every datagram."""
    async with running_receiver(log_interval=60.0) as (receiver, _bus, registry):
        port = receiver.bound_address[1]
        with capture_logs() as logs:
            for _ in range(200):
                send_raw(port, b"junk")
            send_raw(port, b"junk", source="127.0.0.3")
            await wait_until(lambda: rejected(registry, "malformed") == 201)
    lines = [e for e in logs if e["event"] == "trap_rejected"]
    assert sorted(line["agent"] for line in lines) == ["127.0.0.1", "127.0.0.3"]


async def test_flood_from_many_sources_logs_a_bounded_number_of_lines() -> None:
    """Junk from more new senders than the per-interval budget is summed into one line."""
    async with running_receiver(log_interval=60.0, log_new_agents=5) as (receiver, _bus, registry):
        port = receiver.bound_address[1]
        with capture_logs() as logs:
            for i in range(2, 22):  # twenty distinct loopback sources
                send_raw(port, b"junk", source=f"127.0.0.{i}")
            await wait_until(lambda: rejected(registry, "malformed") == 20)
            await receiver.close()
    lines = [e for e in logs if e["event"] == "trap_rejected"]
    assert len(lines) == 6
    (summary,) = [line for line in lines if line["agent"] == "*"]
    assert (summary["reason"], summary["suppressed"]) == ("malformed", 15)


def test_inform_answered_under_uvloop() -> None:
    """Under uvloop a raw v2c inform is answered and published like under asyncio."""
    import uvloop  # a pinned dependency: its absence is a failure, not a skip

    async def scenario() -> tuple[bytes, str]:
        async with running_receiver() as (receiver, bus, _registry):
            vbs = [
                VarBind("1.3.6.1.2.1.1.3.0", "TimeTicks", 1),
                VarBind("1.3.6.1.6.3.1.1.4.1.0", "ObjectIdentifier", "1.3.6.1.6.3.1.1.5.2"),
            ]
            inform = ber.encode_message(Message(1, b"public", Pdu(0xA6, 77, varbinds=vbs)))
            loop = asyncio.get_running_loop()
            replies: asyncio.Queue[bytes] = asyncio.Queue()

            class Client(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: object) -> None:
                    replies.put_nowait(data)

            transport, _ = await loop.create_datagram_endpoint(
                Client, remote_addr=receiver.bound_address
            )
            try:
                transport.sendto(inform)
                async with asyncio.timeout(5):
                    reply = await replies.get()
            finally:
                transport.close()
            (event,) = await bus.wait_for(1)
            return reply, event.event_class

    reply, event_class = uvloop.run(scenario())
    response = ber.decode_message(reply)
    assert response.pdu is not None
    assert (response.pdu.tag, response.pdu.request_id) == (ber.RESPONSE, 77)
    assert event_class == "device_reboot"


async def test_ipv6_listener() -> None:
    """The receiver binds an IPv6 host and names an IPv6 sender as the agent."""
    # Linux with IPv6 loopback is this project's platform: no skip when it is missing.
    async with running_receiver(trap_config(host="::1", allowed_sources=["::1/128"])) as (
        receiver,
        bus,
        _registry,
    ):
        host, port = receiver.bound_address
        assert host == "::1"
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.sendto(_link_down(3), ("::1", port))
        (event,) = await bus.wait_for(1)
    assert event.agent == "::1"
    assert event.target == "::1|ifIndex=3"
