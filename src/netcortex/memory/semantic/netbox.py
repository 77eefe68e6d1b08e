"""Memory, semantic: ``NetboxInventory`` — the inventory synced from NetBox REST API v4.

Sync: six lists fetched concurrently (sites, devices, interfaces, cables,
ip-addresses, and netbox-bgp sessions), each with limit/offset pagination
following ``next``; all indexed into one new ``Snapshot`` that replaces the old
one in a single reference swap. A 404 on the BGP plugin path means the plugin is
not installed: no sessions, not an error.

* ``start()`` does the first full sync; it raises ``StoreError`` when that fails
  (unreachable, refused token, bad answer) — the engine cannot name devices.
* A background task re-syncs every ``refresh_seconds``. A failed refresh keeps
  the snapshot in use (stale-while-revalidate), is logged
  (``netbox_refresh_failed``) and counted; ``snapshot_age()`` keeps growing so
  every outcome shows how stale its enrichment is. Lookups never wait. Any
  failure (even an unforeseen one, e.g. a malformed ``next`` link) is a failed
  sync: ``start`` raises ``StoreError`` and the refresh task never dies of it.
* Transient answers — HTTP 429, 502, 503, 504 and a connection dropped or
  timing out mid-request — are retried per request (``retries`` times) with
  exponential backoff from ``backoff`` seconds, honouring ``Retry-After``
  (seconds), capped at ``max_backoff``; each retry logs ``netbox_retry``.
  Connection refused and TLS failures are not retried.
* Tokens: ``Authorization: Token <t>`` for v1 tokens, ``Bearer <t>`` for v2
  tokens (``nbt_<key>.<token>``). The token lives only in the client's default
  headers: it never appears in log lines, ``repr`` or exception messages.
* TLS certificates are verified unless ``verify_tls=False``.

May import: ``contracts``, ``errors``, ``config``, ``metrics``, ``logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Final

import httpx
import structlog
from pydantic import SecretStr

from netcortex.errors import StoreError
from netcortex.logs import redact_url
from netcortex.memory.semantic._index import API_PATHS, SnapshotMemory, build_snapshot
from netcortex.metrics import Registry

__all__ = ["NetboxInventory", "authorization_header"]

log = structlog.get_logger(__name__)

#: The list path that belongs to the optional netbox-bgp plugin.
BGP_KIND: Final = "bgp_sessions"
#: Stop following ``next`` after this many pages of one list (a loop guard).
_MAX_PAGES: Final = 100_000
#: Answers worth retrying: rate limited, or a proxy / NetBox briefly unavailable.
_RETRY_STATUS: Final = frozenset({429, 502, 503, 504})
#: Transport failures worth retrying (the request reached, or may have reached, NetBox).
_RETRY_ERRORS: Final = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.PoolTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def _retry_after(resp: httpx.Response, default: float, cap: float) -> float:
    """Seconds to wait before retrying ``resp``: its ``Retry-After`` (delta seconds)
    when present and sane, else ``default``; never more than ``cap``."""
    raw = resp.headers.get("retry-after", "").strip()
    try:
        wait = float(raw) if raw else default
    except ValueError:
        wait = default  # an HTTP date: use our own schedule
    if not 0.0 <= wait < float("inf"):
        wait = default
    return min(wait, cap)


def authorization_header(token: SecretStr) -> str:
    """The ``Authorization`` value for ``token``: ``Bearer <t>`` for v2 tokens
    (``nbt_…``), ``Token <t>`` for v1 tokens."""
    raw = token.get_secret_value().strip()
    return f"Bearer {raw}" if raw.startswith("nbt_") else f"Token {raw}"


class _PluginAbsent(Exception):
    """The BGP plugin path answered 404."""


class NetboxInventory(SnapshotMemory):
    """``SemanticMemory`` synced from a NetBox (REST API v4).

    Args:
        url: NetBox base URL (``https://netbox.example.com``, or with a sub-path).
        token: API token (v1, or v2 ``nbt_…``); a secret, never logged.
        refresh_seconds: seconds between background syncs (> 0).
        verify_tls: verify the server certificate (default on).
        timeout: seconds per HTTP request.
        page_size: ``limit`` per page (NetBox caps it at its ``MAX_PAGE_SIZE``).
        retries: retries per request after a transient failure (0 = none).
        backoff: seconds before the first retry (doubled each time).
        max_backoff: longest wait between retries (also caps ``Retry-After``).
        metrics: registry for ``netcortex_inventory_*`` (``backend="netbox"``).
        transport: an httpx transport (tests, proxies); default httpx's own.
    """

    _backend = "netbox"

    def __init__(
        self,
        url: str,
        token: SecretStr,
        *,
        refresh_seconds: float = 300.0,
        verify_tls: bool = True,
        timeout: float = 10.0,
        page_size: int = 1000,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        metrics: Registry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if refresh_seconds <= 0 or timeout <= 0 or page_size < 1:
            raise ValueError("refresh_seconds and timeout must be > 0, page_size >= 1")
        if retries < 0 or not 0 <= backoff <= max_backoff:
            raise ValueError("retries must be >= 0 and 0 <= backoff <= max_backoff")
        super().__init__(metrics)
        self.url = url.rstrip("/")
        self.refresh_seconds = refresh_seconds
        self.verify_tls = verify_tls
        self.timeout = timeout
        self.page_size = page_size
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._token = token
        self._transport = transport
        self._safe_url = redact_url(self.url)
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._attempts = 0
        self._attempt_done = asyncio.Condition()
        self._sync_lock = asyncio.Lock()  # one sync at a time: a slow one is never overtaken
        self._plugin_absent_logged = False

    def __repr__(self) -> str:
        return (
            f"NetboxInventory(url={self._safe_url!r}, token=SecretStr('**********'), "
            f"refresh_seconds={self.refresh_seconds}, verify_tls={self.verify_tls})"
        )

    # ------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Full sync, then start the background refresh.

        Raises:
            StoreError: the first sync failed (the message names the URL, never
                the token).
        """
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
        try:
            await self.refresh()
        except StoreError:
            await self.close()
            raise
        if self._task is None:
            self._task = asyncio.create_task(self._refresh_loop(), name="netbox-refresh")

    async def close(self) -> None:
        """Stop refreshing and close the HTTP client. Idempotent; safe without ``start``."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> NetboxInventory:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --------------------------------------------------------------------- syncing

    @property
    def attempts(self) -> int:
        """Sync attempts finished so far (successful or not, ``start`` included)."""
        return self._attempts

    async def wait_attempts(self, n: int) -> None:
        """Return once at least ``n`` sync attempts have finished (wrap in a timeout)."""
        async with self._attempt_done:
            await self._attempt_done.wait_for(lambda: self._attempts >= n)

    async def refresh(self) -> None:
        """Sync now: fetch every list and swap in the new snapshot.

        On failure the snapshot in use is kept, the failure is counted
        (``netcortex_inventory_sync_failures_total``) and ``StoreError`` raised.
        Concurrent calls run one after another. Lookups are never blocked.
        """
        async with self._sync_lock:
            await self._sync()

    async def _sync(self) -> None:
        started = time.monotonic()
        wall = time.time()
        try:
            lists = await self._fetch_all()
            snap = build_snapshot(lists, source=self._safe_url, taken_at=started, taken_wall=wall)
            self._install(snap, time.monotonic() - started)
            log.info(
                "netbox_synced",
                url=self._safe_url,
                seconds=round(time.monotonic() - started, 3),
                **snap.counts,
            )
        except StoreError:
            self._failed()
            raise
        except Exception as exc:
            # Unforeseen (a bug, a closed client, an answer we did not expect): still
            # a failed sync, so ``start`` reports it as such and the refresh task lives.
            self._failed()
            raise StoreError(
                f"NetBox {self._safe_url}: sync failed: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            async with self._attempt_done:
                self._attempts += 1
                self._attempt_done.notify_all()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)  # the schedule, not a wait on a state
            try:
                await self.refresh()
            except StoreError as exc:  # _sync turns every failure into one: the task lives on
                log.warning(
                    "netbox_refresh_failed",
                    url=self._safe_url,
                    error=str(exc),
                    error_type=type(exc.__cause__ or exc).__name__,
                    snapshot_age=round(self.snapshot_age(), 3),
                )

    async def _fetch_all(self) -> dict[str, list[Any]]:
        kinds = list(API_PATHS)
        results = await asyncio.gather(
            *(self._fetch_list(kind, API_PATHS[kind]) for kind in kinds), return_exceptions=True
        )
        lists: dict[str, list[Any]] = {}
        for kind, result in zip(kinds, results, strict=True):
            if isinstance(result, _PluginAbsent):
                if not self._plugin_absent_logged:
                    self._plugin_absent_logged = True
                    log.info("netbox_bgp_plugin_absent", url=self._safe_url)
                lists[kind] = []
            elif isinstance(result, BaseException):
                raise result
            else:
                lists[kind] = result
        return lists

    async def _fetch_list(self, kind: str, path: str) -> list[Any]:
        client = self._client
        if client is None:
            raise StoreError(f"NetBox {self._safe_url}: inventory not started")
        url: httpx.URL | str = path
        params: dict[str, int] | None = {"limit": self.page_size, "offset": 0}
        seen: set[str] = set()
        out: list[Any] = []
        for _page in range(_MAX_PAGES):
            resp = await self._get(client, url, params, path)
            if resp.status_code == 404 and kind == BGP_KIND:
                raise _PluginAbsent
            if resp.status_code != 200:
                raise StoreError(
                    f"NetBox {self._safe_url}{path} answered HTTP {resp.status_code}"
                    + (" (token refused)" if resp.status_code in (401, 403) else "")
                )
            results, nxt = self._list_body(resp, path)
            out.extend(results)
            if not nxt:
                return out
            url, params = self._next_url(nxt, path), None
            if str(url) in seen:
                raise StoreError(f"NetBox {self._safe_url}{path}: pagination loops")
            seen.add(str(url))
        raise StoreError(f"NetBox {self._safe_url}{path}: more than {_MAX_PAGES} pages")

    async def _get(
        self,
        client: httpx.AsyncClient,
        url: httpx.URL | str,
        params: dict[str, int] | None,
        path: str,
    ) -> httpx.Response:
        """One GET, retried with backoff on transient failures (see the module doc).

        Returns the response (a retryable status once retries are exhausted);
        raises ``StoreError`` for a transport failure.
        """
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                resp = await client.get(url, params=params)
            except _RETRY_ERRORS as exc:
                if attempt == self.retries:
                    raise StoreError(
                        f"NetBox {self._safe_url}{path}: {type(exc).__name__}: {exc}"
                    ) from None
                wait, reason = delay, type(exc).__name__
            except httpx.HTTPError as exc:
                raise StoreError(
                    f"NetBox {self._safe_url}{path}: {type(exc).__name__}: {exc}"
                ) from None
            else:
                if resp.status_code not in _RETRY_STATUS or attempt == self.retries:
                    return resp
                wait = _retry_after(resp, delay, self.max_backoff)
                reason = f"HTTP {resp.status_code}"
            log.info(
                "netbox_retry",
                url=self._safe_url,
                path=path,
                reason=reason,
                attempt=attempt + 1,
                wait_s=round(wait, 3),
            )
            await asyncio.sleep(wait)  # the backoff schedule, not a wait on a state
            delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _list_body(self, resp: httpx.Response, path: str) -> tuple[list[Any], str | None]:
        """``(results, next)`` of a NetBox list body; ``StoreError`` if it is not one."""
        try:
            body = resp.json()
        except ValueError:
            body = None
        results = body.get("results") if isinstance(body, dict) else None
        nxt = body.get("next") if isinstance(body, dict) else None
        if not isinstance(results, list) or not (nxt is None or isinstance(nxt, str)):
            raise StoreError(f"NetBox {self._safe_url}{path}: not a NetBox list body")
        return results, nxt

    def _next_url(self, nxt: str, path: str) -> httpx.URL:
        """The ``next`` link, re-rooted on our base URL when NetBox names another
        origin (a reverse proxy): the token only ever goes to the configured host.
        ``StoreError`` when it is not a URL."""
        try:
            link = httpx.URL(nxt)
        except httpx.InvalidURL as exc:
            raise StoreError(
                f"NetBox {self._safe_url}{path}: bad 'next' link {nxt[:120]!r}: {exc}"
            ) from None
        base = httpx.URL(self.url)
        if (link.scheme, link.host, link.port) == (base.scheme, base.host, base.port):
            return link
        return base.copy_with(path=link.path, query=link.query)
