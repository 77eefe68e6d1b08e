"""Memory, episodic: ``InMemoryDedupStore`` — bounded, per-key TTL dedup state in one process.

The embedded default (``dedup.backend: memory``). One dict by key, plus one
queue per window length in creation order — which, for one window length, is
expiry order, so handlers with different windows (link_down 60 s,
security_webhook 300 s) never hide each other's expired keys. A key lives
``window`` seconds from the event that created it (duplicates count but never
extend it). Every ``seen`` is O(number of distinct windows, a handful): one
dict lookup, and at most a couple of evictions from each queue's old end.

Bounded: at ``max_keys`` the key that expires soonest is evicted to make room
(expired keys are dropped first and for free). Evicting a *live* key loses
nothing that was recorded — its first event was already handled — but a later
duplicate of that fact, within what would have been its window, is seen as
``first`` again and logged a second time. Such evictions are counted in
``netcortex_dedup_evictions_total{backend="memory",reason="capacity"}``; a
non-zero rate means ``max_keys`` is too small for the event rate times the window.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import structlog

from netcortex.contracts.memory import DedupResult
from netcortex.metrics import Registry

__all__ = ["InMemoryDedupStore"]

log = structlog.get_logger(__name__)

_BACKEND: Final = "memory"
#: expired keys dropped from the old end per new key (amortised clean-up)
_SWEEP: Final = 2


class _Fact:
    """One key's state: when it expires (and its window), who reported it first, how many
    reported it."""

    __slots__ = ("count", "expires", "first_event_id", "window")

    def __init__(self, expires: float, window: float, first_event_id: str) -> None:
        self.expires = expires
        self.window = window
        self.first_event_id = first_event_id
        self.count = 1


class InMemoryDedupStore:
    """``DedupStore`` in this process's memory (implements ``contracts.memory.DedupStore``).

    Contract:

    * ``seen(key, window, event_id)``: the first call for ``key`` (or the first
      after its window ran out) returns ``first=True, count=1`` with this event's
      id; later calls within the window return ``first=False``, the first
      event's id and the count so far (this call included);
    * a key expires ``window`` seconds (by ``clock``) after the call that created
      it; duplicates do not extend it;
    * every call counts, a repeat of the first event's id included (callers
      recognise a redelivered first event by ``first_event_id == event_id``);
    * atomic by construction: ``seen`` never awaits, so on one event loop no two
      calls interleave (not shared across processes: use the JetStream store);
    * bounded to ``max_keys`` keys; at capacity an expired key is dropped if
      there is one, else the live key expiring soonest is evicted (see the
      module doc for what that costs) and counted;
    * ``start``/``close`` do nothing but mark the state; ``seen`` works without
      ``start`` (nothing to connect) and ``close`` forgets every key.

    Args:
        max_keys: keys kept at most (>= 1).
        metrics: the engine's registry (a private one when omitted).
        clock: seconds, monotonic (injectable for tests).

    Raises:
        ValueError: ``max_keys < 1``.
    """

    def __init__(
        self,
        *,
        max_keys: int = 100_000,
        metrics: Registry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, not {max_keys}")
        self._max_keys = max_keys
        self._clock = clock
        self._facts: dict[str, _Fact] = {}
        # window -> its keys in creation order = expiry order (one clock, one window)
        self._queues: dict[float, OrderedDict[str, _Fact]] = {}
        reg = metrics if metrics is not None else Registry()
        self._seen_total = reg.counter(
            "netcortex_dedup_seen_total",
            "Dedup lookups by result (first: a new fact; duplicate: corroboration).",
            ("backend", "result"),
        )
        self._evictions = reg.counter(
            "netcortex_dedup_evictions_total",
            "Dedup keys dropped (expired: swept after their window; capacity: a live "
            "key evicted at max_keys, so a later duplicate may be logged again).",
            ("backend", "reason"),
        )
        self._keys = reg.gauge("netcortex_dedup_keys", "Dedup keys held.", ("backend",))

    def __len__(self) -> int:
        """Keys held (expired keys not yet swept included)."""
        return len(self._facts)

    async def __aenter__(self) -> InMemoryDedupStore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Nothing to connect; present for the ``DedupStore`` protocol."""

    async def close(self) -> None:
        """Forget every key. Idempotent; safe without ``start``."""
        self._facts.clear()
        self._queues.clear()
        self._keys.set(0, backend=_BACKEND)

    async def seen(self, key: str, window: float, event_id: str) -> DedupResult:
        """Record one event reporting fact ``key``; say whether it is the first.

        Args:
            key: the fact key (any string).
            window: seconds the fact stays seen after its first event (> 0).
            event_id: the reporting event's id.

        Raises:
            ValueError: ``window <= 0``.
        """
        return self.seen_now(key, window, event_id)

    def seen_now(self, key: str, window: float, event_id: str) -> DedupResult:
        """``seen`` without the coroutine (same contract) for synchronous callers."""
        if not window > 0:
            raise ValueError(f"window must be > 0 seconds, not {window!r}")
        now = self._clock()
        facts = self._facts
        fact = facts.get(key)
        if fact is not None:
            if now < fact.expires:
                fact.count += 1
                self._seen_total.inc(backend=_BACKEND, result="duplicate")
                return DedupResult(
                    first=False, first_event_id=fact.first_event_id, count=fact.count
                )
            self._forget(key, fact)  # expired: this event starts the fact again
        self._make_room(now)
        fact = _Fact(now + window, window, event_id)
        facts[key] = fact
        queue = self._queues.get(window)
        if queue is None:
            queue = self._queues[window] = OrderedDict()
        queue[key] = fact
        self._seen_total.inc(backend=_BACKEND, result="first")
        self._keys.set(len(facts), backend=_BACKEND)
        return DedupResult(first=True, first_event_id=event_id, count=1)

    def _forget(self, key: str, fact: _Fact) -> None:
        del self._facts[key]
        queue = self._queues[fact.window]
        del queue[key]
        if not queue:
            del self._queues[fact.window]

    def _make_room(self, now: float) -> None:
        """Drop a few expired keys from each queue's old end; if still full, evict the key
        that expires soonest (an expired one if any is left)."""
        for window, queue in list(self._queues.items()):
            for _ in range(_SWEEP):
                oldest_key, oldest = next(iter(queue.items()))
                if oldest.expires > now:
                    break
                del queue[oldest_key]
                del self._facts[oldest_key]
                self._evictions.inc(backend=_BACKEND, reason="expired")
                if not queue:
                    del self._queues[window]
                    break
        while len(self._facts) >= self._max_keys:
            # each queue's head is its soonest expiry; the earliest head goes
            oldest_key, oldest = min(
                (next(iter(q.items())) for q in self._queues.values()),
                key=lambda item: item[1].expires,
            )
            self._forget(oldest_key, oldest)
            if oldest.expires > now:
                self._evictions.inc(backend=_BACKEND, reason="capacity")
                log.debug(
                    "dedup_key_evicted",
                    backend=_BACKEND,
                    key=oldest_key,
                    count=oldest.count,
                    max_keys=self._max_keys,
                )
            else:
                self._evictions.inc(backend=_BACKEND, reason="expired")
