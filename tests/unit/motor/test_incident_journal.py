"""One NetBox journal entry per incident (issue 8): format, policy, client, delivery.

The delivery tests run the real worker and client against the schema-validating
fake NetBox, on every outbox (``outbox`` fixture: memory, SQLite, PostgreSQL);
incident jobs are written with ``Outbox.upsert_incident`` as the association
worker does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import IncidentState
from netcortex.contracts.outbox import JobState, Outbox, incident_job_id
from netcortex.metrics import Registry
from netcortex.motor.format import (
    INCIDENT_MARKER_PREFIX,
    MARKER_PREFIX,
    MAX_COMMENT_CHARS,
    IncidentPlace,
    incident_kind,
    incident_marker,
    incident_placement,
    render_incident_comment,
)
from netcortex.motor.netbox import NetboxJournalClient
from netcortex.motor.policy import JournalPolicy
from tests.fake_netbox import FakeNetbox
from tests.unit.motor.conftest import Enqueue, incident, outcome
from tests.unit.motor.test_delivery import journal_config, make_worker, value, wait_until

API = "https://netcortex.example.com"
CABLE = incident().root
SW1_GI3 = 8  # NetBox id of sw1-north GigabitEthernet1/0/3 in the fixture inventory


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------- format


class TestFormat:
    @pytest.mark.parametrize(
        ("root", "place"),
        [
            ("device:r1-north", IncidentPlace(device="r1-north")),
            (
                "interface:sw1-north|GigabitEthernet1/0/3",
                IncidentPlace(device="sw1-north", interface="GigabitEthernet1/0/3"),
            ),
            (CABLE, IncidentPlace(device="sw1-north", interface="GigabitEthernet1/0/3")),
            ("bgp:r1-north|203.0.113.1", IncidentPlace(device="r1-north")),
            ("site:dc-north", IncidentPlace(site="dc-north")),
        ],
    )
    def test_placement_follows_the_root(self, root: str, place: IncidentPlace) -> None:
        """Device and BGP roots → the device; interface → it; cable → the a-end
        interface; site → the NetBox site."""
        assert incident_placement(incident(root=root)) == place

    def test_unknown_root_falls_back_to_the_first_member(self) -> None:
        """A root kind this version does not know still lands somewhere sensible."""
        assert incident_placement(incident(root="vlan:42")) == IncidentPlace(
            device="sw1-north", interface="GigabitEthernet1/0/3"
        )

    @pytest.mark.parametrize(
        ("made", "kind"),
        [
            (incident(), "danger"),
            (incident(severity=Severity.CRITICAL), "danger"),
            (incident(severity=Severity.WARN), "warning"),
            (incident(2, state=IncidentState.RESOLVED), "success"),
            (incident(2, rule="flapping", flapping=True, severity=Severity.WARN), "warning"),
            (
                incident(3, rule="flapping", flapping=False, state=IncidentState.RESOLVED),
                "success",
            ),
        ],
        ids=["high", "critical", "warn", "resolved", "flapping", "stabilised"],
    )
    def test_kind_by_severity_while_open_success_once_over(self, made: object, kind: str) -> None:
        """Open: the severity's kind; resolved or stabilised: ``success``."""
        assert incident_kind(made) == kind  # type: ignore[arg-type]

    def test_comment_has_heading_table_members_evidence_link_and_marker_last(self) -> None:
        """The entry says what and where, links to the API, and ends with the marker."""
        made = incident(2)
        text = render_incident_comment(made, api_base_url=API)
        lines = text.splitlines()
        assert lines[0].startswith("**Open, HIGH: Cable sw1-north GigabitEthernet1/0/3")
        assert lines[-1] == incident_marker(made.incident_id)
        assert lines[-1] == f"{INCIDENT_MARKER_PREFIX} {made.incident_id}"
        assert "| Rule | cable\\_pair |" in text
        assert "| Root | cable:sw1-north\\|GigabitEthernet1/0/3\\~sw2-north" in text
        assert "| Members | 2 |" in text
        assert "| Site | dc-north |" in text
        assert "- sw1-north\\|GigabitEthernet1/0/3" in text
        assert f"- {'a' * 32}" in text
        assert f"[Incident in netcortex](<{API}/api/v1/incidents/{made.incident_id}>)" in text
        assert MARKER_PREFIX not in text

    def test_resolved_comment_says_so(self) -> None:
        """A resolved incident's entry says ``Resolved`` and when."""
        text = render_incident_comment(incident(3, state=IncidentState.RESOLVED))
        assert text.startswith("**Resolved: ")
        assert "| Resolved | 2026-11-28T10:00:02.000Z |" in text
        assert "Incident in netcortex" not in text  # no api_base_url, no link

    def test_a_merged_incident_says_merged_not_resolved(self) -> None:
        """An incident closed because it was merged into another (a cable cut taken in
        by its device's reboot, a device by its site's outage) recovered nothing: its
        entry says "Merged" with the other incident, kind ``info``, never ``success``."""
        into = "9" * 32
        closed = incident(3, state=IncidentState.RESOLVED)
        merged = replace(closed, details={**closed.details, "merged_into": into})
        assert incident_kind(merged) == "info"
        text = render_incident_comment(merged, api_base_url=API)
        assert text.startswith("**Merged: ")
        assert "Resolved" not in text
        assert f"| Merged into | {into} |" in text
        assert f"[Merged into](<{API}/api/v1/incidents/{into}>)" in text
        assert text.splitlines()[-1] == incident_marker(merged.incident_id)
        # details.merged_into on an open incident (it cannot be) changes nothing
        still_open = replace(incident(2), details={"merged_into": into})
        assert incident_kind(still_open) == "danger"
        assert render_incident_comment(still_open).startswith("**Open, HIGH: ")

    def test_network_text_is_escaped(self) -> None:
        """A summary from the network cannot add links, HTML or table cells."""
        text = render_incident_comment(
            incident(summary="[click](http://evil) <script>|x|"), api_base_url=None
        )
        heading = text.splitlines()[0]
        assert "\\[click\\]\\(http://evil\\)" in heading
        assert "<script>" not in text
        assert "\\|x\\|" in heading

    def test_long_lists_are_cut_and_the_comment_bounded_with_the_marker_intact(self) -> None:
        """Hundreds of members and evidence ids: "… and N more", ≤ 4000 characters, the
        marker the last line, intact."""
        members = tuple(f"sw{i}-north|GigabitEthernet1/0/{i}" for i in range(300))
        evidence = tuple(f"{i:032x}" for i in range(500))
        made = incident(9, members=members, evidence=evidence, summary="x" * 5000)
        text = render_incident_comment(made, api_base_url=API)
        assert len(text) <= MAX_COMMENT_CHARS
        assert text.splitlines()[-1] == incident_marker(made.incident_id)
        assert "- … and 280 more" in text


