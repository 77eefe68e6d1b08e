"""``bridge.http.accounting``: the per-source identity and the engine-wide figures, over a
``Registry`` holding the counters the receivers, runner and stores declare."""

from __future__ import annotations

from netcortex.bridge.http.accounting import accounting
from netcortex.bridge.http.status import StatusSampler
from netcortex.metrics import Registry


def _registry() -> Registry:
    reg = Registry()
    received = reg.counter("netcortex_received_total", "h", ["source"])
    rejected = reg.counter("netcortex_rejected_total", "h", ["source", "reason"])
    received.inc(10, source="snmp.trap")
    rejected.inc(2, source="snmp.trap", reason="malformed")
    rejected.inc(1, source="snmp.trap", reason="bad_community")
    reg.counter("netcortex_trap_published_total", "h", ["event_class"]).inc(
        5, event_class="link_down"
    )
    reg.queue_depth("trap_publish", lambda: 2)  # accepted, not yet published
    received.inc(4, source="meraki.webhook")
    reg.counter("netcortex_webhook_duplicates_total", "h").inc(1)
    reg.counter("netcortex_webhook_published_total", "h", ["event_class"]).inc(
        2, event_class="security"
    )
    reg.counter("netcortex_webhook_publish_failed_total", "h", ["error"]).inc(
        1, error="PublishTimeout"
    )
    received.inc(3, source="snmp.poll")
    reg.counter("netcortex_poll_published_total", "h", ["event_class"]).inc(
        7, event_class="link_down"
    )
    rejected.inc(4, source="http.api", reason="bad_token")
    rejected.inc(1, source="reflex", reason="bad_json")
    outcomes = reg.counter("netcortex_reflex_outcomes_total", "h", ("handler", "kind", "severity"))
    outcomes.inc(4, handler="link_down", kind="logged", severity="high")
    outcomes.inc(1, handler="link_down", kind="skipped", severity="high")
    outcomes.inc(2, handler="security_webhook", kind="logged", severity="warn")
    # one link_down message yielded no outcome (a handler may return None)
    handled = reg.counter("netcortex_reflex_handled_total", "h", ("handler",))
    handled.inc(6, handler="link_down")
    handled.inc(2, handler="security_webhook")
    reg.counter("netcortex_store_rows_total", "h", ("backend",)).inc(7, backend="sqlite")
    reg.counter("netcortex_store_duplicates_total", "h", ("backend",)).inc(1, backend="sqlite")
    reg.counter("netcortex_store_write_failures_total", "h", ("backend",)).inc(1, backend="sqlite")
    return reg


def test_sources_balance_or_show_the_loss() -> None:
    """trap balances (published + rejected + in flight); meraki does not (a publish
    failed for good); poll has no identity; API and reflex refusals are not sources."""
    reg = _registry()
    body = accounting(reg, StatusSampler(reg))
    rows = {row["source"]: row for row in body["sources"]}
    assert list(rows) == ["meraki", "poll", "trap"]
    assert rows["trap"] == {
        "source": "trap",
        "received": 10,
        "rejected": 3,
        "rejected_by_reason": {"bad_community": 1, "malformed": 2},
        "duplicates": 0,
        "published": 5,
        "publish_failed": 0,
        "in_flight": 2,
        "balanced": True,
    }
    meraki = rows["meraki"]
    assert (meraki["duplicates"], meraki["published"], meraki["publish_failed"]) == (1, 2, 1)
    assert meraki["balanced"] is False
    assert (rows["poll"]["received"], rows["poll"]["published"]) == (3, 7)
    assert rows["poll"]["balanced"] is None


def test_engine_wide_figures() -> None:
    """Handled per handler (its own counter, not outcomes), undecodable messages,
    outcomes by kind, rows, failures."""
    reg = _registry()
    body = accounting(reg, StatusSampler(reg))
    assert body["handled"] == {
        "total": 8,
        "by_handler": {"link_down": 6, "security_webhook": 2},
        "rejected": 1,
        "rejected_by_reason": {"bad_json": 1},
    }
    assert body["outcomes"] == {"total": 7, "by_kind": {"logged": 6, "skipped": 1}}
    assert body["stored"] == {"rows": 7, "duplicates": 1}
    assert body["store_failures"] == 1
    assert body["kernel_udp_drops"] == {}  # no listener could read them


def test_empty_engine_lists_its_enabled_sources_balanced() -> None:
    """Before any input, enabled receivers are listed at zero and balanced."""
    reg = Registry()
    body = accounting(reg, StatusSampler(reg), ["snmp.trap", "meraki.webhook"])
    assert [(r["source"], r["received"], r["balanced"]) for r in body["sources"]] == [
        ("meraki", 0, True),
        ("trap", 0, True),
    ]
    assert body["outcomes"] == {"total": 0, "by_kind": {}}
    assert body["stored"] == {"rows": 0, "duplicates": 0}
