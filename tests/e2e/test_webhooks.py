"""End to end: Meraki webhooks over real HTTP into the real ``netcortex run`` process.

Every shared fixture body (``../shared/fixtures/meraki``, only ``sentAt``
rewritten to now) is POSTed to ``/webhooks/meraki`` and its outcome read back
through ``GET /api/v1/outcomes``: handler, kind, severity, the device
canonicalised by serial and the site from enrichment (the engine runs on the
shared NetBox fixture inventory). The round trip runs on the memory bus and on
NATS JetStream. Every rejection path is checked over the wire with its status,
its reason and ``netcortex_rejected_total{source="meraki.webhook",reason}`` read
from ``GET /api/v1/metrics``. The engines' whole log output is scanned for the
shared secret and the API token, and a SIGTERM while webhooks are flowing must
exit 0 with every accepted (202) alert's outcome in the store.

Accepted derived bodies use their own targets (another port, another network
name) so a dedup window never links them to the fixture round trip, whatever
order the tests run in. Waits are polls with deadlines, never bare sleeps.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from tests.conftest import shared_fixture
from tests.e2e.harness import (
    MERAKI_FIXTURES,
    MERAKI_SECRET,
    EngineProcess,
    Samples,
    bus_overrides,
    meraki_alert,
)

pytestmark = [pytest.mark.e2e]

#: One worker per engine: the memory engine's tests read counter deltas, so they
#: must not interleave with each other (they share the engine in one xdist group).
MEMORY_GROUP = pytest.mark.xdist_group("e2e-webhooks")
BACKENDS = [
    pytest.param("memory", id="memory", marks=MEMORY_GROUP),
    pytest.param(
        "nats", id="nats", marks=[pytest.mark.nats, pytest.mark.xdist_group("e2e-webhooks-nats")]
    ),
]

SOURCE = "meraki.webhook"
REJECTED = "netcortex_rejected_total"
RECEIVED = "netcortex_received_total"
DUPLICATES = "netcortex_webhook_duplicates_total"
ACCEPTED = "netcortex_webhook_accepted_total"
PUBLISHED = "netcortex_webhook_published_total"
ONE_MIB = 1024 * 1024


class Expected(NamedTuple):
    """What one fixture body becomes: the 202's event class and the stored outcome."""

    event_class: str
    handler_id: str
    severity: str
    device: str | None
    target: str
    site: str | None


#: The issue's mapping for each fixture (severity: Meraki's alertLevel where the
#: handler honours it, else the handler's own).
EXPECTED: dict[str, Expected] = {
    "security_ids_alert": Expected(
        "security", "security_webhook", "warn", "mx-west", "Branch West|00:00:5e:00:53:aa",
        "branch-west",
    ),
    "security_malware_detected": Expected(
        "security", "security_webhook", "warn", "mx-west", "Branch West|mx-west", "branch-west"
    ),
    "security_rogue_ap": Expected(
        "security", "security_webhook", "warn", "mr-west", "Branch West|mr-west", "branch-west"
    ),
    "device_aps_went_down": Expected(
        "device_down", "device_down", "critical", "mr-west", "mr-west", "branch-west"
    ),
    "device_aps_came_up": Expected(
        "device_up", "device_up", "info", "mr-west", "mr-west", "branch-west"
    ),
    "port_switch_port_disconnected": Expected(
        "link_down", "link_down", "high", "ms-west", "ms-west|Port 1", "branch-west"
    ),
    "uplink_status_changed": Expected(
        "link_down", "link_down", "high", "mx-west", "mx-west|Internet 1", "branch-west"
    ),
    # A network-level alert: no device, so nothing for enrichment to place at a site.
    "settings_changed": Expected(
        "config_change", "config_change", "info", None, "Branch West", None
    ),
}  # fmt: skip


def inventory() -> dict[str, Any]:
    """The ``inventory`` section for the shared NetBox fixture inventory file."""
    return {"backend": "file", "path": str(shared_fixture("netbox", "inventory.json"))}


def unique_id() -> str:
    """A fresh numeric ``alertId`` (Meraki's are 18 digits)."""
    return str(uuid.uuid4().int % 10**18)


