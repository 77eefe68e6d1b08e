"""Typed configuration: file → ``NETCORTEX_<SECTION>__<KEY>`` environment → defaults.

One tree, validated at start-up; every problem is reported at once in a single
``ConfigError`` naming the key and the file. Backends are picked by name
(``bus.backend``, ``store.backend``) in ``app.py``: swapping one is a config
change, never a code change. Secrets are ``Secret`` values whose ``repr``/``str``
and JSON forms are redacted.

Any region may import this module (constructors take their own section).
"""

from __future__ import annotations

import ipaddress
import os
import re
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from netcortex.contracts.events import EVENT_CLASSES
from netcortex.errors import ConfigError

__all__ = [
    "AUTH_PROTOCOLS",
    "PRIV_PROTOCOLS",
    "ROLES",
    "AssociationConfig",
    "BusConfig",
    "Config",
    "DedupConfig",
    "EngineConfig",
    "GraphConfig",
    "HttpConfig",
    "InventoryConfig",
    "JournalConfig",
    "LogConfig",
    "MaintenanceConfig",
    "MaintenanceWindowConfig",
    "MerakiAlertPattern",
    "MerakiConfig",
    "PollConfig",
    "PollTargetConfig",
    "ReflexConfig",
    "Secret",
    "StoreConfig",
    "TrapConfig",
    "V3User",
    "load_config",
]

#: Redacted secret string (``repr``, ``str`` and JSON show ``**********``).
Secret = SecretStr

ENV_PREFIX = "NETCORTEX_"

#: net-snmp spellings (upper-cased, ``_`` → ``-``) → canonical protocol names.
AUTH_PROTOCOLS: dict[str, str] = {
    "MD5": "MD5", "HMACMD5": "MD5",
    "SHA": "SHA", "SHA1": "SHA", "SHA-1": "SHA",
    "SHA-224": "SHA-224", "SHA224": "SHA-224",
    "SHA-256": "SHA-256", "SHA256": "SHA-256",
    "SHA-384": "SHA-384", "SHA384": "SHA-384",
    "SHA-512": "SHA-512", "SHA512": "SHA-512",
}  # fmt: skip
PRIV_PROTOCOLS: dict[str, str] = {
    "DES": "DES",
    "AES": "AES", "AES128": "AES", "AES-128": "AES",
    "AES192": "AES-192", "AES-192": "AES-192",
    "AES256": "AES-256", "AES-256": "AES-256",
    # Cisco-style key extension (draft-reeder); net-snmp's AES-192/256 are Blumenthal.
    "AES192C": "AES-192-C", "AES-192-C": "AES-192-C",
    "AES256C": "AES-256-C", "AES-256-C": "AES-256-C",
}  # fmt: skip


class _Section(BaseModel):
    # YAML turns `community: 12345678` or `namespace: 123` into numbers; keep them text.
    # `.inf`/`.nan` would pass `gt=0` and break at run time (JetStream durations are
    # integer nanoseconds), so no float setting accepts them.
    model_config = ConfigDict(
        extra="forbid", frozen=True, coerce_numbers_to_str=True, allow_inf_nan=False
    )


class BusConfig(_Section):
    """``bus``: which thalamus backend and how it behaves."""

    backend: Literal["memory", "nats"] = "memory"
    nats_url: str = "nats://127.0.0.1:4222"
    #: prefix for every subject and suffix for stream names (isolates tenants/tests)
    namespace: str = ""
    #: per-subscription queue depth on the memory bus
    queue_size: Annotated[int, Field(ge=1)] = 10_000
    #: how long a publish may wait on back-pressure or an ack before PublishTimeout
    publish_timeout: Annotated[float, Field(gt=0)] = 5.0
    #: deliveries per message before it is given up (and counted)
    max_deliver: Annotated[int, Field(ge=1)] = 5
    #: JetStream: seconds before an unacked message is redelivered
    ack_wait: Annotated[float, Field(gt=0)] = 30.0
    #: JetStream: publishes awaiting their ack at once (pipelined)
    max_inflight: Annotated[int, Field(ge=1)] = 1000
    #: JetStream: messages fetched per pull
    fetch_batch: Annotated[int, Field(ge=1)] = 256
    #: JetStream: how long streams keep messages (seconds)
    stream_max_age: Annotated[float, Field(gt=0)] = 86_400.0
    #: JetStream: ``file`` (survives restarts) or ``memory``
    storage: Literal["file", "memory"] = "file"
    #: JetStream: duplicate window for Nats-Msg-Id deduplication (seconds)
    duplicate_window: Annotated[float, Field(gt=0)] = 120.0
    #: receivers: seconds of bus outage (nats-server restarting, unreachable) during
    #: which accepted events are kept in memory (the receiver's queue bounds the count)
    #: and re-published, oldest first, once the bus is back; beyond it they are counted in
    #: ``publish_failed{error="bus_outage"}`` and new input is refused (``bus_unavailable``,
    #: a webhook 503) until the bus answers again. Keep it <= ``duplicate_window``: a
    #: retry later than that could be stored twice (workers still handle it once)
    outage_buffer_seconds: Annotated[float, Field(gt=0)] = 120.0
    #: JetStream: messages a consumer may have delivered but not yet acked (per
    #: handler, across the fleet); workers ack only once outcomes are stored, in batches
    max_ack_pending: Annotated[int, Field(ge=1)] = 20_000
    #: JetStream: copies of every stream, consumer and key-value bucket (3 on a
    #: three-node cluster; 1 on a single server)
    replicas: Annotated[int, Field(ge=1, le=5)] = 1

    @field_validator("namespace")
    @classmethod
    def _token(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9_-]+", v):
            raise ValueError("must be letters, digits, '_' or '-' (one subject token)")
        return v


