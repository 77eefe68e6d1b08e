"""The ``EventBus`` contract, run against every backend (``memory`` and ``nats``).

No test branches on the backend: behaviour only one backend has (JetStream
``Nats-Msg-Id`` dedup, durable resume across restarts, memory back-pressure) lives
in ``tests/unit/thalamus/``. Each test gets buses in a unique namespace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from netcortex.contracts.bus import BusMessage, EventBus, Subscription
from netcortex.errors import BusUnavailable, InvalidSubject
from netcortex.metrics import Registry
from tests.conftest import BusFactory
from tests.contracts.conftest import MakeBus

RECEIPT = 10.0  # seconds to wait for something that must arrive
QUIET = 0.3  # seconds of silence that show something did not arrive

LINK_DOWN = "sensory.snmp.trap.link_down.10%2E0%2E0%2E1.Gi1/0/3"


async def receive(sub: Subscription, count: int, *, ack: bool = True) -> list[BusMessage]:
    """Take ``count`` messages (acking each unless told not to) or fail by timeout."""
    got: list[BusMessage] = []
    for _ in range(count):
        msg = await sub.next(timeout=RECEIPT)
        if ack:
            await msg.ack()
        got.append(msg)
    return got


async def until(sub: Subscription, sentinel: str) -> list[str]:
    """Subjects received (acked) up to and including the one on ``sentinel``."""
    subjects: list[str] = []
    while not subjects or subjects[-1] != sentinel:
        msg = await sub.next(timeout=RECEIPT)
        await msg.ack()
        subjects.append(msg.subject)
    return subjects


async def assert_quiet(sub: Subscription) -> None:
    """Nothing more arrives on ``sub`` for ``QUIET`` seconds."""
    try:
        extra = await sub.next(timeout=QUIET)
    except TimeoutError:
        return
    pytest.fail(f"unexpected delivery {extra!r}")


class TestPublishSubscribe:
    async def test_round_trip_keeps_exact_bytes_subject_and_msg_id(self, bus: EventBus) -> None:
        """A subscriber gets the published bytes, subject (no namespace) and msg_id, attempt 1."""
        sub = await bus.subscribe("sensory.>")
        payload = bytes(range(256)) + b'{"k": "\xc3\xa9"}'
        await bus.publish(LINK_DOWN, payload, msg_id="evt-1")
        (msg,) = await receive(sub, 1)
        assert msg.data == payload
        assert msg.subject == LINK_DOWN
        assert msg.msg_id == "evt-1"
        assert msg.attempt == 1

    async def test_msg_id_is_optional(self, bus: EventBus) -> None:
        """Without a msg_id the delivered message's msg_id is None."""
        sub = await bus.subscribe("reflex.>")
        await bus.publish("reflex.link_down.logged.r1", b"x")
        (msg,) = await receive(sub, 1)
        assert (msg.msg_id, msg.data) == (None, b"x")

    async def test_star_matches_one_token_and_gt_the_rest(self, bus: EventBus) -> None:
        """``sensory.*.*.link_down.>`` takes every link down whatever saw it, nothing else."""
        sub = await bus.subscribe("sensory.*.*.link_down.>")
        wanted = [
            "sensory.snmp.trap.link_down.r1",
            "sensory.meraki.api.link_down.r2.port3",
            "sensory.snmp.poll.link_down.r3.Gi1.extra",
        ]
        unwanted = [
            "sensory.snmp.trap.link_up.r1.Gi1",
            "sensory.snmp.link_down.r1",  # channel missing: link_down is the 3rd token
            "sensory.snmp.trap.link_down",  # '>' needs at least one more token
            "reflex.link_down.logged.r1",
        ]
        for subject in [*unwanted[:2], wanted[0], *unwanted[2:], *wanted[1:]]:
            await bus.publish(subject, b".")
        sentinel = "sensory.snmp.trap.link_down.end"
        await bus.publish(sentinel, b".")
        assert await until(sub, sentinel) == [*wanted, sentinel]

    async def test_star_is_exactly_one_token(self, bus: EventBus) -> None:
        """A trailing ``*`` matches one token, never zero or two."""
        sub = await bus.subscribe("sensory.snmp.trap.link_down.*")
        await bus.publish("sensory.snmp.trap.link_down.r1.Gi1", b".")
        await bus.publish("sensory.snmp.trap.link_down.r1", b".")
        (msg,) = await receive(sub, 1)
        assert msg.subject == "sensory.snmp.trap.link_down.r1"
        await assert_quiet(sub)

    async def test_non_matching_subject_is_not_delivered(self, bus: EventBus) -> None:
        """A message on a subject no pattern matches never reaches the subscriber."""
        sub = await bus.subscribe("sensory.meraki.webhook.security.>")
        await bus.publish("sensory.snmp.trap.link_down.r1", b"no")
        await bus.publish("sensory.meraki.webhook.security.net1", b"yes")
        (msg,) = await receive(sub, 1)
        assert msg.data == b"yes"
        await assert_quiet(sub)

    async def test_multiple_patterns_in_one_subscription(self, bus: EventBus) -> None:
        """One subscription with patterns on one and on several roots gets each match once."""
        sub = await bus.subscribe(
            ["sensory.*.*.link_down.>", "sensory.*.*.link_up.>", "reflex.link_down.>"]
        )
        subjects = [
            "sensory.snmp.trap.link_down.r1",
            "sensory.snmp.trap.link_up.r1",
            "reflex.link_down.logged.r1",
        ]
        await bus.publish("sensory.snmp.trap.device_reboot.r1", b"no")
        for s in subjects:
            await bus.publish(s, b"yes")
        got = await receive(sub, 3)
        assert sorted(m.subject for m in got) == sorted(subjects)
        await assert_quiet(sub)

    async def test_covering_patterns_deliver_once(self, bus: EventBus) -> None:
        """A message matching two patterns of one subscription is delivered once."""
        sub = await bus.subscribe(["sensory.>", "sensory.snmp.trap.link_down.>"])
        await bus.publish(LINK_DOWN, b"once")
        (msg,) = await receive(sub, 1)
        assert msg.data == b"once"
        await assert_quiet(sub)

    async def test_other_roots_work(self, bus: EventBus) -> None:
        """Subjects outside sensory/reflex (``incident.>``) are published and delivered."""
        sub = await bus.subscribe("incident.*.*")
        await bus.publish("incident.open.i-42", b"inc")
        (msg,) = await receive(sub, 1)
        assert (msg.subject, msg.data) == ("incident.open.i-42", b"inc")

    async def test_fan_out_to_independent_subscriptions(self, bus: EventBus) -> None:
        """Two subscriptions without a durable name each get every message."""
        a = await bus.subscribe("sensory.>")
        b = await bus.subscribe("sensory.snmp.>")
        for i in range(5):
            await bus.publish(f"sensory.snmp.trap.link_down.r{i}", b"%d" % i)
        for sub in (a, b):
            assert [m.data for m in await receive(sub, 5)] == [b"%d" % i for i in range(5)]

    async def test_per_subject_order_for_one_subscriber(self, bus: EventBus) -> None:
        """One subscriber sees one publisher's messages on a subject in publish order."""
        sub = await bus.subscribe("sensory.>")
        for i in range(200):
            await bus.publish(LINK_DOWN, str(i).encode())
        got = await receive(sub, 200)
        assert [int(m.data) for m in got] == list(range(200))

    async def test_async_iteration_yields_messages_until_closed(self, bus: EventBus) -> None:
        """``async for`` over a subscription yields messages and ends when it is closed."""
        sub = await bus.subscribe("reflex.>")
        await bus.publish("reflex.h.logged.r1", b"1")
        await bus.publish("reflex.h.logged.r2", b"2")
        seen: list[bytes] = []
        async for msg in sub:
            await msg.ack()
            seen.append(msg.data)
            if len(seen) == 2:
                await sub.close()
        assert seen == [b"1", b"2"]


