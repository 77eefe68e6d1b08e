"""Thalamus: the counters every bus backend keeps, declared once (labelled by ``backend``).

Backend-specific metrics (NATS connection events, publish latency) stay with
their backend; these three are what an operator compares across backends.
"""

from __future__ import annotations

from netcortex.metrics import Registry

__all__ = ["BusMetrics"]


class BusMetrics:
    """Back-pressure, publish time-outs and dead letters of one bus."""

    def __init__(self, registry: Registry | None) -> None:
        reg = registry if registry is not None else Registry()
        self.registry = reg
        self.backpressure = reg.counter(
            "netcortex_bus_backpressure_total",
            "Publishes that had to wait for room (a full subscriber queue or in-flight window).",
            ("backend",),
        )
        self.publish_timeouts = reg.counter(
            "netcortex_bus_publish_timeouts_total",
            "Publishes that failed with PublishTimeout.",
            ("backend",),
        )
        self.dead_letters = reg.counter(
            "netcortex_bus_dead_letter_total",
            "Messages given up after max_deliver deliveries.",
            ("backend",),
        )
