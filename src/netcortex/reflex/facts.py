"""Reflex: facts held back by maintenance, re-evaluated when their window ends.

An event suppressed inside a maintenance window is a *fact* that may still be
true when the window closes (a link still down). The tracker remembers, per
handler and target, the latest suppressed event; a recovery event for the same
target (``link_up`` after ``link_down``) forgets it. When the calendar says a
window has ended and no other window covers the target, the runner hands the
remembered event to its handler again and records the normal outcome then.

Pure bookkeeping, no I/O: the runner owns the timing. Bounded: at most
``max_facts`` facts are held (the oldest is dropped and counted beyond that).
``hold`` and ``observe`` cost O(1) (a recovery looks its facts up in an index
by class and target, never scans what is held): the runner calls ``observe``
for every event.
May import: ``contracts``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netcortex.contracts.events import SensoryEvent

__all__ = ["RECOVERY_CLASSES", "FactTracker", "HeldFact"]

#: A fact of the key class is cleared by an event of the value class on the same target.
RECOVERY_CLASSES: dict[str, str] = {
    "link_down": "link_up",
    "bgp_backward_transition": "bgp_established",
    "device_down": "device_up",
}
_CLEARS: dict[str, str] = {v: k for k, v in RECOVERY_CLASSES.items()}


@dataclass(frozen=True, slots=True)
class HeldFact:
    """One suppressed fact: the handler, its (enriched) event, the window, and what
    the gates learnt (``trace``: device, interface, site, role, tags ...)."""

    handler_id: str
    event: SensoryEvent
    window_id: str
    trace: Mapping[str, Any] = field(default_factory=dict)


class FactTracker:
    """Facts suppressed by a maintenance window that may need an outcome later."""

    def __init__(self, max_facts: int = 100_000) -> None:
        if max_facts < 1:
            raise ValueError("max_facts must be at least 1")
        self._max = max_facts
        self._held: OrderedDict[tuple[str, str, str], HeldFact] = OrderedDict()
        # (event class, target) -> handler ids holding that fact: what a recovery clears.
        self._by_fact: dict[tuple[str, str], set[str]] = {}
        self.dropped = 0  #: facts forgotten because the tracker was full

    def __len__(self) -> int:
        return len(self._held)

    def hold(
        self,
        handler_id: str,
        event: SensoryEvent,
        window_id: str,
        trace: Mapping[str, Any] | None = None,
    ) -> None:
        """Remember ``event`` (suppressed for ``handler_id`` by ``window_id``).

        Only classes that have a recovery (``RECOVERY_CLASSES``) are held: a
        one-shot fact (a reboot) has nothing left to re-evaluate. A newer event
        for the same handler, class and target replaces the older one.
        """
        if event.event_class not in RECOVERY_CLASSES:
            return
        key = (handler_id, event.event_class, event.target)
        self._held.pop(key, None)
        self._held[key] = HeldFact(handler_id, event, window_id, dict(trace or {}))
        self._by_fact.setdefault((event.event_class, event.target), set()).add(handler_id)
        while len(self._held) > self._max:
            oldest, _ = self._held.popitem(last=False)
            self._unindex(oldest)
            self.dropped += 1

    def _unindex(self, key: tuple[str, str, str]) -> None:
        handler_id, event_class, target = key
        handlers = self._by_fact.get((event_class, target))
        if handlers is not None:
            handlers.discard(handler_id)
            if not handlers:
                del self._by_fact[(event_class, target)]

    def observe(self, event: SensoryEvent) -> int:
        """Forget facts that ``event`` recovers (same target); return how many."""
        cleared_class = _CLEARS.get(event.event_class)
        if cleared_class is None or not self._held:
            return 0
        handlers = self._by_fact.pop((cleared_class, event.target), None)
        if not handlers:
            return 0
        for handler_id in handlers:
            del self._held[(handler_id, cleared_class, event.target)]
        return len(handlers)

    def due(self, ended_window_ids: set[str]) -> list[HeldFact]:
        """Remove and return the facts held by any of ``ended_window_ids``."""
        return self.release(lambda f: f.window_id in ended_window_ids)

    def release(self, is_due: Callable[[HeldFact], bool]) -> list[HeldFact]:
        """Remove and return the facts for which ``is_due`` is true (e.g. no window
        covers their target any more), oldest first."""
        out = [f for f in self._held.values() if is_due(f)]
        for f in out:
            key = (f.handler_id, f.event.event_class, f.event.target)
            del self._held[key]
            self._unindex(key)
        return out

    def window_ids(self) -> set[str]:
        """The windows currently holding facts."""
        return {f.window_id for f in self._held.values()}
