"""Unit tests for ``JetStreamLease`` (issue 10): the correlator lease in a JetStream KV
bucket, against the real session nats-server.

Two contenders → exactly one holder; a holder that stops renewing is taken over
only once its expiry passed (and its own deadline came before that); a released
lease is taken over at once; a renewal after a take-over is refused.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from netcortex.association.lease import JetStreamLease
from netcortex.errors import BusUnavailable, StoreError
from tests.servers import NatsServer, free_port

pytestmark = [pytest.mark.nats]

TTL = 1.5
#: contenders poll this often in these tests (the fleet polls every ttl / 3)
POLL = 0.05

NewLease = Callable[..., JetStreamLease]


@pytest.fixture
async def new_lease(nats_server: NatsServer) -> AsyncIterator[NewLease]:
    """Leases on one fresh namespace of the session server (closed at teardown)."""
    namespace = "t" + uuid.uuid4().hex[:12]
    made: list[JetStreamLease] = []

    def make(holder: str, **kw: object) -> JetStreamLease:
        lease = JetStreamLease(
            nats_url=nats_server.url,
            namespace=namespace,
            ttl=kw.pop("ttl", TTL),  # type: ignore[arg-type]
            holder=holder,
            storage="memory",
            **kw,  # type: ignore[arg-type]
        )
        made.append(lease)
        return lease

    yield make
    for lease in made:
        await lease.close()


async def _until_acquired(lease: JetStreamLease, within: float) -> float:
    """Poll ``try_acquire`` until it succeeds; the monotonic time it did (or fail)."""
    deadline = time.monotonic() + within
    while not await lease.try_acquire():
        assert time.monotonic() < deadline, f"{lease.holder} not leader within {within}s"
        await asyncio.sleep(POLL)
    return time.monotonic()


def test_bad_names_and_ttl_are_refused() -> None:
    """A bucket, namespace or lease name a stream cannot have, or a ttl below 1 s, is a
    ValueError."""
    with pytest.raises(ValueError, match="bucket"):
        JetStreamLease(nats_url="nats://127.0.0.1:1", namespace="a.b")
    with pytest.raises(ValueError, match="lease name"):
        JetStreamLease(nats_url="nats://127.0.0.1:1", name="a b")
    with pytest.raises(ValueError, match="ttl"):
        JetStreamLease(nats_url="nats://127.0.0.1:1", ttl=0.5)


async def test_two_contenders_one_leader(new_lease: NewLease) -> None:
    """Of two contenders racing for a free lease, exactly one holds it; the other's
    attempts keep failing while the holder renews, and the stored holder is the winner."""
    a, b = new_lease("a"), new_lease("b")
    await asyncio.gather(a.start(), b.start())
    won = await asyncio.gather(a.try_acquire(), b.try_acquire())
    assert sorted(won) == [False, True]
    holder, other = (a, b) if won[0] else (b, a)
    assert holder.held
    assert not other.held
    for _ in range(3):
        assert await holder.renew()
        assert not await other.try_acquire()
    state = await other.read()
    assert state.holder == holder.holder
    assert state.expires > time.time()


async def test_many_contenders_race_exactly_one_wins(new_lease: NewLease) -> None:
    """Eight contenders at once on a lapsed lease: exactly one wins the compare-and-set."""
    leases = [new_lease(f"c{i}") for i in range(8)]
    await asyncio.gather(*(lease.start() for lease in leases))
    first = leases[0]
    assert await first.try_acquire()
    await first.release()
    won = await asyncio.gather(*(lease.try_acquire() for lease in leases[1:]))
    assert won.count(True) == 1


async def test_holder_stops_renewing_other_takes_over_after_expiry(new_lease: NewLease) -> None:
    """A holder that stops renewing (a dead worker) is taken over only once the lease's
    expiry passed; the old holder's own deadline lies before that take-over, and its
    late renewal is refused (it must not lead again)."""
    a, b = new_lease("a"), new_lease("b")
    await asyncio.gather(a.start(), b.start())
    acquired = time.monotonic()
    assert await a.try_acquire()
    a_deadline = a.deadline
    assert acquired + TTL * 0.7 < a_deadline < acquired + TTL
    took = await _until_acquired(b, within=TTL + 3.0)
    assert took - acquired >= TTL - 0.1  # not before the expiry (wall vs monotonic slack)
    assert a_deadline < took
    assert not a.held
    assert not await a.renew()
    assert (await a.read()).holder == "b"


async def test_release_lets_the_next_contender_take_over_at_once(new_lease: NewLease) -> None:
    """A graceful release is taken over at the next attempt, long before the expiry."""
    a, b = new_lease("a"), new_lease("b")
    await asyncio.gather(a.start(), b.start())
    assert await a.try_acquire()
    assert not await b.try_acquire()
    released = time.monotonic()
    await a.release()
    assert not a.held
    took = await _until_acquired(b, within=TTL)
    assert took - released < TTL / 2
    await a.release()  # not held any more: a no-op, b keeps it
    assert await b.renew()


async def test_renewal_keeps_the_lease_past_its_ttl(new_lease: NewLease) -> None:
    """Renewed every ttl / 3, a lease stays with its holder for several ttls."""
    a, b = new_lease("a"), new_lease("b")
    await asyncio.gather(a.start(), b.start())
    assert await a.try_acquire()
    end = time.monotonic() + TTL * 2.5
    while time.monotonic() < end:
        await asyncio.sleep(TTL / 3)
        assert await a.renew()
        assert not await b.try_acquire()
    assert a.held


async def test_try_acquire_adopts_its_own_unexpired_lease(new_lease: NewLease) -> None:
    """A contender that does not know its revision (a renewal answered too late; here a
    second client with the same holder id) finds itself in the stored value and renews
    instead of waiting for the expiry."""
    a, again = new_lease("a"), new_lease("a")
    await asyncio.gather(a.start(), again.start())
    assert await a.try_acquire()
    assert await again.try_acquire()
    assert again.held


async def test_renewal_conflict_with_its_own_write_adopts_the_revision(
    new_lease: NewLease,
) -> None:
    """A renewal that timed out on the client may still have reached the server: the
    next renewal then conflicts with the holder's *own* write. It re-reads the key,
    finds itself holder and unexpired, adopts that revision and keeps the lease (no
    step-down); a conflict with another holder is still refused."""
    a, own_write, other = new_lease("a"), new_lease("a"), new_lease("b")
    await asyncio.gather(a.start(), own_write.start(), other.start())
    assert await a.try_acquire()
    assert await own_write.try_acquire()  # the write a's timed-out renewal made
    stored = await other.read()
    assert await a.renew()
    assert a.held
    assert (await other.read()).revision == stored.revision  # adopted, not rewritten
    assert await a.renew()  # and renews on top of it
    assert (await other.read()).revision == stored.revision + 1
    # a lease that lapsed goes to another holder: then a's renewal conflicts with
    # *its* write and is refused
    await asyncio.sleep(TTL + 0.1)
    assert await other.try_acquire()
    assert not await a.renew()
    assert not a.held


async def test_unreachable_server_and_closed_lease(new_lease: NewLease) -> None:
    """``start`` on a port nobody listens on raises BusUnavailable; calls on a lease
    that is not started, or closed, raise StoreError."""
    lease = JetStreamLease(nats_url=f"nats://127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(BusUnavailable):
        await lease.start()
    idle = new_lease("idle")
    with pytest.raises(StoreError, match="not started"):
        await idle.try_acquire()
    await idle.start()
    await idle.close()
    with pytest.raises(StoreError, match="closed"):
        await idle.read()
    with pytest.raises(BusUnavailable):
        await idle.start()