class TestDurableGroups:
    async def test_members_share_the_work_each_message_once(self, bus: EventBus) -> None:
        """Subscriptions sharing a durable name get each message exactly once between them."""
        members = [await bus.subscribe("sensory.>", durable="reflex-link_down") for _ in range(2)]
        total = 60
        seen: list[bytes] = []
        done = asyncio.Event()

        async def work(sub: Subscription) -> None:
            while not done.is_set():
                try:
                    msg = await sub.next(timeout=0.2)
                except TimeoutError:
                    continue
                seen.append(msg.data)
                await msg.ack()
                if len(seen) >= total:
                    done.set()

        workers = [asyncio.create_task(work(m)) for m in members]
        for i in range(total):
            await bus.publish(f"sensory.snmp.trap.link_down.r{i}", b"%d" % i)
        async with asyncio.timeout(RECEIPT):
            await done.wait()
        await asyncio.gather(*workers)
        assert sorted(seen) == sorted(b"%d" % i for i in range(total))
        for sub in members:
            await assert_quiet(sub)

    async def test_unacked_message_goes_to_remaining_member_on_close(self, bus: EventBus) -> None:
        """A message a member holds unacked when it closes is redelivered to another member."""
        first = await bus.subscribe("reflex.>", durable="group")
        await bus.publish("reflex.h.logged.r1", b"work", msg_id="w1")
        (held,) = await receive(first, 1, ack=False)
        second = await bus.subscribe("reflex.>", durable="group")
        await first.close()
        (again,) = await receive(second, 1)
        assert (again.data, again.msg_id, again.attempt) == (held.data, "w1", 2)

    async def test_durable_group_delivers_only_messages_after_creation(self, bus: EventBus) -> None:
        """A brand-new durable group starts with messages published after it subscribed."""
        await bus.publish("sensory.snmp.trap.link_down.before", b"old")
        sub = await bus.subscribe("sensory.>", durable="fresh")
        await bus.publish("sensory.snmp.trap.link_down.after", b"new")
        (msg,) = await receive(sub, 1)
        assert msg.data == b"new"


