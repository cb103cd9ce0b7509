"""The Prometheus text registry."""

from __future__ import annotations

import pytest

from agents.metrics import Metrics


def test_render_counters_gauges_histograms() -> None:
    m = Metrics()
    c = m.counter("agent_rejected_total", "Rejected", ["reason"])
    c.labels(reason='bad "quote"').inc()
    c.labels(reason="wrong_type").inc(2)
    m.gauge("agent_outbox_depth", "Depth").set(5)
    h = m.histogram("agent_delivery_seconds", "Latency", buckets=(0.1, 1))
    h.observe(0.05)
    h.observe(3)
    text = m.render()
    assert "# TYPE agent_rejected_total counter" in text
    assert 'agent_rejected_total{reason="bad \\"quote\\""} 1' in text
    assert 'agent_rejected_total{reason="wrong_type"} 2' in text
    assert "agent_outbox_depth 5" in text
    assert 'agent_delivery_seconds_bucket{le="0.1"} 1' in text
    assert 'agent_delivery_seconds_bucket{le="+Inf"} 2' in text
    assert "agent_delivery_seconds_count 2" in text


def test_declaring_twice_shares_and_conflicts_fail() -> None:
    m = Metrics()
    assert m.counter("x_total", "X", ["a"]) is m.counter("x_total", "X", ["a"])
    with pytest.raises(ValueError):
        m.gauge("x_total", "X", ["a"])
    with pytest.raises(ValueError):
        m.counter("x_total", "X", ["a"]).labels(b="1")
    with pytest.raises(ValueError):
        m.counter("x_total", "X", ["a"]).labels(a="1").inc(-1)