# ------------------------------------------------------------------------- policy


class TestPolicy:
    @pytest.mark.parametrize(
        ("minimum", "severity", "wanted"),
        [
            ("high", Severity.HIGH, True),
            ("high", Severity.CRITICAL, True),
            ("high", Severity.WARN, False),
            ("warn", Severity.WARN, True),
            ("critical", Severity.HIGH, False),
        ],
    )
    def test_wants_incidents_of_min_severity_and_above(
        self, minimum: str, severity: Severity, wanted: bool
    ) -> None:
        """The incident rule is the severity threshold (the handler filter is about
        outcomes and does not apply)."""
        policy = JournalPolicy(min_severity=minimum, handlers=["bgp_drop"])
        assert policy.wants_incident(incident(severity=severity)) is wanted

    def test_never_raises(self) -> None:
        """Anything that is not an incident is simply not wanted."""
        assert JournalPolicy().wants_incident(object()) is False  # type: ignore[arg-type]


# ------------------------------------------------------------------------- client


class TestClient:
    async def test_update_entry_patches_and_404_is_false(self, netbox: FakeNetbox) -> None:
        """PATCH rewrites kind and comments of a stored entry; an unknown id is ``False``."""
        async with NetboxJournalClient.from_config(journal_config(netbox)) as client:
            where = await client.resolve("sw1-north", "GigabitEthernet1/0/3")
            entry_id = await client.create_entry(where, "danger", "first\n\nnetcortex-incident: x")
            assert await client.update_entry(entry_id, "success", "second\n\nnetcortex-incident: x")
            assert await client.update_entry(entry_id + 100, "success", "nope") is False
        (entry,) = netbox.journal
        assert entry["kind"]["value"] == "success"
        assert entry["comments"].startswith("second")
        assert (entry["assigned_object_type"], entry["assigned_object_id"]) == (
            "dcim.interface",
            SW1_GI3,
        )

    async def test_resolve_site_by_slug(self, netbox: FakeNetbox) -> None:
        """A site is found by slug (``dcim.site``); an unknown one is permanent."""
        async with NetboxJournalClient.from_config(journal_config(netbox)) as client:
            found = await client.resolve_site("dc-south")
            assert (found.target.type, found.target.id) == ("dcim.site", 2)
            with pytest.raises(Exception, match="site 'atlantis' not in NetBox") as caught:
                await client.resolve_site("atlantis")
        assert getattr(caught.value, "retryable", None) is False
        assert ("slug", "dc-south") in next(
            r.query for r in netbox.requests if r.path == "/api/dcim/sites/"
        )


