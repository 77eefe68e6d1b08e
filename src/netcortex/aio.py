"""Stopping tasks for sure, in bounded time (any region may import this module).

One ``task.cancel(); await task`` is not always enough on Python 3.11:
``asyncio.wait_for(x, t)`` returns ``x``'s result and *drops* a cancel that lands
after ``x`` completed but before the waiting task ran again. nats-py waits for
every reply with ``wait_for``, asyncpg does in places, so a task cancelled while
inside a request can survive the cancel; a loop around it then runs for ever and
an unbounded ``await task`` hangs the stop (the poll membership heartbeat did, in
CI). ``stop_task`` / ``stop_tasks`` cancel again every ``RECANCEL`` seconds until
the tasks end or ``timeout`` passed; a task still running then is logged (error,
``task_stop_stuck`` unless the caller names its own event) and left behind.

The tasks' exceptions are retrieved (no "exception was never retrieved" noise)
and logged (``task_failed_at_stop``, error with the traceback: a task that died of
a bug while being stopped leaves a trace) but not raised: a stop reports only
whether everything ended. A caller that must act on a task's failure reads
``task.exception()`` after a ``True``.

If the stopping task is itself cancelled meanwhile, the ``CancelledError``
propagates (the tasks were cancelled at least once).

Imports: stdlib only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final, Protocol

__all__ = ["FAILED_EVENT", "RECANCEL", "STUCK_EVENT", "stop_task", "stop_tasks"]

#: seconds between two cancels of a task that did not end
RECANCEL: Final = 0.1
#: the default event of the error line for tasks that did not end in time
STUCK_EVENT: Final = "task_stop_stuck"
#: the event of the error line for a stopped task that had died of an exception
FAILED_EVENT: Final = "task_failed_at_stop"


class _Errors(Protocol):
    """What the helpers write to: a structlog logger's ``error``."""

    def error(self, event: str, /, **fields: Any) -> Any: ...


async def stop_task(
    task: asyncio.Task[Any],
    *,
    timeout: float,
    what: str,
    logger: _Errors,
    event: str = STUCK_EVENT,
    **context: Any,
) -> bool:
    """Cancel ``task`` (again every ``RECANCEL`` s) until it ends, for at most ``timeout``.

    Args:
        task: the task to stop (a task already done is only reaped).
        timeout: seconds to wait in all (the task is cancelled at least once, even
            with ``timeout <= 0``).
        what: what the task is, for the log (``poll membership heartbeat``).
        logger: the caller's ``structlog.get_logger(__name__)``, so lines keep its name.
        event: the log event for a task that did not end (``task_stop_stuck``).
        **context: more fields for that line (``member=...``).

    Returns:
        True once the task is done; False (after the error line with ``what``,
        ``task`` — its name — and ``timeout_s``) if it still runs after ``timeout``.
    """
    stuck = await _stop((task,), timeout, what, logger)
    if stuck:
        logger.error(event, what=what, task=task.get_name(), timeout_s=timeout, **context)
        return False
    return True


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any]],
    *,
    timeout: float,
    what: str,
    logger: _Errors,
    event: str = STUCK_EVENT,
    **context: Any,
) -> bool:
    """``stop_task`` for several tasks at once, within one ``timeout`` for them all.

    Returns:
        True once every task is done; False (after one error line with ``what``,
        ``tasks`` — the sorted names of those still running — and ``timeout_s``)
        otherwise.
    """
    stuck = await _stop(tuple(tasks), timeout, what, logger)
    if stuck:
        names = sorted(t.get_name() for t in stuck)
        logger.error(event, what=what, tasks=names, timeout_s=timeout, **context)
        return False
    return True


async def _stop(
    tasks: tuple[asyncio.Task[Any], ...], timeout: float, what: str, logger: _Errors
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` until they end or ``timeout`` passed; the ones still running.
    A task that ended with an exception (not a cancel) is logged."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()  # at least once, even with no time left to wait
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(left, RECANCEL))
    for task in tasks:
        if task.done() and not task.cancelled():
            exc = task.exception()  # retrieved: no "never retrieved" noise at exit
            if exc is not None:
                logger.error(
                    FAILED_EVENT, what=what, task=task.get_name(), error=repr(exc), exc_info=exc
                )
    return pending
