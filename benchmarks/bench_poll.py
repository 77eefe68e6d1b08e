"""SNMP polling (issue 5): a whole cycle of many devices' interfaces through ``PollReceiver``.

Usage::

    .venv/bin/python benchmarks/bench_poll.py [--devices 100] [--interfaces 100]
        [--concurrency 64] [--flip 0.01] [--repeat 3] [--no-bgp] [--profile]
        [--no-uvloop]

The agent is ``benchmarks/snmp_agent.py`` in a second process (its own core):
``--devices`` simulated v2c devices on one UDP port, the community selecting the
device, each with ``--interfaces`` IF-MIB rows, answered from pre-encoded
varbinds. The poller is this process: the real ``PollReceiver`` (config as an
operator writes it: one ``poll.targets`` entry per device, ``poll.concurrency``
``--concurrency``, BGP walks on unless ``--no-bgp``, SQLite state in a temp dir,
the memory bus with one subscriber counting what arrives). A cycle runs the
receiver's own per-device poll (``_poll``: the concurrency cap, GET sysUpTime.0,
five IF-MIB GETBULK walks, two BGP4-MIB walks, snapshot, ``diff``, publish,
save) for every device at once — what the scheduler spreads over one interval —
and is timed to its last saved snapshot.

Cycles, in order: the first poll (baseline: diffs against nothing, saves every
snapshot), a cycle after ``--flip`` of the interfaces had ifOperStatus toggled
on the agent (one ``link_down``/``link_up`` each must reach the bus), and a
steady cycle (no change). For each: wall time, interfaces/s, this process's CPU
(``time.process_time``, SQLite's thread included) and the agent's CPU, and the
ratio to the 60 s budget of issue 5.

Baselines in the same run, same agent, same request mix: ``wire`` — a blocking
loop in this process sending the cycle's pre-encoded GETBULK/GET datagrams with
``--concurrency`` in flight and not decoding the answers (the agent's ceiling);
``client`` — the same walks through ``SnmpClient`` with no snapshot, diff, bus
or state. ``--profile`` prints the top of a cProfile of the flipped cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from netcortex.config import BusConfig, LogConfig, PollConfig, PollTargetConfig
from netcortex.logs import configure_logging
from netcortex.sensory.poll.scheduler import PollReceiver
from netcortex.sensory.poll.snmp import PollTarget, SnmpClient
from netcortex.sensory.trap.ber import GET_BULK, GET_REQUEST, Message, Pdu, VarBind, encode_message
from netcortex.thalamus.memory import InMemoryEventBus

AGENT = Path(__file__).resolve().parent / "snmp_agent.py"
BUDGET = 60.0
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IF_COLUMNS = (
    "1.3.6.1.2.1.2.2.1.8",  # ifOperStatus
    "1.3.6.1.2.1.2.2.1.7",  # ifAdminStatus
    "1.3.6.1.2.1.31.1.1.1.1",  # ifName
    "1.3.6.1.2.1.2.2.1.2",  # ifDescr
    "1.3.6.1.2.1.2.2.1.9",  # ifLastChange
)
#: BGP4-MIB bgpPeerState, bgpPeerRemoteAddr, and CISCO-BGP4-MIB cbgpPeer2State (the
#: receiver walks all three; the agent serves the first two).
BGP_COLUMNS = ("1.3.6.1.2.1.15.3.1.2", "1.3.6.1.2.1.15.3.1.7", "1.3.6.1.4.1.9.9.187.1.2.5.1.3")
REPS = 25  # SnmpClient.bulk_walk's default, what the scheduler uses


def community(d: int) -> str:
    return f"dev{d:04d}"


# ---------------------------------------------------------------------------- agent


class AgentProcess:
    """``snmp_agent.py`` in a subprocess, with its control datagrams."""

    def __init__(self, devices: int, interfaces: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(AGENT),
                "--devices",
                str(devices),
                "--interfaces",
                str(interfaces),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"agent did not start: {line!r}")
        self.port = int(line.split()[1])
        self.ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.ctl.settimeout(5.0)

    def control(self, text: str) -> str:
        self.ctl.sendto(text.encode(), ("127.0.0.1", self.port))
        return self.ctl.recv(100).decode()

    def cpu(self) -> float:
        """The agent's CPU seconds so far (user + system, from /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.control("QUIT")
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.ctl.close()


# ---------------------------------------------------------------------------- baselines


