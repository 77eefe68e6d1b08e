"""Unit tests for the metrics registry: counting, the Prometheus text format, collectors."""

from __future__ import annotations

import math

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from netcortex.config import BusConfig
from netcortex.metrics import Registry
from netcortex.thalamus import InMemoryEventBus


class TestRegistry:
    def test_counter_labels_and_render(self) -> None:
        """Counters count per label set and render in Prometheus text format."""
        reg = Registry()
        c = reg.counter("netcortex_x_total", "x", ["reason"])
        c.inc(reason="a")
        c.inc(2, reason="a")
        c.inc(reason="b")
        assert c.value(reason="a") == 3
        assert c.value(reason="zzz") == 0
        assert 'netcortex_x_total{reason="a"} 3' in reg.render()

    def test_wrong_labels_rejected(self) -> None:
        """Using other label names than declared is an error, not a silent new series."""
        c = Registry().counter("c", "c", ["reason"])
        with pytest.raises(ValueError, match="labels"):
            c.inc(other="x")

    def test_get_or_create_and_shape_conflict(self) -> None:
        """Asking twice returns the same metric; another shape under one name is refused."""
        reg = Registry()
        assert reg.counter("c", "c") is reg.counter("c", "c")
        with pytest.raises(ValueError, match="shape"):
            reg.histogram("c", "c")

    def test_histogram_quantiles(self) -> None:
        """Quantiles report the upper bound of the bucket holding them."""
        h = Registry().histogram("lat", "l", buckets=(0.001, 0.01, 0.1))
        assert math.isnan(h.quantile(0.5))
        for _ in range(98):
            h.observe(0.0005)
        h.observe(0.05)
        h.observe(0.05)
        assert h.count() == 100
        assert h.quantile(0.5) == 0.001
        assert h.quantile(0.99) == 0.1

    def test_by_label_sums_per_value(self) -> None:
        """by_label sums a counter's series per value of one label."""
        c = Registry().counter("r", "r", ["source", "reason"])
        c.inc(source="snmp.trap", reason="malformed")
        c.inc(2, source="reflex", reason="malformed")
        c.inc(source="snmp.trap", reason="bad_community")
        assert c.by_label("reason") == {"malformed": 3, "bad_community": 1}
        assert c.by_label("source") == {"snmp.trap": 2, "reflex": 2}

    def test_labels_in_any_order_name_one_series(self) -> None:
        """Passing labels in another order than declared reaches the same series."""
        c = Registry().counter("r", "r", ["source", "reason"])
        c.inc(source="a", reason="b")
        c.inc(reason="b", source="a")
        assert c.value(source="a", reason="b") == 2


def _families(text: str) -> dict[str, Metric]:
    """Parse Prometheus text with the reference parser (it raises on a format error)."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def _samples(family: Metric) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


class TestRender:
    def test_output_parses_with_the_reference_parser(self) -> None:
        """Counters, gauges, labelled series and histograms render as text that
        prometheus_client's parser reads back with the same names, types, help and values."""
        reg = Registry()
        c = reg.counter("netcortex_things_total", "Things seen, by source.", ["source"])
        c.inc(source="snmp.trap")
        c.inc(1_234_567_891, source="meraki.webhook")  # beyond 6 significant digits
        reg.counter("netcortex_plain_total", "No labels.").inc(0.1 + 0.2)
        g = reg.gauge("netcortex_level", "A level.", ["queue"])
        g.set(-2.5, queue="a")
        g.set(math.inf, queue="b")
        g.set(-math.inf, queue="c")
        g.set(7, queue="d")
        h = reg.histogram("netcortex_stage_seconds", "Stage latency.", ["stage"], (0.001, 0.5))
        h.observe(0.0005, stage="decode")
        h.observe(0.2, stage="decode")
        h.observe(3.0, stage="decode")
        families = _families(reg.render())

        things = families["netcortex_things"]  # the parser drops a counter's _total suffix
        assert (things.type, things.documentation) == ("counter", "Things seen, by source.")
        assert _samples(things) == {
            ("netcortex_things_total", (("source", "meraki.webhook"),)): 1_234_567_891,
            ("netcortex_things_total", (("source", "snmp.trap"),)): 1,
        }
        assert _samples(families["netcortex_plain"]) == {("netcortex_plain_total", ()): 0.1 + 0.2}

        level = families["netcortex_level"]
        assert level.type == "gauge"
        assert _samples(level) == {
            ("netcortex_level", (("queue", "a"),)): -2.5,
            ("netcortex_level", (("queue", "b"),)): math.inf,
            ("netcortex_level", (("queue", "c"),)): -math.inf,
            ("netcortex_level", (("queue", "d"),)): 7,
        }

        stage = families["netcortex_stage_seconds"]
        assert stage.type == "histogram"
        assert _samples(stage) == {
            ("netcortex_stage_seconds_bucket", (("le", "0.001"), ("stage", "decode"))): 1,
            ("netcortex_stage_seconds_bucket", (("le", "0.5"), ("stage", "decode"))): 2,
            ("netcortex_stage_seconds_bucket", (("le", "+Inf"), ("stage", "decode"))): 3,
            ("netcortex_stage_seconds_sum", (("stage", "decode"),)): 0.0005 + 0.2 + 3.0,
            ("netcortex_stage_seconds_count", (("stage", "decode"),)): 3,
        }

    def test_nan_and_special_values_use_prometheus_spelling(self) -> None:
        """NaN and infinities are written NaN / +Inf / -Inf, integers without a fraction."""
        reg = Registry()
        g = reg.gauge("netcortex_v", "v", ["k"])
        g.set(math.nan, k="nan")
        g.set(math.inf, k="inf")
        g.set(-math.inf, k="ninf")
        g.set(3.0, k="int")
        text = reg.render()
        assert 'netcortex_v{k="nan"} NaN' in text
        assert 'netcortex_v{k="inf"} +Inf' in text
        assert 'netcortex_v{k="ninf"} -Inf' in text
        assert 'netcortex_v{k="int"} 3\n' in text
        (nan,) = [s for s in _families(text)["netcortex_v"].samples if s.labels["k"] == "nan"]
        assert math.isnan(nan.value)

    def test_awkward_label_values_and_help_round_trip(self) -> None:
        """Label values with quotes, backslashes and newlines, and help text with
        backslashes and newlines, are escaped so the parser reads back the originals."""
        awkward = 'a "quoted" \\ back\\slash\nnew line } {'
        help_text = 'Help with a \\ backslash,\na newline and "quotes".'
        reg = Registry()
        reg.counter("netcortex_odd_total", help_text, ["why"]).inc(why=awkward)
        text = reg.render()
        assert len(text.splitlines()) == 3  # HELP, TYPE, one sample: no raw newline leaked
        family = _families(text)["netcortex_odd"]
        assert family.documentation == help_text
        (sample,) = family.samples
        assert sample.labels == {"why": awkward}
        assert sample.value == 1

    def test_unlabelled_empty_metrics_still_parse(self) -> None:
        """Metrics declared but never touched render HELP/TYPE only, which parses."""
        reg = Registry()
        reg.counter("netcortex_none_total", "n", ["x"])
        reg.histogram("netcortex_none_seconds", "n")
        families = _families(reg.render())
        assert families["netcortex_none"].samples == []
        assert families["netcortex_none_seconds"].samples == []

    @pytest.mark.parametrize(
        ("name", "labels"),
        [
            pytest.param("netcortex bad", (), id="space-in-name"),
            pytest.param("1netcortex", (), id="leading-digit"),
            pytest.param("netcortex_ok", ("bad-label",), id="dash-in-label"),
            pytest.param("netcortex_ok", ("__reserved",), id="reserved-label"),
        ],
    )
    def test_invalid_names_are_refused(self, name: str, labels: tuple[str, ...]) -> None:
        """A metric or label name Prometheus cannot read is refused at registration."""
        with pytest.raises(ValueError, match="not valid"):
            Registry().counter(name, "x", labels)

    def test_histogram_le_label_is_refused(self) -> None:
        """A histogram cannot declare its own ``le`` label (it would clash with buckets)."""
        with pytest.raises(ValueError, match="le"):
            Registry().histogram("netcortex_h", "h", ["le"])


