"""Unit tests for ``netcortex.bridge.http.create_app`` over ASGI (no socket), real parts:
memory bus, SQLite store and calendar on tmp_path, the real webhook receiver.

Scenarios over a real uvicorn socket live in ``tests/e2e/test_http_api.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter
from structlog.testing import capture_logs

from netcortex.bridge.http import ApiContext, create_app
from netcortex.bridge.http.app import OPENAPI_PATH
from netcortex.bridge.http.middleware import ObservabilityMiddleware
from netcortex.bridge.http.models import (
    Error,
    Incident,
    IncidentPage,
    OutboxState,
    Outcome,
    OutcomePage,
    Problems,
    Readiness,
)
from netcortex.config import BusConfig, Config, StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident as IncidentRecord
from netcortex.contracts.incidents import IncidentState
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.memory.episodic.incidents import SqliteIncidentStore
from netcortex.memory.episodic.outbox import JournalHook, SqliteOutbox
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.memory.semantic import FileInventory
from netcortex.memory.semantic.maintenance import SqliteMaintenanceCalendar, config_windows
from netcortex.metrics import Counter, Histogram, Registry
from netcortex.sensory.webhook.receiver import MerakiWebhookReceiver
from netcortex.testing import make_event
from netcortex.thalamus import InMemoryEventBus
from tests.conftest import shared_fixture

TOKEN = "unit-test-api-token-0123456789"
SECRET = "fixture-shared-secret-0001"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

CONFIG_WINDOW = {
    "id": "cfg-north",
    "scope": "site",
    "target": "north",
    "start": "2026-01-04T02:00:00",
    "duration": 3600,
    "rrule": "FREQ=WEEKLY;BYDAY=SU",
    "timezone": "Europe/Amsterdam",
}


@dataclass
class Api:
    """An app over real parts, and an ASGI client for it."""

    client: httpx.AsyncClient
    ctx: ApiContext
    ready: list[bool] = field(default_factory=lambda: [True])

    def rejected(self, reason: str, source: str = "http.api") -> float:
        """``netcortex_rejected_total{source,reason}``."""
        metric = self.ctx.metrics.get("netcortex_rejected_total")
        return metric.value(source=source, reason=reason) if isinstance(metric, Counter) else 0.0


ApiFactory = Callable[..., Any]


@pytest.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[ApiFactory]:
    """Build ``Api`` objects (``await make_api(**config_sections, memory=True)``)."""
    opened: list[Any] = []

    async def make(*, memory: bool = True, start_memory: bool = True, **sections: Any) -> Api:
        data: dict[str, Any] = {
            "store": {"sqlite_path": str(tmp_path / "o.db")},
            "http": {"port": 0, "api_token": TOKEN},
            "meraki": {"shared_secret": SECRET},
            "maintenance": {"windows": [CONFIG_WINDOW]},
        }
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        config = Config.model_validate(data)
        metrics = Registry()
        bus = InMemoryEventBus(BusConfig(), metrics)
        store = SqliteOutcomeStore(StoreConfig(sqlite_path=tmp_path / "o.db"), metrics)
        windows = config_windows(config.maintenance, config.source)
        calendar = SqliteMaintenanceCalendar(
            tmp_path / "o.db", windows=windows, metrics=metrics, reload_interval=0
        )
        inventory = (
            FileInventory(shared_fixture("netbox", "inventory.json"), metrics=metrics)
            if memory
            else None
        )
        webhook = (
            MerakiWebhookReceiver(config.meraki, bus, metrics, memory=inventory)
            if config.meraki.enabled
            else None
        )
        for part in (bus, store, calendar):
            await part.start()
            opened.append(part)
        if inventory is not None and start_memory:
            await inventory.start()
            opened.append(inventory)
        if webhook is not None:
            await webhook.start()
            opened.append(webhook)
        ready = [True]
        ctx = ApiContext(
            config=config,
            metrics=metrics,
            store=store,
            calendar=calendar,
            config_window_ids=frozenset(w.id for w in windows),
            bus=bus,
            memory=inventory,
            webhook=webhook,
            ready=lambda: ready[0],
        )
        transport = httpx.ASGITransport(app=create_app(ctx), client=("192.0.2.50", 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://netcortex.test")
        opened.append(client)
        return Api(client, ctx, ready)

    yield make
    for part in reversed(opened):
        if isinstance(part, httpx.AsyncClient):
            await part.aclose()
        else:
            await part.close()


async def record(api: Api, *outcomes: ReflexOutcome) -> None:
    """Store outcomes through the real store and wait until they are committed."""
    for outcome in outcomes:
        await api.ctx.store.record(outcome)
    await api.ctx.store.flush()


def an_outcome(device: str = "ms-west", handler: str = "link_down") -> ReflexOutcome:
    """One outcome for ``device`` with a small decision trace."""
    event = make_event("link_down", device=device, interface="Port 1")
    return ReflexOutcome.for_event(
        handler,
        event,
        severity=Severity.HIGH,
        summary=f"Port 1 on {device} went down",
        trace={"decided_by": "handler", "inventory": "device+interface"},
    )


# ------------------------------------------------------------------------- auth


class TestAuth:
    @pytest.mark.parametrize(
        "path", ["/api/v1/outcomes", "/api/v1/metrics", "/metrics", "/api/v1/maintenance"]
    )
    async def test_missing_and_wrong_tokens_get_401(self, make_api: ApiFactory, path: str) -> None:
        """No token or a wrong one is 401 with a Bearer challenge, counted by reason."""
        api = await make_api()
        with capture_logs() as logs:
            missing = await api.client.get(path)
            wrong = await api.client.get(path, headers={"Authorization": "Bearer nope-nope"})
            basic = await api.client.get(path, headers={"Authorization": f"Basic {TOKEN}"})
        for response in (missing, wrong, basic):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            Error.model_validate(response.json())
        assert api.rejected("missing_token") == 2  # no header, and a non-Bearer scheme
        assert api.rejected("bad_token") == 1
        assert TOKEN not in json.dumps(logs, default=str)
        assert [e["reason"] for e in logs if e["event"] == "api_auth_rejected"] == [
            "missing_token",
            "bad_token",
        ]  # the second missing_token from the same peer is rate-limited

    async def test_right_token_passes(self, make_api: ApiFactory) -> None:
        """The configured token opens every authenticated route."""
        api = await make_api()
        for path in ("/api/v1/outcomes", "/api/v1/metrics", "/api/v1/maintenance"):
            assert (await api.client.get(path, headers=AUTH)).status_code == 200

    async def test_no_token_configured_fails_closed(self, make_api: ApiFactory) -> None:
        """Without http.api_token the API answers 403 whatever is sent; health stays open."""
        api = await make_api(http={"api_token": None})
        for headers in ({}, AUTH):
            response = await api.client.get("/api/v1/outcomes", headers=headers)
            assert response.status_code == 403
            assert response.json() == {"detail": "http.api_token is not configured"}
        assert api.rejected("no_token_configured") == 2
        assert (await api.client.get("/api/v1/healthz")).status_code == 200

    @pytest.mark.parametrize(
        "path",
        ["/api/v1/healthz", "/healthz", "/api/v1/readyz", "/readyz", OPENAPI_PATH, "/api/v1/docs"],
    )
    async def test_public_routes_need_no_token(self, make_api: ApiFactory, path: str) -> None:
        """Health, readiness and the API description are public."""
        api = await make_api()
        assert (await api.client.get(path)).status_code == 200


# ------------------------------------------------------------------------- health


class TestHealth:
    async def test_healthz(self, make_api: ApiFactory) -> None:
        """Liveness is a constant small JSON body."""
        api = await make_api()
        response = await api.client.get("/api/v1/healthz")
        assert response.json() == {"status": "ok"}
        assert response.headers["content-type"] == "application/json"

    async def test_ready_when_every_check_passes(self, make_api: ApiFactory) -> None:
        """Started, bus connected, store writable, inventory loaded → 200 ready with its age."""
        api = await make_api()
        response = await api.client.get("/api/v1/readyz")
        body = Readiness.model_validate(response.json())
        assert response.status_code == 200
        assert body.status == "ready"
        assert body.checks.inventory.age_seconds is not None
        assert body.checks.inventory.age_seconds >= 0

    async def test_no_inventory_configured_is_ready(self, make_api: ApiFactory) -> None:
        """Without an inventory the inventory check passes with a null age."""
        api = await make_api(memory=False)
        body = (await api.client.get("/readyz")).json()
        assert body["checks"]["inventory"] == {
            "ok": True,
            "detail": "no inventory configured",
            "age_seconds": None,
        }

    async def test_each_failed_check_makes_it_not_ready(self, make_api: ApiFactory) -> None:
        """Engine not started, inventory not loaded, store and bus closed: 503, each check
        says so; the store's message (its file path) stays out of the public body."""
        api = await make_api(start_memory=False)
        api.ready[0] = False
        with capture_logs() as logs:
            first = await api.client.get("/api/v1/readyz")
            await api.ctx.store.close()
            await api.ctx.bus.close()
            second = await api.client.get("/api/v1/readyz")
            third = await api.client.get("/api/v1/readyz")
        assert (first.status_code, second.status_code, third.status_code) == (503, 503, 503)
        checks = Readiness.model_validate(second.json()).checks
        assert not checks.engine.ok
        assert not checks.inventory.ok
        assert checks.inventory.age_seconds is None
        assert not checks.store.ok
        assert not checks.bus.ok
        assert str(api.ctx.config.store.sqlite_path) not in second.text
        changes = [e for e in logs if e["event"] == "readiness_changed"]
        assert len(changes) == 1  # logged on the change, not on every probe
        assert changes[0]["status"] == "not_ready"

    async def test_metrics_are_prometheus_text(self, make_api: ApiFactory) -> None:
        """/metrics is the registry's text with the 0.0.4 content type."""
        api = await make_api()
        await api.client.get("/api/v1/healthz")
        response = await api.client.get("/metrics", headers=AUTH)
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "# TYPE netcortex_http_request_seconds histogram" in response.text


