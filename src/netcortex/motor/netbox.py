"""Motor: ``NetboxJournalClient`` — the NetBox REST calls journal delivery needs (issue 7).

Three operations, each a plain request with no retry of its own (the outbox
retries whole jobs, with backoff, across restarts):

* ``resolve(device, interface)``: the NetBox object an entry is attached to —
  the interface (``dcim.interface``) when the outcome names one NetBox knows,
  else the device (``dcim.device``). Look-ups are cached for
  ``cache_seconds`` (unknown devices too, so a thousand jobs for one unknown
  device cost one request). An unknown device is a permanent failure with the
  reason ``device 'x' not in NetBox``.
* ``find_entry(marker, assignment)``: the id of a journal entry carrying the
  idempotency marker, searched with ``q`` (NetBox: case-insensitive substring
  of ``comments``) on both the interface and its device, so an entry made when
  the interface was still unknown to NetBox is found too. The marker is
  confirmed line by line in the answer (``q`` is a search, not an equality).
* ``create_entry(assignment, kind, comments)``: ``POST
  /api/extras/journal-entries/``; the new entry's id.
* ``update_entry(entry_id, kind, comments)`` (issue 8, incident entries):
  ``PATCH /api/extras/journal-entries/<id>/``; ``False`` when NetBox no longer
  has the entry (404: deleted by an operator), so the caller searches or creates.
* ``resolve_site(slug)`` (issue 8): the site (``dcim.site``) a site incident's
  entry hangs on; unknown is permanent (``unknown_site``), cached like devices.

Every failure is one ``JournalRequestError`` (a ``MotorError``) with
``retryable``, a metrics ``label`` and, for 429/503, the server's
``Retry-After`` in seconds (delta-seconds or an HTTP date)::

    retryable (the job is retried later)      permanent (the job is dead-lettered)
    ─────────────────────────────────────     ───────────────────────────────────
    429 (rate_limited; pauses every request)  other 4xx (rejected; NetBox's detail)
    5xx (server_error)                        device not in NetBox (unknown_device)
    timeouts (timeout)                        outcome names no device (no_device)
    refused / unreachable (unavailable)
    TLS failures (tls)
    connection dropped, response lost (disconnected)
    401/403 (auth) — a revoked or mistyped token is an operator's fix, not a
        reason to dead-letter every job at once
    an answer that is not NetBox JSON (bad_response)

Requests share one token bucket (``rate_per_second``), so look-ups, searches
and writes together never exceed the configured rate; a 429 pauses the bucket
for the server's ``Retry-After``. Tokens: ``Authorization: Token <t>`` for v1
tokens, ``Bearer <t>`` for v2 (``nbt_…``). The token lives only in the client's
default headers: never in a log line, ``repr`` or an error message. TLS
certificates are verified unless ``verify_tls=False``.

May import: ``contracts``, ``config``, ``errors``, ``metrics``, ``logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from pydantic import SecretStr

from netcortex.config import JournalConfig
from netcortex.errors import MotorError, MotorErrorReason
from netcortex.logs import redact_url
from netcortex.metrics import Histogram, Registry

__all__ = [
    "DEVICE_TYPE",
    "INTERFACE_TYPE",
    "JOURNAL_PATH",
    "SITE_TYPE",
    "AssignedObject",
    "Assignment",
    "DeadlinePassed",
    "JournalRequestError",
    "NetboxJournalClient",
    "TokenBucket",
    "authorization_header",
    "map_transport_errors",
    "parse_retry_after",
]

JOURNAL_PATH: Final = "/api/extras/journal-entries/"
DEVICES_PATH: Final = "/api/dcim/devices/"
INTERFACES_PATH: Final = "/api/dcim/interfaces/"
SITES_PATH: Final = "/api/dcim/sites/"
DEVICE_TYPE: Final = "dcim.device"
INTERFACE_TYPE: Final = "dcim.interface"
SITE_TYPE: Final = "dcim.site"
#: Most characters of NetBox's error detail kept in a dead-letter reason.
_MAX_DETAIL: Final = 300
_Params = list[tuple[str, str | int | float | bool | None]]
#: Cached look-ups at most (the cache is cleared when full: look-ups are cheap).
_MAX_CACHE: Final = 10_000


def authorization_header(token: SecretStr) -> str:
    """``Bearer <t>`` for v2 tokens (``nbt_…``), ``Token <t>`` for v1 tokens."""
    raw = token.get_secret_value().strip()
    return f"Bearer {raw}" if raw.startswith("nbt_") else f"Token {raw}"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date).

    Returns ``None`` when absent or unreadable; never negative (a date in the past
    is ``0``); non-finite numbers are unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


class JournalRequestError(MotorError):
    """One NetBox request (or look-up) failed.

    Attributes:
        retryable: try the job again later (``False``: dead-letter it).
        reason: the ``MotorErrorReason``.
        label: a short, bounded metrics label (``rate_limited``, ``server_error``,
            ``timeout``, ``unavailable``, ``tls``, ``disconnected``, ``auth``,
            ``bad_response``, ``rejected``, ``unknown_device``, ``no_device``).
        status: the HTTP status, when there was an answer.
        retry_after: the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        reason: MotorErrorReason,
        label: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, reason=reason)
        self.label = label
        self.status = status
        self.retry_after = retry_after


