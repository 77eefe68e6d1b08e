"""Unit tests for the metrics registry."""

from __future__ import annotations

import math

import pytest

from netcortex.metrics import Registry


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
