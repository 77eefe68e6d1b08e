"""``sensory._batch.take_batch``: one wait, then what is queued, up to the limit."""

from __future__ import annotations

import asyncio

from netcortex.sensory._batch import take_batch


async def test_takes_what_is_queued_up_to_the_limit_in_order() -> None:
    """Five queued items and a limit of 3: the first three, in order; the rest stay."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(5):
        queue.put_nowait(i)
    assert await take_batch(queue, 3) == [0, 1, 2]
    assert await take_batch(queue, 3) == [3, 4]
    assert queue.empty()


async def test_waits_for_the_first_item() -> None:
    """On an empty queue it waits (no busy loop) and returns once an item arrives."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(take_batch(queue, 10))
    await asyncio.sleep(0)
    assert not task.done()
    queue.put_nowait("a")
    assert await asyncio.wait_for(task, 5.0) == ["a"]