class TestAtLeastOnce:
    async def test_nak_redelivers_with_attempt_two(self, bus: EventBus) -> None:
        """A nak'ed message comes back with the same data and msg_id and attempt 2."""
        sub = await bus.subscribe("sensory.>", durable="retry")
        await bus.publish(LINK_DOWN, b"again", msg_id="m-2")
        (first,) = await receive(sub, 1, ack=False)
        await first.nak()
        (second,) = await receive(sub, 1)
        assert (second.data, second.msg_id, second.attempt) == (b"again", "m-2", 2)

    async def test_nak_delay_postpones_redelivery(self, bus: EventBus) -> None:
        """``nak(delay)`` redelivers no sooner than about ``delay`` seconds later."""
        sub = await bus.subscribe("sensory.>")
        await bus.publish(LINK_DOWN, b"later")
        (first,) = await receive(sub, 1, ack=False)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await first.nak(delay=0.4)
        (second,) = await receive(sub, 1)
        assert second.attempt == 2
        assert loop.time() - started >= 0.3

    async def test_max_deliver_reached_is_not_delivered_again(self, make_bus: MakeBus) -> None:
        """At max_deliver a nak drops the message for good and counts a dead letter."""
        metrics = Registry()
        bus = await make_bus(max_deliver=2, metrics=metrics)
        sub = await bus.subscribe("sensory.>", durable="poison")
        await bus.publish(LINK_DOWN, b"poison")
        for attempt in (1, 2):
            (msg,) = await receive(sub, 1, ack=False)
            assert (msg.data, msg.attempt) == (b"poison", attempt)
            await msg.nak()
        await bus.publish("sensory.snmp.trap.link_up.r1", b"next")
        (msg,) = await receive(sub, 1)
        assert msg.data == b"next"
        await assert_quiet(sub)
        counter = metrics.get("netcortex_bus_dead_letter_total")
        assert counter is not None
        assert counter.total() == 1  # type: ignore[union-attr]

    async def test_ack_and_nak_are_idempotent(self, bus: EventBus) -> None:
        """A second ack, or a nak after an ack, does nothing and raises nothing."""
        sub = await bus.subscribe("sensory.>")
        await bus.publish(LINK_DOWN, b"once")
        (msg,) = await receive(sub, 1)
        await msg.ack()
        await msg.nak()
        await assert_quiet(sub)