def series(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the series is absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def memory_webhook_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """One engine (memory bus, fixture inventory, debug logs) for this module's tests.

    Debug level, so the per-request and per-alert lines are in the secret scan too.
    Teardown stops it with SIGTERM, asserts a clean exit and scans every line once more.
    """
    tmp = tmp_path_factory.mktemp("webhooks-memory")
    overrides = {"inventory": inventory(), "log": {"level": "debug"}}
    with EngineProcess(tmp, overrides) as engine:
        yield engine
        engine.stop_cleanly()
        assert engine.secrets_in_logs() == []


@pytest.fixture(scope="module")
def nats_webhook_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineProcess]:
    """The same engine on NATS JetStream (the session nats-server, own namespace)."""
    tmp = tmp_path_factory.mktemp("webhooks-nats")
    overrides = {"bus": bus_overrides("nats", request), "inventory": inventory()}
    with EngineProcess(tmp, overrides) as engine:
        yield engine
        engine.stop_cleanly()
        assert engine.secrets_in_logs() == []


# --------------------------------------------------------- every fixture, end to end


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_fixture_becomes_its_outcome(backend: str, request: pytest.FixtureRequest) -> None:
    """Each of the eight fixture bodies (sentAt = now) is answered 202 with its event
    class, and its outcome — handler, logged, severity, device canonicalised by serial,
    target, site — is listed by GET /api/v1/outcomes; none carries the secret."""
    engine: EngineProcess = request.getfixturevalue(f"{backend}_webhook_engine")
    event_ids: dict[str, str] = {}
    for name in MERAKI_FIXTURES:
        resp = engine.post_webhook(meraki_alert(name))
        assert resp.status_code == 202, (name, resp.status_code, resp.text)
        body = resp.json()
        assert body["status"] == "accepted", body
        assert body["event_class"] == EXPECTED[name].event_class, (name, body)
        assert MERAKI_SECRET not in resp.text
        event_ids[name] = body["event_id"]

    wanted = set(event_ids.values())
    listed = engine.wait_for_api_outcomes(
        lambda o: o["event_id"] in wanted, count=len(wanted), timeout=20.0
    )
    by_event = {o["event_id"]: o for o in listed}
    assert len(by_event) == len(listed) == len(MERAKI_FIXTURES), listed
    wrong: dict[str, tuple[Any, ...]] = {}
    for name, event_id in event_ids.items():
        outcome, want = by_event[event_id], EXPECTED[name]
        got = Expected(
            want.event_class,
            outcome["handler_id"],
            outcome["severity"],
            outcome["device"],
            outcome["target"],
            outcome["site"],
        )
        if (got, outcome["kind"]) != (want, "logged"):
            wrong[name] = (outcome["kind"], got, "expected", want, outcome["trace"])
        assert outcome["subject"].startswith(f"sensory.meraki.webhook.{want.event_class}."), (
            name,
            outcome["subject"],
        )
        # The outcome by id carries the decision trace.
        single = engine.api("GET", f"/api/v1/outcomes/{outcome['outcome_id']}")
        assert single.status_code == 200, single.text
        assert single.json()["trace"] == outcome["trace"]
        assert single.json()["trace"]["decided_by"] in {"handler", "dedup"}
    # Every mismatch at once (kind, what was stored, what the issue asks for, trace).
    assert wrong == {}
    assert MERAKI_SECRET not in json.dumps(listed)

    # The API's site filter finds the seven device alerts of branch-west among them.
    at_site = {o["event_id"] for o in engine.api_outcomes(site="branch-west")}
    placed = {event_ids[n] for n, e in EXPECTED.items() if e.site == "branch-west"}
    assert placed <= at_site
    assert event_ids["settings_changed"] not in at_site


# ---------------------------------------------------------------- rejection paths


def _body_bytes(**changes: Any) -> bytes:
    return json.dumps(meraki_alert("security_rogue_ap", alertId=unique_id(), **changes)).encode()