def wire_requests(devices: int, interfaces: int, bgp: bool) -> list[bytes]:
    """Every datagram one poll cycle sends, pre-encoded (the rounds of each walk)."""
    out: list[bytes] = []
    rid = 1
    for d in range(devices):
        c = community(d).encode()
        reqs = [(GET_REQUEST, SYS_UPTIME, 0)]
        for col in IF_COLUMNS:
            # A round per full answer, plus the one that leaves the subtree.
            reqs += [
                (GET_BULK, col if i == 0 else f"{col}.{i}", REPS)
                for i in range(0, interfaces + 1, REPS)
            ]
        if bgp:
            reqs += [(GET_BULK, col, REPS) for col in BGP_COLUMNS]
        for tag, oid, reps in reqs:
            pdu = Pdu(tag, request_id=rid, error_index=reps, varbinds=[VarBind(oid, "Null", None)])
            out.append(encode_message(Message(1, c, pdu)))
            rid += 1
    return out


def wire_baseline(port: int, requests: list[bytes], window: int, passes: int) -> tuple[float, int]:
    """Seconds to get an answer to every request ``passes`` times, ``window`` in flight."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.settimeout(1.0)
    addr = ("127.0.0.1", port)
    todo = requests * passes
    lost = 0
    t0 = time.perf_counter()
    sent = 0
    for data in todo[:window]:
        sock.sendto(data, addr)
        sent += 1
    answered = 0
    while answered + lost < len(todo):
        try:
            sock.recv(65535)
            answered += 1
        except TimeoutError:
            lost = sent - answered  # give up on the ones in flight
            answered = sent - lost
            if sent == len(todo):
                break
        if sent < len(todo):
            sock.sendto(todo[sent], addr)
            sent += 1
    elapsed = time.perf_counter() - t0
    sock.close()
    return elapsed, lost


async def client_baseline(
    port: int, devices: int, concurrency: int, bgp: bool
) -> tuple[float, float, int]:
    """(seconds, CPU seconds, interfaces) for the cycle's walks through ``SnmpClient`` only."""
    limit = asyncio.Semaphore(concurrency)
    rows = 0

    async with SnmpClient() as client:

        async def one(d: int) -> None:
            nonlocal rows
            target = PollTarget("127.0.0.1", port, community(d), timeout=2.0, retries=1)
            async with limit:
                await client.get(target, [SYS_UPTIME])
                walks = await asyncio.gather(*(client.bulk_walk(target, c) for c in IF_COLUMNS))
                if bgp:
                    await asyncio.gather(*(client.bulk_walk(target, c) for c in BGP_COLUMNS))
            rows += len(walks[0])

        await one(0)  # warm-up
        rows = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(d) for d in range(devices)))
        return time.perf_counter() - t0, time.process_time() - cpu0, rows


# ---------------------------------------------------------------------------- the poller


