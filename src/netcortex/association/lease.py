"""Association: ``JetStreamLease`` — a leader lease in a NATS JetStream KV bucket (issue 10).

Used by ``association.fleet`` so that exactly one worker of a fleet correlates
(``association.fleet``). No home-made consensus: the lease is one key in a
JetStream key-value bucket, and every write is a publish with
``Nats-Expected-Last-Subject-Sequence`` (the same primitive as
``memory.episodic.dedup_jetstream``):

* **acquire** a key that has no message: expected sequence 0 — the server
  accepts exactly one of several contenders;
* **take over** a lease whose ``expires`` has passed (its holder died or let
  it go): compare-and-set on the revision read — again exactly one winner;
* **renew**: compare-and-set on the holder's own last revision; a conflict
  means someone else took it (the holder had already passed its deadline) —
  unless an earlier renewal that timed out on the client did reach the server:
  then the key is re-read, and if it still names this holder, unexpired, its
  revision is adopted (the lease is kept, no needless step-down);
* **release**: compare-and-set writing ``expires = 0``, so the next contender
  takes it over at its next attempt instead of waiting for the expiry.

Layout: bucket ``<bucket>`` (``<bucket>_<namespace>`` with a namespace), i.e. the
stream ``KV_<name>`` on ``$KV.<name>.>``, history 1; the key is the lease name
(``correlator``); the value JSON ``{"holder", "expires", "renewed"}`` (wall-clock
seconds; workers' clocks are assumed NTP-synchronised).

Deadline. A holder must stop acting as leader *before* anyone else may take
over: ``deadline`` is the monotonic time of the start of the last successful
write + ``ttl`` - ``margin`` (``margin`` = a fifth of ``ttl``, at most 2 s, for
clock skew and the write's own latency). The caller renews every ``ttl / 3``
and steps down by ``deadline`` if no renewal succeeded by then. Assumption: the
contenders' wall clocks differ by less than ``margin / 2`` (the other half is
for the step-down's own drain); a larger skew lets a contender see the lease
lapsed while the holder still acts on it.

Errors: nats-py exceptions are mapped in one place (``_errors``): ``start``
raises ``BusUnavailable`` when the server cannot be reached and ``StoreError``
when the bucket cannot be made; ``try_acquire``, ``renew`` and ``release`` raise
``StoreError`` (a conflict is not an error: it returns ``False``).
May import: errors, logs, nats_errors, nats_kv (and nats-py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from netcortex import nats_kv
from netcortex.errors import BusUnavailable, NetcortexError, StoreError
from netcortex.logs import redact_url
from netcortex.nats_errors import NATS_CONNECTIVITY
from netcortex.nats_errors import describe as _describe

__all__ = ["JetStreamLease", "LeaseState", "default_holder"]

log = structlog.get_logger(__name__)

_EXPECTED_LAST: Final = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST: Final = frozenset({10071, 10164})  # JSStreamWrongLastSequence(Constant)Err
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_CONNECTIVITY: Final = NATS_CONNECTIVITY


@contextlib.contextmanager
def _errors(what: str, *, starting: bool = False) -> Iterator[None]:
    """Raise nats-py (and socket) exceptions inside as ``netcortex.errors`` (the one map):
    connectivity while ``starting`` → ``BusUnavailable``, everything else → ``StoreError``."""
    try:
        yield
    except NetcortexError:
        raise
    except Exception as exc:
        if isinstance(exc, _CONNECTIVITY):
            kind: type[NetcortexError] = BusUnavailable if starting else StoreError
        elif isinstance(exc, nats.errors.Error | nats.js.errors.Error):
            kind = StoreError
        else:
            raise
        raise kind(f"{what}: {_describe(exc)}") from exc


@dataclass(frozen=True, slots=True)
class LeaseState:
    """The lease as last read or written.

    Attributes:
        holder: who holds (or last held) it ("" after a release).
        expires: wall-clock seconds when it lapses (0 after a release).
        revision: the key's stream sequence (0: the key has no message).
    """

    holder: str
    expires: float
    revision: int

    def lapsed(self, now: float) -> bool:
        """True when anyone may take it over at wall-clock ``now``."""
        return self.revision == 0 or self.expires <= now


def default_holder() -> str:
    """``<host>:<pid>:<random>`` — unique per process (a restarted worker is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JetStreamLease:
    """One named lease in a JetStream KV bucket (see the module doc for the mechanism).

    Not safe for concurrent use: one task drives it (``association.fleet``).

    Args:
        nats_url: the server (credentials in the URL are redacted in logs).
        name: the lease's key (``correlator``).
        bucket: bucket base name (letters, digits, ``_``, ``-``).
        namespace: appended as ``_<namespace>`` to the bucket ("" for none).
        ttl: seconds the lease lasts without renewal (at least 1).
        holder: this contender's id (``default_holder()`` when ``None``).
        storage: ``file`` (survives a server restart) or ``memory``.
        timeout: seconds for connecting and for each request to the server.
        replicas: copies of the bucket's stream (``bus.replicas``).

    Raises:
        ValueError: an invalid bucket, namespace or lease name, or ``ttl < 1``.
    """

    def __init__(
        self,
        *,
        nats_url: str,
        name: str = "correlator",
        bucket: str = "netcortex_leases",
        namespace: str = "",
        ttl: float = 10.0,
        holder: str | None = None,
        storage: Literal["file", "memory"] = "file",
        timeout: float = 2.0,
        replicas: int = 1,
    ) -> None:
        full = f"{bucket}_{namespace}" if namespace else bucket
        if not _NAME.fullmatch(full):
            raise ValueError(f"invalid bucket name {full!r} (letters, digits, '_', '-')")
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid lease name {name!r} (letters, digits, '_', '-')")
        if not ttl >= 1:
            raise ValueError(f"ttl must be at least 1 s, not {ttl!r}")
        self._nats_url = nats_url
        self._url = redact_url(nats_url)
        self.name = name
        self.bucket = full
        self.ttl = float(ttl)
        self.holder = holder if holder is not None else default_holder()
        self._stream = f"KV_{full}"
        self._subject = f"$KV.{full}.{name}"
        self._storage = storage
        self._timeout = timeout
        self._replicas = replicas
        self._margin = min(self.ttl / 5, 2.0)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._closed = False
        self._revision = 0  # of our last successful write; 0: not held
        self._deadline = 0.0  # monotonic: stop acting as leader by then
        #: the lease as last read (who holds it), for logs and status
        self.last_seen: LeaseState | None = None

    def __repr__(self) -> str:
        return f"JetStreamLease(url={self._url!r}, bucket={self.bucket!r}, name={self.name!r})"

    # -- state ------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """True from a successful acquire/renew until the deadline, a lost renewal or
        a release (by this process's own reckoning; see ``deadline``)."""
        return self._revision != 0 and time.monotonic() < self._deadline

    @property
    def margin(self) -> float:
        """Seconds between the holder's ``deadline`` and the lease's expiry."""
        return self._margin

    @property
    def deadline(self) -> float:
        """Monotonic time by which the holder must have stopped acting as leader."""
        return self._deadline

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and create (or update) the bucket. Idempotent.

        Raises:
            BusUnavailable: the server cannot be reached within ``timeout``, or the
                lease was closed.
            StoreError: the bucket cannot be created.
        """
        if self._closed:
            raise BusUnavailable("the lease is closed")
        if self._nc is not None:
            return
        with _errors(f"connect {self._url}", starting=True):
            nc = await nats_kv.connect(
                self._nats_url,
                name="netcortex-lease",
                timeout=self._timeout,
                error_cb=self._on_error,
            )
        try:
            js = nc.jetstream(timeout=self._timeout)
            await self._ensure_bucket(js, starting=True)
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._nc, self._js = nc, js

    async def _ensure_bucket(self, js: JetStreamContext, *, starting: bool = False) -> None:
        cfg = nats_kv.kv_stream_config(self.bucket, storage=self._storage, replicas=self._replicas)
        with _errors(f"lease bucket {self.bucket}", starting=starting):
            await nats_kv.ensure_stream(js, cfg)

    async def _on_error(self, exc: Exception) -> None:
        log.warning("lease_client_error", lease=self.name, error=_describe(exc))

    async def close(self) -> None:
        """Disconnect (bounded by ``timeout``). Does not release: call ``release``
        first for an immediate hand-over. Idempotent; safe without ``start``."""
        if self._closed:
            return
        self._closed = True
        self._revision = 0
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await nc.close()

    # -- the lease --------------------------------------------------------------------

    async def read(self) -> LeaseState:
        """The lease as stored now (``revision`` 0 when the key has no message).

        Raises:
            StoreError: not started, closed, or the server failed.
        """
        js = self._jetstream()
        try:
            with _errors(f"lease read {self.bucket}/{self.name}"):
                msg = await js.get_msg(self._stream, subject=self._subject, direct=True)
        except StoreError as exc:
            if isinstance(exc.__cause__, nats.js.errors.NotFoundError):
                state = LeaseState("", 0.0, 0)
                self.last_seen = state
                return state
            raise
        revision = int(msg.seq or 0)
        holder, expires = "", 0.0
        try:
            raw: Any = json.loads(msg.data or b"")
            holder, expires = str(raw["holder"]), float(raw["expires"])
        except (ValueError, TypeError, KeyError):
            # an unreadable value counts as lapsed: it is overwritten by compare-and-set
            log.warning("lease_value_invalid", lease=self.name, revision=revision)
        state = LeaseState(holder, expires, revision)
        self.last_seen = state
        return state

    async def try_acquire(self) -> bool:
        """One attempt: take the lease if it is free or lapsed (or renew it if it is
        already ours). ``True`` when this process holds it now.

        Raises:
            StoreError: not started, closed, or the server failed or timed out.
        """
        if self._revision:
            return await self.renew()
        state = await self.read()
        if state.holder == self.holder and state.expires > time.time():
            self._revision = state.revision  # ours (a renewal answered too late): renew it
            return await self.renew()
        if not state.lapsed(time.time()):
            return False
        return await self._write(state.revision)

    async def renew(self) -> bool:
        """Extend the lease by ``ttl`` (compare-and-set on our revision). ``False``
        when it is no longer ours (someone took it over, or it was never held);
        then ``held`` is False.

        Raises:
            StoreError: the server failed or timed out (the lease may still be ours
                until ``deadline``: try again).
        """
        if not self._revision:
            return False
        return await self._write(self._revision)

    def forget(self) -> None:
        """Drop the revision held (after a step-down on a lost or expired lease), so
        the next ``try_acquire`` reads the key instead of renewing a stale revision."""
        self._revision, self._deadline = 0, 0.0

    async def release(self) -> None:
        """Let the lease go now (``expires = 0``, compare-and-set on our revision) so
        the next contender need not wait for the expiry. A no-op when not held; a
        failure is logged (the lease then lapses at its expiry)."""
        revision, self._revision, self._deadline = self._revision, 0, 0.0
        if not revision or self._js is None:
            return
        data = json.dumps({"holder": "", "expires": 0.0, "renewed": time.time()}).encode()
        try:
            with _errors(f"lease release {self.bucket}/{self.name}"):
                await self._js.publish(self._subject, data, headers={_EXPECTED_LAST: str(revision)})
        except StoreError as exc:
            log.warning("lease_release_failed", lease=self.name, error=str(exc))

    async def _write(self, expected: int) -> bool:
        """Write ourselves as holder if the key's last revision is ``expected``."""
        js = self._jetstream()
        started = time.monotonic()
        now = time.time()
        data = json.dumps(
            {"holder": self.holder, "expires": now + self.ttl, "renewed": now},
            separators=(",", ":"),
        ).encode()
        try:
            with _errors(f"lease write {self.bucket}/{self.name}"):
                ack = await js.publish(self._subject, data, headers={_EXPECTED_LAST: str(expected)})
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, nats.js.errors.APIError) and cause.err_code in _WRONG_LAST:
                self._revision, self._deadline = 0, 0.0  # someone else wrote it first...
                if expected:
                    return await self._adopt()  # ...or our own write that timed out
                return False
            if isinstance(cause, nats.js.errors.NoStreamResponseError):
                # the bucket vanished (deleted, or memory storage and a restart): make it
                # again; the lease starts over (the next attempt creates the key)
                self._revision, self._deadline = 0, 0.0
                await self._ensure_bucket(js)
                log.warning("lease_bucket_recreated", lease=self.name, bucket=self.bucket)
                return False
            raise
        self._revision = int(ack.seq)
        self._deadline = started + self.ttl - self._margin
        self.last_seen = LeaseState(self.holder, now + self.ttl, self._revision)
        return True

    async def _adopt(self) -> bool:
        """After a conflict on renewal: re-read the key; if it names this holder and
        has not expired (an earlier write of ours got through after its client-side
        timeout), take its revision and keep the lease. The deadline follows from the
        stored expiry (written with this process's clock)."""
        state = await self.read()
        now = time.time()
        if state.holder != self.holder or state.expires <= now or not state.revision:
            return False
        self._revision = state.revision
        self._deadline = time.monotonic() + (state.expires - now) - self._margin
        log.info("lease_revision_adopted", lease=self.name, revision=state.revision)
        return self.held

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise StoreError("the lease is closed" if self._closed else "the lease is not started")
        return self._js
