"""Unit tests for ``JetStreamDedupStore`` specifics: key encoding, the bucket layout and
per-message TTL, compare-and-set under contention between workers, error mapping.

Behaviour every dedup store shares is in ``tests/contracts/test_dedup.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
from structlog.testing import capture_logs

from netcortex.contracts.memory import DedupResult
from netcortex.errors import BusUnavailable, StoreError
from netcortex.memory.episodic.dedup_jetstream import MAX_ENCODED, JetStreamDedupStore, kv_key
from netcortex.metrics import Registry
from tests.servers import NatsServer, free_port

DEADLINE = 10.0

NewStore = Callable[..., Awaitable[JetStreamDedupStore]]

KV_KEY = re.compile(r"[-/_=.a-zA-Z0-9]+")


# -- key encoding (no server) ---------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["", "a", "link_down|sw1|Gi1/0/1", "x.y.*.>", "ü" * 10, "z" * 10_000]
)
def test_kv_key_is_a_valid_kv_key(key: str) -> None:
    """Every string maps to a valid, bounded KV key token."""
    encoded = kv_key(key)
    assert KV_KEY.fullmatch(encoded)
    assert not encoded.startswith(".")
    assert not encoded.endswith(".")
    assert len(encoded) <= MAX_ENCODED + 2


def test_kv_key_is_injective_on_near_misses() -> None:
    """Keys differing in one character, or only in case, never share a KV key."""
    keys = ["a|b", "a|B", "a|b ", "a.b", "a_b", "a-b", "", "=", "x" * 150, "x" * 151]
    keys += ["y" * 5000, "y" * 5001]
    assert len({kv_key(k) for k in keys}) == len(keys)


def test_bad_bucket_name_is_refused() -> None:
    """A bucket or namespace with characters a stream name cannot have is a ValueError."""
    with pytest.raises(ValueError, match="bucket"):
        JetStreamDedupStore(nats_url="nats://127.0.0.1:1", namespace="a.b")


def test_repr_hides_credentials() -> None:
    """Credentials in the URL never show in the repr."""
    store = JetStreamDedupStore(nats_url="nats://alice:s3cret@127.0.0.1:4222")
    assert "s3cret" not in repr(store)


async def test_seen_before_start_is_a_store_error() -> None:
    """``seen`` on a store that was never started raises ``StoreError``."""
    store = JetStreamDedupStore(nats_url="nats://127.0.0.1:1")
    with pytest.raises(StoreError, match="not started"):
        await store.seen("k", 1.0, "e1")
    await store.close()


async def test_unreachable_server_is_bus_unavailable() -> None:
    """``start`` against a port nobody listens on fails with ``BusUnavailable`` in time."""
    store = JetStreamDedupStore(nats_url=f"nats://127.0.0.1:{free_port()}", timeout=0.5)
    async with asyncio.timeout(DEADLINE):
        with pytest.raises(BusUnavailable):
            await store.start()
    await store.close()


# -- against the session server ---------------------------------------------------------


@pytest.fixture
async def new_store(nats_server: NatsServer) -> AsyncIterator[NewStore]:
    """Factory of started stores sharing one fresh bucket; closed at teardown."""
    made: list[JetStreamDedupStore] = []
    namespace = "u" + uuid.uuid4().hex[:12]

    async def make(**kw: Any) -> JetStreamDedupStore:
        kw.setdefault("max_window", 60.0)
        store = JetStreamDedupStore(nats_url=nats_server.url, namespace=namespace, **kw)
        await store.start()
        made.append(store)
        return store

    yield make
    for s in reversed(made):
        await s.close()


@pytest.mark.nats
async def test_bucket_allows_ttl_and_value_keeps_the_original_key(
    new_store: NewStore, nats_server: NatsServer
) -> None:
    """The KV value is JSON with the original key, first event, count and expiry; the
    message carries a ``Nats-TTL`` a little past the window; the stream allows TTLs."""
    store = await new_store()
    await store.seen("link_down|sw1|Gi1/0/1", 30.0, "e1")
    await store.seen("link_down|sw1|Gi1/0/1", 30.0, "e2")
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(f"KV_{store.bucket}")
        assert info.config.allow_msg_ttl
        msg = await js.get_msg(
            f"KV_{store.bucket}", subject=f"$KV.{store.bucket}.{kv_key('link_down|sw1|Gi1/0/1')}"
        )
        value = json.loads(msg.data or b"")
        assert value["key"] == "link_down|sw1|Gi1/0/1"
        assert (value["first"], value["count"]) == ("e1", 2)
        assert value["expires"] - value["created"] == pytest.approx(30.0)
        assert msg.headers is not None
        ttl = msg.headers["Nats-TTL"]
        assert ttl.endswith("s")
        assert 30 <= int(ttl[:-1]) <= 33
    finally:
        await nc.close()


@pytest.mark.nats
async def test_server_forgets_expired_keys(new_store: NewStore, nats_server: NatsServer) -> None:
    """The per-message TTL makes the server drop a key on its own a little after its window
    (no sweeper needed)."""
    store = await new_store()
    await store.seen("gone", 0.5, "e1")
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        subject = f"$KV.{store.bucket}.{kv_key('gone')}"
        async with asyncio.timeout(DEADLINE):
            while True:
                try:
                    await js.get_msg(f"KV_{store.bucket}", subject=subject)
                except nats.js.errors.NotFoundError:
                    break
                await asyncio.sleep(0.1)
    finally:
        await nc.close()


@pytest.mark.nats
async def test_workers_contend_with_compare_and_set(new_store: NewStore) -> None:
    """Four workers (four connections) hammering one new key concurrently: one first,
    counts 1..400 each once; lost races show as conflicts, never as wrong counts."""
    regs = [Registry() for _ in range(4)]
    stores = [await new_store(metrics=r) for r in regs]
    calls = [stores[i % 4].seen("hot", 60.0, f"e{i}") for i in range(400)]
    results = await asyncio.gather(*calls)
    assert sum(r.first for r in results) == 1
    assert sorted(r.count for r in results) == list(range(1, 401))
    for reg in regs:
        assert reg.counter("netcortex_dedup_seen_total", "", ("backend", "result")).total() > 0


@pytest.mark.nats
async def test_garbage_value_is_taken_over(new_store: NewStore, nats_server: NatsServer) -> None:
    """A value that is not ours (garbage in the bucket) counts as absent: the next event is
    first, written with compare-and-set, and the oddity is logged."""
    store = await new_store()
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().publish(f"$KV.{store.bucket}.{kv_key('odd')}", b"not json")
    finally:
        await nc.close()
    with capture_logs() as logs:
        assert await store.seen("odd", 60.0, "e1") == DedupResult(True, "e1", 1)
    assert "dedup_value_invalid" in [e["event"] for e in logs]
    assert await store.seen("odd", 60.0, "e2") == DedupResult(False, "e1", 2)


@pytest.mark.nats
async def test_window_beyond_max_window_is_refused(new_store: NewStore) -> None:
    """A window longer than ``max_window`` (the bucket's backstop age) is a ValueError."""
    store = await new_store(max_window=10.0)
    with pytest.raises(ValueError, match="window"):
        await store.seen("k", 11.0, "e1")


@pytest.mark.nats
async def test_restart_with_other_max_window_updates_the_bucket(new_store: NewStore) -> None:
    """A worker started with another ``max_window`` updates the bucket and keeps the state."""
    one = await new_store(max_window=60.0)
    await one.seen("k", 30.0, "e1")
    two = await new_store(max_window=120.0)
    assert await two.seen("k", 30.0, "e2") == DedupResult(False, "e1", 2)


@pytest.mark.nats
async def test_seen_after_close_is_a_store_error(new_store: NewStore) -> None:
    """``seen`` on a closed store raises ``StoreError``; ``start`` then is ``BusUnavailable``."""
    store = await new_store()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.seen("k", 1.0, "e1")
    with pytest.raises(BusUnavailable):
        await store.start()


@pytest.mark.nats
async def test_server_gone_is_a_store_error_then_recovers(tmp_path: Path) -> None:
    """With the server down, ``seen`` fails with ``StoreError`` (cause: the nats error)
    within ``timeout`` for every concurrent caller, counted; once the server is back the
    store works again with its state intact (file storage)."""
    reg = Registry()
    with NatsServer(store_dir=tmp_path) as server:
        store = JetStreamDedupStore(nats_url=server.url, metrics=reg, timeout=0.5)
        await store.start()
        try:
            await store.seen("k", 60.0, "e0")
            server.stop()
            async with asyncio.timeout(DEADLINE):
                results = await asyncio.gather(
                    *(store.seen("k2", 60.0, f"e{i}") for i in range(5)), return_exceptions=True
                )
            assert all(isinstance(r, StoreError) for r in results), results
            assert all(r.__cause__ is not None for r in results if isinstance(r, StoreError))
            errors = reg.counter("netcortex_dedup_errors_total", "", ("backend",))
            assert errors.value(backend="nats") == 5
            server.start()
            async with asyncio.timeout(DEADLINE):
                while True:
                    try:
                        result = await store.seen("k", 60.0, "e1")
                        break
                    except StoreError:
                        await asyncio.sleep(0.1)  # reconnecting: retry until the deadline
            # a call that failed while reconnecting may still have been counted (its write
            # was buffered and sent on reconnect): "not confirmed", like a publish timeout
            assert (result.first, result.first_event_id) == (False, "e0")
            assert result.count >= 2
        finally:
            await store.close()


@pytest.mark.nats
async def test_bucket_gone_is_recreated(new_store: NewStore, nats_server: NatsServer) -> None:
    """A bucket that disappeared under a running store (deleted, or a memory-storage server
    restarted) is created again on the next ``seen``: the state starts over (logged), and
    dedup works again instead of failing every call."""
    store = await new_store()
    assert (await store.seen("k", 60.0, "e1")).first
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().delete_stream(f"KV_{store.bucket}")
    finally:
        await nc.close()
    with capture_logs() as logs:
        assert await store.seen("k", 60.0, "e2") == DedupResult(True, "e2", 1)
    assert "dedup_bucket_recreated" in [e["event"] for e in logs]
    assert await store.seen("k", 60.0, "e3") == DedupResult(False, "e2", 2)


@pytest.mark.nats
async def test_write_without_reply_times_out_then_recovers(tmp_path: Path) -> None:
    """A write nobody answers (a hung server: SIGSTOP) fails after ``timeout`` with
    ``StoreError`` caused by nats' ``TimeoutError``, counted, its reply slot released;
    once the server answers again the store works."""
    reg = Registry()
    with NatsServer(store_dir=tmp_path) as server:
        store = JetStreamDedupStore(
            nats_url=server.url, namespace="hung", max_window=60.0, timeout=1.0, metrics=reg
        )
        await store.start()
        try:
            assert (await store.seen("k", 60.0, "e1")).first
            server.pause()
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                async with asyncio.timeout(DEADLINE):
                    with pytest.raises(StoreError) as caught:
                        await store.seen("k", 60.0, "e2")
                assert loop.time() - started >= 1.0
                assert isinstance(caught.value.__cause__, nats.errors.TimeoutError)
                errors = reg.counter("netcortex_dedup_errors_total", "", ("backend",))
                assert errors.value(backend="nats") == 1
                assert store._replies == {}
            finally:
                server.resume()
            # (the unanswered write may still land once the server runs: another key)
            async with asyncio.timeout(DEADLINE):
                assert await store.seen("k2", 60.0, "e3") == DedupResult(True, "e3", 1)
        finally:
            await store.close()
