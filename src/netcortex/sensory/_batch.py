"""Sensory: the one "take a batch off a queue" step every receiver's publishers share.

Imports: stdlib only.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

__all__ = ["take_batch"]

_T = TypeVar("_T")


async def take_batch(queue: asyncio.Queue[_T], limit: int) -> list[_T]:
    """Wait for one item, then take what is already queued, up to ``limit`` items.

    A burst costs one task switch per batch instead of one per item, and an idle
    publisher sleeps on ``queue.get`` (no polling).
    """
    batch = [await queue.get()]
    while len(batch) < limit:
        try:
            batch.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            break
    return batch