# ------------------------------------------------------------------------- outcomes


class TestOutcomes:
    async def test_page_and_one_outcome_with_trace(self, make_api: ApiFactory) -> None:
        """The list is a page of outcome dicts; one outcome by id carries its trace."""
        api = await make_api()
        outcome = an_outcome()
        await record(api, outcome)
        page = OutcomePage.model_validate(
            (await api.client.get("/api/v1/outcomes", headers=AUTH)).json()
        )
        assert [o.outcome_id for o in page.items] == [outcome.outcome_id]
        assert page.next_cursor is None
        one = await api.client.get(f"/api/v1/outcomes/{outcome.outcome_id}", headers=AUTH)
        assert Outcome.model_validate(one.json()).outcome_id == outcome.outcome_id
        assert one.json()["trace"] == {"decided_by": "handler", "inventory": "device+interface"}
        missing = await api.client.get("/api/v1/outcomes/nope", headers=AUTH)
        assert missing.status_code == 404
        Error.model_validate(missing.json())

    @pytest.mark.parametrize(
        ("params", "fragment"),
        [
            ({"limit": "abc"}, "limit: "),
            ({"limit": "0"}, "limit: "),
            ({"limit": "1001"}, "limit: "),
            ({"since": "soon"}, "since: invalid time 'soon'"),
            ({"until": "x"}, "until: invalid time"),
            ({"severity": "urgent"}, "severity: invalid severity 'urgent'"),
            ({"kind": "logged,maybe"}, "kind: invalid kind 'maybe'"),
            ({"since": "1m", "until": "1h"}, "since: since must be earlier than until"),
            ({"cursor": "not-a-cursor"}, "cursor: not a valid cursor"),
        ],
    )
    async def test_bad_values_are_400_naming_the_parameter(
        self, make_api: ApiFactory, params: dict[str, str], fragment: str
    ) -> None:
        """Every bad filter is a 400 whose detail starts with the parameter's name."""
        api = await make_api()
        response = await api.client.get("/api/v1/outcomes", params=params, headers=AUTH)
        assert response.status_code == 400
        assert fragment in Error.model_validate(response.json()).detail

    async def test_store_failure_is_503(self, make_api: ApiFactory) -> None:
        """A store that cannot be read answers 503, not 500."""
        api = await make_api()
        await api.ctx.store.close()
        response = await api.client.get("/api/v1/outcomes", headers=AUTH)
        assert response.status_code == 503
        Error.model_validate(response.json())


