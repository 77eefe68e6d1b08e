"""What one ``netcortex run`` process runs: ``engine.role`` (or ``run --role``).

The one place that decides it; ``app.Engine`` builds and starts exactly the
parts a ``RolePlan`` names, and nothing else::

    role      intake: trap,    reflex side: runner, gates, sinks,   HTTP
              poll, webhook    store, correlation, outbox, graph
    all       yes              yes                                  full API + webhook
    receiver  yes              no                                   webhook + health
    worker    no               yes                                  full API, no webhook

Receivers publish to JetStream and keep no state of their own (the poller's
state lives beside the outcomes with ``store.backend: postgres``); workers
share one durable consumer per handler (``reflex-<handler>``), so each event is
handled by one worker of the fleet. ``receiver`` and ``worker`` need
``bus.backend: nats`` (``Config`` refuses anything else, naming ``bus.backend``).

May import: ``config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from netcortex.config import Config

__all__ = ["Role", "RolePlan", "role_plan", "role_warnings"]

Role = Literal["all", "receiver", "worker"]


@dataclass(frozen=True, slots=True)
class RolePlan:
    """The parts one process runs.

    Attributes:
        role: the role it was made for.
        intake: the trap receiver, the poller and the Meraki webhook receiver (each
            still subject to its own ``enabled``).
        reflexes: the reflex runner with its gates and sinks, the outcome store,
            the maintenance calendar, dedup, correlation, the journal outbox and its
            delivery worker, the graph mirror.
        api: the full HTTP API (outcomes, incidents, maintenance, outbox, stream,
            status); without it the HTTP server carries only the webhook and
            health (``/healthz``, ``/readyz``, ``/metrics``).
    """

    role: Role
    intake: bool
    reflexes: bool
    api: bool


_PLANS: dict[Role, RolePlan] = {
    "all": RolePlan("all", intake=True, reflexes=True, api=True),
    "receiver": RolePlan("receiver", intake=True, reflexes=False, api=False),
    "worker": RolePlan("worker", intake=False, reflexes=True, api=True),
}


def role_plan(config: Config) -> RolePlan:
    """The plan for ``config.engine.role``."""
    return _PLANS[config.engine.role]


def role_warnings(config: Config) -> list[str]:
    """Legal but risky combinations for the role (logged at start, shown by
    ``check-config``): a worker on SQLite or with per-process dedup is fine alone,
    wrong as one of several."""
    warnings: list[str] = []
    if config.engine.role != "worker":
        return warnings
    if config.store.backend == "sqlite":
        warnings.append(
            "store.backend is 'sqlite': outcomes stay in this worker's file; run only "
            "one worker like this (several workers need store.backend: postgres)"
        )
    if config.dedup.backend == "memory":
        warnings.append(
            "dedup.backend is 'memory': a storm spread over several workers is "
            "deduplicated per worker (several workers need dedup.backend: nats)"
        )
    return warnings
