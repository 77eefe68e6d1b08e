"""``GET /api/v1/outbox`` and ``POST /api/v1/outbox/retry-dead`` on an in-process ``Engine``.

The engine runs with ``journal.enabled`` against a real fake NetBox
(``tests.fake_netbox``, schema-validating): outcomes recorded through the
engine's own store get journal jobs, the engine's delivery worker writes them,
and the API shows the result. A device NetBox does not know is dead-lettered;
after it is added to NetBox, ``retry-dead`` requeues the job and it is delivered.
Answers are validated with the response models (the OpenAPI document's schemas).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from netcortex.app import Engine
from netcortex.bridge.http.models import Error, OutboxState, Problems, RetryDeadOut
from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.testing import make_event
from tests.e2e.test_http_api import AUTH, engine_config, eventually
from tests.fake_netbox import FakeNetbox, running_fake_netbox

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def netbox() -> Iterator[FakeNetbox]:
    """A fake NetBox serving the fixture inventory (no invalid request allowed)."""
    with running_fake_netbox() as fake:
        yield fake


@asynccontextmanager
async def journal_engine(
    tmp_path: Path, netbox: FakeNetbox, **journal: Any
) -> AsyncIterator[tuple[Engine, httpx.AsyncClient]]:
    """An engine with journal.enabled towards ``netbox`` and a client on its API."""
    section = {
        "enabled": True,
        "netbox_url": netbox.url,
        "netbox_token": netbox.token,
        "rate_per_second": 200.0,
        "max_backoff_seconds": 1.0,
        "poll_interval_seconds": 0.2,
        "incident_hold_seconds": 0.0,  # association is on: no hold before delivery
        **journal,
    }
    config = engine_config(tmp_path, journal=section)
    async with Engine(config) as engine:
        host, port = engine.bound_addresses["http"]
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
            yield engine, client


def _outcome(n: int, device: str, interface: str = "GigabitEthernet1/0/3") -> ReflexOutcome:
    event = make_event(
        "link_down", device=device, interface=interface, event_id=f"01OUTBOXAPI{n:015d}"
    )
    return ReflexOutcome.for_event(
        "link_down",
        event,
        severity=Severity.HIGH,
        summary=f"Link down on {device} {interface}",
        site="dc-north",
        trace={"corroboration": 1, "interface": interface},
    )


async def _state(client: httpx.AsyncClient, **params: Any) -> OutboxState:
    response = await client.get("/api/v1/outbox", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return OutboxState.model_validate(response.json())


async def test_outbox_shows_delivered_and_dead_jobs_and_requeues(
    tmp_path: Path, netbox: FakeNetbox
) -> None:
    """Delivered and dead jobs (a rejected write, a device unknown to NetBox) show in the
    counts and lists; retry-dead with the refused job's id requeues only it, and the
    worker then delivers it, once."""
    # The first journal write is rejected (400: NetBox refuses the entry).
    netbox.inject(count=1, status=400, method="POST", path="/api/extras/journal-entries/")
    async with journal_engine(tmp_path, netbox) as (engine, client):
        known = [
            _outcome(1, "sw1-north"),
            _outcome(2, "sw2-north", "GigabitEthernet1/0/1"),
            _outcome(3, "sw1-north", "GigabitEthernet1/0/2"),
        ]
        ghost = _outcome(4, "ghost-9", "GigabitEthernet1/0/1")
        for o in (*known, ghost):
            await engine.store.record(o)

        async def settled() -> OutboxState | None:
            state = await _state(client)
            return state if state.pending == 0 and state.delivered + state.dead == 4 else None

        state = await eventually(settled, "every job delivered or dead")
        assert (state.delivered, state.dead) == (2, 2)
        assert state.oldest_pending_at is None
        assert state.oldest_pending_age_seconds is None
        assert state.state is None
        assert state.items == []

        dead = await _state(client, state="dead")
        assert dead.state == "dead"
        assert {j.job_id for j in dead.items} >= {ghost.outcome_id}
        assert all(j.last_error and j.finished_at for j in dead.items)  # the reasons
        refused = next(j for j in dead.items if j.job_id != ghost.outcome_id)
        assert refused.job_id in {o.outcome_id for o in known}
        delivered = await _state(client, state="delivered", limit=1)
        assert len(delivered.items) == 1
        assert delivered.items[0].entry_id is not None

        response = await client.post(
            "/api/v1/outbox/retry-dead", json={"job_ids": [refused.job_id]}, headers=AUTH
        )
        assert response.status_code == 200, response.text
        assert RetryDeadOut.model_validate(response.json()).requeued == 1

        async def redelivered() -> OutboxState | None:
            state = await _state(client)
            return state if state.delivered == 3 else None

        state = await eventually(redelivered, "the requeued job delivered")
        assert state.dead == 1  # the unknown device stays dead
        assert netbox.journal_count(f"netcortex-outcome: {refused.job_id}") == 1
        assert netbox.journal_count(f"netcortex-outcome: {ghost.outcome_id}") == 0

        # A job that is not dead is not requeued.
        response = await client.post(
            "/api/v1/outbox/retry-dead", json={"job_ids": [refused.job_id]}, headers=AUTH
        )
        assert response.json() == {"requeued": 0}


async def test_outbox_bad_input_and_auth(tmp_path: Path, netbox: FakeNetbox) -> None:
    """A bad state or limit is 400, a bad body 422, no token 401; nothing is changed."""
    async with journal_engine(tmp_path, netbox) as (_engine, client):
        response = await client.get("/api/v1/outbox", params={"state": "lost"}, headers=AUTH)
        assert response.status_code == 400
        assert Error.model_validate(response.json()).detail.startswith("state:")
        response = await client.get("/api/v1/outbox", params={"limit": 0}, headers=AUTH)
        assert response.status_code == 400
        response = await client.post(
            "/api/v1/outbox/retry-dead", json={"job_ids": "all"}, headers=AUTH
        )
        assert response.status_code == 422
        Problems.model_validate(response.json())
        response = await client.post(
            "/api/v1/outbox/retry-dead", json={"job_ids": ["x" * 300]}, headers=AUTH
        )
        assert response.status_code == 422
        assert (await client.get("/api/v1/outbox")).status_code == 401
        assert (await client.post("/api/v1/outbox/retry-dead")).status_code == 401


async def test_outbox_routes_answer_404_when_journal_is_disabled(tmp_path: Path) -> None:
    """Without journal.enabled both routes exist but answer 404 with a clear detail."""
    async with Engine(engine_config(tmp_path)) as engine:
        host, port = engine.bound_addresses["http"]
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
            for response in (
                await client.get("/api/v1/outbox", headers=AUTH),
                await client.post("/api/v1/outbox/retry-dead", json={}, headers=AUTH),
            ):
                assert response.status_code == 404
                detail = Error.model_validate(response.json()).detail
                assert "journal.enabled is false" in detail
            assert (await client.get("/api/v1/outbox")).status_code == 401
