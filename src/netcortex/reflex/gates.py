"""Reflex: the gates before every handler — enrich, maintenance, dedup (issue 3, item 3).

Each gate is a small object with a ``name`` and the one ``contracts.reflex.Gate``
signature, ``await gate(handler, event, trace)``: it returns the event (maybe
enriched) to go on, or an ``OutcomeKind`` to stop it, and writes what it used
or decided into ``trace`` (the outcome's decision trace). ``reflex/pipeline.py``
puts them in order: enrich → maintenance → dedup, suppression before dedup as
in Alertmanager. Per event they only do dict lookups (semantic memory,
maintenance index) and one ``DedupStore.seen``.

May import: ``contracts`` (the backends are injected as Protocols).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from netcortex.contracts.memory import (
    DedupStore,
    Device,
    Interface,
    MaintenanceCalendar,
    SemanticMemory,
)
from netcortex.reflex.protocol import OutcomeKind, ReflexHandler, SensoryEvent

__all__ = ["DedupGate", "EnrichGate", "MaintenanceGate", "dedup_key"]

_INDEX_PREFIX = "ifIndex="  # the trap receiver's spelling of an interface it cannot name
_NAME_KEYS = ("if_name", "if_descr")


class EnrichGate:
    """Resolve the event against semantic memory; canonicalise it; never stops an event.

    Finds the device (by the event's device as a name, then as an address, then
    as a serial; then by the agent address), the interface (by ``ifIndex=N`` or
    the payload's ``if_index``, then by the event's interface name, then the
    payload's ``if_name`` or ``if_descr`` — the trap receiver's order, so both
    agree on the name even when the inventory's ifIndex is stale),
    its cable peer, and for events with a peer the BGP session and the peer's
    device. The event handed on carries the inventory's device and interface
    names and the target rebuilt from them, so dedup keys and outcomes use
    canonical names even when the receiver did not canonicalise.

    Trace: ``snapshot_age_s``, ``inventory`` (``device+interface`` / ``device`` /
    ``unknown``), and what was found: ``device``, ``site``, ``role``, ``tags``,
    ``interface``, ``if_index``, ``cable_peer`` (``device|interface``),
    ``bgp_session``, ``bgp_local_asn``, ``bgp_remote_asn``, ``peer_device``,
    ``raw_target`` (when the target changed). An unknown device leaves the
    event exactly as it came (raw, flagged ``inventory="unknown"``).
    """

    name = "enrich"

    def __init__(self, memory: SemanticMemory) -> None:
        """Look things up in ``memory`` (started and refreshed by its owner)."""
        self._memory = memory

    async def __call__(
        self, handler: ReflexHandler, event: SensoryEvent, trace: dict[str, Any]
    ) -> SensoryEvent:
        """Add the inventory's view of ``event`` to ``trace``; return it canonicalised."""
        memory = self._memory
        age = memory.snapshot_age()
        trace["snapshot_age_s"] = round(age, 3) if math.isfinite(age) else None
        device = self._device(event)
        if device is None:
            trace["inventory"] = "unknown"
            return event
        trace["device"] = device.name
        if device.site is not None:
            trace["site"] = device.site
        if device.role is not None:
            trace["role"] = device.role
        if device.tags:
            trace["tags"] = list(device.tags)
        itf = self._interface(device.name, event)
        if itf is not None:
            trace["interface"] = itf.name
            if itf.if_index is not None:
                trace["if_index"] = itf.if_index
            peer_itf = memory.cable_peer(device.name, itf.name)
            if peer_itf is not None:
                trace["cable_peer"] = f"{peer_itf.device}|{peer_itf.name}"
        if event.peer:
            self._bgp(device.name, event.peer, trace)
        trace["inventory"] = "device+interface" if itf is not None else "device"
        return _canonical(event, device.name, itf, trace)

    def _device(self, event: SensoryEvent) -> Device | None:
        memory = self._memory
        name = event.device
        if name:
            found = (
                memory.device_by_name(name)
                or memory.device_by_address(name.partition("%")[0])
                or memory.device_by_serial(name)
            )
            if found is not None:
                return found
        if event.agent:
            return memory.device_by_address(event.agent.partition("%")[0])
        return None

    def _interface(self, device: str, event: SensoryEvent) -> Interface | None:
        # The trap receiver's order (normalize.Normalizer._canonical): ifIndex first,
        # then names. Trying the event's name first would let a raw event and the
        # receiver-canonicalised one of the same trap resolve to different interfaces
        # (and dedup keys) when the inventory's ifIndex and name disagree.
        memory = self._memory
        raw = event.interface
        if raw and raw.startswith(_INDEX_PREFIX):
            index = _as_index(raw[len(_INDEX_PREFIX) :])
            if index is not None:
                return memory.interface(device, if_index=index)
        payload = event.payload
        index = _as_index(payload.get("if_index"))
        if index is not None:
            found = memory.interface(device, if_index=index)
            if found is not None:
                return found
        if raw:
            found = memory.interface(device, name=raw)
            if found is not None:
                return found
        for key in _NAME_KEYS:
            value = payload.get(key)
            if isinstance(value, str) and value:
                found = memory.interface(device, name=value)
                if found is not None:
                    return found
        return None

    def _bgp(self, device: str, peer: str, trace: dict[str, Any]) -> None:
        memory = self._memory
        session = memory.bgp_session(device, peer)
        if session is not None:
            trace["bgp_session"] = session.name or (
                str(session.inventory_id) if session.inventory_id is not None else peer
            )
            if session.local_asn is not None:
                trace["bgp_local_asn"] = session.local_asn
            if session.remote_asn is not None:
                trace["bgp_remote_asn"] = session.remote_asn
        peer_device = memory.device_by_address(peer)
        if peer_device is not None:
            trace["peer_device"] = peer_device.name


def _as_index(value: object) -> int | None:
    """An ifIndex from an int or a decimal string; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdecimal():
        return int(value)
    return None


def _canonical(
    event: SensoryEvent, device: str, itf: Interface | None, trace: dict[str, Any]
) -> SensoryEvent:
    """``event`` with inventory names and its target rebuilt from them (same if unchanged).

    The target keeps the event's shape: ``device|interface`` when the event is
    about an interface (it had one, or the payload named one we found),
    ``device|peer`` for peer events, else ``device``. A target not anchored at
    the event's device (a Meraki security alert's ``network|client``) is not
    device-shaped and is kept as the receiver built it.
    """
    interface = itf.name if itf is not None else event.interface
    if event.device and event.target.partition("|")[0] != event.device:
        target = event.target
    else:
        second = interface if interface else event.peer
        target = f"{device}|{second}" if second else device
    if device == event.device and interface == event.interface and target == event.target:
        return event
    if target != event.target:
        trace["raw_target"] = event.target
    return replace(event, device=device, interface=interface, target=target)


class MaintenanceGate:
    """Suppress events whose target is inside an active maintenance window.

    Asks ``calendar.active`` at the event's ``received_at`` (netcortex's own clock,
    stamped at ingest: a re-delivered event is judged by when it arrived, not when
    it is processed) with the device, ``device|interface``, and the site, role and
    tags the enrich gate put in the trace (without an ``EnrichGate`` before it,
    only device and interface windows can match). A hit returns ``SUPPRESSED``
    with ``window_id`` in the trace: a shadow outcome, the handler still runs
    (see ``contracts.reflex.Gate``). One indexed lookup per event.
    """

    name = "maintenance"

    def __init__(self, calendar: MaintenanceCalendar) -> None:
        """Consult ``calendar`` (started and closed by its owner)."""
        self._calendar = calendar

    async def __call__(
        self, handler: ReflexHandler, event: SensoryEvent, trace: dict[str, Any]
    ) -> SensoryEvent | OutcomeKind:
        """``SUPPRESSED`` (window id in ``trace``) inside a window, else ``event``."""
        device = trace.get("device") or event.device
        interface = trace.get("interface") or event.interface
        tags = trace.get("tags")
        window = self._calendar.active(
            event.received_at,
            device=device,
            interface=f"{device}|{interface}" if device and interface else None,
            site=trace.get("site"),
            role=trace.get("role"),
            tags=tuple(tags) if tags else (),
        )
        if window is None:
            return event
        trace["window_id"] = window.id
        return OutcomeKind.SUPPRESSED


def dedup_key(handler_id: str, event: SensoryEvent) -> str:
    """The ``DedupStore`` key of ``event`` for ``handler_id``: ``handler|event_class|target``.

    The fact key (``event_class|canonical target``, DESIGN.md) scoped by handler,
    so two handlers consuming the same class each get their own first event.
    """
    return f"{handler_id}|{event.event_class}|{event.target}"


class DedupGate:
    """Skip repeats of a fact within the handler's dedup window; count corroboration.

    The fact is ``event_class|target`` of the event as enriched (canonical names
    when the inventory knows them); the window is ``windows[handler.id]`` if
    given, else ``handler.dedup_window``; ``0`` turns dedup off for the handler.
    The first event of a fact passes; later ones within the window return
    ``SKIPPED``. Trace: ``fact_key``, ``dedup_key``, ``dedup_window_s``,
    ``first_event_id``, ``corroboration`` (reports of the fact in the window,
    this one included).

    A re-delivered event (its own id is the fact's first event) passes again, so
    at-least-once delivery cannot turn the fact's first outcome into ``skipped``;
    the outcome id is the same, so stores keep one row.
    """

    name = "dedup"

    def __init__(self, store: DedupStore, windows: Mapping[str, float] | None = None) -> None:
        """Record facts in ``store`` (started and closed by its owner).

        Args:
            store: the shared dedup state.
            windows: per-handler window overrides in seconds (config
                ``dedup.windows``); handlers not named keep their ``dedup_window``.

        Raises:
            ValueError: a window is negative or not finite.
        """
        self._store = store
        self._windows = dict(windows or {})
        for hid, window in self._windows.items():
            if not (math.isfinite(window) and window >= 0):
                raise ValueError(f"dedup window for {hid!r} must be >= 0 seconds, got {window!r}")

    async def __call__(
        self, handler: ReflexHandler, event: SensoryEvent, trace: dict[str, Any]
    ) -> SensoryEvent | OutcomeKind:
        """``event`` for a new fact (or dedup off), ``SKIPPED`` for a repeat."""
        window = self._windows.get(handler.id, handler.dedup_window)
        if window <= 0:
            return event
        key = dedup_key(handler.id, event)
        result = await self._store.seen(key, window, event.id)
        trace["fact_key"] = f"{event.event_class}|{event.target}"
        trace["dedup_key"] = key
        trace["dedup_window_s"] = window
        trace["first_event_id"] = result.first_event_id
        trace["corroboration"] = result.count
        if result.first or result.first_event_id == event.id:
            return event
        return OutcomeKind.SKIPPED