class TestInProgress:
    async def test_a_message_kept_in_progress_is_not_redelivered_past_ack_wait(
        self, make_bus: MakeBus
    ) -> None:
        """A message held unacked past three times ``ack_wait`` (1 s) but told
        ``in_progress()`` every quarter of it is not redelivered (nor dropped after
        ``max_deliver`` = 2); acked at last, it never comes back. (The memory bus has
        no ack timer; the JetStream control, a message left alone being redelivered
        within the same time, is ``test_bus_ack_wait.py``.)"""
        bus = await make_bus(ack_wait=1.0, max_deliver=2)
        sub = await bus.subscribe("sensory.>", durable="slow-worker")
        await bus.publish(LINK_DOWN, b"long job", msg_id="slow-1")
        (held,) = await receive(sub, 1, ack=False)
        loop = asyncio.get_running_loop()
        until_ = loop.time() + 3.0
        while loop.time() < until_:
            await held.in_progress()
            try:
                extra = await sub.next(timeout=0.25)
            except TimeoutError:
                continue
            pytest.fail(f"redelivered while in progress: {extra!r}")
        await held.ack()
        await bus.publish("sensory.snmp.trap.link_up.r1", b"next")
        (after,) = await receive(sub, 1)
        assert (after.data, after.attempt) == (b"next", 1)
        await assert_quiet(sub)

    async def test_in_progress_after_ack_or_nak_does_nothing(self, bus: EventBus) -> None:
        """``in_progress`` after ``ack`` raises nothing and brings nothing back; after
        ``nak`` the redelivery still happens (once, attempt 2)."""
        sub = await bus.subscribe("sensory.>", durable="settled")
        await bus.publish(LINK_DOWN, b"acked")
        (acked,) = await receive(sub, 1)
        await acked.in_progress()
        await assert_quiet(sub)
        await bus.publish(LINK_DOWN, b"naked")
        (naked,) = await receive(sub, 1, ack=False)
        await naked.nak()
        await naked.in_progress()
        (again,) = await receive(sub, 1)
        assert (again.data, again.attempt) == (b"naked", 2)
        await assert_quiet(sub)


