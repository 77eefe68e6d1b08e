"""Unit tests for reflex.facts: facts held back by maintenance until their window ends."""

from __future__ import annotations

import time

import pytest

from netcortex.reflex.facts import FactTracker
from netcortex.testing import make_event


class TestFactTracker:
    def test_held_fact_is_due_when_its_window_ends(self) -> None:
        """A suppressed link down is returned once its window is reported ended, then forgotten."""
        t = FactTracker()
        down = make_event("link_down", device="sw1-north", interface="Gi1/0/3")
        t.hold("link_down", down, "w1")
        assert t.due({"w2"}) == []
        (fact,) = t.due({"w1"})
        assert (fact.handler_id, fact.event, fact.window_id) == ("link_down", down, "w1")
        assert len(t) == 0

    def test_recovery_clears_the_fact(self) -> None:
        """A link up on the same target forgets the held link down; another target's stays."""
        t = FactTracker()
        t.hold("link_down", make_event("link_down", device="sw1", interface="Gi1"), "w")
        t.hold("link_down", make_event("link_down", device="sw1", interface="Gi2"), "w")
        assert t.observe(make_event("link_up", device="sw1", interface="Gi1")) == 1
        assert [f.event.interface for f in t.due({"w"})] == ["Gi2"]

    def test_one_shot_classes_are_not_held(self) -> None:
        """A reboot has no recovery to wait for, so nothing is held for it."""
        t = FactTracker()
        t.hold("device_reboot", make_event("device_reboot", device="r1"), "w")
        assert len(t) == 0

    def test_newer_event_replaces_older_for_same_fact(self) -> None:
        """Two downs of one interface in a window leave one fact: the latest event."""
        t = FactTracker()
        first = make_event("link_down", device="sw1", interface="Gi1")
        second = make_event("link_down", device="sw1", interface="Gi1")
        t.hold("link_down", first, "w")
        t.hold("link_down", second, "w")
        assert [f.event.id for f in t.due({"w"})] == [second.id]

    def test_bounded_with_oldest_dropped_and_counted(self) -> None:
        """Beyond max_facts the oldest fact is dropped and counted."""
        t = FactTracker(max_facts=2)
        events = [make_event("link_down", device="sw1", interface=f"Gi{i}") for i in range(3)]
        for ev in events:
            t.hold("link_down", ev, "w")
        assert t.dropped == 1
        assert [f.event.id for f in t.due({"w"})] == [events[1].id, events[2].id]

    def test_invalid_bound_refused(self) -> None:
        """A tracker that can hold nothing is a configuration mistake."""
        with pytest.raises(ValueError, match="max_facts"):
            FactTracker(max_facts=0)

    def test_recovery_costs_no_scan_of_held_facts(self) -> None:
        """With 100,000 facts held, 2,000 recoveries of other targets take well under a
        second (an index lookup each, not a scan of every held fact)."""
        t = FactTracker()
        for i in range(100_000):
            t.hold("link_down", make_event("link_down", device="sw1", interface=f"Gi{i}"), "w")
        ups = [make_event("link_up", device="sw2", interface=f"Gi{i}") for i in range(2_000)]
        started = time.perf_counter()
        cleared = sum(t.observe(up) for up in ups)
        elapsed = time.perf_counter() - started
        assert cleared == 0
        assert elapsed < 0.5, f"2,000 recoveries took {elapsed:.2f} s"

    def test_index_follows_release_drop_and_recovery(self) -> None:
        """A fact released, dropped at capacity or recovered is gone from the recovery
        index too: a later recovery clears only facts held again since, for every handler."""
        t = FactTracker(max_facts=3)
        gi1 = make_event("link_down", device="sw1", interface="Gi1")
        t.hold("link_down", gi1, "w")
        t.hold("other", gi1, "w")
        assert [f.handler_id for f in t.due({"w"})] == ["link_down", "other"]
        assert t.observe(make_event("link_up", device="sw1", interface="Gi1")) == 0
        for i in range(4):  # Gi0 is dropped at capacity
            t.hold("link_down", make_event("link_down", device="sw1", interface=f"Gi{i}"), "w")
        assert t.dropped == 1
        assert t.observe(make_event("link_up", device="sw1", interface="Gi0")) == 0
        t.hold("other", make_event("link_down", device="sw1", interface="Gi3"), "w")
        assert t.observe(make_event("link_up", device="sw1", interface="Gi3")) == 2
        assert [f.event.interface for f in t.due({"w"})] == ["Gi2"]
