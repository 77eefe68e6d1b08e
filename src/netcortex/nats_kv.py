"""The plumbing shared by netcortex's JetStream key-value buckets.

Used by the three KV users — the dedup store
(``memory.episodic.dedup_jetstream.JetStreamDedupStore``), the fleet
correlator's lease (``association.lease.JetStreamLease``) and the poll shard
membership (``sensory.poll.shard.JetStreamMembership``) — so that they connect
the same way and lay their buckets out the same way:

* ``connect``: a nats-py client that reconnects for ever (every
  ``RECONNECT_WAIT`` seconds), the first connect bounded by a timeout;
* ``kv_stream_config``: the stream of a KV bucket as nats-py's own KV API
  makes it (``KV_<bucket>`` on ``$KV.<bucket>.>``, history 1, discard new,
  roll-ups allowed, direct get);
* ``ensure_stream``: create that stream, or update it when it exists with
  other settings.

Errors are not mapped here: every caller wraps these calls in its own error
map (its own exception types, messages and logs), so nats-py / socket
exceptions pass through unchanged.
May import: nothing from netcortex (nats-py only).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final, Literal

import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

__all__ = [
    "CONNECT_TIMEOUT",
    "RECONNECT_WAIT",
    "STREAM_IN_USE",
    "connect",
    "ensure_stream",
    "kv_stream_config",
]

#: seconds one connect attempt may take (nats-py's ``connect_timeout``)
CONNECT_TIMEOUT: Final = 2.0
#: seconds between reconnect attempts
RECONNECT_WAIT: Final = 0.5
#: JetStream error code: stream name already in use with other settings
STREAM_IN_USE: Final = 10058


async def connect(
    url: str,
    *,
    name: str,
    timeout: float,
    error_cb: Callable[[Exception], Awaitable[None]],
) -> NatsClient:
    """A client connected to ``url`` within ``timeout`` seconds.

    The client reconnects for ever after that (``error_cb`` hears of every
    failure). On any failure the half-made client is closed and the nats-py /
    socket exception (``TimeoutError`` for the timeout) is raised as is.
    """
    nc = NatsClient()
    try:
        async with asyncio.timeout(timeout):
            await nc.connect(
                servers=[url],
                name=name,
                connect_timeout=CONNECT_TIMEOUT,  # type: ignore[arg-type]
                reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                error_cb=error_cb,
            )
    except BaseException:
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    return nc


def kv_stream_config(
    bucket: str,
    *,
    storage: Literal["file", "memory"],
    replicas: int,
    max_age: float | None = None,
    msg_ttl: bool = False,
    deny_delete: bool = True,
) -> StreamConfig:
    """The stream behind KV bucket ``bucket``.

    Args:
        bucket: the bucket name (the stream is ``KV_<bucket>``).
        storage: file or memory.
        replicas: stream replicas (cluster).
        max_age: seconds a key is kept at most; ``None``: for ever.
        msg_ttl: allow per-message TTL (the ``Nats-TTL`` header; nats-server 2.11+).
        deny_delete: refuse the stream's message-delete API (KV deletes are
            tombstone publishes and still work).
    """
    return StreamConfig(
        name=f"KV_{bucket}",
        subjects=[f"$KV.{bucket}.>"],
        max_msgs_per_subject=1,
        max_age=max_age,
        storage=StorageType.FILE if storage == "file" else StorageType.MEMORY,
        discard=DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        deny_delete=deny_delete,
        allow_direct=True,
        allow_msg_ttl=True if msg_ttl else None,
        max_consumers=-1,
        max_msgs=-1,
        num_replicas=replicas,
    )


async def ensure_stream(js: JetStreamContext, cfg: StreamConfig) -> None:
    """Create stream ``cfg``, or update it if it exists with other settings."""
    try:
        await js.add_stream(cfg)
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != STREAM_IN_USE:
            raise
        await js.update_stream(cfg)
