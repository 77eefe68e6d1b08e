"""The HTTP API and the Meraki webhook route on an in-process ``Engine``, over real HTTP.

Each test runs an ``app.Engine`` in this process (memory bus, SQLite in
tmp_path, the shared fixture inventory, http and trap on port 0) and talks to
the real uvicorn socket with httpx. Conditions are awaited by polling the API
against a deadline, never by sleeping a guessed time. The real ``netcortex
run`` process is covered by ``test_webhooks.py`` / ``test_openapi.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from netcortex.app import Engine
from netcortex.bridge.http.models import Incident as IncidentModel
from netcortex.bridge.http.models import (
    IncidentPage,
    Outcome,
    OutcomePage,
    Problems,
    Window,
    WindowList,
)
from netcortex.config import Config
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentState
from netcortex.contracts.memory import OutcomeQuery
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.testing import make_event
from tests.conftest import load_json_fixture, shared_fixture

pytestmark = [pytest.mark.e2e]

TOKEN = "e2e-http-api-token-0123456789abcdef"
SECRET = "fixture-shared-secret-0001"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: A config-file window (read-only over HTTP).
CONFIG_WINDOW = {
    "id": "cfg-branch",
    "scope": "site",
    "target": "branch-east",
    "start": "2026-01-04T02:00:00",
    "duration": 3600,
    "rrule": "FREQ=WEEKLY;BYDAY=SU",
    "timezone": "Europe/Amsterdam",
}


def engine_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """Memory bus, SQLite under tmp_path, fixture inventory, http + trap on port 0."""
    data: dict[str, dict[str, Any]] = {
        "store": {"sqlite_path": str(tmp_path / "outcomes.db")},
        "trap": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0, "api_token": TOKEN},
        "meraki": {"shared_secret": SECRET},
        "inventory": {"backend": "file", "path": str(shared_fixture("netbox", "inventory.json"))},
        "maintenance": {"windows": [CONFIG_WINDOW]},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Config.model_validate(data)


@asynccontextmanager
async def running(
    tmp_path: Path, **sections: dict[str, Any]
) -> AsyncIterator[tuple[Engine, httpx.AsyncClient]]:
    """A started engine and an httpx client on its HTTP socket (bearer token not set)."""
    async with Engine(engine_config(tmp_path, **sections)) as engine:
        host, port = engine.bound_addresses["http"]
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
            yield engine, client


def alert(name: str, **changes: Any) -> dict[str, Any]:
    """A shared Meraki fixture body with ``sentAt`` = now (and ``changes`` applied)."""
    body: dict[str, Any] = load_json_fixture("meraki", name)
    body["sentAt"] = datetime.now(UTC).isoformat()
    body.update(changes)
    return body


async def eventually(probe: Callable[[], Awaitable[Any]], what: str, deadline: float = 10.0) -> Any:
    """Call ``probe`` until it returns something truthy; fail after ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    while True:
        result = await probe()
        if result:
            return result
        if loop.time() > until:
            pytest.fail(f"not within {deadline} s: {what}")
        await asyncio.sleep(0.02)


