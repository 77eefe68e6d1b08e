"""Kernel UDP receive-buffer drops: the ``/proc/net/udp`` reader and the trap receiver's
``netcortex_udp_kernel_drops_total{listener="trap"}``, against real flooded sockets."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from netcortex.metrics import Counter, Registry
from netcortex.sensory.trap.transport import read_udp_socket_drops
from tests.unit.sensory.trap._helpers import running_receiver, trap_config

# netcortex runs (and is tested) on Linux, where /proc/net/udp and IPv6 loopback
# exist: these tests fail rather than skip if either is missing, so a machine that
# cannot export kernel drops never passes as one that does.

#: Datagrams sent without reading: far more than a small buffer holds.
FLOOD = 3000
PAYLOAD = b"x" * 1200


def _inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def _flood(port: int, count: int = FLOOD) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(PAYLOAD, ("127.0.0.1", port))


def _tiny_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
    sock.bind(("127.0.0.1", 0))
    return sock


def test_drops_of_a_flooded_socket_are_read_by_its_inode() -> None:
    """A socket flooded without reading shows drops > 0 under its own inode; another
    socket's (fed within its buffer) stays 0 — rows are matched by inode, not summed."""
    with _tiny_socket() as flooded, _tiny_socket() as quiet:
        assert read_udp_socket_drops(_inode(flooded)) == 0
        _flood(flooded.getsockname()[1])
        _flood(quiet.getsockname()[1], count=1)
        drops = read_udp_socket_drops(_inode(flooded))
        assert drops is not None
        assert 0 < drops < FLOOD
        assert read_udp_socket_drops(_inode(quiet)) == 0
        # What the socket kept plus what the kernel dropped is what was sent.
        kept = 0
        flooded.setblocking(False)
        while True:
            try:
                flooded.recv(2048)
            except BlockingIOError:
                break
            kept += 1
        assert kept + drops == FLOOD


def test_ipv6_sockets_are_found_in_udp6() -> None:
    """An IPv6 socket's row is in ``/proc/net/udp6``; its drops are read the same way."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.bind(("::1", 0))
    with sock:
        assert read_udp_socket_drops(_inode(sock)) == 0


def test_unreadable_tables_or_unknown_inode_give_none(tmp_path: Path) -> None:
    """No readable table (not Linux) or no row for the inode → ``None``, never an error."""
    missing = (str(tmp_path / "nope"), str(tmp_path / "nope6"))
    assert read_udp_socket_drops(1234, missing) is None
    table = tmp_path / "udp"
    table.write_text(
        "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
        "   uid  timeout inode ref pointer drops\n"
        "  1: 0100007F:0A2B 00000000:0000 07 00000000:00000000 00:00000000 00000000"
        "  1000        0 4242 2 0000000000000000 17\n"
        "  2: garbage\n",
        encoding="ascii",
    )
    assert read_udp_socket_drops(4242, (str(table),)) == 17
    assert read_udp_socket_drops(4243, (str(table),)) is None


def _drops(registry: Registry) -> float | None:
    metric = registry.get("netcortex_udp_kernel_drops_total")
    assert isinstance(metric, Counter)
    samples = {labels["listener"]: v for labels, v in metric.samples()}
    return samples.get("trap")


async def test_receiver_exports_and_logs_its_socket_drops() -> None:
    """A flood while the loop is busy (the receiver cannot read) overflows the smallest
    allowed buffer: the metric rises on scrape and one warning names the listener."""
    config = trap_config(recv_buffer=65536)
    async with running_receiver(config, log_interval=60.0) as (receiver, _bus, registry):
        registry.collect()
        assert _drops(registry) == 0
        assert 'netcortex_udp_kernel_drops_total{listener="trap"} 0' in registry.render()
        with capture_logs() as logs:
            _flood(receiver.bound_address[1])  # synchronous: the loop reads nothing meanwhile
            text = registry.render()
            _flood(receiver.bound_address[1])
            registry.collect()
        total = _drops(registry)
        assert total is not None
        scraped = next(
            line for line in text.splitlines() if line.startswith("netcortex_udp_kernel_drops")
        )
        first = float(scraped.split()[-1])
        assert 0 < first < total  # read at each scrape, rising
        warnings = [line for line in logs if line["event"] == "udp_kernel_drops"]
        assert len(warnings) == 1  # rate-limited: the second rise is counted, not logged
        assert warnings[0]["log_level"] == "warning"
        assert warnings[0]["listener"] == "trap"


async def test_receiver_without_proc_tables_has_no_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where ``/proc/net/udp`` cannot be read the series is absent and one debug line
    says so (never an error, however often it is scraped)."""
    from netcortex.sensory.trap import transport

    real = transport.read_udp_socket_drops

    def unreadable(inode: int) -> int | None:
        return real(inode, ("/nonexistent/udp", "/nonexistent/udp6"))

    monkeypatch.setattr(transport, "read_udp_socket_drops", unreadable)
    with capture_logs() as logs:
        async with running_receiver(log_interval=60.0) as (_receiver, _bus, registry):
            registry.render()
            text = registry.render()
    assert "netcortex_udp_kernel_drops_total{" not in text
    debug = [line for line in logs if line["event"] == "udp_kernel_drops_unavailable"]
    assert len(debug) == 1
    assert debug[0]["log_level"] == "debug"
    assert not [
        line
        for line in logs
        if line["event"].startswith("udp_kernel") and line["log_level"] != "debug"
    ]