class StoreConfig(_Section):
    """``store``: where outcomes are kept."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    sqlite_path: Path = Path("var/netcortex.db")
    #: ``postgresql://user:password@host:5432/db`` (required for ``postgres``; never logged)
    postgres_dsn: Secret | None = None
    #: the PostgreSQL schema holding the tables (created at start)
    postgres_schema: str = "netcortex"
    #: rows per transaction at most
    batch_size: Annotated[int, Field(ge=1)] = 500
    #: longest a recorded outcome waits before its batch is written (seconds)
    flush_interval: Annotated[float, Field(gt=0)] = 0.01
    #: outcomes recorded longer ago than this many days are deleted (``0``: keep forever)
    retention_days: Annotated[int, Field(ge=0)] = 30

    @field_validator("postgres_schema")
    @classmethod
    def _schema_identifier(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", v) or v.startswith("pg_"):
            raise ValueError(
                "must be a lower-case SQL identifier (letters, digits, '_'; "
                "not starting with a digit or 'pg_'; at most 63 characters)"
            )
        return v

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> StoreConfig:
        if self.backend == "postgres" and self.postgres_dsn is None:
            raise ValueError("store.postgres_dsn is required when store.backend is 'postgres'")
        return self


class GraphConfig(_Section):
    """``graph``: mirror every stored outcome into a Neo4j (Bolt) graph as ``:ReflexEvent``."""

    enabled: bool = False
    #: Bolt URI: ``bolt://``, ``bolt+s://``, ``bolt+ssc://``, ``neo4j://``, ``neo4j+s://``, ``neo4j+ssc://``
    uri: str = "bolt://127.0.0.1:7687"
    user: str = "neo4j"
    #: never logged
    password: Secret | None = None
    #: the database (graph) name; ``None``: the server's default database
    database: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    #: outcomes per write transaction at most (small: some Bolt servers refuse large parameters)
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 50
    #: outcomes waiting for the graph at most; beyond it the oldest are dropped (counted, logged)
    queue_size: Annotated[int, Field(ge=1)] = 100_000
    #: longest an outcome waits before its batch is written (seconds)
    flush_interval: Annotated[float, Field(gt=0)] = 0.5
    #: per write transaction (seconds)
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    #: longest pause between retries while the graph fails (seconds; backoff doubles up to it)
    max_backoff_seconds: Annotated[float, Field(gt=0)] = 60.0

    @field_validator("uri")
    @classmethod
    def _bolt_uri(cls, v: str) -> str:
        schemes = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
        scheme, sep, rest = v.partition("://")
        if not sep or scheme not in schemes or not rest:
            raise ValueError(
                f"must be a Bolt URI ({', '.join(s + '://' for s in schemes)}host:port)"
            )
        return v


class V3User(_Section):
    """One SNMPv3 USM user (as a ``createUser -e ENGINE user AUTH key PRIV key`` line)."""

    user: Annotated[str, Field(min_length=1, max_length=32)]
    engine_id: Annotated[str, Field(min_length=1)]
    auth_protocol: str | None = None
    auth_key: Secret | None = None
    priv_protocol: str | None = None
    priv_key: Secret | None = None

    @field_validator("engine_id", mode="before")
    @classmethod
    def _engine_from_yaml_int(cls, v: Any) -> Any:
        # Unquoted `engine_id: 0x80001f88...` (as copied from snmptrapd.conf) is a YAML int.
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            h = f"{v:x}"
            return "0x" + ("0" + h if len(h) % 2 else h)
        return v

    @field_validator("engine_id")
    @classmethod
    def _engine_hex(cls, v: str) -> str:
        h = v[2:] if v.lower().startswith("0x") else v
        if not re.fullmatch(r"[0-9A-Fa-f]{10,64}", h) or len(h) % 2:
            raise ValueError("must be 5..32 octets in hex (e.g. 0x80001f8804...)")
        return "0x" + h.lower()

    @field_validator("auth_protocol")
    @classmethod
    def _auth(cls, v: str | None) -> str | None:
        if v is None:
            return None
        key = v.strip().upper().replace("_", "-")
        if key not in AUTH_PROTOCOLS:
            raise ValueError(
                f"unknown auth protocol {v!r}; one of MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512"
            )
        return AUTH_PROTOCOLS[key]

    @field_validator("priv_protocol")
    @classmethod
    def _priv(cls, v: str | None) -> str | None:
        if v is None:
            return None
        key = v.strip().upper().replace("_", "-")
        if key not in PRIV_PROTOCOLS:
            raise ValueError(f"unknown priv protocol {v!r}; one of DES, AES, AES-192, AES-256")
        return PRIV_PROTOCOLS[key]

    def model_post_init(self, context: Any, /) -> None:
        if self.auth_protocol and not self.auth_key:
            raise ValueError("auth_protocol needs auth_key")
        if self.priv_protocol and not (self.priv_key and self.auth_protocol):
            raise ValueError("priv_protocol needs priv_key and an auth_protocol")
        for name in ("auth_key", "priv_key"):
            secret = getattr(self, name)
            if secret is not None and len(secret.get_secret_value()) < 8:
                raise ValueError(f"{name} must be at least 8 characters (RFC 3414)")

    @property
    def level(self) -> Literal["noAuthNoPriv", "authNoPriv", "authPriv"]:
        """The security level this user requires."""
        if self.priv_protocol:
            return "authPriv"
        return "authNoPriv" if self.auth_protocol else "noAuthNoPriv"


class TrapConfig(_Section):
    """``trap``: the SNMP trap receiver."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 1162
    communities: list[Secret] = Field(default_factory=lambda: [SecretStr("public")])
    v3_users: list[V3User] = Field(default_factory=list)
    #: addresses or CIDR networks allowed to send; empty = any
    allowed_sources: list[str] = Field(default_factory=list)
    #: datagrams larger than this are rejected (bytes)
    max_message_size: Annotated[int, Field(ge=484, le=65535)] = 8192
    #: SO_RCVBUF asked of the kernel (bytes); bursts larger than this are lost in the kernel
    recv_buffer: Annotated[int, Field(ge=65536)] = 4 * 1024 * 1024
    #: accept relayed traps' snmpTrapAddress.0 as the agent
    honour_trap_address: bool = True

    @field_validator("allowed_sources")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an address or CIDR network") from exc
        return v


