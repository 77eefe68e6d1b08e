"""Sensory / poll: sharding the poll targets over the live receivers (issue 10).

Several receivers with the same ``poll`` targets must not poll a device twice.
They agree without any consensus of their own: each one announces itself in a
JetStream key-value bucket, reads the others' announcements, and keeps the
targets a rendezvous hash over the live members gives it.

Rendezvous (highest-random-weight) hashing. ``owner(key, members)`` is the
member with the highest ``blake2b(member NUL key)`` (ties, which need a 64-bit
collision, go to the larger id). Every member computes the same answer from the
same member set, with no coordination; a member joining takes about ``1/N`` of
the targets (only from the others, nothing else moves), a member leaving hands
out only its own share.

Membership (``JetStreamMembership``). One bucket ``<bucket>`` (``<bucket>_<namespace>``
with a namespace, as the dedup bucket): the stream ``KV_<name>`` on
``$KV.<name>.>``, one message per key, per-message TTL (nats-server 2.11+).
Each member:

* puts ``poll.<member id>`` every ``heartbeat`` seconds with ``Nats-TTL`` =
  ``TTL_HEARTBEATS`` heartbeats (whole seconds, rounded up): a member killed
  without a goodbye is forgotten by the server that long after its last
  heartbeat — the server's clock decides, never the members' clocks;
* after each heartbeat lists the live keys (the stream's subjects under
  ``$KV.<name>.poll.``, then each one's last message by direct get; a
  ``KV-Operation: DEL``/``PURGE`` marker is no member);
* between heartbeats, listens on ``$KV.<name>.poll.*`` with a plain core
  subscription: a newcomer's first put or a leaver's delete marker is seen at
  once (what the listing would only show a heartbeat later). A listing that was
  already under way does not undo what the subscription reported after it began;
* on ``close`` stops listening and puts a delete marker on its key (the others
  take its targets over at once).

Each request (a put, a whole listing) waits at most ``min(timeout, heartbeat)``:
a round is then at most two of them, so two successful puts are never more than
``max(heartbeat, 2 t) + t <= 3 heartbeats`` (the TTL) apart and a slow server
does not get a live member dropped.

The member id is ``<host>-<pid>-<6 random hex>``: unique per process (two
receivers sharing an id would both poll the same share for ever), one subject
token (``[A-Za-z0-9_-]``).

Outages. A failing heartbeat or listing keeps the last known membership (a
receiver never polls nothing because NATS went away, and all receivers cut off
together keep exactly their shares); each failure is counted
(``netcortex_poll_shard_errors_total{op}``) and the first of a run is logged
(``poll_shard_membership_unavailable``), the recovery too
(``poll_shard_membership_restored``). A receiver cut off alone for longer than
its TTL is dropped by the others, who take its share while it still polls it:
double polling for as long as that one receiver cannot reach NATS (it cannot
publish meanwhile either), over as soon as its heartbeat gets through again. A
bucket that vanished (a memory-storage server restarted) is created again.

Errors. ``start`` raises ``BusUnavailable`` when the server cannot be reached and
``StoreError`` when the bucket cannot be made (e.g. a server without per-message
TTL); after that nothing raises: failures become the counter and the log.

Metrics: ``netcortex_poll_shard_members`` (live members seen, this one included),
``netcortex_poll_shard_membership_changes_total``,
``netcortex_poll_shard_errors_total{op}`` (``heartbeat``, ``list``),
``netcortex_poll_shard_view_age_seconds`` (since the membership was last
confirmed by a listing). The receiver adds ``netcortex_poll_shard_owned_targets``.

Imports: stdlib, nats-py, structlog, netcortex.aio/errors/logs/metrics/nats_errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Final, Literal, Protocol

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from netcortex import nats_kv
from netcortex.aio import stop_task
from netcortex.errors import BusUnavailable, NetcortexError, StoreError
from netcortex.logs import redact_url
from netcortex.metrics import Registry
from netcortex.nats_errors import NATS_CONNECTIVITY
from netcortex.nats_errors import describe as _describe

__all__ = [
    "TTL_HEARTBEATS",
    "JetStreamMembership",
    "PollMembership",
    "make_member_id",
    "owned",
    "owner",
    "score",
]

log = structlog.get_logger(__name__)

#: heartbeats a member may miss before the server forgets its key
TTL_HEARTBEATS: Final = 3
#: the bucket's ``max_age``: a backstop only (keys go by their own TTL)
MAX_AGE: Final = 86_400.0
#: the key prefix (one subject token) of the pollers' keys
GROUP: Final = "poll"
_TTL: Final = "Nats-TTL"
_OPERATION: Final = "KV-Operation"
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_-]+")

_CONNECTIVITY: Final = NATS_CONNECTIVITY


# ---------------------------------------------------------------------- rendezvous


def score(member: str, key: str) -> int:
    """``member``'s weight for ``key``: the first 8 bytes of ``blake2b(member NUL key)``.

    The same in every process and Python version (never ``hash()``).
    """
    digest = hashlib.blake2b(f"{member}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, members: Iterable[str]) -> str | None:
    """The member that polls ``key``: the highest ``score`` (``None`` without members)."""
    best: tuple[int, str] | None = None
    for member in members:
        cand = (score(member, key), member)
        if best is None or cand > best:
            best = cand
    return None if best is None else best[1]


def owned(keys: Iterable[str], members: Collection[str], me: str) -> frozenset[str]:
    """The ``keys`` ``me`` owns among ``members`` (``me`` counts as a member in any case)."""
    everyone = frozenset(members) | {me}
    return frozenset(k for k in keys if owner(k, everyone) == me)


def make_member_id() -> str:
    """``<host>-<pid>-<6 random hex>``, one subject token, unique per process."""
    host = _NOT_TOKEN.sub("-", socket.gethostname()).strip("-")[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


# ---------------------------------------------------------------------- the seam


class PollMembership(Protocol):
    """The live pollers, as the ``PollReceiver`` sees them.

    ``start`` joins (and returns once the first view is known), ``close`` leaves;
    ``members`` is the current view (this member always in it); ``on_change``
    callbacks run in the event loop whenever the view changes (never raising
    into the membership). ``heartbeat``: every member notices a change of the
    view at most this many seconds after it happened (the receiver waits that
    long before trusting what a previous owner saved).
    """

    @property
    def member_id(self) -> str: ...

    @property
    def heartbeat(self) -> float: ...

    def members(self) -> frozenset[str]: ...

    def on_change(self, callback: Callable[[], None]) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------------- errors


@contextlib.contextmanager
def _errors(what: str, *, starting: bool = False) -> Iterator[None]:
    """nats-py / socket exceptions inside become ``netcortex.errors`` (the one map):
    connectivity → ``BusUnavailable`` while starting, else ``StoreError``."""
    try:
        yield
    except NetcortexError:
        raise
    except _CONNECTIVITY as exc:
        kind: type[NetcortexError] = BusUnavailable if starting else StoreError
        raise kind(f"{what}: {_describe(exc)}") from exc
    except (nats.errors.Error, nats.js.errors.Error) as exc:
        raise StoreError(f"{what}: {_describe(exc)}") from exc


# ---------------------------------------------------------------------- membership


class JetStreamMembership:
    """``PollMembership`` in a JetStream key-value bucket (see the module doc).

    Args:
        nats_url: the server (credentials in the URL are redacted in logs).
        bucket: bucket base name (letters, digits, ``_``, ``-``).
        namespace: appended as ``_<namespace>`` to the bucket ("" for none).
        heartbeat: seconds between two puts of this member's key (and listings).
        metrics: the engine's registry (a private one when omitted).
        member_id: this member's id (default ``make_member_id()``).
        replicas: copies of the bucket's stream (``bus.replicas``).
        storage: ``file`` or ``memory`` (membership is rebuilt within a
            heartbeat either way).
        timeout: seconds for connecting; each request (and each listing as a
            whole) waits at most ``min(timeout, heartbeat)``, so two successful
            heartbeats are never more than the TTL apart (a round is a put and a
            listing: at most ``max(heartbeat, 2 * t) + t <= 3 * heartbeat``).

    Raises:
        ValueError: an invalid bucket, namespace or member id, ``heartbeat <= 0``,
            or ``replicas < 1``.
    """

    def __init__(
        self,
        *,
        nats_url: str,
        bucket: str = "netcortex_members",
        namespace: str = "",
        heartbeat: float = 2.0,
        metrics: Registry | None = None,
        member_id: str | None = None,
        replicas: int = 1,
        storage: Literal["file", "memory"] = "file",
        timeout: float = 2.0,
    ) -> None:
        name = f"{bucket}_{namespace}" if namespace else bucket
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid bucket name {name!r} (letters, digits, '_', '-')")
        me = member_id if member_id is not None else make_member_id()
        if not _NAME.fullmatch(me):
            raise ValueError(f"invalid member id {me!r} (letters, digits, '_', '-')")
        if not heartbeat > 0:
            raise ValueError(f"heartbeat must be > 0, not {heartbeat!r}")
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        self._nats_url = nats_url
        self._url = redact_url(nats_url)
        self.bucket = name
        self._stream = f"KV_{name}"
        self._prefix = f"$KV.{name}.{GROUP}."
        self._me = me
        self._subject = self._prefix + me
        self._heartbeat = float(heartbeat)
        self._ttl = max(1, math.ceil(TTL_HEARTBEATS * self._heartbeat))
        self._replicas = replicas
        self._storage = storage
        self._timeout = timeout
        #: per request: a slow server must not stretch the gap between two puts
        #: beyond the TTL (``TTL_HEARTBEATS`` heartbeats) and get this member dropped
        self._request_timeout = min(float(timeout), self._heartbeat)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._members: frozenset[str] = frozenset({me})
        self._callbacks: list[Callable[[], None]] = []
        #: member → (monotonic time, alive) of the last thing the subscription said
        self._heard: dict[str, tuple[float, bool]] = {}
        self._confirmed_at = time.monotonic()
        self._failing: set[str] = set()
        reg = metrics if metrics is not None else Registry()
        self._changes = reg.counter(
            "netcortex_poll_shard_membership_changes_total",
            "Changes of the set of live pollers this receiver shares the targets with.",
        )
        self._errors = reg.counter(
            "netcortex_poll_shard_errors_total",
            "Membership heartbeats and listings that failed (the last view is kept).",
            ["op"],
        )
        members_gauge = reg.gauge(
            "netcortex_poll_shard_members", "Live pollers seen (this one included)."
        )
        age = reg.gauge(
            "netcortex_poll_shard_view_age_seconds",
            "Seconds since the poller membership was last confirmed by the server.",
        )

        def collect() -> None:
            members_gauge.set(len(self._members))
            age.set(round(time.monotonic() - self._confirmed_at, 3))

        reg.add_collector(collect)

    def __repr__(self) -> str:
        return f"JetStreamMembership(url={self._url!r}, bucket={self.bucket!r}, id={self._me!r})"

    # -- the seam ------------------------------------------------------------------

    @property
    def member_id(self) -> str:
        """This member's id."""
        return self._me

    @property
    def heartbeat(self) -> float:
        """Seconds between two heartbeats (and listings) of this member."""
        return self._heartbeat

    @property
    def request_timeout(self) -> float:
        """Seconds one request (or one whole listing) may take: ``min(timeout, heartbeat)``."""
        return self._request_timeout

    @property
    def ttl(self) -> int:
        """Seconds the server keeps this member's key after its last heartbeat."""
        return self._ttl

    def members(self) -> frozenset[str]:
        """The live members as last seen (this one always among them)."""
        return self._members

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (in the loop) after every change of ``members()``."""
        self._callbacks.append(callback)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create (or update) the bucket, announce this member, read the
        others, then keep heartbeating in a task. Idempotent.

        Raises:
            BusUnavailable: the server cannot be reached within ``timeout``, or the
                membership was closed.
            StoreError: the bucket cannot be made or this member not announced.
        """
        if self._closed:
            raise BusUnavailable("the poll membership is closed")
        if self._nc is not None:
            return
        with _errors(f"connect {self._url}", starting=True):
            nc = await nats_kv.connect(
                self._nats_url,
                name="netcortex-poll-membership",
                timeout=self._timeout,
                error_cb=self._on_error,
            )
        try:
            js = nc.jetstream(timeout=self._request_timeout)
            await self._ensure_bucket(js)
            self._nc, self._js = nc, js
            with _errors(f"poll membership {self.bucket}", starting=True):
                self._sub = await nc.subscribe(self._prefix + "*", cb=self._heard_from)
            await self._put()
            self._apply(await self._list(), since=None)
        except BaseException:
            self._nc = self._js = self._sub = None
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._task = asyncio.create_task(self._beat(), name="poll-membership")
        log.info(
            "poll_shard_joined",
            bucket=self.bucket,
            member=self._me,
            members=len(self._members),
            heartbeat_seconds=self._heartbeat,
            ttl_seconds=self._ttl,
        )

    async def _ensure_bucket(self, js: JetStreamContext) -> None:
        cfg = nats_kv.kv_stream_config(
            self.bucket,
            storage=self._storage,
            replicas=self._replicas,
            max_age=MAX_AGE,
            msg_ttl=True,
            deny_delete=False,
        )
        with _errors(f"poll membership bucket {self.bucket}", starting=True):
            await nats_kv.ensure_stream(js, cfg)

    async def close(self) -> None:
        """Stop heartbeating and delete this member's key (the others take its targets
        at once; if that fails they do after the TTL). Idempotent, bounded by
        ``timeout``, safe without ``start``."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            await self._stop_heartbeat(task)
        nc, js, self._nc, self._js = self._nc, self._js, None, None
        sub, self._sub = self._sub, None
        if sub is not None:
            # no more views after close (a late delete marker would call on_change)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._request_timeout):
                    await sub.unsubscribe()
        if nc is None or js is None:
            return
        try:
            with _errors(f"poll membership leave {self.bucket}"):
                async with asyncio.timeout(self._request_timeout):
                    await js.publish(
                        self._subject,
                        b"",
                        headers={_OPERATION: "DEL", _TTL: f"{self._ttl}s"},
                    )
        except (NetcortexError, TimeoutError) as exc:
            log.warning("poll_shard_leave_failed", member=self._me, error=str(exc))
        # bounded: nats-py's close can hang flushing to a server that is gone
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout):
                await nc.close()
        log.info("poll_shard_left", bucket=self.bucket, member=self._me)

    async def _stop_heartbeat(self, task: asyncio.Task[None]) -> None:
        """Cancel the heartbeat and wait (at most ``timeout``) for it to end.

        One cancel is not always enough: nats-py waits for a reply with
        ``asyncio.wait_for``, which (Python 3.11) returns the reply and drops a
        cancel that lands after the reply arrived but before the heartbeat ran
        again; the heartbeat went on for ever and ``close`` waited for it (a
        sharding unit test hung in CI). So the heartbeat also ends at its next
        step once closed, and ``netcortex.aio.stop_task`` repeats the cancel until
        it ends; one that still runs after ``timeout`` is logged
        (``poll_shard_close_stuck``) and left behind (its requests fail once the
        connection is closed).
        """
        await stop_task(
            task,
            timeout=self._timeout,
            what="poll membership heartbeat",
            logger=log,
            event="poll_shard_close_stuck",
            member=self._me,
        )

    async def _on_error(self, exc: Exception) -> None:
        # Every reconnect attempt lands here; the outage itself is logged once by the
        # heartbeat (``poll_shard_membership_unavailable``).
        log.debug("poll_shard_nats_error", member=self._me, error=_describe(exc))

    # -- heartbeat -------------------------------------------------------------------

    async def _beat(self) -> None:
        """Every ``heartbeat`` seconds (start to start): put the key, then list."""
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self._heartbeat
        while not self._closed:  # a cancel nats-py dropped ends it here (see close)
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if self._closed:
                return
            next_at += self._heartbeat
            if next_at < loop.time():  # a slow round skips beats, never bunches them
                next_at = loop.time() + self._heartbeat
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not end the heartbeat (others would
                # drop this member while it keeps polling: double polling for ever)
                log.exception("poll_shard_round_crashed", member=self._me)
                self._failed("heartbeat", exc)

    async def _round(self) -> None:
        """One heartbeat and one listing; a failure keeps the last view (and is counted)."""
        try:
            await self._put()
        except (NetcortexError, TimeoutError) as exc:
            self._failed("heartbeat", exc)
            return
        self._ok("heartbeat")
        if self._closed:  # no listing (and no new view) once closing
            return
        since = time.monotonic()
        try:
            found = await self._list()
        except (NetcortexError, TimeoutError) as exc:
            self._failed("list", exc)
            return
        self._ok("list")
        self._apply(found, since=since)

    def _failed(self, op: str, exc: BaseException) -> None:
        self._errors.inc(op=op)
        if op not in self._failing:
            self._failing.add(op)
            log.warning(
                "poll_shard_membership_unavailable",
                member=self._me,
                op=op,
                error=str(exc),
                keeping_members=len(self._members),
            )

    def _ok(self, op: str) -> None:
        if op in self._failing:
            self._failing.discard(op)
            log.info(
                "poll_shard_membership_restored",
                member=self._me,
                op=op,
                members=len(self._members),
            )

    async def _put(self) -> None:
        """Announce this member for ``ttl`` seconds (creating the bucket again if gone)."""
        js = self._js
        if js is None:
            raise StoreError("the poll membership is closed")
        value = json.dumps(
            {"member": self._me, "heartbeat": self._heartbeat, "at": time.time()},
            separators=(",", ":"),
        ).encode()
        headers = {_TTL: f"{self._ttl}s"}
        try:
            with _errors(f"poll membership heartbeat {self.bucket}"):
                async with asyncio.timeout(self._request_timeout):
                    await js.publish(self._subject, value, headers=headers)
        except StoreError as exc:
            if not isinstance(exc.__cause__, nats.js.errors.NoStreamResponseError):
                raise
            await self._ensure_bucket(js)
            log.warning("poll_shard_bucket_recreated", bucket=self.bucket)
            with _errors(f"poll membership heartbeat {self.bucket}"):
                async with asyncio.timeout(self._request_timeout):
                    await js.publish(self._subject, value, headers=headers)

    async def _list(self) -> frozenset[str]:
        """The members whose key holds a put (not a delete marker) right now."""
        js = self._js
        if js is None:
            raise StoreError("the poll membership is closed")

        async def alive(subject: str) -> str | None:
            try:
                with _errors(f"poll membership read {self.bucket}"):
                    msg = await js.get_msg(self._stream, subject=subject, direct=True)
            except StoreError as exc:
                if isinstance(exc.__cause__, nats.js.errors.NotFoundError):
                    return None  # expired between the listing and the read
                raise
            if msg.headers and msg.headers.get(_OPERATION) in ("DEL", "PURGE"):
                return None
            return subject[len(self._prefix) :]

        # one bound for the whole listing (see ``request_timeout``)
        async with asyncio.timeout(self._request_timeout):
            with _errors(f"poll membership list {self.bucket}"):
                info = await js.stream_info(self._stream, subjects_filter=self._prefix + "*")
            subjects = sorted((info.state.subjects or {}).keys())
            found = await asyncio.gather(*(alive(s) for s in subjects))
        return frozenset(m for m in found if m)

    async def _heard_from(self, msg: Msg) -> None:
        """The core subscription: a put or delete marker of some member's key."""
        member = msg.subject[len(self._prefix) :]
        if member and member != self._me and _NAME.fullmatch(member):
            headers = msg.headers or {}
            gone = headers.get(_OPERATION) in ("DEL", "PURGE")
            self._heard[member] = (time.monotonic(), not gone)
            view = set(self._members)
            if gone:
                view.discard(member)
            else:
                view.add(member)
            self._set(frozenset(view))

    def _apply(self, listed: frozenset[str], *, since: float | None) -> None:
        """A listing begun at ``since`` (monotonic); what the subscription heard after
        that wins over it."""
        view = set(listed)
        if since is not None:
            for member, (at, alive) in self._heard.items():
                if at >= since:
                    (view.add if alive else view.discard)(member)
        # what was heard before the listing began is settled by it
        self._heard = {m: h for m, h in self._heard.items() if since is not None and h[0] >= since}
        self._confirmed_at = time.monotonic()
        self._set(frozenset(view))

    def _set(self, view: frozenset[str]) -> None:
        view = view | {self._me}
        if view == self._members:
            return
        joined, left = view - self._members, self._members - view
        self._members = view
        self._changes.inc()
        log.info(
            "poll_shard_members_changed",
            members=len(view),
            joined=sorted(joined),
            left=sorted(left),
        )
        for callback in list(self._callbacks):
            try:
                callback()
            except Exception:
                log.exception("poll_shard_callback_failed")
