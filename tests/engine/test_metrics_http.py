"""Prometheus /metrics, /healthz and /readyz through a real HTTP listener."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.app import Engine
from engine.metrics_http import BUCKETS_S, render_metrics
from tests.engine.conftest_ops import ops_config, start_engine, workload


@pytest.fixture
async def metrics_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    engine = await start_engine(ops_config(tmp_path, metrics_http="127.0.0.1:0"), tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()


async def _get(engine: Engine, path: str) -> tuple[int, str, str]:
    host, port = engine.ops.metrics_address  # type: ignore[union-attr, misc]
    async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{port}{path}") as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_agree_with_a_known_workload(metrics_engine: Engine) -> None:
    ids = await workload(metrics_engine)
    status, ctype, text = await _get(metrics_engine, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    samples = _samples(text)
    families = {f.name: f.type for f in text_string_to_metric_families(text)}

    assert _value(samples, "cartwheel_events_total", result="accepted") == 7  # 8 acknowledged, 1 a duplicate
    assert _value(samples, "cartwheel_events_total", result="duplicate") == 1
    assert _value(samples, "cartwheel_events_total", result="rejected") == 1
    assert _value(samples, "cartwheel_sends_total", channel="email", outcome="sent") == 2
    assert _value(samples, "cartwheel_sends_total", channel="push", outcome="skipped") == 2
    assert _value(samples, "cartwheel_carts", state="recovering") == 1
    assert _value(samples, "cartwheel_carts", state="recovered") == 1
    assert _value(samples, "cartwheel_carts", state="active") == 0
    assert _value(samples, "cartwheel_timers_pending") == 3  # the converted cart's tombstone too
    assert _value(samples, "cartwheel_recovery_carts_total", milestone="abandoned") == 2
    assert _value(samples, "cartwheel_recovery_carts_total", milestone="recovered") == 1
    assert _value(samples, "cartwheel_recovered_revenue_total") == 10.0
    assert _value(samples, "cartwheel_recovered_revenue_by_currency_total", currency="EUR") == 10.0
    assert _value(samples, "cartwheel_recovery_rate") == 0.5
    assert _value(samples, "cartwheel_recovered_by_channel_total", channel="email") == 1
    assert _value(samples, "cartwheel_recovered_revenue_by_step_total", step="1") == 10.0
    assert _value(samples, "cartwheel_message_engagement_total", channel="email", action="opened") == 1
    assert _value(samples, "cartwheel_process_resident_memory_bytes") > 10 * 1024 * 1024
    assert _value(samples, "cartwheel_store_up") == 1
    assert _value(samples, "cartwheel_channel_paused", channel="email") == 0
    assert _value(samples, "cartwheel_channel_breaker_open", channel="email") == 0

    # the timer-lag histogram: 5 timers fired exactly on time (recorded as 1 µs)
    assert families["cartwheel_timer_lag_seconds"] == "histogram"
    assert _value(samples, "cartwheel_timer_lag_seconds_count") == 5
    assert _value(samples, "cartwheel_timer_lag_seconds_bucket", le="+Inf") == 5
    assert _value(samples, "cartwheel_timer_lag_seconds_bucket", le=str(BUCKETS_S[0])) == 5
    assert families["cartwheel_events"] == "counter"
    assert families["cartwheel_carts"] == "gauge"

    # no per-cart, per-profile or per-message labels
    label_values = {v for (_, labels) in samples for (_, v) in labels}
    assert not label_values & {"c1", "c2", "c3", "p-c1", "p-c2", "shop1", ids["c1_email"]}


async def test_histograms_per_channel_and_buckets_are_cumulative(metrics_engine: Engine) -> None:
    stats = metrics_engine.stats
    for s in (0.002, 0.02, 0.2, 2.0):
        stats.record_queue_time("email", s)
    stats.record_provider_latency("email", 0.3)
    samples = _samples(render_metrics(metrics_engine.ops.view))  # type: ignore[union-attr]
    assert _value(samples, "cartwheel_dispatch_queue_seconds_count", channel="email") == 4
    assert _value(samples, "cartwheel_dispatch_queue_seconds_sum", channel="email") == pytest.approx(2.222)
    buckets = [_value(samples, "cartwheel_dispatch_queue_seconds_bucket", channel="email", le=str(b)) for b in BUCKETS_S]
    assert buckets == sorted(buckets)
    assert _value(samples, "cartwheel_dispatch_queue_seconds_bucket", channel="email", le="0.0025") == 1
    assert _value(samples, "cartwheel_dispatch_queue_seconds_bucket", channel="email", le="0.25") == 3
    assert _value(samples, "cartwheel_dispatch_queue_seconds_bucket", channel="email", le="2.5") == 4
    assert _value(samples, "cartwheel_provider_latency_seconds_count", channel="email") == 1


async def test_paused_channel_shows_in_metrics(metrics_engine: Engine) -> None:
    metrics_engine.pause_channel("sms", True)
    _, _, text = await _get(metrics_engine, "/metrics")
    assert _value(_samples(text), "cartwheel_channel_paused", channel="sms") == 1


async def test_health_and_readiness(metrics_engine: Engine) -> None:
    assert (await _get(metrics_engine, "/healthz"))[0] == 200
    assert (await _get(metrics_engine, "/readyz"))[0] == 200
    metrics_engine.restoring = True
    try:
        status, _, body = await _get(metrics_engine, "/readyz")
        assert status == 503 and "restoring" in body
        assert (await _get(metrics_engine, "/healthz"))[0] == 200
    finally:
        metrics_engine.restoring = False
    assert (await _get(metrics_engine, "/readyz"))[0] == 200
    assert (await _get(metrics_engine, "/nothing"))[0] == 404
    assert metrics_engine.ops.metrics.scrapes == 0  # type: ignore[union-attr]
    assert "MetricsServer" in repr(metrics_engine.ops.metrics)  # type: ignore[union-attr]


async def test_no_listener_without_metrics_http(tmp_path: Path) -> None:
    engine = await start_engine(ops_config(tmp_path), tmp_path)
    try:
        assert engine.ops.metrics_address is None  # type: ignore[union-attr]
    finally:
        await engine.stop()
