"""Bridge: record the sensory events a bus carries to a JSON-lines file, and read it back.

The recording format (issue 8, item 5) is one ``contracts.codec.encode_event``
JSON object per line, UTF-8, ``\\n``-terminated: every field of the
``SensoryEvent``, its ``received_at`` included, so ``netcortex replay`` can
run the events again on a virtual clock. Lines are in the order the bus
delivered them (``read_recording`` does not sort; the replayer does).

``EventRecorder(bus, path)`` is what ``netcortex run --record FILE`` starts
(and what ``netcortex demo`` may reuse): a plain (non-durable) subscription on
``sensory.>`` so it never takes work from the reflex runner's durable groups,
a reader task that only moves each message's bytes onto a bounded queue, and a
writer task that appends them in small batches from a worker thread. Intake
never waits for the disk: when the queue is full the event is dropped, counted
(``netcortex_recorder_events_total{result="dropped"}``) and a rate-limited
``recorder_overflow`` warning says so. ``stop`` takes what the subscription
still holds, writes everything queued, flushes and closes the file.

May import: everything (bridge), but uses only ``contracts``, ``errors`` and
``metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import structlog

from netcortex.contracts.bus import EventBus, Subscription
from netcortex.contracts.codec import decode_event, encode_event
from netcortex.contracts.events import SensoryEvent
from netcortex.errors import BusError, BusUnavailable, DecodeError
from netcortex.metrics import Registry

__all__ = [
    "RECORD_PATTERN",
    "BadLine",
    "EventRecorder",
    "Recording",
    "encode_line",
    "parse_lines",
    "read_recording",
]

log = structlog.get_logger(__name__)

#: What the recorder subscribes to: every sensory event, whatever its source.
RECORD_PATTERN: Final = "sensory.>"
_STOP: Final = object()
#: at most one overflow warning per this many seconds (the counter has the total)
_OVERFLOW_LOG_INTERVAL: Final = 10.0
#: at stop, the subscription is read until it stays empty this long (seconds): a
#: server-side bus may still be delivering what the receivers published last
_DRAIN_WAIT: Final = 0.25
#: a recording line longer than this (bytes) is reported bad without being held in
#: memory whole (an event is a few KiB; a webhook body is capped far below this)
MAX_LINE: Final = 8 * 1024 * 1024
#: the event fields that must be strings (``None`` allowed for the optional ones):
#: the codec accepts any JSON value, and replay sorts and matches on them
_STR_FIELDS: Final = ("id", "subject", "event_class", "source", "target")
_OPTIONAL_STR_FIELDS: Final = ("device", "interface", "peer", "agent")


def encode_line(event: SensoryEvent) -> bytes:
    """One recording line for ``event``: ``encode_event`` bytes plus ``\\n``."""
    return encode_event(event) + b"\n"


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line of a recording that is not an event: its 1-based number and why."""

    line: int
    error: str


@dataclass(frozen=True, slots=True)
class Recording:
    """What ``read_recording`` found: the events in file order and the bad lines.

    Attributes:
        events: the decoded events, in the order of the file.
        bad: the lines that did not decode (blank lines are skipped, not bad).
    """

    events: list[SensoryEvent] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)


class _TooLong:
    """Stands for a line longer than ``MAX_LINE`` (``read_recording``)."""

    __slots__ = ()


_TOO_LONG: Final = _TooLong()


def parse_lines(lines: Iterable[bytes | str | _TooLong]) -> Recording:
    """Decode recording lines (numbered from 1); a bad line is kept in ``bad``, never raised."""
    out = Recording()
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, _TooLong):
            out.bad.append(BadLine(number, f"line longer than {MAX_LINE} bytes"))
            continue
        text = raw.strip()
        if not text:
            continue
        try:
            event = decode_event(text)
        except DecodeError as exc:
            out.bad.append(BadLine(number, str(exc)))
            continue
        except RecursionError:  # JSON nested deeper than the interpreter's stack
            out.bad.append(BadLine(number, "SensoryEvent: invalid JSON: nested too deeply"))
            continue
        problem = _field_problem(event)
        if problem is not None:
            out.bad.append(BadLine(number, problem))
        else:
            out.events.append(event)
    return out


def _field_problem(event: SensoryEvent) -> str | None:
    """Why ``event`` cannot be replayed (a field of the wrong type), or ``None``."""
    for name in _STR_FIELDS:
        if not isinstance(getattr(event, name), str):
            return f"SensoryEvent: invalid field: {name} must be a string"
    for name in _OPTIONAL_STR_FIELDS:
        value = getattr(event, name)
        if value is not None and not isinstance(value, str):
            return f"SensoryEvent: invalid field: {name} must be a string or null"
    return None


