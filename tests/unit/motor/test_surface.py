"""The motor region's public surface is fixed (httpx's ``test_exported_members``)."""

from __future__ import annotations

import netcortex.motor as motor


def test_exported_members() -> None:
    """``netcortex.motor`` exports exactly these names, each importable."""
    assert set(motor.__all__) == {
        "RECOVERY_CLOSES",
        "AssignedObject",
        "Assignment",
        "JournalDelivery",
        "JournalPolicy",
        "JournalRequestError",
        "NetboxJournalClient",
        "TokenBucket",
        "incident_kind",
        "incident_marker",
        "incident_placement",
        "is_recovery",
        "journal_kind",
        "marker",
        "parse_retry_after",
        "placement",
        "render_comment",
        "render_incident_comment",
    }
    for name in motor.__all__:
        assert getattr(motor, name) is not None
