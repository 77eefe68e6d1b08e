"""Bridge, HTTP: ``StatusSampler`` — intake, rejection and outcome rates from the engine's
own counters, for ``GET /api/v1/status``.

Every ``interval`` seconds (and at ``start``) it copies the values it needs from
the engine's ``Registry``: ``netcortex_received_total{source}``,
``netcortex_rejected_total{source,reason}`` and ``netcortex_reflex_outcomes_total``.
A rate is (value now - value at the oldest sample inside the last ``window``
seconds) / the seconds between them: a 60 s moving rate that needs no
Prometheus. The engine starts it with the HTTP server and closes it at stop.

Source labels are shortened for people: ``snmp.trap`` → ``trap``,
``meraki.webhook`` → ``meraki``, ``snmp.poll`` → ``poll``, ``http.api`` → ``api``
(anything else is shown as it is).

May import: ``metrics`` and the standard library.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from netcortex.metrics import Counter, Registry

__all__ = ["SOURCE_NAMES", "SourceStatus", "StatusSampler"]

RECEIVED: Final = "netcortex_received_total"
REJECTED: Final = "netcortex_rejected_total"
OUTCOMES: Final = "netcortex_reflex_outcomes_total"

#: Counter ``source`` labels → the names the status answer uses.
SOURCE_NAMES: Final = {
    "snmp.trap": "trap",
    "meraki.webhook": "meraki",
    "snmp.poll": "poll",
    "http.api": "api",
}

Values = dict[tuple[str, ...], float]


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """One source's totals and 60 s rates."""

    source: str
    received: int
    rejected: int
    rejected_by_reason: dict[str, int]
    received_per_s: float
    rejected_per_s: float


def _counter(metrics: Registry, name: str) -> Counter | None:
    metric = metrics.get(name)
    return metric if isinstance(metric, Counter) else None


class StatusSampler:
    """Samples the engine's counters; ``sources()`` and ``outcomes()`` answer with rates.

    Args:
        metrics: the engine's registry.
        window: seconds the rates average over.
        interval: seconds between two samples.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        metrics: Registry,
        *,
        window: float = 60.0,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._window = window
        self._interval = interval
        self._clock = clock
        self._samples: collections.deque[tuple[float, Values]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self.started_at: datetime | None = None
        self._started = 0.0

    @property
    def uptime_s(self) -> float:
        """Seconds since ``start`` (0 before)."""
        return 0.0 if self.started_at is None else max(0.0, self._clock() - self._started)

    def read(self) -> Values:
        """The counters' values now, keyed ``("received", source)``,
        ``("rejected", source, reason)`` and ``("outcomes",)``."""
        values: Values = {}
        received = _counter(self._metrics, RECEIVED)
        if received is not None:
            for labels, v in received.samples():
                key = ("received", labels.get("source", ""))
                values[key] = values.get(key, 0.0) + v
        rejected = _counter(self._metrics, REJECTED)
        if rejected is not None:
            for labels, v in rejected.samples():
                rkey = ("rejected", labels.get("source", ""), labels.get("reason", ""))
                values[rkey] = values.get(rkey, 0.0) + v
        outcomes = _counter(self._metrics, OUTCOMES)
        values[("outcomes",)] = 0.0 if outcomes is None else outcomes.total()
        return values

    def sample(self) -> None:
        """Take one sample now and forget those older than the window (keeping one)."""
        now = self._clock()
        self._samples.append((now, self.read()))
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._window:
            self._samples.popleft()

    def start(self) -> None:
        """Note the start time, take the first sample and sample every ``interval``."""
        if self._task is not None:
            return
        self.started_at = datetime.now(UTC)
        self._started = self._clock()
        self.sample()
        self._task = asyncio.create_task(self._loop(), name="status-sampler")

    async def close(self) -> None:
        """Stop sampling. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.sample()

    def _base(self, now: float) -> tuple[float, Values] | None:
        """The oldest sample within the window (else the newest one), if any."""
        for t, values in self._samples:
            if t >= now - self._window:
                return t, values
        return self._samples[-1] if self._samples else None

    def _rates(self) -> tuple[Values, Values, float]:
        now = self._clock()
        current = self.read()
        base = self._base(now)
        if base is None or now - base[0] <= 0:
            return current, {}, 0.0
        return current, base[1], now - base[0]

    def sources(self, expected: Collection[str] = ()) -> list[SourceStatus]:
        """Per source: totals, rejections by reason, and 60 s rates; sorted by name.

        ``expected``: counter labels listed even before their first input (the
        engine's enabled receivers).
        """
        current, old, span = self._rates()
        names: set[str] = {k[1] for k in current if k[0] in ("received", "rejected")}
        names.update(expected)
        out: list[SourceStatus] = []
        for label in sorted(names, key=lambda n: SOURCE_NAMES.get(n, n)):
            received = current.get(("received", label), 0.0)
            by_reason = {
                k[2]: int(v) for k, v in current.items() if k[0] == "rejected" and k[1] == label
            }
            rejected = float(sum(by_reason.values()))
            old_received = old.get(("received", label), 0.0)
            old_rejected = sum(v for k, v in old.items() if k[0] == "rejected" and k[1] == label)
            out.append(
                SourceStatus(
                    source=SOURCE_NAMES.get(label, label),
                    received=int(received),
                    rejected=int(rejected),
                    rejected_by_reason=dict(sorted(by_reason.items())),
                    received_per_s=_rate(received - old_received, span),
                    rejected_per_s=_rate(rejected - old_rejected, span),
                )
            )
        return out

    def outcomes(self) -> tuple[int, float]:
        """Outcomes produced in total and per second (60 s rate)."""
        current, old, span = self._rates()
        total = current.get(("outcomes",), 0.0)
        return int(total), _rate(total - old.get(("outcomes",), 0.0), span)


def _rate(delta: float, span: float) -> float:
    return 0.0 if span <= 0 else round(max(0.0, delta) / span, 3)