class _Late(random.Random):
    """Puts every scheduled first poll at the end of the (long) interval: the
    benchmark drives the cycles itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def poller_cycles(
    agent: AgentProcess, args: argparse.Namespace, state_dir: Path
) -> list[tuple[str, float, float, float, dict[str, int], int]]:
    """[(name, seconds, CPU, agent CPU, events, interfaces)] for each cycle."""
    config = PollConfig(
        enabled=True,
        interval_seconds=86400.0,
        jitter=0.0,
        concurrency=args.concurrency,
        timeout_seconds=2.0,
        retries=1,
        inventory=False,
        bgp=not args.no_bgp,
        state_path=state_dir / "poll_state.db",
        targets=[
            PollTargetConfig(
                device=community(d),
                host="127.0.0.1",
                port=agent.port,
                community=SecretStr(community(d)),
            )
            for d in range(args.devices)
        ],
    )
    flips = round(args.devices * args.interfaces * args.flip)
    results = []
    async with InMemoryEventBus(BusConfig(queue_size=1_000_000)) as bus:
        sub = await bus.subscribe("sensory.snmp.poll.>")
        receiver = PollReceiver(config, bus, rng=_Late())
        async with receiver:
            targets = receiver._targets
            assert len(targets) == args.devices
            plan = [("first poll (baseline)", 0)]
            plan += [("after flips", flips), ("steady", 0)] * args.repeat
            for name, flip in plan:
                if flip:
                    # The same seed each time: the same interfaces go down, then up again.
                    assert agent.control(f"FLIP {flip} 5") == f"OK {flip}"
                received0 = receiver._received.value(source="snmp.poll")
                profile = cProfile.Profile() if args.profile and flip else None
                agent0, cpu0, t0 = agent.cpu(), time.process_time(), time.perf_counter()
                if profile is not None:
                    profile.enable()
                await asyncio.gather(*(receiver._poll(t) for t in targets))
                if profile is not None:
                    profile.disable()
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                agent_cpu = agent.cpu() - agent0
                polls = receiver._received.value(source="snmp.poll") - received0
                if polls != args.devices:
                    raise RuntimeError(f"{name}: {polls} of {args.devices} polls succeeded")
                # Every event sits in the subscriber's mailbox once its poll returned.
                classes: Counter[str] = Counter()
                for _ in range(flip):
                    msg = await sub.next(timeout=5.0)
                    classes[msg.subject.split(".")[3]] += 1
                    await msg.ack()
                with contextlib.suppress(TimeoutError):
                    extra = await sub.next(timeout=0.05)
                    raise RuntimeError(f"{name}: unexpected event {extra.subject}")
                results.append(
                    (name, elapsed, cpu, agent_cpu, dict(classes), args.devices * args.interfaces)
                )
                if profile is not None:
                    _print_profile(profile)
    return results


def _print_profile(profile: cProfile.Profile) -> None:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(18)
    print(out.getvalue())


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--interfaces", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--flip", type=float, default=0.01, help="fraction of interfaces toggled")
    parser.add_argument("--no-bgp", action="store_true", help="do not walk BGP4-MIB")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--profile", action="store_true", help="cProfile the flipped cycle")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    args = parser.parse_args()
    configure_logging(LogConfig(level="warning"))
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if not args.no_uvloop:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            pass
    total = args.devices * args.interfaces
    bgp = not args.no_bgp
    agent = AgentProcess(args.devices, args.interfaces)
    wires: list[tuple[float, int, float]] = []
    clients: list[tuple[float, float, float]] = []
    try:
        requests = wire_requests(args.devices, args.interfaces, bgp)
        wire_baseline(agent.port, requests[: args.concurrency * 4], args.concurrency, 1)  # warm
        for _ in range(args.repeat):
            a0 = agent.cpu()
            wire_s, lost = wire_baseline(agent.port, requests, args.concurrency, 1)
            wires.append((wire_s, lost, agent.cpu() - a0))
        with asyncio.Runner(loop_factory=factory) as runner:
            for _ in range(args.repeat):
                a0 = agent.cpu()
                client_s, client_cpu, rows = runner.run(
                    client_baseline(agent.port, args.devices, args.concurrency, bgp)
                )
                clients.append((client_s, client_cpu, agent.cpu() - a0))
                if rows != total:
                    raise RuntimeError(f"client walks saw {rows} interfaces, expected {total}")
            with tempfile.TemporaryDirectory() as tmp:
                cycles = runner.run(poller_cycles(agent, args, Path(tmp)))
    finally:
        agent.close()

    wire_s, lost, wire_agent = _median(wires)
    client_s, client_cpu, client_agent = _median(clients)
    per_cycle = len(requests)
    print(
        f"poll: {args.devices} devices x {args.interfaces} interfaces = {total:,} interfaces, "
        f"{per_cycle:,} requests per cycle ({len(IF_COLUMNS)} IF-MIB walks"
        f"{' + 3 BGP walks' if bgp else ''} + GET sysUpTime.0, max-repetitions {REPS}), "
        f"concurrency {args.concurrency}, {'asyncio' if factory is None else 'uvloop'}; "
        f"medians of {args.repeat} runs"
    )
    print(
        f"  wire (baseline, no decode):      {wire_s:6.3f} s {total / wire_s:9,.0f} interfaces/s  "
        f"{per_cycle / wire_s:7,.0f} req/s  agent CPU {wire_agent:5.2f} s  lost {lost}"
    )
    print(
        f"  SnmpClient walks only:           {client_s:6.3f} s {total / client_s:9,.0f} "
        f"interfaces/s  {per_cycle / client_s:7,.0f} req/s  poller CPU {client_cpu:5.2f} s  "
        f"agent CPU {client_agent:5.2f} s  ({client_s / wire_s:.2f}x wire)"
    )
    for name in dict.fromkeys(c[0] for c in cycles):
        runs = [c for c in cycles if c[0] == name]
        secs, cpu, agent_cpu = _median([c[1:4] for c in runs])
        events: Counter[str] = Counter()
        for c in runs:
            events.update(c[4])
        n = runs[0][5]
        print(
            f"  PollReceiver, {name + ':':22s} {secs:6.3f} s {n / secs:9,.0f} interfaces/s  "
            f"poller CPU {cpu:5.2f} s = {cpu / BUDGET:.1%} of a core over 60 s  "
            f"agent CPU {agent_cpu:5.2f} s  events {dict(events)} in {len(runs)} cycle(s)  "
            f"{secs / wire_s:.2f}x wire, {secs / client_s:.2f}x client, "
            f"cycle = {secs / BUDGET:.2%} of the 60 s budget"
        )


def _median(rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The row whose first column (wall time) is the median."""
    return sorted(rows, key=lambda r: r[0])[len(rows) // 2]


if __name__ == "__main__":
    main()
