"""Unit tests for ``netcortex.aio``: stopping tasks that swallow a cancel, in bounded time."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import structlog
from structlog.testing import capture_logs

from netcortex.aio import FAILED_EVENT, RECANCEL, STUCK_EVENT, stop_task, stop_tasks

log = structlog.get_logger("test")


async def swallows_once(state: dict[str, int]) -> None:
    """A loop that survives its first cancel (as one inside ``wait_for`` can), then not."""
    while True:
        try:
            await asyncio.sleep(0.01)
            state["steps"] = state.get("steps", 0) + 1
        except asyncio.CancelledError:
            state["cancels"] = state.get("cancels", 0) + 1
            if state["cancels"] > 1:
                raise


async def never_ends(release: asyncio.Event, state: dict[str, int]) -> None:
    """A loop that swallows every cancel until ``release`` is set."""
    while not release.is_set():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            state["cancels"] = state.get("cancels", 0) + 1


async def started(task: asyncio.Task[Any]) -> None:
    """Let ``task`` reach its first suspension point."""
    for _ in range(3):
        await asyncio.sleep(0)
    assert not task.done()


async def test_a_task_that_swallowed_the_cancel_ends_after_a_re_cancel() -> None:
    """The first cancel is swallowed; the helper cancels again and the task ends."""
    state: dict[str, int] = {}
    task = asyncio.create_task(swallows_once(state), name="swallower")
    await started(task)
    with capture_logs() as logs:
        began = time.monotonic()
        ended = await stop_task(task, timeout=5.0, what="test loop", logger=log)
        took = time.monotonic() - began
    assert ended is True
    assert task.cancelled()
    assert state["cancels"] == 2
    assert took < 1.0  # a re-cancel after RECANCEL, not the whole timeout
    assert logs == []


async def test_a_cancel_dropped_by_wait_for_is_repeated() -> None:
    """The real race: ``wait_for`` returns the reply and drops a cancel landing with it.

    The loop around it (like a nats-py request loop) would run for ever after one
    cancel; the helper's second cancel ends it.
    """
    replies: asyncio.Queue[asyncio.Future[int]] = asyncio.Queue()
    rounds = 0

    async def request_loop() -> None:
        nonlocal rounds
        loop = asyncio.get_running_loop()
        while True:
            reply: asyncio.Future[int] = loop.create_future()
            await replies.put(reply)
            await asyncio.wait_for(reply, 5.0)
            rounds += 1

    task = asyncio.create_task(request_loop(), name="requests")
    reply = await replies.get()
    reply.set_result(1)  # the reply arrives ...
    task.cancel()  # ... and the cancel lands before the task runs again
    assert await stop_task(task, timeout=5.0, what="request loop", logger=log)
    assert task.cancelled()
    assert rounds >= 1  # the first cancel was dropped: the loop went round again


async def test_a_task_that_never_ends_is_logged_and_left_within_the_timeout() -> None:
    """``False`` and one error line (``what``, the task's name, the timeout) after ``timeout``."""
    release = asyncio.Event()
    state: dict[str, int] = {}
    task = asyncio.create_task(never_ends(release, state), name="stubborn")
    await started(task)
    with capture_logs() as logs:
        began = time.monotonic()
        ended = await stop_task(task, timeout=0.35, what="stubborn loop", logger=log, member="m1")
        took = time.monotonic() - began
    try:
        assert ended is False
        assert 0.35 <= took < 0.35 + 5 * RECANCEL
        assert state["cancels"] >= 3  # cancelled again and again meanwhile
        assert logs == [
            {
                "event": STUCK_EVENT,
                "log_level": "error",
                "what": "stubborn loop",
                "task": "stubborn",
                "timeout_s": 0.35,
                "member": "m1",
            }
        ]
        assert not task.done()
    finally:
        release.set()
        await asyncio.wait_for(task, 5.0)


async def test_the_caller_names_the_event() -> None:
    """A caller keeps its own log name (``poll_shard_close_stuck``)."""
    release = asyncio.Event()
    task = asyncio.create_task(never_ends(release, {}), name="beat")
    await started(task)
    with capture_logs() as logs:
        ended = await stop_task(
            task, timeout=0.05, what="heartbeat", logger=log, event="poll_shard_close_stuck"
        )
    release.set()
    await asyncio.wait_for(task, 5.0)
    assert ended is False
    assert [entry["event"] for entry in logs] == ["poll_shard_close_stuck"]


async def test_exceptions_are_retrieved() -> None:
    """A task failing on its cancel, or failed before, leaves no "never retrieved" report."""
    reports: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    try:

        async def fails_on_cancel() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                raise ValueError("broken on the way out") from None

        async def failed() -> None:
            raise KeyError("before the stop")

        first = asyncio.create_task(fails_on_cancel(), name="fails")
        second = asyncio.create_task(failed(), name="failed")
        await started(first)
        assert second.done()
        with capture_logs() as logs:
            assert await stop_tasks([first, second], timeout=5.0, what="pair", logger=log)
        assert isinstance(first.exception(), ValueError)
        # Not raised, but not silent either: each failure is one error line.
        failures = [e for e in logs if e["event"] == FAILED_EVENT]
        assert sorted((e["task"], e["error"]) for e in failures) == [
            ("failed", "KeyError('before the stop')"),
            ("fails", "ValueError('broken on the way out')"),
        ]
        assert all(e["log_level"] == "error" and e["what"] == "pair" for e in failures)
        del first, second
        gc.collect()
        assert reports == []
    finally:
        loop.set_exception_handler(None)


async def test_stop_tasks_names_only_the_stuck_ones() -> None:
    """Several tasks, one timeout: the ended ones end, the stuck one is named."""
    release = asyncio.Event()
    state: dict[str, int] = {}
    quiet = asyncio.create_task(asyncio.sleep(10), name="quiet")
    swallower = asyncio.create_task(swallows_once(state), name="swallower")
    stubborn = asyncio.create_task(never_ends(release, {}), name="stubborn")
    await started(stubborn)
    with capture_logs() as logs:
        ended = await stop_tasks(
            [quiet, swallower, stubborn], timeout=0.3, what="receiver tasks", logger=log
        )
    release.set()
    await asyncio.wait_for(stubborn, 5.0)
    assert ended is False
    assert quiet.cancelled()
    assert swallower.cancelled()
    assert state["cancels"] == 2
    assert [(e["event"], e["what"], e["tasks"]) for e in logs] == [
        (STUCK_EVENT, "receiver tasks", ["stubborn"])
    ]


async def test_nothing_to_stop() -> None:
    """No tasks, or only finished ones: ``True`` at once, no log."""
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    with capture_logs() as logs:
        assert await stop_tasks([], timeout=0.0, what="none", logger=log)
        assert await stop_task(done, timeout=0.0, what="done", logger=log)
    assert logs == []


async def test_a_cancelled_caller_propagates_its_cancel() -> None:
    """The stopping task's own cancel is not swallowed: it propagates out of
    ``stop_task`` (the task being stopped was cancelled at least once)."""
    release = asyncio.Event()
    state: dict[str, int] = {}
    stubborn = asyncio.create_task(never_ends(release, state), name="stubborn")
    await started(stubborn)
    stopper = asyncio.create_task(stop_task(stubborn, timeout=30.0, what="x", logger=log))
    for _ in range(5):  # the stopper runs and cancels; the stubborn task swallows it
        await asyncio.sleep(0)
    assert state.get("cancels", 0) >= 1
    stopper.cancel()
    try:
        await stopper
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("stop_task swallowed its caller's cancel")
    assert stopper.cancelled()
    release.set()
    await asyncio.wait_for(stubborn, timeout=5.0)
