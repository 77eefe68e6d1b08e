"""JetStream's ack timer, the half of the ``in_progress`` contract only NATS has.

The contract suite (``test_bus.py``, ``TestInProgress``) shows on every backend
that a message kept in progress is not redelivered past ``ack_wait``. The memory
bus has no ack timer, so the control — a message left alone *is* redelivered
within the same time, which is what makes that test mean something on NATS —
lives here, on the real nats-server only.
"""

from __future__ import annotations

import asyncio

import pytest

from netcortex.errors import BusUnavailable
from netcortex.metrics import Registry
from tests.conftest import BusFactory

pytestmark = pytest.mark.nats

LINK_DOWN = "sensory.snmp.trap.link_down.10%2E0%2E0%2E1.Gi1/0/3"


async def test_held_message_is_redelivered_after_ack_wait_unless_kept_in_progress(
    bus_factory: BusFactory,
) -> None:
    """With ``ack_wait`` 1 s, of two messages held unacked for 3 s the one told
    ``in_progress()`` every 0.25 s is not redelivered; the other comes back (attempt 2)
    after about ``ack_wait`` and, at ``max_deliver`` 2, is dropped by the server."""
    bus = await bus_factory("nats", ack_wait=1.0, max_deliver=2, metrics=Registry())
    sub = await bus.subscribe("sensory.>", durable="two-workers")
    await bus.publish(LINK_DOWN, b"kept", msg_id="kept")
    await bus.publish(LINK_DOWN, b"left", msg_id="left")
    kept = await sub.next(timeout=10.0)
    left = await sub.next(timeout=10.0)
    assert (kept.msg_id, left.msg_id) == ("kept", "left")
    loop = asyncio.get_running_loop()
    started = loop.time()
    redelivered: list[tuple[str | None, int, float]] = []
    while loop.time() - started < 3.0:
        await kept.in_progress()
        try:
            msg = await sub.next(timeout=0.25)
        except TimeoutError:
            continue
        redelivered.append((msg.msg_id, msg.attempt, loop.time() - started))
    await kept.ack()
    assert [(m, a) for m, a, _ in redelivered] == [("left", 2)]
    assert 0.8 <= redelivered[0][2] <= 2.5


async def test_in_progress_on_a_closed_connection_is_bus_unavailable(
    bus_factory: BusFactory,
) -> None:
    """``in_progress`` maps nats-py's errors like ``ack``: on a closed connection it
    raises ``BusUnavailable`` (with the client's error as the cause)."""
    bus = await bus_factory("nats")
    sub = await bus.subscribe("sensory.>")  # not durable: close hands nothing back
    await bus.publish(LINK_DOWN, b"x")
    msg = await sub.next(timeout=10.0)
    await bus.close()
    with pytest.raises(BusUnavailable) as caught:
        await msg.in_progress()
    assert caught.value.__cause__ is not None