def _stale(delta: timedelta) -> bytes:
    sent = (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return _body_bytes(sentAt=sent)


def _big_body() -> bytes:
    """A valid alert padded past 1 MiB (an extra field: the size alone must refuse it)."""
    return _body_bytes(padding="x" * (ONE_MIB + 10))


def _growing_body() -> bytes:
    """A valid alert of ~300 kB whose event is over 1 MiB: JSON numbers grow when the
    event is encoded (``1e15`` → ``1000000000000000.0``), so the bus could not carry
    it. Refused up front rather than accepted (202) and then lost at publish."""
    raw = _body_bytes(samples="@@")
    grown = raw.replace(b'"@@"', b"[" + b",".join([b"1e15"] * 60_000) + b"]")
    assert len(grown) < ONE_MIB // 2
    return grown


class Rejection(NamedTuple):
    """One refused request: its body, content type, extra headers and the answer."""

    body: Callable[[], bytes]
    content_type: str | None
    headers: dict[str, str]
    status: int
    reason: str


REJECTIONS: dict[str, Rejection] = {
    "wrong_secret": Rejection(
        lambda: _body_bytes(sharedSecret="not-the-secret-0001"), "application/json", {}, 401,
        "bad_secret",
    ),
    "missing_secret": Rejection(
        lambda: _body_bytes(sharedSecret=None), "application/json", {}, 401, "bad_secret"
    ),
    "wrong_bearer_without_body_secret": Rejection(
        lambda: _body_bytes(sharedSecret=None),
        "application/json",
        {"Authorization": "Bearer not-the-secret-0001"},
        401,
        "bad_secret",
    ),
    "body_over_1mib": Rejection(_big_body, "application/json", {}, 413, "too_large"),
    "event_over_bus_limit": Rejection(_growing_body, "application/json", {}, 413, "too_large"),
    "invalid_json": Rejection(
        lambda: b'{"sharedSecret": "' + MERAKI_SECRET.encode() + b'", "alertId": ',
        "application/json", {}, 400, "malformed",
    ),
    "empty_body": Rejection(lambda: b"", "application/json", {}, 400, "malformed"),
    "not_utf8": Rejection(lambda: b"\xff\xfe{}", "application/json", {}, 400, "malformed"),
    "text_plain": Rejection(_body_bytes, "text/plain", {}, 415, "bad_content_type"),
    "form_encoded": Rejection(
        _body_bytes, "application/x-www-form-urlencoded", {}, 415, "bad_content_type"
    ),
    "json_array": Rejection(lambda: b"[1, 2, 3]", "application/json", {}, 422, "schema"),
    "missing_sent_at": Rejection(
        lambda: _body_bytes(sentAt=None), "application/json", {}, 422, "schema"
    ),
    "bad_sent_at": Rejection(
        lambda: _body_bytes(sentAt="yesterday-ish"), "application/json", {}, 422, "schema"
    ),
    "no_alert_type": Rejection(
        lambda: _body_bytes(alertTypeId=None, alertType=None), "application/json", {}, 422,
        "schema",
    ),
    "stale_sent_at": Rejection(
        lambda: _stale(-timedelta(hours=1)), "application/json", {}, 400, "stale"
    ),
    "future_sent_at": Rejection(
        lambda: _stale(timedelta(hours=1)), "application/json", {}, 400, "stale"
    ),
}  # fmt: skip


@MEMORY_GROUP
@pytest.mark.parametrize("case", list(REJECTIONS), ids=list(REJECTIONS))
def test_rejection_status_reason_and_counter(
    case: str, memory_webhook_engine: EngineProcess
) -> None:
    """Each bad request gets its status and reason over real HTTP, counts exactly once
    in netcortex_rejected_total{source="meraki.webhook",reason} (and received_total),
    publishes nothing, and never echoes the secret."""
    engine, rej = memory_webhook_engine, REJECTIONS[case]
    before = engine.metrics()
    resp = engine.post_webhook(rej.body(), content_type=rej.content_type, headers=rej.headers)
    after = engine.metrics()

    assert resp.status_code == rej.status, (case, resp.status_code, resp.text)
    body = resp.json()
    assert (body["status"], body["reason"]) == ("rejected", rej.reason), body
    assert isinstance(body.get("detail"), str)
    assert MERAKI_SECRET not in resp.text
    labels = {"source": SOURCE, "reason": rej.reason}
    assert series(after, REJECTED, **labels) - series(before, REJECTED, **labels) == 1
    assert series(after, RECEIVED, source=SOURCE) - series(before, RECEIVED, source=SOURCE) == 1
    accepted = sum(v for (n, _), v in after.items() if n == ACCEPTED)
    assert accepted == sum(v for (n, _), v in before.items() if n == ACCEPTED)


@MEMORY_GROUP
def test_chunked_body_over_the_cap_is_413(memory_webhook_engine: EngineProcess) -> None:
    """A body streamed without Content-Length that crosses 1 MiB is refused 413 too."""
    engine = memory_webhook_engine
    data = _big_body()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    before = engine.metric(REJECTED, source=SOURCE, reason="too_large")
    resp = engine.http.post(
        "/webhooks/meraki", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413, resp.text
    assert resp.json()["reason"] == "too_large"
    assert engine.metric(REJECTED, source=SOURCE, reason="too_large") == before + 1


@MEMORY_GROUP
def test_bearer_header_authenticates_without_body_secret(
    memory_webhook_engine: EngineProcess,
) -> None:
    """A custom payload template without sharedSecret but with
    Authorization: Bearer <secret> is accepted and handled."""
    engine = memory_webhook_engine
    body = meraki_alert(
        "port_switch_port_disconnected",
        alertId=unique_id(),
        sharedSecret=None,
        alertData={"portNum": 2, "status": "down", "prevStatus": "1 Gbps"},
    )
    resp = engine.post_webhook(body, headers={"Authorization": f"Bearer {MERAKI_SECRET}"})
    assert resp.status_code == 202, resp.text
    event_id = resp.json()["event_id"]
    (outcome,) = engine.wait_for_api_outcomes(lambda o: o["event_id"] == event_id)
    assert (outcome["handler_id"], outcome["target"]) == ("link_down", "ms-west|Port 2")


@MEMORY_GROUP
def test_replayed_alert_id_is_200_duplicate_with_one_outcome(
    memory_webhook_engine: EngineProcess,
) -> None:
    """Meraki's retry of an alert (same alertId, a new sentAt) is answered 200
    duplicate with the first event id, counted, published never: one outcome."""
    engine = memory_webhook_engine
    alert_id = unique_id()
    data = {"portNum": 5, "status": "down", "prevStatus": "1 Gbps"}
    first = meraki_alert("port_switch_port_disconnected", alertId=alert_id, alertData=data)
    before = engine.metrics()

    resp = engine.post_webhook(first)
    assert resp.status_code == 202, resp.text
    event_id = resp.json()["event_id"]
    engine.wait_for_api_outcomes(lambda o: o["event_id"] == event_id)

    # Meraki's retry: the same alertId with a new sentAt.
    retry = meraki_alert("port_switch_port_disconnected", alertId=alert_id, alertData=data)
    again = engine.post_webhook(retry)
    assert again.status_code == 200, again.text
    assert again.json() == {"status": "duplicate", "event_id": event_id}

    # A sentinel on another port goes through the same receiver and handler after the
    # replay: once its outcome is listed, a published replay would have been too.
    sentinel = meraki_alert(
        "port_switch_port_disconnected",
        alertId=unique_id(),
        alertData={**data, "portNum": 6},
    )
    resp = engine.post_webhook(sentinel)
    assert resp.status_code == 202, resp.text
    sentinel_id = resp.json()["event_id"]
    engine.wait_for_api_outcomes(lambda o: o["event_id"] == sentinel_id)

    on_port_5 = list(engine.api_outcomes(device="ms-west"))
    assert [o["event_id"] for o in on_port_5 if o["target"] == "ms-west|Port 5"] == [event_id]
    after = engine.metrics()
    assert series(after, DUPLICATES) - series(before, DUPLICATES) == 1
    # Published: the first delivery and the sentinel, never the replay.
    published = series(after, PUBLISHED, event_class="link_down") - series(
        before, PUBLISHED, event_class="link_down"
    )
    assert published == 2
    # A duplicate is an answered retry, not a rejection.
    assert series(after, REJECTED, source=SOURCE, reason="duplicate") == 0


@MEMORY_GROUP
def test_unknown_alert_type_is_accepted_as_other(memory_webhook_engine: EngineProcess) -> None:
    """An alertTypeId no table or pattern knows is valid input: 202, class other,
    published (no built-in handler reacts to other)."""
    engine = memory_webhook_engine
    body = meraki_alert(
        "settings_changed",
        alertId=unique_id(),
        alertTypeId="brand_new_alert_type_2027",
        alertType="Something Meraki invented",
        networkName="Branch Unknown",
    )
    before = engine.metric(PUBLISHED, event_class="other")
    resp = engine.post_webhook(body)
    assert resp.status_code == 202, resp.text
    reply = resp.json()
    assert reply["event_class"] == "other", reply
    assert reply["subject"].startswith("sensory.meraki.webhook.other."), reply
    deadline = time.monotonic() + 10.0
    while engine.metric(PUBLISHED, event_class="other") < before + 1:
        assert time.monotonic() < deadline, "the other-class alert was never published"
        time.sleep(0.05)


#: Valid but hostile alerts: each must be accepted (202) and become an outcome.
HOSTILE: dict[str, tuple[str, dict[str, Any]]] = {
    "occurred_far_future": (
        "security_rogue_ap", {"occurredAt": "9999-12-31T23:59:59.999999Z"}
    ),
    "occurred_year_one": ("security_rogue_ap", {"occurredAt": "0001-01-01T00:00:00+00:00"}),
    "subject_characters": (
        "security_ids_alert",
        {"deviceName": "a.b>*%", "alertData": {"clientMac": "*.>", "srcIp": "::1"}},
    ),
    "port_num_negative_text": (
        "port_switch_port_disconnected",
        {"deviceSerial": "", "deviceName": "sw.\u3000>", "alertData": {"portNum": "-1"}},
    ),
    "no_device_no_network": (
        "device_aps_went_down",
        {"deviceSerial": "", "deviceName": "", "networkName": "", "networkId": ""},
    ),
}  # fmt: skip


@MEMORY_GROUP
def test_hostile_but_valid_alerts_become_outcomes(memory_webhook_engine: EngineProcess) -> None:
    """Far-off dates, subject metacharacters, odd port numbers, no device and no
    network: each alert is accepted and reaches the outcome store (no 500, no
    publish or store failure down the line)."""
    engine = memory_webhook_engine
    event_ids = {}
    for name, (fixture, changes) in HOSTILE.items():
        # A fresh network name per case and run: no dedup window links them.
        changes = {"networkName": f"Hostile {name} {unique_id()}", **changes}
        resp = engine.post_webhook(meraki_alert(fixture, alertId=unique_id(), **changes))
        assert resp.status_code == 202, (name, resp.text)
        event_ids[name] = resp.json()["event_id"]
    wanted = set(event_ids.values())
    found = engine.wait_for_api_outcomes(lambda o: o["event_id"] in wanted, count=len(wanted))
    assert {o["event_id"] for o in found} == wanted
    assert all(o["kind"] != "errored" for o in found), found


@MEMORY_GROUP
def test_secrets_never_in_logs_outcomes_or_metrics(memory_webhook_engine: EngineProcess) -> None:
    """After accepted, rejected (wrong secret, wrong bearer) and API traffic, no
    captured log line, listed outcome or metrics text contains the shared secret or
    the API token — and the engine did log the rejections it refused."""
    engine = memory_webhook_engine
    ok = engine.post_webhook(
        meraki_alert("settings_changed", alertId=unique_id(), networkName="Branch Secrets")
    )
    assert ok.status_code == 202, ok.text
    bad = engine.post_webhook(meraki_alert("settings_changed", sharedSecret=MERAKI_SECRET + "x"))
    assert bad.status_code == 401
    # A custom payload template echoing the secret elsewhere: a nested sharedSecret,
    # and alertData.message, which the security handler echoes into the outcome.
    echo = meraki_alert("security_malware_detected", alertId=unique_id())
    echo.update(networkName="Branch Echo", templateEcho=MERAKI_SECRET)
    echo["alertData"] = dict(echo["alertData"], sharedSecret=MERAKI_SECRET, message=MERAKI_SECRET)
    echoed = engine.post_webhook(echo)
    assert echoed.status_code == 202, echoed.text
    denied = engine.api("GET", "/api/v1/outcomes", headers={"Authorization": "Bearer nope"})
    assert denied.status_code == 401
    engine.wait_for_api_outcomes(lambda o: o["event_id"] == ok.json()["event_id"])
    (echo_outcome,) = engine.wait_for_api_outcomes(
        lambda o: o["event_id"] == echoed.json()["event_id"]
    )
    assert echo_outcome["details"]["alertData.message"] == "**********"  # echoed, redacted
    engine.wait_for_log("webhook_rejected", reason="bad_secret")

    assert engine.api_token is not None
    assert engine.secrets_in_logs() == []
    # The scan does look at every line: a string that is logged is found, and the
    # debug lines (one per request and per accepted alert) are among those scanned.
    assert engine.secrets_in_logs("webhook_rejected")
    assert engine.logs("webhook_accepted")
    assert engine.logs("http_request", path="/webhooks/meraki")
    listed = json.dumps(list(engine.api_outcomes()))
    metrics = engine.api("GET", "/api/v1/metrics").text
    for secret in (MERAKI_SECRET, engine.api_token):
        assert secret not in listed
        assert secret not in metrics


# --------------------------------------------------------- no secret configured


def test_no_secret_configured_refuses_every_webhook_403(tmp_path: Path) -> None:
    """With meraki.shared_secret unset the receiver fails closed: 403
    no_secret_configured even for a body carrying the fixture secret, counted."""
    with EngineProcess(tmp_path, {"meraki": {"shared_secret": None}}) as engine:
        for body in (meraki_alert("security_ids_alert"), meraki_alert("settings_changed")):
            resp = engine.post_webhook(body)
            assert resp.status_code == 403, resp.text
            assert resp.json()["reason"] == "no_secret_configured"
            assert MERAKI_SECRET not in resp.text
        bearer = engine.post_webhook(
            meraki_alert("settings_changed", sharedSecret=None),
            headers={"Authorization": f"Bearer {MERAKI_SECRET}"},
        )
        assert bearer.status_code == 403
        assert engine.metric(REJECTED, source=SOURCE, reason="no_secret_configured") == 3
        assert engine.metric(RECEIVED, source=SOURCE) == 3
        engine.stop_cleanly()
        assert engine.outcomes() == []
        assert engine.secrets_in_logs() == []


# ------------------------------------------------------- SIGTERM while flowing


def test_sigterm_while_webhooks_flow_loses_no_accepted_alert(tmp_path: Path) -> None:
    """Four clients POST distinct alerts (every fixture kind) as fast as they can;
    SIGTERM arrives mid-flow. The engine exits 0 with engine_stopped, answers
    nothing but 202/503 (or refuses connections once closed), and every alert it
    answered 202 has its outcome in the store afterwards."""
    engine = EngineProcess(tmp_path, {"inventory": inventory()})
    engine.start()
    base_url = engine.base_url
    accepted: list[str] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    halt = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=base_url, timeout=10.0) as http:
            i = 0
            while not halt.is_set():
                name = MERAKI_FIXTURES[(n + i) % len(MERAKI_FIXTURES)]
                i += 1
                body = json.dumps(meraki_alert(name, alertId=unique_id())).encode()
                try:
                    resp = http.post(
                        "/webhooks/meraki",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                except httpx.TransportError as exc:  # the server closed: this client is done
                    with lock:
                        errors.append(type(exc).__name__)
                    return
                with lock:
                    statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                    if resp.status_code == 202:
                        accepted.append(resp.json()["event_id"])

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20.0
        while len(accepted) < 300:
            assert time.monotonic() < deadline, f"only {len(accepted)} accepted: {statuses}"
            assert all(t.is_alive() for t in threads), errors  # no error before SIGTERM
            time.sleep(0.01)
        stopped = engine.stop_cleanly(signal.SIGTERM)
    finally:
        halt.set()
        for t in threads:
            t.join(timeout=15)
        if engine.alive:
            engine.stop(signal.SIGKILL)

    assert set(statuses) <= {202, 503}, statuses
    # The clients were still sending when the server went away.
    assert errors or statuses.get(503), (statuses, errors)
    assert engine.logs("signal_received", signal="SIGTERM")
    stored = engine.outcomes()
    stored_events = {o.event_id for o in stored}
    missing = set(accepted) - stored_events
    assert not missing, f"{len(missing)} accepted alerts without an outcome"
    assert stopped["events"] >= len(accepted)
    assert len(stored_events) == stopped["events"]
    assert stopped["outcomes"] == len(stored)
    assert engine.secrets_in_logs() == []