# ----------------------------------------------------------------------- delivery


async def _job(outbox: Outbox) -> object:
    (job,) = [*await outbox.jobs(JobState.PENDING), *await outbox.jobs(JobState.DELIVERED)]
    return job


class TestDelivery:
    async def test_one_entry_per_incident_created_then_updated_in_place(
        self, outbox: Outbox, netbox: FakeNetbox
    ) -> None:
        """Version 1 creates the entry on the cable's a-end interface; version 2 and the
        resolved version 3 PATCH the same entry (via ``updated``); one entry in the end,
        ``success`` and saying resolved."""
        registry = Registry()
        worker = make_worker(outbox, netbox, registry)
        job_id = incident_job_id(incident().incident_id)
        async with worker._client:
            with capture_logs() as logs:
                await outbox.upsert_incident(incident(1), _now())
                assert await worker.run_once() == 1
                await outbox.upsert_incident(incident(2), _now())
                assert await worker.run_once() == 1
                resolved = incident(3, state=IncidentState.RESOLVED)
                await outbox.upsert_incident(resolved, _now())
                assert await worker.run_once() == 1
        (entry,) = netbox.journal
        assert (entry["assigned_object_type"], entry["assigned_object_id"]) == (
            "dcim.interface",
            SW1_GI3,
        )
        assert entry["kind"]["value"] == "success"
        assert entry["comments"].startswith("**Resolved: ")
        assert entry["comments"].splitlines()[-1] == incident_marker(resolved.incident_id)
        (job,) = await outbox.jobs(JobState.DELIVERED)
        assert (job.job_id, job.entry_id) == (job_id, entry["id"])
        assert job.incident == resolved
        assert [w[0] for w in netbox.writes] == ["POST", "PATCH", "PATCH"]
        delivered = [e for e in logs if e["event"] == "journal_delivered"]
        assert [e["via"] for e in delivered] == ["created", "updated", "updated"]
        assert {e["incident_id"] for e in delivered} == {resolved.incident_id}
        assert value(registry, "netcortex_journal_delivered_total", via="updated") == 2

    async def test_a_deleted_entry_is_written_again(
        self, outbox: Outbox, netbox: FakeNetbox
    ) -> None:
        """The job's entry was deleted in NetBox (PATCH 404): the marker search finds
        nothing, a new entry is created and the job points at it."""
        worker = make_worker(outbox, netbox)
        async with worker._client:
            await outbox.upsert_incident(incident(1), _now())
            await worker.run_once()
            with netbox.lock:
                netbox.journal.clear()
            await outbox.upsert_incident(incident(2), _now())
            await worker.run_once()
        (entry,) = netbox.journal
        assert "| Version | 2 |" in entry["comments"]
        (job,) = await outbox.jobs(JobState.DELIVERED)
        assert job.entry_id == entry["id"]

    async def test_an_entry_an_earlier_attempt_wrote_is_found_and_updated(
        self, outbox: Outbox, netbox: FakeNetbox
    ) -> None:
        """No entry id on the job (the answer to the POST was lost): the marker search
        finds the entry, which is PATCHed with this version (via ``existing``)."""
        worker = make_worker(outbox, netbox)
        async with worker._client:
            await outbox.upsert_incident(incident(1), _now())
            netbox.inject(lose_response=True, method="POST")
            await worker.run_once()  # stored by NetBox, answer lost: retried later
            assert len(netbox.journal) == 1
            # A pending job without an entry keeps its scheduled retry (≤ 20 ms here).
            await asyncio.sleep(0.05)
            await outbox.upsert_incident(incident(2), _now())
            with capture_logs() as logs:
                await worker.run_once()
        (entry,) = netbox.journal
        assert "| Version | 2 |" in entry["comments"]
        (job,) = await outbox.jobs(JobState.DELIVERED)
        assert job.entry_id == entry["id"]
        assert [e["via"] for e in logs if e["event"] == "journal_delivered"] == ["existing"]

    async def test_site_incident_goes_on_the_site(self, outbox: Outbox, netbox: FakeNetbox) -> None:
        """A site outage's entry hangs on the NetBox site (looked up by slug)."""
        worker = make_worker(outbox, netbox)
        made = incident(
            rule="site_outage",
            root="site:dc-north",
            members=("r1-north", "sw1-north", "sw2-north"),
            severity=Severity.CRITICAL,
        )
        async with worker._client:
            await outbox.upsert_incident(made, _now())
            await worker.run_once()
        (entry,) = netbox.journal
        assert (entry["assigned_object_type"], entry["assigned_object_id"]) == ("dcim.site", 1)
        assert entry["kind"]["value"] == "danger"

    async def test_device_root_goes_on_the_device(self, outbox: Outbox, netbox: FakeNetbox) -> None:
        """A device root incident's entry hangs on the device."""
        worker = make_worker(outbox, netbox)
        made = incident(rule="device_root", root="device:r1-north", members=("r1-north",))
        async with worker._client:
            await outbox.upsert_incident(made, _now())
            await worker.run_once()
        (entry,) = netbox.journal
        assert (entry["assigned_object_type"], entry["assigned_object_id"]) == ("dcim.device", 1)

    async def test_an_unknown_root_falls_back_to_a_known_member(
        self, outbox: Outbox, netbox: FakeNetbox
    ) -> None:
        """A site (or root device) NetBox does not have: the incident's outcome jobs
        were superseded, so its entry goes on the first member NetBox knows instead
        of being dead-lettered (which would leave no entry at all)."""
        worker = make_worker(outbox, netbox)
        site = incident(
            rule="site_outage",
            root="site:atlantis",
            members=("ghost-1", "r1-north"),
            incident_id="1" * 32,
        )
        cable = incident(
            root="cable:ghost-2|Gi0/1~sw1-north|GigabitEthernet1/0/3",
            members=("ghost-2|Gi0/1", "sw1-north|GigabitEthernet1/0/3"),
            incident_id="2" * 32,
        )
        async with worker._client:
            await outbox.upsert_incident(site, _now())
            await outbox.upsert_incident(cable, _now())
            assert await worker.run_once() == 2
        placed = {
            e["comments"].splitlines()[-1]: (e["assigned_object_type"], e["assigned_object_id"])
            for e in netbox.journal
        }
        assert placed == {
            incident_marker(site.incident_id): ("dcim.device", 1),
            incident_marker(cable.incident_id): ("dcim.interface", SW1_GI3),
        }
        assert (await outbox.stats()).delivered == 2

    async def test_unknown_site_is_dead_lettered(self, outbox: Outbox, netbox: FakeNetbox) -> None:
        """A site NetBox does not have, nor any member: the job is dead with the reason."""
        worker = make_worker(outbox, netbox)
        made = incident(rule="site_outage", root="site:atlantis", members=("ghost-1",))
        async with worker._client:
            await outbox.upsert_incident(made, _now())
            await worker.run_once()
        (dead,) = await outbox.jobs(JobState.DEAD)
        assert "site 'atlantis' not in NetBox" in dead.last_error
        assert netbox.journal == []

    async def test_a_version_replaced_mid_attempt_is_not_marked_delivered(
        self, outbox: Outbox, netbox: FakeNetbox
    ) -> None:
        """Version 2 is upserted while version 1's POST is in flight: version 1's
        attempt does not finish the job; the next round PATCHes version 2 into the
        entry version 1 created (its id was noted)."""
        worker = make_worker(outbox, netbox)
        upserted = False
        original = netbox.store_journal

        def store_and_race(body: object) -> object:
            nonlocal upserted
            stored = original(body)
            upserted = True
            return stored

        netbox.store_journal = store_and_race  # type: ignore[method-assign]
        async with worker._client:
            await outbox.upsert_incident(incident(1), _now())
            # Upsert version 2 between the POST and the outbox's ``delivered``.
            delivered = outbox.delivered

            async def late_delivered(
                job_id: str, entry_id: int | None, now: datetime, *, version: int | None = None
            ) -> None:
                if upserted and version == 1:
                    await outbox.upsert_incident(incident(2), now)
                await delivered(job_id, entry_id, now, version=version)

            outbox.delivered = late_delivered  # type: ignore[method-assign]
            try:
                await worker.run_once()
                stats = await outbox.stats()
                assert (stats.pending, stats.delivered) == (1, 0)
                (pending,) = await outbox.jobs(JobState.PENDING)
                assert pending.incident is not None
                assert pending.incident.version == 2
                assert pending.entry_id == netbox.journal[0]["id"]
                await worker.run_once()
            finally:
                del outbox.delivered
        (entry,) = netbox.journal
        assert "| Version | 2 |" in entry["comments"]
        (job,) = await outbox.jobs(JobState.DELIVERED)
        assert job.incident is not None
        assert job.incident.version == 2
        assert [w[0] for w in netbox.writes] == ["POST", "PATCH"]

    async def test_outcome_and_incident_jobs_side_by_side_keep_their_markers(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """Outcome jobs keep ``netcortex-outcome:``; a superseded one is never written."""
        lone, member = outcome(1), outcome(2)
        assert await enqueue([lone, member]) == 2
        await outbox.upsert_incident(replace(incident(), evidence=(member.outcome_id,)), _now())
        assert await outbox.supersede([member.outcome_id], "part of incident", _now()) == 1
        worker = make_worker(outbox, netbox)
        async with worker._client:
            assert await worker.run_once() == 2
        markers = sorted(e["comments"].splitlines()[-1].split(":")[0] for e in netbox.journal)
        assert markers == ["netcortex-incident", "netcortex-outcome"]
        stats = await outbox.stats()
        assert (stats.pending, stats.delivered, stats.superseded) == (0, 2, 1)
        (gone,) = await outbox.jobs(JobState.SUPERSEDED)
        assert gone.job_id == member.outcome_id
        delivered = {j.job_id for j in await outbox.jobs(JobState.DELIVERED)}
        assert delivered == {lone.outcome_id, incident_job_id(incident().incident_id)}


class TestUncertainWrite:
    @pytest.mark.parametrize("upsert_after", [0.1, 0.45], ids=["during-post", "after-retry"])
    async def test_a_timed_out_post_is_not_repeated_for_a_newer_version(
        self, outbox: Outbox, netbox: FakeNetbox, upsert_after: float
    ) -> None:
        """Version 1's POST times out (a slow NetBox stores it 0.6 s later); version 2
        is upserted while the POST is in flight, or after its retry was scheduled.
        Version 2 must wait the settle delay too, find version 1's entry by its
        marker and PATCH it: one entry, one POST."""
        await outbox.upsert_incident(incident(1), _now())
        netbox.inject(delay=0.6, method="POST")  # stored 0.6 s after it was sent
        worker = make_worker(outbox, netbox, timeout_seconds=0.25, lease_seconds=1.0)

        def posted() -> bool:
            with netbox.lock:
                return any(r.method == "POST" for r in netbox.requests)

        async def version_2_delivered() -> bool:
            done = await outbox.jobs(JobState.DELIVERED)
            return bool(done) and done[0].incident is not None and done[0].incident.version == 2

        await worker.start()
        try:
            await wait_until(posted, timeout=5, what="version 1's POST")
            await asyncio.sleep(upsert_after)
            await outbox.upsert_incident(incident(2), _now())
            worker.notify()
            await wait_until(version_2_delivered, timeout=10, what="version 2 delivered")
        finally:
            await worker.stop()
        with netbox.lock:
            first = next(r.at for r in netbox.requests if r.method == "POST")
        await asyncio.sleep(max(0.0, first + 0.8 - time.monotonic()))  # the held POST lands
        marked = incident_marker(incident().incident_id)
        assert netbox.journal_count(marked) == 1
        with netbox.lock:
            assert sum(r.method == "POST" for r in netbox.requests) == 1
        (entry,) = netbox.journal
        assert "| Version | 2 |" in entry["comments"]
