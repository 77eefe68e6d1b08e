"""End to end: schemathesis against the OpenAPI document a real ``netcortex run`` serves.

The engine process (memory bus, SQLite, the shared fixture inventory, an API
token, the Meraki fixture secret, one maintenance window from the config file)
serves ``/api/v1/openapi.json``; schemathesis 4 loads it over HTTP and, for every
operation in it, sends generated requests — schema-valid ones (positive mode) and
schema-violating ones (negative mode) — checking each answer:

* ``not_a_server_error`` — no 5xx, whatever the input;
* ``status_code_conformance`` — every status answered is documented;
* ``content_type_conformance`` — the answer's media type is the documented one;
* ``response_schema_conformance`` — the body matches the documented schema;
* ``response_headers_conformance`` — documented required headers are present.

API requests carry the bearer token; webhook requests carry the Meraki secret as
a bearer header (the receiver's custom-template path) and, in positive mode, a
``sentAt`` of now and the two rules the document cannot express (``_fresh``), so
generated alerts get past authentication and the replay window and reach the
normaliser, the handlers and the accept path. Before fuzzing, the
eight fixture alerts are posted so outcomes exist, and a few explicit cases
reach the answers random data cannot: an existing outcome by id (200), deleting
a stored window (204), replacing or deleting the config file's window (409).

Left out, on purpose: ``negative_data_rejection`` and ``positive_data_acceptance``
— the API's parameters take forms the schema's types cannot express (``since``
is ``10m`` or ISO 8601, ``cursor`` is an opaque token, a window's ``start`` must
parse, the webhook's ``sentAt`` must be recent), so schema-valid data can rightly
get a 400/422 and schema-invalid data a 2xx; ``use_after_free`` /
``ensure_resource_availability`` are stateful checks over links this document
does not declare; ``ignored_auth`` / ``missing_required_header`` need requests
without credentials, which negative mode already sends (the 401s are checked
for conformance) and which ``test_http_api.py`` covers route by route;
``max_response_time`` is a timing check (flaky on a loaded machine).

schemathesis' own pytest loader (``schemathesis.pytest.from_fixture`` +
``@schema.parametrize()``) cannot be used: it sets ``request.node._nodeid``,
which pytest 9 no longer has (AttributeError). Each operation's Hypothesis
strategy (``APIOperation.as_strategy``) is driven by ``@given`` here instead,
with a bounded, derandomised number of examples (``MAX_EXAMPLES``), so the run
stays well under a minute on two cores and a failure reproduces.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import shared_fixture
from tests.e2e.harness import MERAKI_FIXTURES, MERAKI_SECRET, EngineProcess, meraki_alert, now_iso
from tests.fake_netbox import running_fake_netbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e-openapi")]

OPENAPI_PATH = "/api/v1/openapi.json"
WEBHOOK_PATH = "/webhooks/meraki"
#: Hypothesis examples per operation and mode.
MAX_EXAMPLES = 60
#: The window the engine's config file defines (the API must refuse to change it).
CONFIG_WINDOW = "cfg-openapi-window"

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

POSITIVE = pytest.param(GenerationMode.POSITIVE, id="positive")
NEGATIVE = pytest.param(GenerationMode.NEGATIVE, id="negative")

#: Every operation of the issue, with the generation modes that apply
#: (``test_openapi_document_is_served_and_complete`` fails when the document grows
#: one that is not fuzzed here). healthz and readyz have no parameter, body or
#: security requirement, so there is nothing for negative mode to violate.
OPERATIONS = [
    ("POST", WEBHOOK_PATH, [POSITIVE, NEGATIVE]),
    ("GET", "/api/v1/healthz", [POSITIVE]),
    ("GET", "/api/v1/readyz", [POSITIVE]),
    ("GET", "/api/v1/metrics", [POSITIVE, NEGATIVE]),
    ("GET", "/api/v1/outcomes", [POSITIVE, NEGATIVE]),
    ("GET", "/api/v1/outcomes/{outcome_id}", [POSITIVE, NEGATIVE]),
    ("GET", "/api/v1/incidents", [POSITIVE, NEGATIVE]),
    ("GET", "/api/v1/incidents/{incident_id}", [POSITIVE, NEGATIVE]),
    ("GET", "/api/v1/maintenance", [POSITIVE, NEGATIVE]),
    ("POST", "/api/v1/maintenance", [POSITIVE, NEGATIVE]),
    ("DELETE", "/api/v1/maintenance/{window_id}", [POSITIVE, NEGATIVE]),
    ("GET", "/api/v1/outbox", [POSITIVE, NEGATIVE]),
    ("POST", "/api/v1/outbox/retry-dead", [POSITIVE, NEGATIVE]),
    ("GET", "/api/v1/status", [POSITIVE, NEGATIVE]),
    ("GET", "/api/v1/accounting", [POSITIVE, NEGATIVE]),
    # Not fuzzed, on purpose: a valid request to the stream (Server-Sent Events)
    # never ends, so a generated case would hang until the test times out. Its
    # refusals (400, 401) are validated against the document in
    # test_explicit_cases_conform; tests/e2e/test_stream.py covers the stream itself.
    ("GET", "/api/v1/stream", []),
]
CASES = [
    pytest.param(method, path, mode.values[0], id=f"{method} {path}-{mode.id}")
    for method, path, modes in OPERATIONS
    for mode in modes
]


@pytest.fixture(scope="module")
def api_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """A running engine with the fixture outcomes stored and the NetBox journal on (a
    fake NetBox); stopped cleanly afterwards.

    After the run no request may have crashed a route (no ``http_unhandled_error``
    line), no generated alert a reflex handler (no ``errored`` outcome), and the
    fake NetBox saw no invalid request."""
    tmp = tmp_path_factory.mktemp("openapi")
    now = datetime.now(UTC).replace(microsecond=0)
    window = {
        "id": CONFIG_WINDOW,
        "scope": "site",
        "target": "dc-south",
        "start": (now + timedelta(days=30)).isoformat(),
        "end": (now + timedelta(days=30, hours=2)).isoformat(),
        "reason": "from the config file",
    }
    # The journal is on (towards a schema-validating fake NetBox), so the outbox
    # routes answer 200 with real jobs: delivered (fixture devices) and dead
    # (generated device names NetBox does not know).
    with running_fake_netbox() as netbox:
        overrides: dict[str, dict[str, Any]] = {
            "inventory": {
                "backend": "file",
                "path": str(shared_fixture("netbox", "inventory.json")),
            },
            "maintenance": {"windows": [window]},
            "journal": {
                "enabled": True,
                "netbox_url": netbox.url,
                "netbox_token": netbox.token,
                "min_severity": "info",
                "rate_per_second": 500.0,
                "incident_hold_seconds": 0.0,
            },
        }
        with EngineProcess(tmp, overrides) as engine:
            ids = set()
            for name in MERAKI_FIXTURES:
                resp = engine.post_webhook(meraki_alert(name))
                assert resp.status_code == 202, resp.text
                ids.add(resp.json()["event_id"])
            engine.wait_for_api_outcomes(lambda o: o["event_id"] in ids, count=len(ids))
            yield engine
            engine.stop_cleanly()
            assert engine.logs("http_unhandled_error") == []
            errored = [o for o in engine.outcomes() if o.kind.value == "errored"]
            assert errored == [], [(o.handler_id, o.diagnostic) for o in errored]
            assert engine.secrets_in_logs() == []


@pytest.fixture(scope="module")
def api_schema(api_engine: EngineProcess) -> Any:
    """The OpenAPI document as the engine serves it (public, no token needed)."""
    return schemathesis.openapi.from_url(f"{api_engine.base_url}{OPENAPI_PATH}")


def _headers(engine: EngineProcess, path: str) -> dict[str, str]:
    """The webhook authenticates with the Meraki secret, everything else with the token."""
    return engine.auth_headers(MERAKI_SECRET if path == WEBHOOK_PATH else None)


def _fresh(case: Any) -> Any:
    """A generated alert made acceptable where the document cannot say how.

    ``sentAt`` = now (inside the replay window); a non-empty ``organizationId`` and,
    when neither is there, an ``alertType`` (the receiver requires one of
    ``alertTypeId``/``alertType``, which the document does not express). Everything
    else stays as generated, so random device names, tags and ``alertData`` reach
    the normaliser and the handlers.
    """
    body = case.body
    if isinstance(body, dict):
        body["sentAt"] = now_iso()
        if not str(body.get("organizationId") or "").strip():
            body["organizationId"] = "1234567"
        if not any(str(body.get(k) or "").strip() for k in ("alertTypeId", "alertType")):
            body["alertType"] = "Generated alert"
    return case


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_api_conforms_to_its_openapi_document(
    method: str, path: str, mode: GenerationMode, api_schema: Any, api_engine: EngineProcess
) -> None:
    """Each operation answers generated requests without a server error, with
    documented statuses, media types, headers and body schemas."""
    operation = api_schema[path][method]
    base_url, headers = api_engine.base_url, _headers(api_engine, path)
    strategy = operation.as_strategy(generation_mode=mode)
    if path == WEBHOOK_PATH and mode is GenerationMode.POSITIVE:
        strategy = strategy.map(_fresh)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def conforms(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

    conforms()


def test_explicit_cases_conform(api_schema: Any, api_engine: EngineProcess) -> None:
    """Answers random data cannot reach, validated the same way: an existing outcome by
    id (200, with its trace), a stored window deleted (204), the config file's window
    replaced or deleted (409), the outbox's jobs of each state and a requeue (200), an
    accepted webhook and its replay (202, 200)."""
    engine = api_engine
    base_url = engine.base_url

    def run(method: str, path: str, **parts: Any) -> int:
        case = api_schema[path][method].Case(**parts)
        response = case.call_and_validate(
            base_url=base_url, headers=_headers(engine, path), checks=CHECKS
        )
        return int(response.status_code)

    outcome = next(iter(engine.api_outcomes(limit=1)))
    by_id = "/api/v1/outcomes/{outcome_id}"
    assert run("GET", by_id, path_parameters={"outcome_id": outcome["outcome_id"]}) == 200

    stored = {
        "id": "openapi-stored",
        "scope": "device",
        "target": "ms-west",
        "start": "now",
        "duration": "1h",
        "reason": "schemathesis explicit case",
    }
    assert run("POST", "/api/v1/maintenance", body=stored) in {200, 201}
    one_window = "/api/v1/maintenance/{window_id}"
    assert run("DELETE", one_window, path_parameters={"window_id": "openapi-stored"}) == 204
    assert run("DELETE", one_window, path_parameters={"window_id": "openapi-stored"}) == 404
    assert run("POST", "/api/v1/maintenance", body={**stored, "id": CONFIG_WINDOW}) == 409
    assert run("DELETE", one_window, path_parameters={"window_id": CONFIG_WINDOW}) == 409

    for state in ("pending", "delivered", "dead"):
        assert run("GET", "/api/v1/outbox", query={"state": state, "limit": 5}) == 200
    assert run("POST", "/api/v1/outbox/retry-dead", body={"job_ids": ["no-such-job"]}) == 200
    assert run("POST", "/api/v1/outbox/retry-dead", body={}) == 200

    # The stream's refusals (the stream itself is not fuzzed: it never ends).
    stream = "/api/v1/stream"
    assert run("GET", stream, query={"severity": "loud"}) == 400
    assert run("GET", stream, query={"subject": ["sensory.>"]}) == 400
    assert run("GET", stream, headers={"Last-Event-ID": "not-an-id"}) == 400
    refused = api_schema[stream]["GET"].Case(query={"access_token": "wrong-token-0123456789"})
    assert refused.call_and_validate(base_url=base_url, checks=CHECKS).status_code == 401

    alert = meraki_alert("settings_changed", alertId="900000000000000777")
    assert run("POST", WEBHOOK_PATH, body=alert) == 202
    assert run("POST", WEBHOOK_PATH, body={**alert, "sentAt": now_iso()}) == 200


def test_openapi_document_is_served_and_complete(api_engine: EngineProcess) -> None:
    """The served document is public, OpenAPI 3, lists exactly the issue's operations
    (so the fuzzing above covers all of them) and documents the webhook's body and
    every status the receiver answers."""
    resp = api_engine.http.get(OPENAPI_PATH)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert str(doc["openapi"]).startswith("3.")
    ops = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert ops == {(method, path) for method, path, _ in OPERATIONS}
    webhook = doc["paths"][WEBHOOK_PATH]["post"]
    assert "requestBody" in webhook
    assert {"200", "202", "400", "401", "403", "413", "415", "422", "503"} <= set(
        webhook["responses"]
    )
