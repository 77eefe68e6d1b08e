"""End to end: ``GET /api/v1/accounting`` accounts for every datagram the real engine got.

N good v2c linkDowns, M with a wrong community and K malformed datagrams go to a
fresh ``netcortex run`` (memory bus and NATS JetStream); once the traffic settles
the accounting shows received N+M+K, rejected M+K by reason, published N,
handled N, outcomes N, stored N and a balanced trap source, and the kernel UDP
drops of the trap socket are exported (0 here: the traffic is small).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import BACKENDS, EngineProcess, bus_overrides, v2c_link_down

pytestmark = [pytest.mark.e2e]

GOOD, BAD_COMMUNITY, MALFORMED = 40, 7, 5


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineProcess]:
    """A fresh engine (its counters start at zero) accepting community ``public``."""
    overrides = {
        "bus": bus_overrides(request.param, request),
        "trap": {"communities": ["public"]},
    }
    with EngineProcess(tmp_path, overrides) as engine:
        yield engine
        engine.stop_cleanly()


def accounting(engine: EngineProcess) -> dict[str, Any]:
    """``GET /api/v1/accounting`` (bearer)."""
    resp = engine.api("GET", "/api/v1/accounting")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def wait_for_accounting(
    engine: EngineProcess,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
) -> dict[str, Any]:
    """Poll the accounting until ``predicate`` holds (bounded; the last answer on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        body = accounting(engine)
        if predicate(body):
            return body
        if time.monotonic() >= deadline:
            raise TimeoutError(f"accounting never matched within {timeout}s: {body}")
        if not engine.alive:
            raise RuntimeError(f"engine died; last lines: {engine.lines[-10:]}")
        time.sleep(interval)


def trap_source(body: dict[str, Any]) -> dict[str, Any]:
    """The ``trap`` row of an accounting answer."""
    (row,) = [s for s in body["sources"] if s["source"] == "trap"]
    return row


def test_every_datagram_is_accounted_for(engine: EngineProcess) -> None:
    """Good, wrong-community and malformed datagrams add up: received = published +
    rejected (by reason), and every published trap is handled, an outcome and a row;
    the answer needs the bearer token."""
    before = accounting(engine)
    row = trap_source(before)
    assert (row["received"], row["published"], row["balanced"]) == (0, 0, True)
    assert before["kernel_udp_drops"] == {"trap": 0}  # Linux: read for the trap socket

    payloads = [v2c_link_down(1000 + i, i + 1) for i in range(GOOD)]
    payloads += [
        v2c_link_down(2000 + i, 100 + i, community=b"not-the-community")
        for i in range(BAD_COMMUNITY)
    ]
    payloads += [b"not snmp at all %d" % i for i in range(MALFORMED)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for payload in payloads:
            sock.sendto(payload, ("127.0.0.1", engine.trap_port))

    body = wait_for_accounting(
        engine,
        lambda b: (
            trap_source(b)["received"] == GOOD + BAD_COMMUNITY + MALFORMED
            and trap_source(b)["published"] == GOOD
            and b["stored"]["rows"] >= GOOD
        ),
    )
    row = trap_source(body)
    assert row == {
        "source": "trap",
        "received": GOOD + BAD_COMMUNITY + MALFORMED,
        "rejected": BAD_COMMUNITY + MALFORMED,
        "rejected_by_reason": {"bad_community": BAD_COMMUNITY, "malformed": MALFORMED},
        "duplicates": 0,
        "published": GOOD,
        "publish_failed": 0,
        "in_flight": 0,
        "balanced": True,
    }
    assert body["handled"] == {
        "total": GOOD,
        "by_handler": {"link_down": GOOD},
        "rejected": 0,
        "rejected_by_reason": {},
    }
    assert body["outcomes"] == {"total": GOOD, "by_kind": {"logged": GOOD}}
    assert body["stored"] == {"rows": GOOD, "duplicates": 0}
    assert body["store_failures"] == 0
    assert body["kernel_udp_drops"] == {"trap": 0}
    # The same kernel figure is on /metrics.
    assert engine.metric("netcortex_udp_kernel_drops_total", listener="trap") == 0.0
    # Bearer auth like the rest of /api/v1.
    assert engine.http.get("/api/v1/accounting").status_code == 401
    wrong = engine.http.get("/api/v1/accounting", headers=engine.auth_headers("wrong-token"))
    assert wrong.status_code == 401