# ------------------------------------------------------------------------- maintenance


class TestMaintenanceBodies:
    async def test_invalid_json_is_400(self, make_api: ApiFactory) -> None:
        """A JSON body that does not parse is a 400."""
        api = await make_api()
        response = await api.client.post(
            "/api/v1/maintenance",
            content=b"{not json",
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert response.status_code == 400
        assert response.json() == {"detail": "body: invalid JSON"}

    @pytest.mark.parametrize(
        ("body", "fields"),
        [
            ([1, 2], ["body"]),
            ({"id": "w", "scope": "planet", "target": "x", "start": "now"}, ["scope"]),
            ({"scope": "device", "target": "x", "start": "now", "duration": 60}, ["id"]),
            (
                {"id": "w", "scope": "device", "target": "x", "start": "now", "duration": True},
                ["duration.int", "duration.str"],
            ),
            (
                {"id": "w", "scope": "device", "target": "x", "start": "now", "colour": "red"},
                ["colour"],
            ),
        ],
    )
    async def test_shape_problems_are_422(
        self, make_api: ApiFactory, body: object, fields: list[str]
    ) -> None:
        """A body of the wrong shape is a 422 listing each problem's field."""
        api = await make_api()
        response = await api.client.post("/api/v1/maintenance", json=body, headers=AUTH)
        assert response.status_code == 422
        problems = Problems.model_validate(response.json())
        assert [p.field for p in problems.problems] == fields

    async def test_body_over_the_cap_is_413(self, make_api: ApiFactory) -> None:
        """A maintenance body larger than http.max_body_bytes is refused with 413."""
        api = await make_api(http={"max_body_bytes": 1024})
        body = {"id": "w", "scope": "device", "target": "x", "start": "now", "reason": "r" * 2000}
        response = await api.client.post("/api/v1/maintenance", json=body, headers=AUTH)
        assert response.status_code == 413
        Error.model_validate(response.json())


# ------------------------------------------------------------------------- webhook


class TestWebhookRoute:
    async def test_fixture_is_accepted_and_published(self, make_api: ApiFactory) -> None:
        """A fixture body (fresh sentAt) is handed to the receiver and answered 202."""
        from datetime import UTC, datetime

        api = await make_api()
        body = json.loads(shared_fixture("meraki", "security_rogue_ap.json").read_text())
        body["sentAt"] = datetime.now(UTC).isoformat()
        response = await api.client.post("/webhooks/meraki", json=body)
        assert response.status_code == 202
        assert response.json()["status"] == "accepted"
        assert response.json()["event_class"] == "security"

    async def test_content_length_over_the_cap_is_413_unread(self, make_api: ApiFactory) -> None:
        """A declared length over the cap is refused through the receiver (counted)."""
        api = await make_api(http={"max_body_bytes": 1024})
        response = await api.client.post("/webhooks/meraki", content=b"{" + b" " * 2000 + b"}")
        assert response.status_code == 413
        assert response.json()["reason"] == "too_large"
        assert api.rejected("too_large", source="meraki.webhook") == 1

    async def test_disabled_meraki_has_no_route(self, make_api: ApiFactory) -> None:
        """meraki.enabled: false → 404, and the route is not in the document."""
        api = await make_api(meraki={"enabled": False})
        assert (await api.client.post("/webhooks/meraki", json={})).status_code == 404
        doc = (await api.client.get(OPENAPI_PATH)).json()
        assert "/webhooks/meraki" not in doc["paths"]
        assert "MerakiAlert" not in doc["components"]["schemas"]


# ------------------------------------------------------------------------- document


class TestOpenApi:
    async def test_document_is_truthful(self, make_api: ApiFactory) -> None:
        """No phantom 422s, aliases hidden, the webhook body is MerakiAlert, every
        authenticated operation declares the bearer scheme and its 401/403."""
        api = await make_api()
        doc = (await api.client.get(OPENAPI_PATH)).json()
        assert "HTTPValidationError" not in json.dumps(doc)
        paths = doc["paths"]
        assert {"/healthz", "/readyz", "/metrics"}.isdisjoint(paths)
        assert set(paths) == {
            "/webhooks/meraki",
            "/api/v1/healthz",
            "/api/v1/readyz",
            "/api/v1/metrics",
            "/api/v1/outcomes",
            "/api/v1/outcomes/{outcome_id}",
            "/api/v1/incidents",
            "/api/v1/incidents/{incident_id}",
            "/api/v1/maintenance",
            "/api/v1/maintenance/{window_id}",
            "/api/v1/outbox",
            "/api/v1/outbox/retry-dead",
            "/api/v1/status",
            "/api/v1/accounting",
            "/api/v1/stream",
        }
        webhook = paths["/webhooks/meraki"]["post"]
        assert webhook["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/MerakiAlert"
        }
        assert set(webhook["responses"]) == {
            "200", "202", "400", "401", "403", "413", "415", "422", "500", "503",
        }  # fmt: skip
        assert "security" not in webhook
        for path, operations in paths.items():
            for method, operation in operations.items():
                public = path in ("/webhooks/meraki", "/api/v1/healthz", "/api/v1/readyz")
                if public:
                    continue
                assert operation["security"] == [{"bearer": []}], (method, path)
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
        limit = next(
            p for p in paths["/api/v1/outcomes"]["get"]["parameters"] if p["name"] == "limit"
        )
        assert limit["schema"]["maximum"] == 1000
        assert limit["schema"]["default"] == 100
        TypeAdapter(dict[str, Any]).validate_python(doc["components"]["schemas"]["MerakiAlert"])


# ------------------------------------------------------------------------- middleware


class TestMiddleware:
    async def test_route_template_labels_the_histogram(self, make_api: ApiFactory) -> None:
        """Requests are timed per route template, not per raw path; unknown paths share one."""
        api = await make_api()
        for outcome_id in ("a", "b", "c"):
            await api.client.get(f"/api/v1/outcomes/{outcome_id}", headers=AUTH)
        await api.client.get("/nowhere/1")
        await api.client.get("/nowhere/2")
        await api.client.get(OPENAPI_PATH)
        histogram = api.ctx.metrics.get("netcortex_http_request_seconds")
        assert isinstance(histogram, Histogram)
        by_id = {"route": "/api/v1/outcomes/{outcome_id}", "method": "GET", "status": "404"}
        assert histogram.count(**by_id) == 3
        assert histogram.count(route="unmatched", method="GET", status="404") == 2
        assert histogram.count(route=OPENAPI_PATH, method="GET", status="200") == 1

    async def test_unhandled_exception_is_a_logged_500(self) -> None:
        """An exception escaping the app becomes 500 {"detail": "internal error"}, one
        logged line with the traceback, and the next request is served again."""
        calls = []

        async def broken(scope: Any, receive: Any, send: Any) -> None:
            calls.append(scope["path"])
            if scope["path"] == "/boom":
                raise RuntimeError("kaput")
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        metrics = Registry()
        app = ObservabilityMiddleware(broken, metrics)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with capture_logs() as logs:
                boom = await client.get("/boom")
                fine = await client.get("/fine")
        assert boom.status_code == 500
        assert boom.json() == {"detail": "internal error"}
        assert "kaput" not in boom.text
        assert fine.status_code == 204
        (error,) = [e for e in logs if e["event"] == "http_unhandled_error"]
        assert error["log_level"] == "error"
        assert error["exc_info"] is True
        requests = [e for e in logs if e["event"] == "http_request"]
        assert [(e["status"], e["log_level"]) for e in requests] == [(500, "debug"), (204, "debug")]


# ------------------------------------------------------------------------- outbox


class TestOutbox:
    async def _with_outbox(self, api: Api, tmp_path: Path) -> tuple[Api, SqliteOutbox, list[int]]:
        """``api`` rebuilt with an outbox on its SQLite file and a counting wake-up."""
        outbox = SqliteOutbox(tmp_path / "o.db")
        await outbox.start()
        woken: list[int] = []
        ctx = replace(api.ctx, outbox=outbox, wake_journal=lambda: woken.append(1))
        transport = httpx.ASGITransport(app=create_app(ctx), client=("192.0.2.50", 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://netcortex.test")
        return Api(client, ctx), outbox, woken

    async def test_requeue_wakes_the_worker_only_when_something_was_requeued(
        self, make_api: ApiFactory, tmp_path: Path
    ) -> None:
        """retry-dead answers the count and wakes the delivery worker when it is > 0."""
        api, outbox, woken = await self._with_outbox(await make_api(), tmp_path)
        try:
            event = make_event("link_down", device="sw1-north", interface="Gi1/0/1")
            made = ReflexOutcome.for_event(
                "link_down", event, severity=Severity.HIGH, summary="Link down"
            )
            store = SqliteOutcomeStore(
                StoreConfig(sqlite_path=tmp_path / "o.db"), journal=JournalHook(lambda _o: True)
            )
            await store.start()
            await store.record(made)
            await store.close()
            await outbox.dead(made.outcome_id, "400 rejected", datetime.now(UTC))
            body = (await api.client.get("/api/v1/outbox?state=dead", headers=AUTH)).json()
            assert [j.job_id for j in OutboxState.model_validate(body).items] == [made.outcome_id]
            response = await api.client.post("/api/v1/outbox/retry-dead", json={}, headers=AUTH)
            assert response.json() == {"requeued": 1}
            assert woken == [1]
            response = await api.client.post("/api/v1/outbox/retry-dead", headers=AUTH)
            assert response.json() == {"requeued": 0}
            assert woken == [1]
        finally:
            await api.client.aclose()
            await outbox.close()

    async def test_a_failing_outbox_is_503(self, make_api: ApiFactory, tmp_path: Path) -> None:
        """An outbox that cannot be read answers 503 with the store's message."""
        api, outbox, _ = await self._with_outbox(await make_api(), tmp_path)
        await outbox.close()  # reading now raises StoreError
        try:
            response = await api.client.get("/api/v1/outbox", headers=AUTH)
            assert response.status_code == 503
            assert Error.model_validate(response.json()).detail.startswith("store unavailable")
        finally:
            await api.client.aclose()

    async def test_disabled_journal_is_404(self, make_api: ApiFactory) -> None:
        """Without an outbox both routes answer 404 naming journal.enabled."""
        api = await make_api()
        for response in (
            await api.client.get("/api/v1/outbox", headers=AUTH),
            await api.client.post("/api/v1/outbox/retry-dead", headers=AUTH),
        ):
            assert response.status_code == 404
            assert "journal.enabled is false" in response.json()["detail"]


# ---------------------------------------------------------------------- incidents


def an_incident(n: int, **fields: Any) -> IncidentRecord:
    """Incident ``n``, last changed ``n`` minutes ago (same minute: ids break the tie)."""
    at = datetime(2026, 11, 28, 10, 0, tzinfo=UTC) - timedelta(minutes=n)
    values: dict[str, Any] = {
        "incident_id": f"{n:04d}" + "c" * 28,
        "rule": "cable_pair",
        "root": f"cable:sw{n}|Gi1/0/1~sw{n}-peer|Gi1/0/1",
        "state": IncidentState.OPEN,
        "severity": Severity.HIGH,
        "summary": f"cable {n} cut",
        "members": (f"sw{n}|Gi1/0/1", f"sw{n}-peer|Gi1/0/1"),
        "evidence": (f"o-{n}-a", f"o-{n}-b"),
        "opened_at": at,
        "updated_at": at,
        "site": "north",
    }
    values.update(fields)
    return IncidentRecord(**values)


class TestIncidents:
    async def _with_incidents(
        self, api: Api, tmp_path: Path, *incidents: IncidentRecord
    ) -> tuple[Api, SqliteIncidentStore]:
        """``api`` rebuilt with a real incident store on its SQLite file, filled."""
        store = SqliteIncidentStore(tmp_path / "o.db")
        await store.start()
        for incident in incidents:
            assert await store.save(incident)
        ctx = replace(api.ctx, incidents=store)
        transport = httpx.ASGITransport(app=create_app(ctx), client=("192.0.2.50", 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://netcortex.test")
        return Api(client, ctx), store

    async def test_pages_filters_and_one_incident(
        self, make_api: ApiFactory, tmp_path: Path
    ) -> None:
        """Newest change first, cursor pages without gaps or repeats, filters, and
        ``/incidents/{id}`` with every field."""
        made = [an_incident(n) for n in range(5)]
        made.append(
            an_incident(
                9,
                rule="device_root",
                root="device:core-1",
                state=IncidentState.RESOLVED,
                severity=Severity.CRITICAL,
                members=("core-1", "core-1|Gi1/0/1"),
                evidence=("o-boot", "o-l1"),
                inhibited=("o-l1",),
                resolved_at=datetime(2026, 11, 28, 9, 55, tzinfo=UTC),
                site="west",
                version=4,
                details={"cause": "reboot"},
            )
        )
        api, store = await self._with_incidents(await make_api(), tmp_path, *made)
        try:
            seen: list[str] = []
            url = "/api/v1/incidents?limit=2"
            while True:
                response = await api.client.get(url, headers=AUTH)
                assert response.status_code == 200
                page = IncidentPage.model_validate(response.json())
                seen.extend(i.id for i in page.items)
                if page.next_cursor is None:
                    break
                url = f"/api/v1/incidents?limit=2&cursor={page.next_cursor}"
            assert seen == [i.incident_id for i in made]
            for query, expected in (
                ("state=resolved", [made[5].incident_id]),
                ("rule=device_root", [made[5].incident_id]),
                ("site=west", [made[5].incident_id]),
                ("device=core-1", [made[5].incident_id]),
                ("device=sw2", [made[2].incident_id]),
                ("state=open&limit=1", [made[0].incident_id]),
            ):
                response = await api.client.get(f"/api/v1/incidents?{query}", headers=AUTH)
                assert [i["id"] for i in response.json()["items"]] == expected, query
            response = await api.client.get(
                f"/api/v1/incidents/{made[5].incident_id}", headers=AUTH
            )
            one = Incident.model_validate(response.json())
            assert one.state == "resolved"
            assert one.inhibited == ["o-l1"]
            assert one.details == {"cause": "reboot"}
            assert one.resolved_at == "2026-11-28T09:55:00+00:00"
            assert one.version == 4
            response = await api.client.get("/api/v1/incidents/nope", headers=AUTH)
            assert response.status_code == 404
            assert response.json() == {"detail": "no incident with that id"}
        finally:
            await api.client.aclose()
            await store.close()

    @pytest.mark.parametrize(
        ("query", "detail"),
        [
            ("state=closed", "state: "),
            ("rule=nope", "rule: invalid rule 'nope'"),
            ("since=yesterday", "since: invalid since 'yesterday'"),
            ("limit=0", "limit: "),
            ("cursor=!!", "cursor: not a valid cursor"),
        ],
    )
    async def test_bad_values_are_400(
        self, make_api: ApiFactory, tmp_path: Path, query: str, detail: str
    ) -> None:
        """A bad filter or cursor is 400 naming the parameter."""
        api, store = await self._with_incidents(await make_api(), tmp_path)
        try:
            response = await api.client.get(f"/api/v1/incidents?{query}", headers=AUTH)
            assert response.status_code == 400
            assert Error.model_validate(response.json()).detail.startswith(detail)
        finally:
            await api.client.aclose()
            await store.close()

    async def test_needs_a_token(self, make_api: ApiFactory, tmp_path: Path) -> None:
        """Both routes are behind the bearer token."""
        api, store = await self._with_incidents(await make_api(), tmp_path, an_incident(1))
        try:
            for path in ("/api/v1/incidents", f"/api/v1/incidents/{an_incident(1).incident_id}"):
                assert (await api.client.get(path)).status_code == 401
        finally:
            await api.client.aclose()
            await store.close()

    async def test_a_failing_store_is_503(self, make_api: ApiFactory, tmp_path: Path) -> None:
        """An incident store that cannot be read answers 503 with the store's message."""
        api, store = await self._with_incidents(await make_api(), tmp_path)
        await store.close()  # reading now raises StoreError
        try:
            response = await api.client.get("/api/v1/incidents", headers=AUTH)
            assert response.status_code == 503
            assert Error.model_validate(response.json()).detail.startswith("store unavailable")
        finally:
            await api.client.aclose()

    async def test_without_correlation_is_404(self, make_api: ApiFactory) -> None:
        """Without an incident store both routes answer 404 saying why."""
        api = await make_api()
        for path in ("/api/v1/incidents", "/api/v1/incidents/abc"):
            response = await api.client.get(path, headers=AUTH)
            assert response.status_code == 404
            assert "incidents are not available" in response.json()["detail"]
