"""Counters and latency histograms (any region may import this module).

Each region declares its metrics in one place, against a ``Registry`` passed in
by ``app.py`` (one per engine, so two engines in one process never share
counts). ``Registry.render()`` gives the Prometheus text format (0.0.4: what
``prometheus_client.parser`` and a Prometheus server read; values at full float
precision, ``+Inf``/``-Inf``/``NaN``, label values and help text escaped); tests
read a value with ``counter.value(**labels)``. Deliberately tiny: no global
state, no locks needed on the asyncio thread; ``inc`` is a dict update.

Gauges read on demand (queue depths, inventory age) are set by collectors that
``render`` runs first (``Registry.add_collector``). Every queue reports on one
gauge, ``netcortex_queue_depth{queue}`` (``Registry.queue_depth``).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence

import structlog

__all__ = ["QUEUE_DEPTH", "Counter", "Gauge", "Histogram", "Registry"]

log = structlog.get_logger(__name__)

#: Latency buckets in seconds: 50 µs .. 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


#: The one gauge every internal queue reports its depth on, labelled by ``queue``.
QUEUE_DEPTH = "netcortex_queue_depth"

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _num(value: float) -> str:
    """A sample value as Prometheus writes it: exact, ``+Inf``/``-Inf``/``NaN``."""
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


def _key(labelnames: tuple[str, ...], labels: dict[str, str]) -> tuple[str, ...]:
    # Fast path (the hot one): labels passed in declaration order.
    if tuple(labels) == labelnames:
        return tuple(map(str, labels.values()))
    if set(labels) != set(labelnames):
        raise ValueError(f"labels {sorted(labels)} != declared {sorted(labelnames)}")
    return tuple(str(labels[n]) for n in labelnames)


def _fmt_labels(labelnames: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_esc(v)}"' for n, v in zip(labelnames, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _esc_help(v: str) -> str:
    # HELP text escapes backslash and newline only (quotes stay as they are).
    return v.replace("\\", "\\\\").replace("\n", "\\n")


class Counter:
    """A monotonically increasing count, optionally labelled."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (>= 0) to the series named by ``labels``."""
        k = _key(self.labelnames, labels)
        self._values[k] = self._values.get(k, 0.0) + amount

    def value(self, **labels: str) -> float:
        """Current value of one series (0 when never incremented)."""
        return self._values.get(_key(self.labelnames, labels), 0.0)

    def total(self) -> float:
        """Sum over every series."""
        return sum(self._values.values())

    def by_label(self, name: str) -> dict[str, float]:
        """Values summed per value of label ``name`` (e.g. rejected inputs per ``reason``)."""
        idx = self.labelnames.index(name)
        out: dict[str, float] = {}
        for key, v in self._values.items():
            out[key[idx]] = out.get(key[idx], 0.0) + v
        return out

    def samples(self) -> list[tuple[dict[str, str], float]]:
        """Every series as ``(labels, value)`` (a copy: safe to keep while it grows)."""
        return [(dict(zip(self.labelnames, k, strict=True)), v) for k, v in self._values.items()]

    def render(self) -> list[str]:
        return [
            f"{self.name}{_fmt_labels(self.labelnames, k)} {_num(v)}"
            for k, v in sorted(self._values.items())
        ]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        """Set one series to ``value``."""
        self._values[_key(self.labelnames, labels)] = value


class Histogram:
    """Observations in fixed buckets (Prometheus style), with quantile estimates."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        """Record one observation."""
        k = _key(self.labelnames, labels)
        series = self._series.get(k)
        if series is None:
            series = self._series[k] = ([0] * (len(self.buckets) + 1), [0.0])
        series[0][bisect.bisect_left(self.buckets, value)] += 1
        series[1][0] += value

    def count(self, **labels: str) -> int:
        """Number of observations in one series."""
        s = self._series.get(_key(self.labelnames, labels))
        return sum(s[0]) if s else 0

    def quantile(self, q: float, **labels: str) -> float:
        """Upper bound of the bucket holding quantile ``q`` (NaN when empty)."""
        s = self._series.get(_key(self.labelnames, labels))
        if not s or not sum(s[0]):
            return math.nan
        target = q * sum(s[0])
        seen = 0
        for i, n in enumerate(s[0]):
            seen += n
            if seen >= target:
                return self.buckets[i] if i < len(self.buckets) else math.inf
        return math.inf

    def render(self) -> list[str]:
        lines = []
        for k, (counts, total) in sorted(self._series.items()):
            acc = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                acc += n
                labels = _fmt_labels(self.labelnames, k, 'le="' + _num(bound) + '"')
                lines.append(f"{self.name}_bucket{labels} {acc}")
            lines.append(f"{self.name}_sum{_fmt_labels(self.labelnames, k)} {_num(total[0])}")
            lines.append(f"{self.name}_count{_fmt_labels(self.labelnames, k)} {acc}")
        return lines


class Registry:
    """Holds one engine's metrics; ``counter``/``gauge``/``histogram`` are get-or-create."""

    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Histogram] = {}
        self._collectors: list[Callable[[], None]] = []

    def add_collector(self, collect: Callable[[], None]) -> None:
        """Run ``collect`` before every ``render`` (it sets gauges read on demand:
        queue depths, inventory age). A failing collector is logged and skipped."""
        self._collectors.append(collect)

    def collect(self) -> None:
        """Run every collector now (``render`` does this first)."""
        for collect in self._collectors:
            try:
                collect()
            except Exception:
                log.warning("metrics_collector_failed", collector=repr(collect), exc_info=True)

    def queue_depth(self, queue: str, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as ``netcortex_queue_depth{queue=<queue>}`` at every render.

        One gauge for every queue (trap and webhook publish queues, store rows
        not yet committed, bus mailboxes, publishes awaiting an ack), so one
        query shows where work piles up.
        """
        gauge = self.gauge(QUEUE_DEPTH, "Items waiting in an internal queue, by queue.", ("queue",))
        self.add_collector(lambda: gauge.set(depth(), queue=queue))

    def _get(self, cls: type, name: str, help: str, labelnames: Sequence[str], **kw: object):  # type: ignore[no-untyped-def]
        existing = self._metrics.get(name)
        if existing is not None:
            if type(existing) is not cls or existing.labelnames != tuple(labelnames):
                raise ValueError(f"metric {name!r} already registered with another shape")
            return existing
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(
                f"metric name {name!r} is not valid (Prometheus names: [a-zA-Z_:][a-zA-Z0-9_:]*)"
            )
        for label in labelnames:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"label name {label!r} of {name!r} is not valid")
        if cls is Histogram and "le" in labelnames:
            raise ValueError(f"histogram {name!r} cannot have a label named 'le'")
        metric = cls(name, help, labelnames, **kw)
        self._metrics[name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        """Get or create a counter."""
        c: Counter = self._get(Counter, name, help, labelnames)
        return c

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        """Get or create a gauge."""
        g: Gauge = self._get(Gauge, name, help, labelnames)
        return g

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        """Get or create a histogram."""
        h: Histogram = self._get(Histogram, name, help, labelnames, buckets=buckets)
        return h

    def get(self, name: str) -> Counter | Histogram | None:
        """The metric called ``name``, if registered."""
        return self._metrics.get(name)

    def render(self) -> str:
        """Prometheus text exposition of every metric (collectors run first)."""
        self.collect()
        out: list[str] = []
        for name, m in sorted(self._metrics.items()):
            out.append(f"# HELP {name} {_esc_help(m.help)}")
            out.append(f"# TYPE {name} {m.kind}")
            out.extend(m.render())
        return "\n".join(out) + "\n"
