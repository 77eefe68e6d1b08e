"""SNMPv2c linkDown decode rate: netcortex's BER decoder vs pysnmp 7, same run, one core.

Two measurements, each printed as one summary line per receiver plus the ratio:

1. decode-only, in process: distinct v2c linkDown datagrams (net-snmp's shape:
   sysUpTime, snmpTrapOID, ifIndex, ifAdminStatus, ifOperStatus, ifDescr, ifName;
   distinct ifIndex and request-id) through ``TrapDecoder.decode`` +
   ``Normalizer.normalize`` (and through the codec's ``encode_event``, i.e. ready
   to publish), against pysnmp/pyasn1 decoding the same datagrams into a message
   and its varbinds (what pysnmp's receiver does before any callback).
2. loopback UDP at the same offered load: a sender process offers ``--udp-count``
   traps at ``--rate``/s to (a) the real ``TrapReceiver`` publishing to a counting
   bus and (b) pysnmp 7's own ``NotificationReceiver`` with a counting callback,
   each alone in its own process with the same 4 MiB socket buffer. Reported:
   handled/offered and receiver CPU per trap.

    .venv/bin/python benchmarks/bench_trap_decode.py [--count 20000] [--udp-count 20000]
        [--rate 10000] [--pysnmp-count 2000] [--skip-udp]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from netcortex.sensory.trap.ber import Message, Pdu, VarBind, encode_message

_RCVBUF = 4 * 1024 * 1024
_GRACE = 1.0  # seconds after the offered window that still count as handled


def link_down(request_id: int, if_index: int) -> bytes:
    """A v2c linkDown as net-snmp sends it, with distinct ifIndex and request-id."""
    i = if_index
    vbs = [
        VarBind("1.3.6.1.2.1.1.3.0", "TimeTicks", 360000 + i),
        VarBind("1.3.6.1.6.3.1.1.4.1.0", "ObjectIdentifier", "1.3.6.1.6.3.1.1.5.3"),
        VarBind(f"1.3.6.1.2.1.2.2.1.1.{i}", "Integer", i),
        VarBind(f"1.3.6.1.2.1.2.2.1.7.{i}", "Integer", 1),
        VarBind(f"1.3.6.1.2.1.2.2.1.8.{i}", "Integer", 2),
        VarBind(f"1.3.6.1.2.1.2.2.1.2.{i}", "OctetString", f"GigabitEthernet1/0/{i}".encode()),
        VarBind(f"1.3.6.1.2.1.31.1.1.1.1.{i}", "OctetString", f"Gi1/0/{i}".encode()),
    ]
    return encode_message(Message(1, b"public", Pdu(0xA7, request_id, varbinds=vbs)))


def packets(count: int) -> list[bytes]:
    """``count`` distinct linkDown datagrams (ifIndex 1..100000, cycling)."""
    return [link_down(n + 1, 1 + n % 100_000) for n in range(count)]


def _rate(fn: Callable[[bytes], object], pkts: Sequence[bytes], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in pkts:
            fn(p)
        best = min(best, time.perf_counter() - t0)
    return len(pkts) / best


def decode_only(count: int, pysnmp_count: int) -> None:
    """Print the in-process decode rates of netcortex and pysnmp."""
    from pyasn1.codec.ber import decoder as asn1_decoder
    from pysnmp.proto import api

    from netcortex.config import TrapConfig
    from netcortex.contracts.codec import encode_event
    from netcortex.sensory.trap import Normalizer, TrapDecoder

    pkts = packets(count)
    dec = TrapDecoder(TrapConfig())
    norm = Normalizer()

    def ours(p: bytes) -> object:
        return norm.normalize(dec.decode(p), "127.0.0.1")

    def ours_encoded(p: bytes) -> object:
        return encode_event(norm.normalize(dec.decode(p), "127.0.0.1"))

    def theirs(p: bytes) -> object:
        version = int(api.decodeMessageVersion(p))
        pmod = api.PROTOCOL_MODULES[version]
        msg, _ = asn1_decoder.decode(p, asn1Spec=pmod.Message())
        pdu = pmod.apiMessage.get_pdu(msg)
        return [(str(o), v.prettyPrint()) for o, v in pmod.apiPDU.get_varbinds(pdu)]

    r_dec = _rate(dec.decode, pkts)
    r_ours = _rate(ours, pkts)
    r_enc = _rate(ours_encoded, pkts)
    r_theirs = _rate(theirs, pkts[:pysnmp_count], repeat=1)
    print(
        f"decode-only netcortex [1 core]: {r_ours:,.0f} traps/s decode+normalize "
        f"({1e6 / r_ours:.1f} µs/trap; decode alone {r_dec:,.0f}/s, "
        f"+encode_event {r_enc:,.0f}/s), {count} distinct v2c linkDowns"
    )
    print(
        f"decode-only pysnmp {_pysnmp_version()} [1 core]: {r_theirs:,.0f} traps/s "
        f"({1e6 / r_theirs:.1f} µs/trap), {pysnmp_count} of the same datagrams"
    )
    print(f"decode-only ratio netcortex/pysnmp: {r_ours / r_theirs:.1f}x")


def _pysnmp_version() -> str:
    import pysnmp

    return str(pysnmp.__version__)


# --------------------------------------------------------------------------- UDP


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def _count_until(counter: Callable[[], int], expected: int, window: float) -> None:
    """Return when ``expected`` were handled or ``window`` seconds have passed."""
    deadline = time.monotonic() + window
    while counter() < expected and time.monotonic() < deadline:  # noqa: ASYNC110 - plain counter
        await asyncio.sleep(0.02)


def _netcortex_receiver(conn: Connection, expected: int, window: float, loop_name: str) -> None:
    from netcortex.config import TrapConfig
    from netcortex.sensory.trap import TrapReceiver

    class CountingBus:
        def __init__(self) -> None:
            self.count = 0

        async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
            self.count += 1

    async def main() -> None:
        bus = CountingBus()
        config = TrapConfig(host="127.0.0.1", port=0, recv_buffer=_RCVBUF)
        receiver = TrapReceiver(config, bus)  # type: ignore[arg-type]
        await receiver.start()
        conn.send(receiver.bound_address[1])
        conn.recv()  # the sender has started
        cpu0 = time.process_time()
        await _count_until(lambda: bus.count, expected, window)
        cpu = time.process_time() - cpu0
        await receiver.close()
        conn.send((bus.count, cpu))

    if loop_name == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def _pysnmp_receiver(conn: Connection, expected: int, window: float, loop_name: str) -> None:
    from pysnmp.carrier.asyncio.dgram import udp
    from pysnmp.entity import config, engine
    from pysnmp.entity.rfc3413 import ntfrcv

    async def main() -> None:
        handled = [0]

        def callback(*_args: Any) -> None:
            handled[0] += 1

        snmp_engine = engine.SnmpEngine()
        sock = _socket()
        config.add_transport(
            snmp_engine, udp.DOMAIN_NAME, udp.UdpTransport().open_server_mode(sock=sock)
        )
        config.add_v1_system(snmp_engine, "bench-area", "public")
        ntfrcv.NotificationReceiver(snmp_engine, callback)
        await asyncio.sleep(0.1)  # let the transport attach to the loop
        conn.send(sock.getsockname()[1])
        conn.recv()
        cpu0 = time.process_time()
        await _count_until(lambda: handled[0], expected, window)
        cpu = time.process_time() - cpu0
        snmp_engine.close_dispatcher()
        conn.send((handled[0], cpu))

    asyncio.run(main())


def _sender(port: int, count: int, rate: float, conn: Connection) -> None:
    pkts = packets(count)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn.send("ready")
    conn.recv()
    start = time.perf_counter()
    batch = max(1, int(rate / 1000))  # pace in 1 ms slices
    for i in range(0, count, batch):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        for p in pkts[i : i + batch]:
            sock.sendto(p, ("127.0.0.1", port))
    conn.send(time.perf_counter() - start)


def udp_run(
    target: Callable[[Connection, int, float, str], None],
    count: int,
    rate: float,
    loop_name: str,
) -> tuple[int, float, float]:
    """Offer ``count`` traps at ``rate`` to one receiver process; (handled, cpu s, send s).

    Handled counts what the receiver finished within the offered window plus
    ``_GRACE`` seconds — a sustained rate, not how long a backlog takes to drain.
    """
    ctx = mp.get_context("spawn")
    r_parent, r_child = ctx.Pipe()
    s_parent, s_child = ctx.Pipe()
    window = count / rate + _GRACE
    receiver = ctx.Process(target=target, args=(r_child, count, window, loop_name))
    receiver.start()
    port = r_parent.recv()
    sender = ctx.Process(target=_sender, args=(port, count, rate, s_child))
    sender.start()
    s_parent.recv()  # packets built
    r_parent.send("go")
    s_parent.send("go")
    sent_for = s_parent.recv()
    handled, cpu = r_parent.recv()
    sender.join()
    receiver.join()
    return handled, cpu, sent_for


def main(argv: Sequence[str] | None = None) -> None:
    """Run both measurements and print the summary lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20_000, help="datagrams, decode-only (ours)")
    ap.add_argument(
        "--pysnmp-count", type=int, default=2_000, help="datagrams, decode-only (pysnmp)"
    )
    ap.add_argument("--udp-count", type=int, default=20_000, help="traps offered over UDP")
    ap.add_argument("--rate", type=float, default=10_000, help="offered traps/s over UDP")
    ap.add_argument("--skip-udp", action="store_true", help="only the decode-only figures")
    args = ap.parse_args(argv)

    decode_only(args.count, args.pysnmp_count)
    if args.skip_udp:
        return
    results: dict[str, tuple[int, float, float]] = {}
    runs = [
        ("netcortex TrapReceiver [asyncio]", _netcortex_receiver, "asyncio"),
        ("netcortex TrapReceiver [uvloop]", _netcortex_receiver, "uvloop"),
        (f"pysnmp {_pysnmp_version()} NotificationReceiver [asyncio]", _pysnmp_receiver, "asyncio"),
    ]
    for name, target, loop_name in runs:
        handled, cpu, sent_for = udp_run(target, args.udp_count, args.rate, loop_name)
        results[name] = (handled, cpu, sent_for)
        print(
            f"udp {name}: offered {args.udp_count} at {args.rate:,.0f}/s "
            f"(sent in {sent_for:.2f} s), handled within +{_GRACE:.0f} s: {handled} "
            f"({100 * handled / args.udp_count:.1f} %), "
            f"receiver CPU {1e6 * cpu / max(handled, 1):.0f} µs/trap"
        )
    ours, theirs = results[runs[0][0]], results[runs[2][0]]
    print(
        f"udp ratio netcortex/pysnmp at {args.rate:,.0f}/s offered: handled "
        f"{ours[0] / max(theirs[0], 1):.1f}x, CPU per trap "
        f"{(theirs[1] / max(theirs[0], 1)) / (ours[1] / max(ours[0], 1)):.1f}x less"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