class TestCollectors:
    def test_collectors_run_at_every_render(self) -> None:
        """A collector runs before each render, so the gauge it sets is current."""
        reg = Registry()
        g = reg.gauge("netcortex_age_seconds", "age")
        calls = iter(range(1, 100))
        reg.add_collector(lambda: g.set(next(calls)))
        assert "netcortex_age_seconds 1\n" in reg.render()
        assert "netcortex_age_seconds 2\n" in reg.render()

    def test_a_raising_collector_is_skipped_and_logged(self) -> None:
        """A collector that raises is logged (metrics_collector_failed); the others still
        run and everything renders."""
        reg = Registry()
        before = reg.gauge("netcortex_before", "b")
        after = reg.gauge("netcortex_after", "a")

        def broken() -> None:
            raise RuntimeError("collector bug")

        reg.add_collector(lambda: before.set(1))
        reg.add_collector(broken)
        reg.add_collector(lambda: after.set(2))
        with capture_logs() as logs:
            text = reg.render()
        families = _families(text)
        assert _samples(families["netcortex_before"]) == {("netcortex_before", ()): 1}
        assert _samples(families["netcortex_after"]) == {("netcortex_after", ()): 2}
        (failure,) = [e for e in logs if e["event"] == "metrics_collector_failed"]
        assert failure["log_level"] == "warning"
        assert "broken" in failure["collector"]

    def test_queue_depths_share_one_gauge(self) -> None:
        """queue_depth reports every queue on netcortex_queue_depth{queue}, read at render."""
        reg = Registry()
        depth = {"a": 0, "b": 3}
        reg.queue_depth("a", lambda: depth["a"])
        reg.queue_depth("b", lambda: depth["b"])
        depth["a"] = 5
        family = _families(reg.render())["netcortex_queue_depth"]
        assert family.type == "gauge"
        assert _samples(family) == {
            ("netcortex_queue_depth", (("queue", "a"),)): 5,
            ("netcortex_queue_depth", (("queue", "b"),)): 3,
        }

    async def test_memory_bus_reports_undelivered_messages(self) -> None:
        """The memory bus reports messages waiting in every subscription's mailbox as
        netcortex_queue_depth{queue="bus_subscriptions"}."""
        reg = Registry()

        def depth() -> float:
            family = _families(reg.render())["netcortex_queue_depth"]
            return _samples(family)[("netcortex_queue_depth", (("queue", "bus_subscriptions"),))]

        async with InMemoryEventBus(BusConfig(backend="memory"), reg) as bus:
            first = await bus.subscribe("reflex.>")
            await bus.subscribe("reflex.h.>")
            for i in range(3):
                await bus.publish(f"reflex.h.logged.r{i}", b"x")
            assert depth() == 6
            for _ in range(2):
                await (await first.next(timeout=5)).ack()
            assert depth() == 4
        assert depth() == 0
