"""The outbox surfaces (``netcortex outbox``, ``/api/v1/outbox``) with incident jobs and
superseded outcome jobs (issue 8): views, the CLI table and the API models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from netcortex.bridge.cli import render_jobs
from netcortex.bridge.http.models import OutboxJob, OutboxState
from netcortex.bridge.views import job_dict, outbox_dict, outbox_line
from netcortex.contracts.outbox import JobState, JournalJob, OutboxStats, incident_job_id
from tests.unit.motor.conftest import incident, outcome

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _incident_job() -> JournalJob:
    made = incident(2)
    return JournalJob(
        job_id=incident_job_id(made.incident_id),
        outcome=None,
        incident=made,
        state=JobState.PENDING,
        attempts=0,
        created_at=NOW,
        next_attempt_at=NOW,
        entry_id=12,
    )


def _superseded_job() -> JournalJob:
    made = outcome(1)
    return JournalJob(
        job_id=made.outcome_id,
        outcome=made,
        state=JobState.SUPERSEDED,
        attempts=0,
        created_at=NOW,
        next_attempt_at=NOW + timedelta(seconds=30),
        last_error="part of incident 0f1e",
        finished_at=NOW + timedelta(seconds=1),
    )


def test_an_incident_job_is_shown_by_its_rule_root_and_incident() -> None:
    """``job_dict``: handler ``incident:<rule>``, the root as target, the incident id;
    the API model accepts it."""
    job = _incident_job()
    body = job_dict(job)
    assert body["job_id"] == f"incident:{job.incident.incident_id}"  # type: ignore[union-attr]
    assert body["incident_id"] == job.incident.incident_id  # type: ignore[union-attr]
    assert body["handler_id"] == "incident:cable_pair"
    assert body["target"] == job.incident.root  # type: ignore[union-attr]
    assert body["entry_id"] == 12
    OutboxJob.model_validate(body)
    outcome_body = job_dict(_superseded_job())
    assert outcome_body["incident_id"] is None
    assert outcome_body["state"] == "superseded"
    OutboxJob.model_validate(outcome_body)


def test_counts_include_superseded() -> None:
    """The line and the JSON count superseded jobs; the API model takes them."""
    stats = OutboxStats(pending=1, delivered=3, dead=0, oldest_pending_at=NOW, superseded=2)
    assert outbox_line(stats, NOW) == "1 pending (oldest 0s), 3 delivered, 0 dead, 2 superseded"
    body = outbox_dict(stats, NOW)
    assert body["superseded"] == 2
    assert OutboxState.model_validate({**body, "state": "superseded", "items": []}).superseded == 2
    none = OutboxStats(pending=0, delivered=0, dead=0, oldest_pending_at=None)
    assert outbox_line(none, NOW) == "0 pending, 0 delivered, 0 dead"


def test_the_cli_table_lists_both_kinds() -> None:
    """``netcortex outbox --list``: an incident job row and a superseded outcome row."""
    table = render_jobs([_incident_job(), _superseded_job()])
    rows = table.splitlines()
    assert "incident:cable_pair" in rows[1]
    assert "cable:sw1-north|GigabitEthernet1/0/3" in rows[1]
    assert "link_down" in rows[2]
    assert "part of incident 0f1e" in rows[2]