class DeadlinePassed(Exception):
    """The caller's deadline (its lease on the job) passed before a write was sent.

    Not part of the error tree: nothing failed, the write was simply not made, so
    the job must be left alone (another worker may hold it by now).
    """


@dataclass(frozen=True, slots=True)
class AssignedObject:
    """A NetBox object a journal entry can hang on."""

    type: str  #: ``dcim.device``, ``dcim.interface`` or ``dcim.site``
    id: int
    name: str  #: for log lines and reasons (``sw1-north GigabitEthernet1/0/3``)


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where an outcome's entry goes (``target``) and the device it belongs to."""

    target: AssignedObject
    device: AssignedObject

    @property
    def objects(self) -> tuple[AssignedObject, ...]:
        """The distinct objects an earlier attempt may have attached the entry to."""
        return (self.target,) if self.target == self.device else (self.target, self.device)


class TokenBucket:
    """An asyncio token bucket: ``rate`` acquisitions per second, bursts of ``burst``.

    Waiters are served in arrival order (one lock), so a busy worker cannot
    starve a lone request. ``pause(seconds)`` holds every acquisition back (a
    429's ``Retry-After``). Cancellation while waiting takes no token.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """Let no acquisition through for ``seconds`` from now (extends, never shortens)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    async def acquire(self) -> None:
        """Wait for one token."""
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)  # the pause, by the clock
                    continue
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)  # the rate, by the clock