class HttpConfig(_Section):
    """``http``: the one HTTP server inside ``netcortex run`` (API, webhooks, metrics)."""

    enabled: bool = True
    #: loopback by default; ``0.0.0.0`` / ``::`` to accept webhooks from elsewhere
    host: str = "127.0.0.1"
    #: TCP port (0 = any free port, logged as ``listening``)
    port: Annotated[int, Field(ge=0, le=65535)] = 8162
    #: bearer token for ``/api/v1/*`` (except health) and ``/metrics``; unset = those
    #: endpoints answer 403 (fail closed)
    api_token: Secret | None = None
    #: request bodies larger than this are refused with 413 (bytes)
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    #: ``GET /api/v1/outcomes`` page size when ``limit`` is not given, and its maximum
    page_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    max_page_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    #: reverse proxies (addresses or CIDR networks, or ``"*"`` for any) whose
    #: ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed; empty = none (the
    #: TCP peer is the client: nobody can spoof their address)
    trusted_proxies: list[str] = Field(default_factory=list)
    #: ``GET /api/v1/stream``: messages queued per client; a client whose queue is
    #: full gets ``event: overflow`` and is disconnected (the engine never waits)
    stream_queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    #: stream clients at once; one more is answered 503
    stream_max_clients: Annotated[int, Field(ge=1, le=100_000)] = 100
    #: a resume (``Last-Event-ID``) sends at most this many stored outcomes and as
    #: many incidents; older ones are skipped and counted in ``event: gap``
    stream_max_backlog: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    #: seconds between ``: keep-alive`` comments on an idle stream
    stream_keepalive_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, v: list[str]) -> list[str]:
        if "*" in v and len(v) > 1:
            raise ValueError("'*' trusts every address; give it alone")
        for item in v:
            if item == "*":
                continue
            try:
                # uvicorn wants networks in canonical form (no host bits set)
                ipaddress.ip_network(item, strict=True)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an address or CIDR network") from exc
        return v

    @field_validator("api_token")
    @classmethod
    def _token_length(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        return v

    def model_post_init(self, context: Any, /) -> None:
        if self.page_size > self.max_page_size:
            raise ValueError("page_size must not exceed max_page_size")


class MerakiAlertPattern(_Section):
    """One ``meraki.alert_type_patterns`` rule: ``alertType`` text → event class."""

    #: a Python regular expression searched (case-insensitive) in ``alertType``
    pattern: Annotated[str, Field(min_length=1)]
    event_class: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return v

    @field_validator("event_class")
    @classmethod
    def _known_class(cls, v: str) -> str:
        return _event_class(v)


def _event_class(v: str) -> str:
    if v not in EVENT_CLASSES:
        raise ValueError(f"unknown event class {v!r}; one of {', '.join(sorted(EVENT_CLASSES))}")
    return v


class MerakiConfig(_Section):
    """``meraki``: the Meraki Dashboard webhook receiver (``POST /webhooks/meraki``)."""

    enabled: bool = True
    #: the HTTP server's shared secret set in Dashboard; unset = every POST is
    #: refused with 403 (fail closed)
    shared_secret: Secret | None = None
    #: alerts whose ``sentAt`` is further than this from now are refused (seconds;
    #: 0 turns the check off)
    replay_window_seconds: Annotated[float, Field(ge=0)] = 300.0
    #: an ``alertId`` seen within this many seconds is answered 200 and not published again
    idempotency_window_seconds: Annotated[float, Field(gt=0)] = 3600.0
    #: alert ids remembered at most (oldest forgotten first)
    idempotency_max_keys: Annotated[int, Field(ge=1)] = 100_000
    #: accepted alerts waiting to be published, at most; beyond it POSTs get 503
    queue_size: Annotated[int, Field(ge=1)] = 10_000
    #: ``alertTypeId`` → event class, over the built-in table (e.g. ``ids_alerted: security``)
    alert_types: dict[str, str] = Field(default_factory=dict)
    #: ``alertType`` text rules tried before the built-in ones, for ids not in any table
    alert_type_patterns: list[MerakiAlertPattern] = Field(default_factory=list)

    @field_validator("alert_types")
    @classmethod
    def _known_classes(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            try:
                _event_class(value)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return v

    def model_post_init(self, context: Any, /) -> None:
        if (
            self.replay_window_seconds
            and self.idempotency_window_seconds < 2 * self.replay_window_seconds
        ):
            # sentAt may be replay_window in the past or the future: a copy of an
            # alert stays replayable for twice the window, so ids must be kept as long.
            raise ValueError(
                "idempotency_window_seconds must be at least twice replay_window_seconds "
                "(a replayed alertId older than the idempotency window would be accepted again)"
            )

    @field_validator("shared_secret")
    @classmethod
    def _secret_not_blank(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("must not be blank (leave it unset to refuse every webhook)")
        return v


class PollTargetConfig(_Section):
    """One ``poll.targets`` entry: a device polled that is not (or not only) in the inventory."""

    #: the name events use (canonicalised through the inventory when it knows the device)
    device: Annotated[str, Field(min_length=1)]
    #: IP address to poll (v4 or v6; no hostnames: polling must not wait on DNS)
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 161
    #: v2c community; unset = ``poll.community``
    community: Secret | None = None
    #: SNMPv3: the ``user`` of a ``trap.v3_users`` entry (its keys and protocols are used)
    v3_user: str | None = None

    @field_validator("host")
    @classmethod
    def _ip_address(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_address(v.strip()))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address") from None


class PollConfig(_Section):
    """``poll``: SNMP polling of interface, BGP and reachability state (the traps' safety net)."""

    enabled: bool = False
    #: seconds between two polls of one device
    interval_seconds: Annotated[float, Field(gt=0)] = 60.0
    #: each cycle of each device is moved by a random fraction of the interval, up to this
    jitter: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    #: devices polled at once, at most
    concurrency: Annotated[int, Field(ge=1)] = 64
    #: seconds to wait for each SNMP answer before re-sending
    timeout_seconds: Annotated[float, Field(gt=0)] = 2.0
    #: re-sends of an unanswered request
    retries: Annotated[int, Field(ge=0)] = 1
    #: consecutive failed polls that make a device down (``device_down``)
    failure_threshold: Annotated[int, Field(ge=1)] = 3
    #: after n failed polls a device waits ``interval * 2**(n-1)``, at most this * interval
    max_backoff_factor: Annotated[float, Field(ge=1)] = 4.0
    #: the default v2c community
    community: Secret = Field(default_factory=lambda: SecretStr("public"))
    #: poll every inventory device that has a primary IP address
    inventory: bool = True
    #: UDP port the inventory's devices are polled on (``poll.targets`` set their own)
    port: Annotated[int, Field(ge=1, le=65535)] = 161
    #: also walk BGP4-MIB bgpPeerState (an agent without BGP is fine)
    bgp: bool = True
    #: the last known state of every device (durable: a restart neither re-fires nor misses)
    state_path: Path = Path("var/poll_state.db")
    #: share the targets among the receivers polling them, each device polled by one
    #: (issue 10): ``auto`` = on with ``bus.backend: nats`` and role ``receiver``;
    #: ``on`` (needs ``bus.backend: nats``; also for several ``all`` processes); ``off``
    sharding: Literal["auto", "on", "off"] = "auto"
    #: sharding: seconds between two heartbeats of a receiver in the membership
    #: bucket; one that misses three is gone and its targets move to the others
    membership_heartbeat_seconds: Annotated[float, Field(ge=0.1, le=600)] = 2.0
    #: sharding: the JetStream key-value bucket the receivers meet in
    #: (``_<bus.namespace>`` appended)
    membership_bucket: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,200}$")] = (
        "netcortex_members"
    )
    targets: list[PollTargetConfig] = Field(default_factory=list)

    @field_validator("targets")
    @classmethod
    def _unique_devices(cls, v: list[PollTargetConfig]) -> list[PollTargetConfig]:
        seen: set[str] = set()
        dupes: set[str] = set()
        for target in v:
            (dupes if target.device in seen else seen).add(target.device)
        if dupes:
            raise ValueError(f"device name(s) given twice: {', '.join(map(repr, sorted(dupes)))}")
        return v


class JournalConfig(_Section):
    """``journal``: mirror outcomes that matter into NetBox journal entries (issue 7).

    Delivery goes through a durable outbox kept by the outcome store: the job is
    written with its outcome, and a worker drains it towards NetBox with retries,
    a rate limit and an idempotency marker, so each outcome appears once.

    With ``association.enabled`` (issue 8) the journal gets one entry per
    incident instead of one per outcome: the incident's entry is written when it
    opens and updated on every change and on resolve; the jobs of its outcomes
    are ``superseded``. Outcome jobs wait ``incident_hold_seconds`` before their
    first attempt, so the correlator can claim them first; a lone outcome (no
    incident) still gets its own entry after the hold.
    """

    enabled: bool = False
    #: NetBox base URL, e.g. https://netbox.example.com (required when enabled)
    netbox_url: str | None = None
    #: API token (v1 ``Token``, or v2 ``nbt_…`` sent as ``Bearer``); never logged
    netbox_token: Secret | None = None
    #: verify the server's TLS certificate
    verify_tls: bool = True
    #: lowest severity of a ``logged`` outcome that is written (recoveries aside)
    min_severity: Literal["info", "warn", "high", "critical"] = "high"
    #: handler ids whose outcomes are written; empty = every handler
    handlers: list[str] = Field(default_factory=list)
    #: jobs not delivered this many seconds after their outcome are dead-lettered
    max_age_seconds: Annotated[float, Field(gt=0)] = 86_400.0
    #: requests per second towards NetBox at most (lookups, searches and writes together)
    rate_per_second: Annotated[float, Field(gt=0)] = 5.0
    #: per HTTP request (seconds)
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    #: longest wait between two attempts of one job (seconds; backoff doubles up to it)
    max_backoff_seconds: Annotated[float, Field(gt=0)] = 300.0
    #: how long a claimed job is held by one worker before another may take it (seconds)
    lease_seconds: Annotated[float, Field(gt=0)] = 60.0
    #: jobs delivered at once, at most
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    #: jobs claimed per round
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 50
    #: longest idle wait before the outbox is looked at again without a wake-up (seconds)
    poll_interval_seconds: Annotated[float, Field(gt=0)] = 5.0
    #: this netcortex's API base URL (``https://netcortex.example.com``): each entry
    #: links back to ``<api_base_url>/api/v1/outcomes/<id>``; unset = no link
    api_base_url: str | None = None
    #: also write the recoveries (``link_up``, ``bgp_established``, ``device_up``) as ``success``
    include_recoveries: bool = True
    #: with association enabled: an outcome's job is first due this many seconds after
    #: it was recorded, so an incident that takes the outcome in (a cable cut's second
    #: link-down) supersedes it and the incident's one entry (updated on every change
    #: and on resolve) replaces the outcome's; default = ``association.cable_window``;
    #: 0 = no hold (outcomes that join an incident later may then have entries too)
    incident_hold_seconds: Annotated[float, Field(ge=0)] = 30.0

    @field_validator("handlers")
    @classmethod
    def _handler_tokens(cls, v: list[str]) -> list[str]:
        bad = [h for h in v if not re.fullmatch(r"[a-z0-9_-]+", h)]
        if bad:
            raise ValueError(
                f"handler ids are single tokens ([a-z0-9_-]+): {', '.join(map(repr, bad))}"
            )
        return v

    @field_validator("api_base_url")
    @classmethod
    def _api_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not re.match(r"^https?://[^/\s@]+", v, re.IGNORECASE):
            raise ValueError("must be an http:// or https:// URL without credentials")
        return v.rstrip("/")

    def model_post_init(self, context: Any, /) -> None:
        if self.netbox_url is not None and not re.match(
            r"^https?://[^/\s]+", self.netbox_url, re.IGNORECASE
        ):
            # Never echo the value: a URL may carry credentials (user:pass@host).
            raise ValueError("journal.netbox_url must be an http:// or https:// URL")
        if self.enabled:
            token = self.netbox_token.get_secret_value().strip() if self.netbox_token else ""
            missing = [
                k for k, ok in (("netbox_url", self.netbox_url), ("netbox_token", token)) if not ok
            ]
            if missing:
                raise ValueError(
                    f"journal.enabled needs {' and '.join('journal.' + k for k in missing)}"
                )
        if self.lease_seconds < 4 * self.timeout_seconds:
            # A lease must outlast a job's requests (look-ups, search, write): the
            # worker never starts a write with less than timeout_seconds of it left.
            raise ValueError("journal.lease_seconds must be at least 4 x journal.timeout_seconds")


class ReflexConfig(_Section):
    """``reflex``: which built-in handlers run."""

    #: handler ids to leave out (all built-ins run by default)
    disabled: list[str] = Field(default_factory=list)


#: What one ``netcortex run`` process does (``engine.role`` / ``--role``; see ``netcortex.roles``).
ROLES: tuple[Literal["all", "receiver", "worker"], ...] = ("all", "receiver", "worker")


class EngineConfig(_Section):
    """``engine``: which part of the work this process does (``docs/DEPLOYMENT.md``)."""

    #: ``all`` (one process does everything), ``receiver`` (traps, webhooks, pollers
    #: → JetStream) or ``worker`` (reflexes, store, correlation, outbox, API);
    #: ``receiver`` and ``worker`` need ``bus.backend: nats``. ``run --role`` overrides it.
    role: Literal["all", "receiver", "worker"] = "all"


class LogConfig(_Section):
    """``log``: structured logging."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``auto`` = console renderer on a TTY, JSON otherwise
    format: Literal["auto", "json", "console"] = "auto"
    #: seconds between ``engine_stats`` lines (totals and rates); 0 turns them off
    stats_interval: Annotated[float, Field(ge=0)] = 60.0


class InventoryConfig(_Section):
    """``inventory``: where semantic memory (devices, interfaces, cables) comes from."""

    #: ``none`` (targets stay raw addresses), ``file`` or ``netbox``
    backend: Literal["none", "file", "netbox"] = "none"
    #: ``file``: a YAML or JSON file shaped like NetBox API list responses
    path: Path | None = None
    #: ``netbox``: base URL, e.g. https://netbox.example.com
    netbox_url: str | None = None
    #: ``netbox``: API token (v1 ``Token``, or v2 ``nbt_…`` sent as ``Bearer``)
    netbox_token: Secret | None = None
    #: ``netbox``: seconds between background refreshes (lookups never wait)
    refresh_seconds: Annotated[float, Field(gt=0)] = 300.0
    #: ``netbox``: verify the server's TLS certificate
    verify_tls: bool = True

    def model_post_init(self, context: Any, /) -> None:
        if self.backend == "file" and self.path is None:
            raise ValueError("backend 'file' needs inventory.path")
        if self.backend == "netbox":
            token = self.netbox_token.get_secret_value().strip() if self.netbox_token else ""
            if not (self.netbox_url and token):
                raise ValueError("backend 'netbox' needs inventory.netbox_url and netbox_token")
            if not re.match(r"^https?://[^/\s]+", self.netbox_url, re.IGNORECASE):
                # Never echo the value: a URL may carry credentials (user:pass@host).
                raise ValueError("inventory.netbox_url must be an http:// or https:// URL")


class DedupConfig(_Section):
    """``dedup``: storms of one fact become one ``logged`` outcome plus ``skipped`` ones."""

    #: ``memory`` (one process) or ``nats`` (a JetStream key-value bucket shared by workers)
    backend: Literal["memory", "nats"] = "memory"
    #: per-handler window overrides in seconds, e.g. {link_down: 60, security_webhook: 300}
    windows: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    #: ``memory``: facts remembered at most (oldest dropped first)
    max_keys: Annotated[int, Field(ge=1)] = 100_000
    #: ``nats``: the key-value bucket name (letters, digits, ``_``, ``-``)
    bucket: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,200}$")] = "netcortex_dedup"


class MaintenanceWindowConfig(_Section):
    """One maintenance window from the config file (see ``contracts.MaintenanceWindow``)."""

    #: a plain token; the calendar's ``validate_window`` is the one rule for ids
    id: Annotated[str, Field(min_length=1)]
    scope: Literal["device", "interface", "site", "role", "tag"]
    #: device name, ``device|interface``, site slug, role slug or tag slug
    target: Annotated[str, Field(min_length=1)]
    #: ISO 8601 with an offset (``2026-12-06T02:00:00+01:00``); naive means ``timezone``
    start: datetime
    #: either ``end`` or ``duration`` (seconds, ``HH:MM:SS`` or ISO 8601 ``PT2H``;
    #: absolute elapsed time, so a 4 h window is 4 h long on a DST day too)
    end: datetime | None = None
    duration: timedelta | None = None
    #: RFC 5545 recurrence, e.g. ``FREQ=WEEKLY;BYDAY=SU``
    rrule: str | None = None
    #: IANA time zone the window (and its recurrence) is in
    timezone: str = "UTC"
    reason: str = ""

    def model_post_init(self, context: Any, /) -> None:
        if (self.end is None) == (self.duration is None):
            raise ValueError("give exactly one of end and duration")
        if self.duration is not None and self.duration <= timedelta(0):
            raise ValueError("duration must be positive")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc

    def bounds(self) -> tuple[datetime, datetime]:
        """``(start, end)`` as timezone-aware datetimes (naive ones read in ``timezone``)."""
        tz = zoneinfo.ZoneInfo(self.timezone)
        start = self.start if self.start.tzinfo else self.start.replace(tzinfo=tz)
        if self.end is not None:
            end = self.end if self.end.tzinfo else self.end.replace(tzinfo=tz)
        else:
            assert self.duration is not None
            # Elapsed time: add in UTC (same-zone arithmetic would be wall-clock).
            end = (start.astimezone(UTC) + self.duration).astimezone(start.tzinfo)
        if end <= start:
            raise ValueError(f"window {self.id!r}: end must be after start")
        return start, end


class MaintenanceConfig(_Section):
    """``maintenance``: windows in which outcomes are ``suppressed`` (kept as shadows)."""

    windows: list[MaintenanceWindowConfig] = Field(default_factory=list)


class AssociationConfig(_Section):
    """``association``: how outcomes are correlated into incidents (issue 8).

    Windows are in seconds of the correlator's clock (the ``now`` it is given).
    """

    #: correlate outcomes into incidents in ``netcortex run`` (store, bus, logs)
    enabled: bool = True
    #: outcomes waiting for the correlator; beyond this they are dropped and counted
    queue_size: Annotated[int, Field(ge=1)] = 10_000
    #: link-downs on both ends of one cable at most this far apart are one incident
    cable_window: Annotated[float, Field(gt=0)] = 30.0
    #: a device_down / device_reboot and its (and its cable peers') link-downs
    device_window: Annotated[float, Field(gt=0)] = 300.0
    #: a bgp_drop and the down link it runs over (either order); BGP notices a dead
    #: link only when its hold timer (90-180 s) runs out
    bgp_window: Annotated[float, Field(gt=0)] = 180.0
    #: at least ``site_min_devices`` devices of one site down within this many seconds
    site_window: Annotated[float, Field(gt=0)] = 120.0
    site_min_devices: Annotated[int, Field(ge=2)] = 3
    #: sliding window over which an interface's or BGP session's state changes are counted
    flap_window: Annotated[float, Field(gt=0)] = 300.0
    #: this many changes within ``flap_window`` opens a flapping incident ...
    flap_high: Annotated[int, Field(ge=2)] = 6
    #: ... and fewer than this many stabilises it (hysteresis: ``flap_low < flap_high``)
    flap_low: Annotated[int, Field(ge=1)] = 2
    #: a flapping incident absorbs its member's changes quietly; at most this often
    #: (seconds) it is published as ``updated`` with the evidence gathered since
    flap_update_interval: Annotated[float, Field(gt=0)] = 60.0
    #: a down state not in any incident is forgotten after this many seconds
    fact_ttl: Annotated[float, Field(gt=0)] = 3600.0
    #: evidence kept per incident (the rest is counted in ``details``)
    max_evidence: Annotated[int, Field(ge=1)] = 1000
    #: one correlator for the whole fleet (issue 10): ``auto`` = on for ``engine.role:
    #: worker`` on ``bus.backend: nats``; ``on`` needs NATS. The leader (a lease in the
    #: JetStream KV bucket ``lease_bucket``) consumes ``reflex.>``; the others do not
    #: correlate. ``off``: every process correlates the outcomes it handled itself.
    fleet: Literal["auto", "on", "off"] = "auto"
    #: seconds a correlator lease lasts without renewal (renewed every third of it); a
    #: dead leader's successor takes over at most this long (plus a poll) after it died
    lease_ttl: Annotated[float, Field(ge=1, le=300)] = 10.0
    #: JetStream KV bucket of the leases (``_<bus.namespace>`` appended)
    lease_bucket: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] = "netcortex_leases"

    @model_validator(mode="after")
    def _hysteresis(self) -> AssociationConfig:
        if self.flap_low >= self.flap_high:
            raise ValueError(
                f"flap_low ({self.flap_low}) must be below flap_high ({self.flap_high})"
            )
        return self


class Config(_Section):
    """The whole configuration tree."""

    engine: EngineConfig = Field(default_factory=EngineConfig)
    bus: BusConfig = Field(default_factory=BusConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    trap: TrapConfig = Field(default_factory=TrapConfig)
    reflex: ReflexConfig = Field(default_factory=ReflexConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    inventory: InventoryConfig = Field(default_factory=InventoryConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    meraki: MerakiConfig = Field(default_factory=MerakiConfig)
    poll: PollConfig = Field(default_factory=PollConfig)
    journal: JournalConfig = Field(default_factory=JournalConfig)
    graph: GraphConfig = Field(default_factory=GraphConfig)
    association: AssociationConfig = Field(default_factory=AssociationConfig)

    #: where the file was read from (for messages), not a setting
    source: str = Field(default="<defaults>", exclude=True)

    def model_post_init(self, context: Any, /) -> None:
        # Cross-section references, each reported under its own key.
        users = {u.user for u in self.trap.v3_users}
        problems: list[InitErrorDetails] = []
        for i, target in enumerate(self.poll.targets):
            if target.v3_user is not None and target.v3_user not in users:
                problems.append(
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "value_error",
                            "no trap.v3_users entry has user {user}",
                            {"user": repr(target.v3_user)},
                        ),
                        loc=("poll", "targets", i, "v3_user"),
                        input=target.v3_user,
                    )
                )
        if self.engine.role != "all" and self.bus.backend != "nats":
            # Receivers and workers are separate processes: only JetStream joins them.
            problems.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "value_error",
                        "is {backend}, but role {role} needs 'nats': receivers and workers "
                        "meet on JetStream (set bus.backend: nats and bus.nats_url, or run "
                        "role 'all')",
                        {"backend": repr(self.bus.backend), "role": repr(self.engine.role)},
                    ),
                    loc=("bus", "backend"),
                    input=self.bus.backend,
                )
            )
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)

    @model_validator(mode="after")
    def _poll_membership_bucket_alone(self) -> Config:
        # The poll membership, the dedup and the lease buckets are all JetStream KV
        # buckets named ``<bucket>_<bus.namespace>``: one name would be one stream,
        # created with the settings of whichever started first (and keys mixed up).
        clash = [
            key
            for key, bucket in (
                ("dedup.bucket", self.dedup.bucket),
                ("association.lease_bucket", self.association.lease_bucket),
            )
            if bucket == self.poll.membership_bucket
        ]
        if clash:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "value_error",
                            "is {bucket}, the same bucket as {other}: the receivers' "
                            "membership needs a JetStream key-value bucket of its own",
                            {"bucket": repr(self.poll.membership_bucket), "other": clash[0]},
                        ),
                        loc=("poll", "membership_bucket"),
                        input=self.poll.membership_bucket,
                    )
                ],
            )
        return self


def _is_list_field(section: str, key: str) -> bool:
    """Whether ``section.key`` is a list setting (so a bare env string may be split)."""
    sec = Config.model_fields.get(section)
    model = sec.annotation if sec is not None else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return False
    field = model.model_fields.get(key)
    return field is not None and get_origin(field.annotation) is list


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``NETCORTEX_<SECTION>__<KEY>`` variables as ``{section: {key: value}}``.

    Values are parsed as YAML with every scalar kept a string (``BaseLoader``), so
    pydantic coerces them to the field's type: ``NETCORTEX_TRAP__PORT=1162`` is an
    int, ``NETCORTEX_BUS__NAMESPACE=123`` stays the string ``"123"`` and a numeric
    community stays a string. Lists are YAML flow sequences
    (``NETCORTEX_TRAP__COMMUNITIES='[public, lab]'``) or, for list settings, a
    comma-separated string (``public,lab``).
    """
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        section, key = section.lower(), key.lower()
        if not section or not key:
            continue
        try:
            value: Any = yaml.load(raw, Loader=yaml.BaseLoader) if raw.strip() else raw  # noqa: S506 - BaseLoader builds only str/list/dict
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and _is_list_field(section, key):
            value = [item.strip() for item in value.split(",") if item.strip()]
        out.setdefault(section, {})[key] = value
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), Mapping):
            merged[k] = _merge(dict(merged[k]), v)
        else:
            merged[k] = v
    return merged


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    role: str | None = None,
) -> Config:
    """Read ``path`` (YAML), apply ``NETCORTEX_<SECTION>__<KEY>`` overrides, validate.

    Args:
        path: the YAML file; ``None`` means defaults plus environment.
        environ: the environment to read overrides from (default ``os.environ``).
        role: ``netcortex run --role``: replaces ``engine.role`` (file and environment).

    Raises:
        ConfigError: the file is missing or not YAML, or any key is invalid; the
            message lists every problem as ``file: key: message``.
    """
    env = os.environ if environ is None else environ
    where = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{where}: cannot read config file: {exc.strerror}", [(where, "", str(exc))]
            ) from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML: {exc}", [(where, "", str(exc))]) from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{where}: the top level must be a mapping of sections",
                [(where, "", "not a mapping")],
            )
        data = loaded
    overrides = _env_overrides(env)
    merged = _merge(data, overrides)
    if role is not None:
        merged = _merge(merged, {"engine": {"role": role}})
    try:
        return Config.model_validate({**merged, "source": where})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            origin = where
            parts = [str(p) for p in err["loc"]]
            if len(parts) >= 2 and parts[1] in overrides.get(parts[0], {}):
                origin = f"env {ENV_PREFIX}{parts[0].upper()}__{parts[1].upper()}"
            elif len(parts) == 1 and parts[0] in overrides and parts[0] not in data:
                origin = f"env {ENV_PREFIX}{parts[0].upper()}__*"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            problems.append((origin, key, msg))
        lines = "\n".join(f"  {o}: {k}: {m}" for o, k, m in problems)
        raise ConfigError(f"{len(problems)} configuration problem(s):\n{lines}", problems) from None