class TestErrorsAndLifecycle:
    @pytest.mark.parametrize(
        "subject",
        ["", "sensory..x", "sensory.*.x", "sensory.>", "sens ory.x", "sensory.x.", ".x", "a\tb"],
    )
    async def test_invalid_subject_on_publish_raises(self, bus: EventBus, subject: str) -> None:
        """Publishing on an empty, wildcard or malformed subject raises InvalidSubject."""
        with pytest.raises(InvalidSubject):
            await bus.publish(subject, b"x")

    @pytest.mark.parametrize(
        "patterns",
        ["", "sensory.>.x", "sens*ory.x", "sensory..x", "sensory.x>", [], ["sensory.>", "a..b"]],
    )
    async def test_invalid_pattern_on_subscribe_raises(
        self, bus: EventBus, patterns: str | Sequence[str]
    ) -> None:
        """Subscribing with a malformed pattern (or none) raises InvalidSubject."""
        with pytest.raises(InvalidSubject):
            await bus.subscribe(patterns)

    @pytest.mark.parametrize("patterns", [">", "*.snmp.>", ["sensory.>", "*.x"]])
    async def test_wildcard_root_raises_on_every_backend(
        self, bus: EventBus, patterns: str | Sequence[str]
    ) -> None:
        """A pattern whose first token is a wildcard is refused alike by every backend,
        so swapping the bus never changes what a subscription may say."""
        with pytest.raises(InvalidSubject, match="concrete root"):
            await bus.subscribe(patterns)

    async def test_invalid_durable_name_raises(self, bus: EventBus) -> None:
        """A durable name with grammar characters raises InvalidSubject."""
        with pytest.raises(InvalidSubject):
            await bus.subscribe("sensory.>", durable="a.b")

    async def test_publish_and_subscribe_before_start_raise(
        self, backend: str, bus_factory: BusFactory
    ) -> None:
        """A bus that was never started refuses publish and subscribe with BusUnavailable."""
        bus = await bus_factory(backend, start=False)
        with pytest.raises(BusUnavailable):
            await bus.publish(LINK_DOWN, b"x")
        with pytest.raises(BusUnavailable):
            await bus.subscribe("sensory.>")

    async def test_publish_and_subscribe_after_close_raise(self, bus: EventBus) -> None:
        """A closed bus refuses publish and subscribe with BusUnavailable."""
        await bus.close()
        with pytest.raises(BusUnavailable):
            await bus.publish(LINK_DOWN, b"x")
        with pytest.raises(BusUnavailable):
            await bus.subscribe("sensory.>")

    async def test_close_is_idempotent_and_ends_subscriptions(self, bus: EventBus) -> None:
        """Closing twice is fine; a subscription of a closed bus raises BusUnavailable."""
        sub = await bus.subscribe("sensory.>")
        await bus.close()
        await bus.close()
        with pytest.raises(BusUnavailable):
            await sub.next(timeout=1)

    async def test_connected_follows_the_lifecycle(
        self, backend: str, bus_factory: BusFactory
    ) -> None:
        """``connected`` is False before start, True once started, False after close
        (and stays False: a closed bus is not restarted)."""
        bus = await bus_factory(backend, start=False)
        assert bus.connected is False
        await bus.start()
        assert bus.connected is True
        await bus.start()
        assert bus.connected is True
        await bus.close()
        assert bus.connected is False
        with pytest.raises(BusUnavailable):
            await bus.start()
        assert bus.connected is False

    async def test_reports_its_queue_depth(self, backend: str, bus_factory: BusFactory) -> None:
        """Every backend reports a ``netcortex_queue_depth`` series (its own ``queue``
        label) on the registry it was given; 0 once everything published was taken."""
        metrics = Registry()
        bus = await bus_factory(backend, metrics=metrics)
        sub = await bus.subscribe("reflex.>")
        await bus.publish("reflex.h.logged.r1", b"x")
        await receive(sub, 1)
        lines = [
            line
            for line in metrics.render().splitlines()
            if line.startswith("netcortex_queue_depth{")
        ]
        assert lines, "no netcortex_queue_depth series"
        assert all(line.endswith(" 0") for line in lines), lines

    async def test_close_without_start_is_safe(self, backend: str, bus_factory: BusFactory) -> None:
        """Closing a bus that never started returns quietly (twice, too)."""
        bus = await bus_factory(backend, start=False)
        await bus.close()
        await bus.close()

    async def test_start_is_idempotent_and_async_with_works(
        self, backend: str, bus_factory: BusFactory
    ) -> None:
        """``start`` twice is fine, and ``async with`` starts and closes the bus."""
        bus = await bus_factory(backend, start=False)
        async with bus:  # type: ignore[attr-defined]
            await bus.start()
            sub = await bus.subscribe("reflex.>")
            await bus.publish("reflex.h.logged.r1", b"in")
            assert [m.data for m in await receive(sub, 1)] == [b"in"]
        with pytest.raises(BusUnavailable):
            await bus.publish("reflex.h.logged.r1", b"out")

    async def test_subscription_close_wakes_a_waiting_next(self, bus: EventBus) -> None:
        """Closing a subscription makes a pending ``next`` raise BusUnavailable."""
        sub = await bus.subscribe("sensory.>")
        waiter = asyncio.create_task(sub.next())
        await asyncio.sleep(0.01)  # let the waiter block (not a wait for delivery)
        await sub.close()
        with pytest.raises(BusUnavailable):
            await asyncio.wait_for(waiter, RECEIPT)
        await sub.close()  # idempotent

    async def test_next_times_out_with_timeout_error(self, bus: EventBus) -> None:
        """``next(timeout)`` raises TimeoutError when nothing arrives."""
        sub = await bus.subscribe("sensory.>")
        with pytest.raises(TimeoutError):
            await sub.next(timeout=0.05)

    async def test_closed_subscription_receives_nothing_more(self, bus: EventBus) -> None:
        """After a subscription closes, messages go only to the subscriptions still open."""
        gone = await bus.subscribe("sensory.>")
        kept = await bus.subscribe("sensory.>")
        await gone.close()
        await bus.publish(LINK_DOWN, b"x")
        assert [m.data for m in await receive(kept, 1)] == [b"x"]
        with pytest.raises(BusUnavailable):
            await gone.next(timeout=0.05)


class TestConcurrency:
    async def test_many_concurrent_publishers_all_delivered(self, bus: EventBus) -> None:
        """Twenty concurrent publishers' 1,000 messages all reach one subscriber."""
        sub = await bus.subscribe("sensory.>")

        async def publisher(p: int) -> None:
            for i in range(50):
                await bus.publish(f"sensory.snmp.trap.link_down.p{p}", b"%d:%d" % (p, i))

        await asyncio.gather(*(publisher(p) for p in range(20)))
        got = await receive(sub, 1000)
        assert sorted(m.data for m in got) == sorted(
            b"%d:%d" % (p, i) for p in range(20) for i in range(50)
        )
        # per-subject order still holds for each publisher
        for p in range(20):
            mine = [int(m.data.split(b":")[1]) for m in got if m.data.startswith(b"%d:" % p)]
            assert mine == list(range(50))