def _bounded_lines(fh: IO[bytes]) -> Iterator[bytes | _TooLong]:
    """The lines of ``fh``; one longer than ``MAX_LINE`` is skipped (read in chunks,
    never held whole) and stands as ``_TOO_LONG``."""
    while True:
        line = fh.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) <= MAX_LINE or line.endswith(b"\n"):
            yield line
            continue
        while line and not line.endswith(b"\n"):
            line = fh.readline(MAX_LINE)
        yield _TOO_LONG


def read_recording(path: str | Path) -> Recording:
    """Read a recording file (see the module doc).

    Raises:
        OSError: the file cannot be opened or read.
    """
    with open(path, "rb") as fh:
        return parse_lines(_bounded_lines(fh))


class EventRecorder:
    """Appends every sensory event ``bus`` carries to ``path`` (one JSON object a line).

    Args:
        bus: a started bus (started and closed by its owner).
        path: the file to append to (created, with its directory, if missing).
        metrics: where to count (a private registry when ``None``).
        queue_size: events that may wait for the writer; beyond that they are
            dropped and counted.
        batch_size: events written (and flushed) at once at most.
        flush_interval: longest an event waits for its batch to fill (seconds).
        pattern: the subject pattern recorded (default every sensory event).
        append: append to an existing file (``netcortex run --record``); ``False``
            starts it afresh (``netcortex demo --record``: one fresh engine's events).

    Construction does no I/O; ``start``/``stop`` (or ``async with``) do.
    """

    def __init__(
        self,
        bus: EventBus,
        path: str | Path,
        *,
        metrics: Registry | None = None,
        queue_size: int = 10_000,
        batch_size: int = 256,
        flush_interval: float = 0.2,
        pattern: str = RECORD_PATTERN,
        append: bool = True,
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")
        self.path = Path(path)
        self._append = append
        self._bus = bus
        self._pattern = pattern
        self._queue: asyncio.Queue[bytes | object] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._sub: Subscription | None = None
        self._file: IO[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._stopped = False
        self._torn = False  # a write failed: the file may end mid-line
        self._last_overflow_log = -_OVERFLOW_LOG_INTERVAL
        self._dropped_since_log = 0
        self.written = 0  #: events appended to the file
        self.dropped = 0  #: events dropped because the queue was full
        self.invalid = 0  #: messages on the pattern that were not events (not written)
        registry = metrics if metrics is not None else Registry()
        self._events = registry.counter(
            "netcortex_recorder_events_total",
            "Sensory events seen by the recorder, by result (written, dropped, invalid).",
            ("result",),
        )
        registry.queue_depth("recorder", self._queue.qsize)

    async def __aenter__(self) -> EventRecorder:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the file for appending and subscribe; events published after this are
        recorded. Idempotent.

        Raises:
            OSError: the file cannot be opened.
            netcortex.errors.BusError: the subscription cannot be opened.
        """
        if self._reader is not None:
            return
        if self._stopped:
            raise RuntimeError("an EventRecorder cannot be restarted after stop()")
        self._file = await asyncio.to_thread(self._open)
        try:
            self._sub = await self._bus.subscribe(self._pattern)
        except BaseException:
            await asyncio.to_thread(self._file.close)
            self._file = None
            raise
        self._writer = asyncio.create_task(self._write_loop(), name="recorder-writer")
        self._reader = asyncio.create_task(self._read_loop(self._sub), name="recorder-reader")
        log.info("recorder_started", path=str(self.path), pattern=self._pattern)

    def _open(self) -> IO[bytes]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._append:
            return open(self.path, "wb")
        # A recording cut off mid-line (a crash, a full disk) would glue its torn last
        # line to our first one, losing both: end it first.
        torn = _ends_mid_line(self.path)
        fh = open(self.path, "ab")  # noqa: SIM115 - closed by stop()
        if torn:
            try:
                fh.write(b"\n")
                fh.flush()
            except BaseException:
                fh.close()
                raise
        return fh

    async def stop(self, timeout: float = 5.0) -> None:
        """Record what the subscription still holds, write everything queued (within
        ``timeout``), flush and close the file. Idempotent; safe without ``start``."""
        if self._stopped:
            return
        self._stopped = True
        reader, writer, sub = self._reader, self._writer, self._sub
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        try:
            async with asyncio.timeout(timeout):
                if sub is not None:
                    # What was published before the stop and not yet read is still
                    # recorded: intake is over, so wait for the writer to make room
                    # rather than drop (bounded by ``timeout``).
                    with contextlib.suppress(BusError, TimeoutError):
                        while True:
                            msg = await sub.next(timeout=_DRAIN_WAIT)
                            data = getattr(msg, "data", None)
                            if isinstance(data, bytes) and writer is not None:
                                await self._queue.put(data)
                    await self._close_sub(sub)  # a publisher must never wait for us
                if writer is not None:
                    await self._queue.put(_STOP)
                    await asyncio.shield(writer)
        except TimeoutError:
            if writer is not None:
                log.warning("recorder_stop_timeout", timeout_s=timeout, left=self._queue.qsize())
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
        if sub is not None:
            await self._close_sub(sub)
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
            self._file = None
        log.info(
            "recorder_stopped",
            path=str(self.path),
            written=self.written,
            dropped=self.dropped,
            invalid=self.invalid,
        )

    async def _close_sub(self, sub: Subscription) -> None:
        """Close the subscription once (idempotent here)."""
        if self._sub is sub:
            self._sub = None
            with contextlib.suppress(BusError):
                await sub.close()

    # -- intake: never waits ---------------------------------------------------------

    async def _read_loop(self, sub: Subscription) -> None:
        while True:
            try:
                msg = await sub.next()
            except BusUnavailable:
                return  # closed (stop, or the bus went away)
            except BusError as exc:
                log.warning("recorder_receive_failed", error=str(exc))
                await asyncio.sleep(0.1)
                continue
            self._take(msg)
            with contextlib.suppress(BusError):
                await msg.ack()

    def _take(self, msg: object) -> None:
        data = getattr(msg, "data", None)
        if not isinstance(data, bytes):
            return
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1
            self._events.inc(result="dropped")
            self._dropped_since_log += 1
            now = time.monotonic()
            if now - self._last_overflow_log >= _OVERFLOW_LOG_INTERVAL:
                log.warning(
                    "recorder_overflow",
                    dropped=self._dropped_since_log,
                    queue_size=self._queue.maxsize,
                    path=str(self.path),
                )
                self._last_overflow_log = now
                self._dropped_since_log = 0

    # -- the writer: batches off the event loop ------------------------------------------

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch: list[bytes] = []
            stop = first is _STOP
            if isinstance(first, bytes):
                batch.append(first)
            deadline = loop.time() + self._flush_interval
            while not stop and len(batch) < self._batch_size:
                try:
                    if self._queue.empty():
                        async with asyncio.timeout_at(deadline):
                            item = await self._queue.get()
                    else:
                        item = self._queue.get_nowait()
                except TimeoutError:
                    break
                if item is _STOP:
                    stop = True
                elif isinstance(item, bytes):
                    batch.append(item)
            if batch:
                try:
                    written, invalid = await asyncio.to_thread(self._write, batch)
                except OSError as exc:
                    log.error("recorder_write_failed", path=str(self.path), error=str(exc))
                else:
                    self.written += written
                    self.invalid += invalid
                    if written:
                        self._events.inc(written, result="written")
                    if invalid:
                        self._events.inc(invalid, result="invalid")
            if stop:
                return

    def _write(self, batch: list[bytes]) -> tuple[int, int]:
        """Append the valid events of ``batch`` (canonical encoding) and flush (thread)."""
        fh = self._file
        if fh is None:
            return 0, len(batch)
        lines, invalid = _lines(batch)
        # After a failed write (disk full) the file may end in a torn line: end it, or
        # the next event would be glued to it and lost (a blank line is skipped).
        prefix = [b"\n"] if self._torn and lines else []
        try:
            fh.writelines(prefix + lines)
            fh.flush()
        except OSError:
            self._torn = True
            raise
        self._torn = False
        return len(lines), invalid


def _ends_mid_line(path: Path) -> bool:
    """Whether ``path`` is a regular file whose last byte is not ``\\n`` (a FIFO or a
    device is never read here: opening one to read could block)."""
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            if fh.seek(0, 2) == 0:
                return False
            fh.seek(-1, 2)
            return fh.read(1) != b"\n"
    except OSError:
        return False


def _lines(batch: list[bytes]) -> tuple[list[bytes], int]:
    out: list[bytes] = []
    invalid = 0
    for data in batch:
        try:
            out.append(encode_line(decode_event(data)))
        except DecodeError:
            invalid += 1
    return out, invalid