async def outcomes(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """The first page of ``GET /api/v1/outcomes`` with ``params`` (validated)."""
    response = await client.get("/api/v1/outcomes", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return [o.model_dump() for o in OutcomePage.model_validate(response.json()).items]


def rejected(engine: Engine, source: str, reason: str) -> float:
    """``netcortex_rejected_total{source,reason}`` of the engine."""
    metric = engine.metrics.get("netcortex_rejected_total")
    return metric.value(source=source, reason=reason) if metric is not None else 0.0  # type: ignore[union-attr]


# ------------------------------------------------------------------------- lifecycle


async def test_http_listener_is_logged_and_counted(tmp_path: Path) -> None:
    """The engine logs ``listening listener=http transport=tcp`` with the bound port (after
    the trap listener, before engine_started), and webhook events count in the summary."""
    with capture_logs() as logs:
        async with running(tmp_path) as (engine, client):
            response = await client.post("/webhooks/meraki", json=alert("settings_changed.json"))
            assert response.status_code == 202
            await eventually(lambda: outcomes(client, handler="config_change"), "outcome")
        summary = await engine.stop()
    http = next(e for e in logs if e["event"] == "listening" and e["listener"] == "http")
    assert (http["transport"], http["host"], http["port"]) == (
        "tcp",
        "127.0.0.1",
        engine.bound_addresses["http"][1],
    )
    events = [e["event"] for e in logs]
    assert events.index("listening") < events.index("engine_started")
    assert summary.events == 1


async def test_stop_publishes_every_accepted_webhook(tmp_path: Path) -> None:
    """Stopping right after a burst of 202s loses nothing: the HTTP server closes first,
    then the webhook receiver drains onto the bus, then the runner records every event."""
    async with running(tmp_path) as (engine, client):
        bodies = [alert("settings_changed.json", alertId=f"burst-{i}") for i in range(40)]
        answers = await asyncio.gather(*(client.post("/webhooks/meraki", json=b) for b in bodies))
        assert [a.status_code for a in answers] == [202] * 40
        accepted = {a.json()["event_id"] for a in answers}
    summary = await engine.stop()
    assert summary.events == 40
    store = SqliteOutcomeStore(engine.config.store, read_only=True)
    await store.start()
    try:
        stored = await store.query(OutcomeQuery(handler_id="config_change", limit=100))
    finally:
        await store.close()
    assert {o.event_id for o in stored} == accepted


async def test_http_port_in_use_fails_start(tmp_path: Path) -> None:
    """A taken HTTP port makes Engine.start raise OSError (after closing what it opened)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        engine = Engine(engine_config(tmp_path, http={"port": taken.getsockname()[1]}))
        with capture_logs() as logs, pytest.raises(OSError, match=r"in use|Errno"):
            await engine.start()
    assert "engine_start_failed" in [e["event"] for e in logs]
    assert not any(e["event"] == "listening" and e["listener"] == "http" for e in logs)
    assert not engine.bus.connected
    with pytest.raises(RuntimeError, match="cannot be restarted"):
        await engine.start()


async def test_http_disabled_binds_no_socket(tmp_path: Path) -> None:
    """http.enabled: false → no HTTP listener and no webhook receiver."""
    async with Engine(engine_config(tmp_path, http={"enabled": False})) as engine:
        assert "http" not in engine.bound_addresses
        assert engine.webhook is None


# ------------------------------------------------------------------------- auth


async def test_auth_none_wrong_right_and_public_health(tmp_path: Path) -> None:
    """Every API route needs the token (401 otherwise, with a Bearer challenge); health,
    readiness and the document are public."""
    async with running(tmp_path) as (engine, client):
        for path in ("/api/v1/outcomes", "/api/v1/maintenance", "/api/v1/metrics", "/metrics"):
            none = await client.get(path)
            wrong = await client.get(path, headers={"Authorization": "Bearer wrong-token"})
            right = await client.get(path, headers=AUTH)
            assert (none.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
            assert none.headers["www-authenticate"] == "Bearer"
        for path in ("/api/v1/healthz", "/healthz", "/api/v1/readyz", "/api/v1/openapi.json"):
            assert (await client.get(path)).status_code == 200, path
        assert rejected(engine, "http.api", "missing_token") == 4
        assert rejected(engine, "http.api", "bad_token") == 4


async def test_authorization_header_variants(tmp_path: Path) -> None:
    """The scheme is case-insensitive (RFC 7235); anything but the exact token after it
    — another scheme, nothing, a prefix, the token twice — is a 401."""
    cases = {
        f"bearer {TOKEN}": 200,
        f"BEARER {TOKEN}": 200,
        f"Basic {TOKEN}": 401,
        "Bearer": 401,
        "": 401,
        f"Bearer {TOKEN[:-1]}": 401,
        f"Bearer {TOKEN}{TOKEN}": 401,
        f"Bearer x{TOKEN}": 401,
        f"Token {TOKEN}": 401,
    }
    async with running(tmp_path) as (_engine, client):
        for header, status in cases.items():
            response = await client.get("/api/v1/outcomes", headers={"Authorization": header})
            assert response.status_code == status, header
            assert TOKEN not in response.text


async def test_no_token_configured_is_403(tmp_path: Path) -> None:
    """Without http.api_token the API is closed (403), health stays open."""
    async with running(tmp_path, http={"api_token": None}) as (engine, client):
        response = await client.get("/api/v1/outcomes", headers=AUTH)
        assert response.status_code == 403
        assert response.json() == {"detail": "http.api_token is not configured"}
        assert (await client.get("/api/v1/healthz")).json() == {"status": "ok"}
        assert rejected(engine, "http.api", "no_token_configured") == 1


# ------------------------------------------------------------------------- health


async def test_readyz_ready_then_503_when_the_store_is_closed(tmp_path: Path) -> None:
    """A started engine is ready; with its store closed readiness is 503 naming the store."""
    async with running(tmp_path) as (engine, client):
        ready = await client.get("/api/v1/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert ready.json()["checks"]["inventory"]["age_seconds"] >= 0
        await engine.store.close()
        broken = await client.get("/readyz")
        assert broken.status_code == 503
        body = broken.json()
        assert body["status"] == "not_ready"
        assert body["checks"]["store"]["ok"] is False
        assert body["checks"]["bus"]["ok"] is True


async def test_metrics_parse_and_carry_the_promised_series(tmp_path: Path) -> None:
    """/metrics parses as Prometheus text and has received/rejected by source and reason,
    outcomes, latency histograms, queue depths and the inventory age."""
    async with running(tmp_path) as (_engine, client):
        assert (
            await client.post("/webhooks/meraki", json=alert("security_rogue_ap.json"))
        ).status_code == 202
        bad = alert("security_rogue_ap.json", sharedSecret="wrong")
        assert (await client.post("/webhooks/meraki", json=bad)).status_code == 401
        await eventually(lambda: outcomes(client, handler="security_webhook"), "an outcome")
        response = await client.get("/api/v1/metrics", headers=AUTH)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def value(name: str, **labels: str) -> float:
        return sum(v for ls, v in samples.get(name, []) if labels.items() <= ls.items())

    assert value("netcortex_received_total", source="meraki.webhook") == 2
    assert value("netcortex_rejected_total", source="meraki.webhook", reason="bad_secret") == 1
    assert value("netcortex_reflex_outcomes_total") >= 1
    assert value("netcortex_webhook_publish_latency_seconds_count") == 1
    assert (
        value("netcortex_http_request_seconds_count", route="/webhooks/meraki", method="POST") == 2
    )
    assert {ls["queue"] for ls, _ in samples["netcortex_queue_depth"]} >= {"webhook_publish"}
    assert value("netcortex_inventory_age_seconds") >= 0
    assert "netcortex_inventory_age_seconds" in samples
    assert value("netcortex_engine_up") == 1
    assert len(samples["netcortex_build_info"]) == 1


# ------------------------------------------------------------------------- outcomes


def _stored(
    handler: str,
    severity: Severity,
    device: str,
    site: str | None,
    at: datetime,
    kind: OutcomeKind = OutcomeKind.LOGGED,
) -> ReflexOutcome:
    event = make_event("link_down", device=device, interface="Port 1")
    outcome = ReflexOutcome.for_event(
        handler, event, severity=severity, kind=kind, site=site, summary=f"{handler} {device}"
    )
    return replace(outcome, recorded_at=at)


async def test_outcome_filters_each_narrow_the_list(tmp_path: Path) -> None:
    """since, until, severity (repeatable and comma lists), kind, handler, device and site
    each select exactly the matching stored outcomes, newest first."""
    now = datetime.now(UTC).replace(microsecond=0)
    samples = [
        _stored("link_down", Severity.HIGH, "ms-west", "branch-west", now - timedelta(minutes=1)),
        _stored("link_up", Severity.INFO, "ms-west", "branch-west", now - timedelta(minutes=5)),
        _stored("bgp_drop", Severity.CRITICAL, "r1", "dc-north", now - timedelta(hours=3)),
        _stored(
            "link_down", Severity.HIGH, "mx-west", "branch-west", now - timedelta(days=2),
            kind=OutcomeKind.SUPPRESSED,
        ),
    ]  # fmt: skip
    cases: list[tuple[dict[str, Any], list[int]]] = [
        ({}, [0, 1, 2, 3]),
        ({"since": "10m"}, [0, 1]),
        ({"since": "1d", "until": "2m"}, [1, 2]),
        ({"until": (now - timedelta(days=1)).isoformat()}, [3]),
        ({"severity": "high"}, [0, 3]),
        ({"severity": "info,critical"}, [1, 2]),
        ({"severity": ["info", "HIGH"]}, [0, 1, 3]),
        ({"kind": "suppressed"}, [3]),
        ({"handler": "link_down"}, [0, 3]),
        ({"device": "ms-west"}, [0, 1]),
        ({"site": "branch-west"}, [0, 1, 3]),
        ({"site": "dc-north", "severity": "critical"}, [2]),
        ({"site": "nowhere"}, []),
        ({"limit": 2}, [0, 1]),
    ]
    async with running(tmp_path, trap={"enabled": False}) as (engine, client):
        for outcome in samples:
            await engine.store.record(outcome)
        await engine.store.flush()
        for params, expected in cases:
            got = [o["outcome_id"] for o in await outcomes(client, **params)]
            assert got == [samples[i].outcome_id for i in expected], params


async def test_cursor_pages_walk_everything_once_across_ties(tmp_path: Path) -> None:
    """Paging with next_cursor over > 2 pages, with many outcomes sharing one recorded_at,
    returns every outcome exactly once in (recorded_at, outcome_id) descending order; a
    cursor also works together with a filter."""
    tie = datetime.now(UTC).replace(microsecond=123456)
    batch = [_stored("link_down", Severity.HIGH, f"d{i}", "s1", tie) for i in range(17)]
    batch += [
        _stored("link_up", Severity.INFO, f"e{i}", "s2", tie - timedelta(seconds=i + 1))
        for i in range(6)
    ]
    expected = sorted(batch, key=lambda o: (o.recorded_at, o.outcome_id), reverse=True)
    async with running(tmp_path, trap={"enabled": False}) as (engine, client):
        for outcome in batch:
            await engine.store.record(outcome)
        await engine.store.flush()

        async def walk(limit: int = 5, **params: Any) -> tuple[list[str], int]:
            seen: list[str] = []
            pages = 0
            cursor: str | None = None
            while True:
                query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
                response = await client.get("/api/v1/outcomes", params=query, headers=AUTH)
                assert response.status_code == 200, response.text
                page = OutcomePage.model_validate(response.json())
                pages += 1
                seen += [o.outcome_id for o in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    return seen, pages

        ids, pages = await walk()
        assert ids == [o.outcome_id for o in expected]
        assert pages == 5  # 23 outcomes, 5 a page: the last page has 3 and no cursor
        site_ids, _ = await walk(site="s1")
        assert site_ids == [o.outcome_id for o in expected if o.site == "s1"]
        # An exact multiple of the page size: the last full page already says "no more".
        up_ids, up_pages = await walk(limit=3, handler="link_up")
        assert up_ids == [o.outcome_id for o in expected if o.handler_id == "link_up"]
        assert up_pages == 2
        tampered = await client.get(
            "/api/v1/outcomes", params={"cursor": "eyJub3QiOiJhIGN1cnNvciJ9"}, headers=AUTH
        )
        assert tampered.status_code == 400
        assert tampered.json()["detail"].startswith("cursor: ")


async def test_outcome_by_id_has_its_trace(tmp_path: Path) -> None:
    """A webhook's outcome fetched by id carries the decision trace; an unknown id is 404."""
    async with running(tmp_path) as (_engine, client):
        response = await client.post(
            "/webhooks/meraki", json=alert("security_malware_detected.json")
        )
        assert response.status_code == 202
        (found,) = await eventually(
            lambda: outcomes(client, handler="security_webhook"), "the malware outcome"
        )
        one = await client.get(f"/api/v1/outcomes/{found['outcome_id']}", headers=AUTH)
        assert one.status_code == 200
        outcome = Outcome.model_validate(one.json())
        assert outcome.event_id == response.json()["event_id"]
        assert outcome.trace["decided_by"] == "handler"
        assert outcome.trace["device"] == "mx-west"
        assert outcome.site == "branch-west"
        missing = await client.get("/api/v1/outcomes/does-not-exist", headers=AUTH)
        assert missing.status_code == 404


# ------------------------------------------------------------------------- maintenance


async def test_maintenance_crud_conflicts_and_validation(tmp_path: Path) -> None:
    """POST adds (201) and replaces (200), GET lists config and stored windows with source
    and active, config ids are 409 for POST and DELETE, invalid bodies are 422 naming each
    field, DELETE is 204 then 404."""
    window = {
        "id": "ms-card",
        "scope": "device",
        "target": "ms-west",
        "start": "now",
        "duration": "2h",
        "reason": "line card",
    }
    async with running(tmp_path) as (engine, client):
        added = await client.post("/api/v1/maintenance", json=window, headers=AUTH)
        assert added.status_code == 201, added.text
        row = Window.model_validate(added.json())
        assert (row.source, row.active, row.reason) == ("store", True, "line card")
        replaced = await client.post(
            "/api/v1/maintenance",
            json={**window, "duration": 60, "reason": "shorter"},
            headers=AUTH,
        )
        assert replaced.status_code == 200
        listed = WindowList.model_validate(
            (await client.get("/api/v1/maintenance", headers=AUTH)).json()
        )
        by_id = {w.id: w for w in listed.items}
        assert set(by_id) == {"cfg-branch", "ms-card"}
        assert (by_id["cfg-branch"].source, by_id["ms-card"].reason) == ("config", "shorter")
        at = await client.get(
            "/api/v1/maintenance", params={"active_at": "2026-01-04T01:30:00Z"}, headers=AUTH
        )
        assert {w["id"]: w["active"] for w in at.json()["items"]}["cfg-branch"] is True
        assert (
            await client.get("/api/v1/maintenance", params={"active_at": "x"}, headers=AUTH)
        ).status_code == 400

        conflict = await client.post(
            "/api/v1/maintenance", json={**window, "id": "cfg-branch"}, headers=AUTH
        )
        assert conflict.status_code == 409
        assert "config file" in conflict.json()["detail"]
        assert (
            await client.delete("/api/v1/maintenance/cfg-branch", headers=AUTH)
        ).status_code == 409

        invalid = await client.post(
            "/api/v1/maintenance",
            json={**window, "start": "soon", "timezone": "Mars/Olympus", "rrule": "FREQ=MINUTELY"},
            headers=AUTH,
        )
        assert invalid.status_code == 422
        fields = {p.field for p in Problems.model_validate(invalid.json()).problems}
        assert fields == {"start", "timezone"}  # rrule is checked once the bounds parse
        bad_rrule = await client.post(
            "/api/v1/maintenance", json={**window, "rrule": "FREQ=MINUTELY"}, headers=AUTH
        )
        assert [p["field"] for p in bad_rrule.json()["problems"]] == ["rrule"]

        assert (await client.delete("/api/v1/maintenance/ms-card", headers=AUTH)).status_code == 204
        assert (await client.delete("/api/v1/maintenance/ms-card", headers=AUTH)).status_code == 404
        assert {w.id for w in engine.calendar.windows()} == {"cfg-branch"}


async def test_posted_window_suppresses_the_next_outcome(tmp_path: Path) -> None:
    """Right after a window is POSTed for ms-west, a port-down webhook on it is recorded
    as suppressed, naming the window in its trace."""
    async with running(tmp_path) as (_engine, client):
        window = {"id": "ms-now", "scope": "device", "target": "ms-west", "start": "now",
                  "duration": "1h"}  # fmt: skip
        assert (
            await client.post("/api/v1/maintenance", json=window, headers=AUTH)
        ).status_code == 201
        sent = await client.post(
            "/webhooks/meraki", json=alert("port_switch_port_disconnected.json")
        )
        assert sent.status_code == 202
        (found,) = await eventually(
            lambda: outcomes(client, handler="link_down"), "the port-down outcome"
        )
        assert (found["kind"], found["target"]) == ("suppressed", "ms-west|Port 1")
        assert found["trace"]["window_id"] == "ms-now"


async def test_window_fields_are_bounded(tmp_path: Path) -> None:
    """Oversized window fields are a 422 naming the field, never echoed back whole (a
    100 kB id used to come back in the message) nor stored and logged (a 500 kB target
    or reason used to be)."""
    base = {"id": "w", "scope": "device", "target": "ms-west", "start": "now", "duration": 60}
    cases = [
        ({"id": "a" * 100_000}, "id"),
        ({"target": "t" * 500_000}, "target"),
        ({"reason": "r" * 5_000}, "reason"),
        ({"rrule": "FREQ=DAILY;" + "BYHOUR=1;" * 200}, "rrule"),
        ({"duration": "1" * 100}, "duration"),
    ]
    with capture_logs() as logs:
        async with running(tmp_path) as (engine, client):
            for change, field in cases:
                response = await client.post(
                    "/api/v1/maintenance", json={**base, **change}, headers=AUTH
                )
                assert response.status_code == 422, field
                assert [p.field for p in Problems.model_validate(response.json()).problems] == [
                    field
                ]
                assert len(response.content) < 1000, field
            assert {w.id for w in engine.calendar.windows()} == {"cfg-branch"}
    assert len(json.dumps(logs, default=str)) < 100_000


async def test_expensive_recurrences_are_refused_and_the_loop_stays_free(
    tmp_path: Path,
) -> None:
    """Recurrences the calendar would evaluate slowly in the engine's loop are a 422 on
    rrule; while one is being checked (on a worker thread, up to its time budget) the
    server goes on answering. (INTERVAL=0, which hung the engine for good, is in the
    unit tests: without the guard it would hang this process too.)"""
    base = {"id": "w", "scope": "device", "target": "ms-west", "start": "now", "duration": 60}
    async with running(tmp_path) as (engine, client):
        for rule in ("FREQ=HOURLY;BYMINUTE=0,15,30,45", "FREQ=DAILY;COUNT=0"):
            response = await client.post(
                "/api/v1/maintenance", json={**base, "rrule": rule}, headers=AUTH
            )
            assert response.status_code == 422, rule
            assert [p["field"] for p in response.json()["problems"]] == ["rrule"]

        def probes() -> set[int | None]:
            return {t.ident for t in threading.enumerate() if t.name == "rrule-probe"}

        before = probes()
        never = {**base, "rrule": "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"}  # no 30 February
        posting = asyncio.create_task(client.post("/api/v1/maintenance", json=never, headers=AUTH))

        async def probing() -> bool:
            return bool(probes() - before)

        await eventually(probing, "the rrule probe to run")
        assert (await client.get("/api/v1/healthz")).status_code == 200
        assert not posting.done()  # healthz was answered while the rule was being checked
        response = await posting
        assert response.status_code == 422
        message = response.json()["problems"][0]["message"]
        assert "ever match" in message or "no occurrence" in message  # budget, or horizon
        assert {w.id for w in engine.calendar.windows()} == {"cfg-branch"}


# ------------------------------------------------------------------------- webhook


async def test_webhook_fixture_end_to_end(tmp_path: Path) -> None:
    """A fixture POSTed to the real socket is answered 202 and its outcome (device by
    serial, site by enrichment) shows up in GET /outcomes within a deadline."""
    async with running(tmp_path) as (_engine, client):
        response = await client.post("/webhooks/meraki", json=alert("device_aps_went_down.json"))
        assert response.status_code == 202
        assert response.json()["event_class"] == "device_down"
        (found,) = await eventually(
            lambda: outcomes(client, handler="device_down"), "the device_down outcome"
        )
        assert (found["device"], found["site"], found["kind"]) == (
            "mr-west",
            "branch-west",
            "logged",
        )
        assert found["event_id"] == response.json()["event_id"]


async def test_webhook_bodies_over_the_cap_are_413(tmp_path: Path) -> None:
    """Over http.max_body_bytes: by Content-Length (refused unread) and by a chunked body
    without a length (reading stops at the cap); both counted as too_large; the server
    keeps serving. An API body over the cap is a JSON 413 too."""
    async with running(tmp_path, http={"max_body_bytes": 4096}) as (engine, client):
        declared = await client.post(
            "/webhooks/meraki",
            content=b"{" + b" " * 10_000 + b"}",
            headers={"Content-Type": "application/json"},
        )
        assert declared.status_code == 413
        assert declared.json()["reason"] == "too_large"

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 1000

        streamed = await client.post(
            "/webhooks/meraki", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413, streamed.text
        assert "content-length" not in streamed.request.headers
        assert rejected(engine, "meraki.webhook", "too_large") == 2

        api_body = await client.post(
            "/api/v1/maintenance",
            content=chunks(),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert api_body.status_code == 413
        assert "http.max_body_bytes" in api_body.json()["detail"]
        assert (await client.get("/api/v1/healthz")).status_code == 200


async def test_an_oversized_upload_is_cut_off(tmp_path: Path) -> None:
    """After a 413 the server drops at most a bounded part of the unread body, then
    closes the connection (it used to read and drop all of it: the whole Content-Length
    announced, or for as long as a chunked body flowed)."""
    total = 64 * 1024 * 1024

    async def upload(port: int, head: bytes) -> tuple[bytes, int]:
        """Send ``head`` then zeros up to ``total``; the answer and the bytes sent."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def status_then_close() -> bytes:
            status = await reader.readline()
            with contextlib.suppress(ConnectionError):  # a reset is a close too
                await reader.read()  # until the server closes
            return status

        answer = asyncio.create_task(asyncio.wait_for(status_then_close(), 10))
        sent = 0
        block = b"0" * 65536
        try:
            writer.write(head)
            while sent < total and not answer.done():
                writer.write(block)
                await writer.drain()
                sent += len(block)
        except ConnectionError:
            pass  # the server closed while we were still sending: what we want
        finally:
            try:
                data = await answer
            finally:
                writer.close()
        return data, sent

    def head(path: str, token: bytes = b"") -> bytes:
        auth = b"Authorization: Bearer " + token + b"\r\n" if token else b""
        return (
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth
            + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % total
        )  # fmt: skip

    async with running(tmp_path, http={"max_body_bytes": 4096}) as (engine, client):
        port = engine.bound_addresses["http"][1]
        for request in (head("/webhooks/meraki"), head("/api/v1/maintenance", TOKEN.encode())):
            answer, sent = await upload(port, request)
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:60]
            assert sent < total // 2
        assert (await client.get("/api/v1/healthz")).status_code == 200
        refused = engine.metrics.get("netcortex_http_refused_total")
        assert refused is not None
        assert refused.value(reason="discard_limit") == 2  # type: ignore[union-attr]


async def test_webhook_peer_is_the_socket_peer(tmp_path: Path) -> None:
    """X-Forwarded-For does not choose the peer the receiver logs and rate-limits by (no
    proxy is trusted by default; uvicorn's default believed loopback clients)."""
    with capture_logs() as logs:
        async with running(tmp_path) as (_engine, client):
            response = await client.post(
                "/webhooks/meraki",
                json=alert("settings_changed.json", sharedSecret="wrong"),
                headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"},
            )
            assert response.status_code == 401
    peers = {e["peer"] for e in logs if e["event"] == "webhook_rejected"}
    assert peers == {"127.0.0.1"}


async def test_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    """http.trusted_proxies: 127.0.0.1 (a reverse proxy on the same host) → the receiver
    logs and rate-limits by the X-Forwarded-For client, not the proxy."""
    with capture_logs() as logs:
        async with running(tmp_path, http={"trusted_proxies": ["127.0.0.1"]}) as (_e, client):
            response = await client.post(
                "/webhooks/meraki",
                json=alert("settings_changed.json", sharedSecret="wrong"),
                headers={"X-Forwarded-For": "198.51.100.9", "X-Forwarded-Proto": "https"},
            )
            assert response.status_code == 401
    peers = {e["peer"] for e in logs if e["event"] == "webhook_rejected"}
    assert peers == {"198.51.100.9"}


async def test_webhook_route_is_404_when_meraki_is_disabled(tmp_path: Path) -> None:
    """meraki.enabled: false → POST /webhooks/meraki is 404; the API still works."""
    async with running(tmp_path, meraki={"enabled": False}) as (engine, client):
        response = await client.post("/webhooks/meraki", json=alert("settings_changed.json"))
        assert response.status_code == 404
        assert engine.webhook is None
        assert (await client.get("/api/v1/outcomes", headers=AUTH)).status_code == 200


async def test_secrets_never_reach_logs_or_bodies(tmp_path: Path) -> None:
    """The API token and the shared secret appear in no log event and no response body,
    whatever is sent (right, wrong, missing)."""
    bodies: list[str] = []
    with capture_logs() as logs:
        async with running(tmp_path) as (_engine, client):
            for headers in ({}, {"Authorization": "Bearer " + TOKEN[:-1]}, AUTH):
                bodies.append((await client.get("/api/v1/outcomes", headers=headers)).text)
            for body in (
                alert("security_ids_alert.json"),
                alert("security_ids_alert.json", sharedSecret=SECRET + "x"),
                alert("security_ids_alert.json", sharedSecret=None),
            ):
                bodies.append((await client.post("/webhooks/meraki", json=body)).text)
            bearer = {"Authorization": f"Bearer {SECRET}"}
            body = alert("settings_changed.json")
            del body["sharedSecret"]
            bodies.append((await client.post("/webhooks/meraki", json=body, headers=bearer)).text)
            await eventually(lambda: outcomes(client, handler="security_webhook"), "an outcome")
            bodies.append((await client.get("/api/v1/outcomes", headers=AUTH)).text)
            bodies.append((await client.get("/api/v1/metrics", headers=AUTH)).text)
    text = json.dumps(logs, default=str) + "".join(bodies)
    assert TOKEN not in text
    assert TOKEN[:-1] not in text
    assert SECRET not in text


# ------------------------------------------------------------------------- incidents


async def test_incidents_over_the_engines_own_store(tmp_path: Path) -> None:
    """With association on (the default) the API reads the engine's incident store:
    a saved incident is listed and fetched by id; with it off both routes are 404."""
    at = datetime.now(UTC).replace(microsecond=0)
    incident = Incident(
        incident_id="e2e" + "0" * 29,
        rule="device_root",
        root="device:ms-west",
        state=IncidentState.OPEN,
        severity=Severity.CRITICAL,
        summary="ms-west rebooted",
        members=("ms-west",),
        evidence=("o-1",),
        opened_at=at,
        updated_at=at,
        site="branch-west",
    )
    async with running(tmp_path) as (engine, client):
        assert engine.incident_store is not None
        assert await engine.incident_store.save(incident)
        response = await client.get(
            "/api/v1/incidents", params={"state": "open", "site": "branch-west"}, headers=AUTH
        )
        assert response.status_code == 200, response.text
        page = IncidentPage.model_validate(response.json())
        assert [i.id for i in page.items] == [incident.incident_id]
        assert page.next_cursor is None
        one = await client.get(f"/api/v1/incidents/{incident.incident_id}", headers=AUTH)
        assert IncidentModel.model_validate(one.json()).root == "device:ms-west"
    async with running(tmp_path / "off", association={"enabled": False}) as (_engine, client):
        for path in ("/api/v1/incidents", f"/api/v1/incidents/{incident.incident_id}"):
            response = await client.get(path, headers=AUTH)
            assert response.status_code == 404
            assert "incidents are not available" in response.json()["detail"]