def _is_tls(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError | ssl.CertificateError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    text = str(exc).lower()
    return "certificate" in text or "ssl" in text or "tls" in text


def _transient(
    message: str, label: str, reason: MotorErrorReason, **kw: Any
) -> JournalRequestError:
    return JournalRequestError(message, retryable=True, reason=reason, label=label, **kw)


def _permanent(message: str, label: str, **kw: Any) -> JournalRequestError:
    return JournalRequestError(
        message, retryable=False, reason=MotorErrorReason.REJECTED, label=label, **kw
    )


@contextlib.contextmanager
def map_transport_errors(what: str) -> Iterator[None]:
    """Map httpx's transport exceptions to ``JournalRequestError`` (all retryable).

    ``what`` (``GET /api/dcim/devices/``) goes into the message; the URL's
    credentials and the token never do (httpx's messages carry neither headers
    nor the query of the request).
    """
    try:
        yield
    except (httpx.TimeoutException, TimeoutError) as exc:  # TimeoutError: the total bound
        raise _transient(
            f"{what}: timed out ({type(exc).__name__})", "timeout", MotorErrorReason.TIMEOUT
        ) from exc
    except httpx.ConnectError as exc:
        if _is_tls(exc):
            raise _transient(
                f"{what}: TLS failed: {exc}", "tls", MotorErrorReason.UNAVAILABLE
            ) from exc
        raise _transient(
            f"{what}: cannot connect: {exc}", "unavailable", MotorErrorReason.UNAVAILABLE
        ) from exc
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise _transient(
            f"{what}: connection dropped: {type(exc).__name__}: {exc}",
            "disconnected",
            MotorErrorReason.UNAVAILABLE,
        ) from exc
    except httpx.HTTPError as exc:  # the rest of httpx's tree (proxy, protocol, decoding)
        raise _transient(
            f"{what}: {type(exc).__name__}: {exc}", "unavailable", MotorErrorReason.UNKNOWN
        ) from exc


def _detail(resp: httpx.Response) -> str:
    """NetBox's error detail (or the start of the body), one bounded line."""
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    if isinstance(body, dict) and "detail" in body and len(body) == 1:
        body = body["detail"]
    text = " ".join(str(body).split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


class NetboxJournalClient:
    """The NetBox calls of journal delivery, over one pooled ``httpx.AsyncClient``.

    Args:
        url: NetBox base URL (``https://netbox.example.com``, or with a sub-path).
        token: API token (v1, or v2 ``nbt_…``); a secret, never logged.
        verify_tls: verify the server certificate.
        timeout: seconds per request.
        rate_per_second: requests per second at most (all operations together).
        cache_seconds: how long a device / interface look-up is reused.
        metrics: registry for ``netcortex_journal_request_seconds{op,result}``.
        max_pause: longest a 429's ``Retry-After`` holds every request back
            (seconds; a server asking for a year must not stop delivery for one).
        transport: an httpx transport (tests, proxies); default httpx's own.
        clock: monotonic clock for the cache and the bucket (tests).
    """

    def __init__(
        self,
        url: str,
        token: SecretStr,
        *,
        verify_tls: bool = True,
        timeout: float = 10.0,
        rate_per_second: float = 5.0,
        cache_seconds: float = 60.0,
        metrics: Registry | None = None,
        max_pause: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0 or cache_seconds < 0 or max_pause < 0:
            raise ValueError("timeout must be > 0, cache_seconds and max_pause >= 0")
        self.url = url.rstrip("/")
        self.verify_tls = verify_tls
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.max_pause = max_pause
        self.bucket = TokenBucket(rate_per_second, clock=clock)
        self._token = token
        self._transport = transport
        self._clock = clock
        self._safe_url = redact_url(self.url)
        self._client: httpx.AsyncClient | None = None
        self._cache: dict[tuple[str, ...], tuple[float, AssignedObject | None]] = {}
        registry = metrics or Registry()
        self._latency: Histogram = registry.histogram(
            "netcortex_journal_request_seconds",
            "NetBox request latency of journal delivery, by operation and result.",
            ("op", "result"),
        )

    @classmethod
    def from_config(
        cls,
        config: JournalConfig,
        *,
        metrics: Registry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> NetboxJournalClient:
        """The client the ``journal`` section describes (``netbox_url``/``token`` required)."""
        if not config.netbox_url or config.netbox_token is None:
            raise ValueError("journal.netbox_url and journal.netbox_token are required")
        return cls(
            config.netbox_url,
            config.netbox_token,
            verify_tls=config.verify_tls,
            timeout=config.timeout_seconds,
            rate_per_second=config.rate_per_second,
            metrics=metrics,
            max_pause=config.max_backoff_seconds,
            transport=transport,
        )

    def __repr__(self) -> str:
        return (
            f"NetboxJournalClient(url={self._safe_url!r}, token=SecretStr('**********'), "
            f"verify_tls={self.verify_tls}, rate_per_second={self.bucket.rate})"
        )

    # ------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the connection pool (no request is made). Idempotent."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.url,
                headers={
                    "Authorization": authorization_header(self._token),
                    "Accept": "application/json",
                },
                verify=self.verify_tls,
                timeout=self.timeout,
                transport=self._transport,
                follow_redirects=False,
            )

    async def close(self) -> None:
        """Close the connection pool. Idempotent; safe without ``start``."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> NetboxJournalClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ operations

    async def resolve(
        self,
        device: str | None,
        interface: str | None = None,
        site: str | None = None,
        *,
        deadline: float | None = None,
    ) -> Assignment:
        """The object an entry about ``device`` (and ``interface``) is attached to.

        Device names are unique per site in NetBox, not globally: when several
        devices share the name, the one in ``site`` (a slug) is taken, else the
        first NetBox lists. ``deadline`` as in ``create_entry``.

        Raises:
            JournalRequestError: ``no_device`` / ``unknown_device`` (permanent), or
                any request failure.
            DeadlinePassed: a look-up was not sent because of ``deadline``.
        """
        if not device:
            raise _permanent("the outcome names no device", "no_device")
        dev = await self._cached(
            ("device", device, site or ""), lambda: self._find_device(device, site, deadline)
        )
        if dev is None:
            raise _permanent(f"device {device!r} not in NetBox", "unknown_device")
        if not interface:
            return Assignment(dev, dev)
        iface = await self._cached(
            ("interface", str(dev.id), interface),
            lambda: self._find_interface(dev, interface, deadline),
        )
        # An interface NetBox does not know (renamed, a virtual one) is no reason to
        # lose the entry: it goes on the device.
        return Assignment(iface or dev, dev)

    async def resolve_site(self, slug: str | None, *, deadline: float | None = None) -> Assignment:
        """The site ``slug`` as an assignment (a site incident's entry goes on it).

        Raises:
            JournalRequestError: ``unknown_site`` (permanent), or a request failure.
            DeadlinePassed: the look-up was not sent because of ``deadline``.
        """
        if not slug:
            raise _permanent("the incident names no site", "unknown_site")
        site = await self._cached(("site", slug), lambda: self._find_site(slug, deadline))
        if site is None:
            raise _permanent(f"site {slug!r} not in NetBox", "unknown_site")
        return Assignment(site, site)

    async def find_entry(
        self, marker: str, assignment: Assignment, *, deadline: float | None = None
    ) -> int | None:
        """The id of an entry on ``assignment``'s objects whose comments hold ``marker``.

        ``deadline`` as in ``create_entry`` (``DeadlinePassed``: nothing was sent).
        """
        objects = assignment.objects
        # By id only: ``assigned_object_type`` keeps only its last value on NetBox
        # up to 4.2 (a single-valued filter), which would hide an entry an earlier
        # attempt put on the device while this one resolved the interface. The ids
        # are a multi-valued filter everywhere; the type is checked here instead.
        params: _Params = [("q", marker), ("limit", 50)]
        params += [("assigned_object_id", o.id) for o in objects]
        wanted = {(o.type, o.id) for o in objects}
        body = await self._json("find", "GET", JOURNAL_PATH, params=params, deadline=deadline)
        for entry in _results(body, JOURNAL_PATH):
            comments = entry.get("comments")
            placed = (entry.get("assigned_object_type"), entry.get("assigned_object_id"))
            if (
                placed in wanted
                and isinstance(comments, str)
                and any(line.strip() == marker for line in comments.splitlines())
            ):
                entry_id = entry.get("id")
                if isinstance(entry_id, int):
                    return entry_id
        return None

    async def create_entry(
        self, assignment: Assignment, kind: str, comments: str, *, deadline: float | None = None
    ) -> int:
        """Create the journal entry; its id.

        Args:
            assignment: where the entry goes (``assignment.target``).
            kind: NetBox ``kind`` (``info``, ``success``, ``warning``, ``danger``).
            comments: the Markdown comment (with the idempotency marker).
            deadline: ``time.monotonic()`` value by which the request
                must have been answered: when, after waiting for the rate limit,
                less than ``timeout`` is left, nothing is sent.

        Raises:
            JournalRequestError: the request failed (see the module docstring).
            DeadlinePassed: nothing was sent because of ``deadline``.
        """
        target = assignment.target
        body = await self._json(
            "create",
            "POST",
            JOURNAL_PATH,
            deadline=deadline,
            json={
                "assigned_object_type": target.type,
                "assigned_object_id": target.id,
                "kind": kind,
                "comments": comments,
            },
        )
        entry_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(entry_id, int):
            raise _transient(
                f"POST {JOURNAL_PATH}: the answer has no entry id",
                "bad_response",
                MotorErrorReason.UNKNOWN,
            )
        return entry_id

    async def update_entry(
        self, entry_id: int, kind: str, comments: str, *, deadline: float | None = None
    ) -> bool:
        """Rewrite entry ``entry_id``'s ``kind`` and ``comments`` (``PATCH``).

        Returns:
            ``True`` when updated, ``False`` when NetBox has no such entry (404).

        Raises:
            JournalRequestError: the request failed (404 aside).
            DeadlinePassed: nothing was sent because of ``deadline``.
        """
        path = f"{JOURNAL_PATH}{int(entry_id)}/"
        try:
            body = await self._json(
                "update", "PATCH", path, deadline=deadline,
                json={"kind": kind, "comments": comments},
            )  # fmt: skip
        except JournalRequestError as exc:
            if exc.status == 404:
                return False
            raise
        if not isinstance(body, dict) or body.get("id") != entry_id:
            raise _transient(
                f"PATCH {JOURNAL_PATH}<id>/: the answer is not the entry",
                "bad_response",
                MotorErrorReason.UNKNOWN,
            )
        return True

    # --------------------------------------------------------------------- helpers

    async def _cached(
        self, key: tuple[str, ...], fetch: Callable[[], Any]
    ) -> AssignedObject | None:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value: AssignedObject | None = await fetch()
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        self._cache[key] = (now + self.cache_seconds, value)
        return value

    async def _find_device(
        self, name: str, site: str | None, deadline: float | None = None
    ) -> AssignedObject | None:
        body = await self._json(
            "device", "GET", DEVICES_PATH, params=[("name", name), ("limit", 50)],
            deadline=deadline,
        )  # fmt: skip
        found = [
            item
            for item in _results(body, DEVICES_PATH)
            if item.get("name") == name and isinstance(item.get("id"), int)
        ]
        if not found:
            return None
        in_site = [
            i for i in found if isinstance(i.get("site"), dict) and i["site"].get("slug") == site
        ]
        best = (in_site or found)[0]
        return AssignedObject(DEVICE_TYPE, best["id"], name)

    async def _find_site(self, slug: str, deadline: float | None = None) -> AssignedObject | None:
        body = await self._json(
            "site", "GET", SITES_PATH, params=[("slug", slug), ("limit", 2)], deadline=deadline
        )
        for item in _results(body, SITES_PATH):
            if item.get("slug") == slug and isinstance(item.get("id"), int):
                return AssignedObject(SITE_TYPE, item["id"], str(item.get("name") or slug))
        return None

    async def _find_interface(
        self, dev: AssignedObject, name: str, deadline: float | None = None
    ) -> AssignedObject | None:
        body = await self._json(
            "interface",
            "GET",
            INTERFACES_PATH,
            params=[("device_id", dev.id), ("name", name), ("limit", 2)],
            deadline=deadline,
        )
        for item in _results(body, INTERFACES_PATH):
            if item.get("name") == name and isinstance(item.get("id"), int):
                return AssignedObject(INTERFACE_TYPE, item["id"], f"{dev.name} {name}")
        return None

    async def _json(
        self,
        op: str,
        method: str,
        path: str,
        *,
        params: _Params | None = None,
        json: Mapping[str, Any] | None = None,
        deadline: float | None = None,
    ) -> Any:
        """One request, rate-limited, timed and classified; the JSON body on 2xx."""
        client = self._client
        if client is None:
            raise _transient(
                "journal client not started", "unavailable", MotorErrorReason.UNAVAILABLE
            )
        what = f"{method} {path}"
        await self.bucket.acquire()
        if deadline is not None and time.monotonic() + self.timeout > deadline:
            raise DeadlinePassed(what)
        started = time.perf_counter()
        result = "error"
        try:
            # httpx's timeouts are per phase (a read timeout restarts with every
            # chunk): the whole request is bounded too, so an answer trickling in
            # can neither hold a job past its lease nor stall the worker's round.
            with map_transport_errors(f"NetBox {self._safe_url} {what}"):
                async with asyncio.timeout(self.timeout):
                    resp = await client.request(method, path, params=params, json=json)
            result = str(resp.status_code)
            return self._body(resp, what)
        finally:
            self._latency.observe(time.perf_counter() - started, op=op, result=result)

    def _body(self, resp: httpx.Response, what: str) -> Any:
        status = resp.status_code
        where = f"NetBox {self._safe_url} {what}"
        if 200 <= status < 300:
            try:
                return resp.json()
            except ValueError:
                raise _transient(
                    f"{where}: HTTP {status} without a JSON body",
                    "bad_response",
                    MotorErrorReason.UNKNOWN,
                    status=status,
                ) from None
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        if status == 429:
            if retry_after is not None:
                self.bucket.pause(min(retry_after, self.max_pause))
            raise _transient(
                f"{where}: HTTP 429 (rate limited)",
                "rate_limited",
                MotorErrorReason.UNAVAILABLE,
                status=status,
                retry_after=retry_after,
            )
        if status >= 500:
            raise _transient(
                f"{where}: HTTP {status}",
                "server_error",
                MotorErrorReason.UNAVAILABLE,
                status=status,
                retry_after=retry_after,
            )
        if status in (401, 403):
            raise _transient(
                f"{where}: HTTP {status} (token refused)",
                "auth",
                MotorErrorReason.REJECTED,
                status=status,
            )
        if 300 <= status < 400:
            # Redirects are not followed (the token must only go to the configured host).
            raise _permanent(
                f"{where}: HTTP {status} redirect (check journal.netbox_url)",
                "rejected",
                status=status,
            )
        raise _permanent(f"{where}: HTTP {status}: {_detail(resp)}", "rejected", status=status)


def _results(body: Any, path: str) -> list[dict[str, Any]]:
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        raise _transient(
            f"GET {path}: not a NetBox list body", "bad_response", MotorErrorReason.UNKNOWN
        )
    return [r for r in results if isinstance(r, dict)]
