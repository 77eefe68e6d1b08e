"""SNMP poll client rate: IF-MIB walks per second against a local net-snmp ``snmpd``.

Usage::

    .venv/bin/python benchmarks/bench_poll.py [--polls 400] [--concurrency 32]
        [--max-repetitions 25]

One "device poll" is what an interface poller needs: GETBULK walks of ifDescr,
ifName, ifAdminStatus, ifOperStatus and ifLastChange plus a GET of sysUpTime.0,
the walks of one poll run concurrently. ``--polls`` device polls run with at
most ``--concurrency`` in flight, all over one ``SnmpClient``, against one
``snmpd`` on loopback (started through ``tests/servers.py``; its IF-MIB is this
host's interfaces). Prints device polls/s, interfaces/s (rows of the ifOperStatus
column per second), requests/s, and this process's CPU per request (``snmpd``
is a separate process, so that is the client's own cost).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import SnmpdServer

from netcortex.sensory.poll.snmp import PollTarget, SnmpClient

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
COLUMNS = {
    "ifDescr": "1.3.6.1.2.1.2.2.1.2",
    "ifAdminStatus": "1.3.6.1.2.1.2.2.1.7",
    "ifOperStatus": "1.3.6.1.2.1.2.2.1.8",
    "ifLastChange": "1.3.6.1.2.1.2.2.1.9",
    "ifName": "1.3.6.1.2.1.31.1.1.1.1",
}


async def run(server: SnmpdServer, polls: int, concurrency: int, reps: int) -> None:
    target = PollTarget(server.host, server.port, server.community, timeout=2.0, retries=1)
    limit = asyncio.Semaphore(concurrency)
    interfaces = 0
    requests = 0

    async def device_poll(client: SnmpClient) -> None:
        nonlocal interfaces, requests
        async with limit:
            results = await asyncio.gather(
                client.get(target, [SYS_UPTIME]),
                *(client.bulk_walk(target, oid, reps) for oid in COLUMNS.values()),
            )
        oper = results[1 + list(COLUMNS).index("ifOperStatus")]
        interfaces += len(oper)
        # Rounds per walk: every full GETBULK answer, plus the one that left the subtree.
        requests += 1 + sum(len(r) // reps + 1 for r in results[1:])

    async with SnmpClient() as client:
        await device_poll(client)  # warm-up (and the OID cache)
        interfaces = requests = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(device_poll(client) for _ in range(polls)))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        f"poll: {polls} device polls ({interfaces // polls} interfaces, {len(COLUMNS)} columns"
        f" + sysUpTime), concurrency {concurrency}, max-repetitions {reps}: "
        f"{polls / elapsed:,.0f} device polls/s, {interfaces / elapsed:,.0f} interfaces/s, "
        f"{requests / elapsed:,.0f} requests/s, client CPU {cpu / requests * 1e6:,.0f} µs/request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-repetitions", type=int, default=25)
    args = parser.parse_args()
    with SnmpdServer() as server:
        asyncio.run(run(server, args.polls, args.concurrency, args.max_repetitions))


if __name__ == "__main__":
    main()
