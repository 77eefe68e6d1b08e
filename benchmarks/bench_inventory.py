"""Inventory benchmark: lookup latency with 100k interfaces loaded (goal: p99 < 50 µs).

Usage::

    .venv/bin/python benchmarks/bench_inventory.py [--devices 2000] [--ports 50] [--lookups 200000]

Builds a synthetic NetBox-shaped inventory (``devices`` switches x ``ports``
interfaces, each cabled to the same port of the next switch, one management IP
per device, ifIndex = port number), writes it to a temporary JSON file and loads
it through ``FileInventory`` (the real parser and indexer). Then times, one call
at a time with ``perf_counter_ns``, random lookups of:

* ``device_by_address`` (an address string as a trap's agent address);
* ``interface(device, if_index=…)``;
* ``interface(device, name="Gi1/0/N")`` — the short form, resolved through the
  normalised-name index;
* ``cable_peer(device, "GigabitEthernet1/0/N")``.

Prints the load time and one line with p50/p99 per lookup kind (µs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netcortex.memory.semantic import FileInventory


def _brief_dev(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"sw{i}", "display": f"sw{i}"}


def synthetic(devices: int, ports: int) -> dict[str, Any]:
    """A NetBox-shaped document: ``devices`` x ``ports`` interfaces in a cabled ring."""
    devs, ifaces, ips = [], [], []
    for d in range(devices):
        a, b, c = 10 + d // 65536, (d // 256) % 256, d % 256
        devs.append(
            {
                "id": d,
                "name": f"sw{d}",
                "serial": f"SN{d:08d}",
                "site": {"slug": f"site{d % 50}"},
                "role": {"slug": "switch"},
                "primary_ip": {"address": f"{a}.{b}.{c}.1/24"},
                "tags": [],
            }
        )
        ips.append(
            {
                "id": d,
                "address": f"{a}.{b}.{c}.1/24",
                "assigned_object_type": "dcim.interface",
                "assigned_object": {"name": "Vlan1", "device": _brief_dev(d)},
            }
        )
        nxt = (d + 1) % devices
        for p in range(1, ports + 1):
            ifaces.append(
                {
                    "id": d * ports + p,
                    "name": f"GigabitEthernet1/0/{p}",
                    "device": _brief_dev(d),
                    "custom_fields": {"snmp_ifindex": p},
                    "mac_address": f"02:00:{d >> 8 & 255:02x}:{d & 255:02x}:00:{p:02x}",
                    "link_peers_type": "dcim.interface",
                    "link_peers": [{"name": f"GigabitEthernet1/0/{p}", "device": _brief_dev(nxt)}],
                }
            )

    def body(items: list[Any]) -> dict[str, Any]:
        return {"count": len(items), "next": None, "previous": None, "results": items}

    return {
        "/api/dcim/devices/": body(devs),
        "/api/dcim/interfaces/": body(ifaces),
        "/api/ipam/ip-addresses/": body(ips),
    }


def measure(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """p50, p99 in µs of ``fn(i)`` over ``n`` single timed calls."""
    samples = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn(i)
        samples.append(clock() - t0)
    samples.sort()
    return samples[n // 2] / 1000, samples[int(n * 0.99)] / 1000


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--ports", type=int, default=50)
    ap.add_argument("--lookups", type=int, default=200_000)
    args = ap.parse_args()
    rnd = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inventory.json"
        path.write_text(json.dumps(synthetic(args.devices, args.ports)), encoding="utf-8")
        inv = FileInventory(path)
        t0 = time.perf_counter()
        await inv.start()
        load = time.perf_counter() - t0
    n_if = inv.snapshot.counts["interfaces"]
    dev = [rnd.randrange(args.devices) for _ in range(args.lookups)]
    port = [rnd.randrange(1, args.ports + 1) for _ in range(args.lookups)]
    addrs = [f"{10 + d // 65536}.{(d // 256) % 256}.{d % 256}.1" for d in dev]
    names = [f"sw{d}" for d in dev]
    shorts = [f"Gi1/0/{p}" for p in port]
    fulls = [f"GigabitEthernet1/0/{p}" for p in port]
    # Sanity: every lookup kind hits.
    assert inv.device_by_address(addrs[0]) is not None
    assert inv.interface(names[0], name=shorts[0]) is not None
    assert inv.cable_peer(names[0], fulls[0]) is not None

    results = {
        "device_by_address": measure(lambda i: inv.device_by_address(addrs[i]), args.lookups),
        "if_by_ifindex": measure(lambda i: inv.interface(names[i], if_index=port[i]), args.lookups),
        "if_by_short_name": measure(
            lambda i: inv.interface(names[i], name=shorts[i]), args.lookups
        ),
        "cable_peer": measure(lambda i: inv.cable_peer(names[i], fulls[i]), args.lookups),
    }
    worst = max(p99 for _, p99 in results.values())
    line = " ".join(f"{k} p50={p50:.2f}µs p99={p99:.2f}µs" for k, (p50, p99) in results.items())
    print(
        f"inventory: {n_if} interfaces, {args.devices} devices, load {load:.2f}s | {line} | "
        f"worst p99 {worst:.2f}µs ({'OK' if worst < 50 else 'OVER'} the 50µs goal)"
    )
    await inv.close()


if __name__ == "__main__":
    asyncio.run(main())
