"""``cartwheel bench peers`` and ``e2e`` at a tiny size (the harness's JSON shape, cartwheel exact), and the
report: markdown tables from saved JSON, hand-written prose kept, charts when matplotlib is there."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import peers, report
from bench.e2e import clock_factor, engine_config
from bench.e2e import plan_for as e2e_plan
from engine.config import check_sections

ROOT = Path(__file__).resolve().parents[2]
HAS_REDIS = shutil.which("redis-server") is not None
HAS_ARQ = importlib.util.find_spec("arq") is not None
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def _bench(name: str, out: Path, *extra: str) -> dict[str, Any]:
    env = dict(os.environ, CARTWHEEL_BENCH_TINY="1")
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "bench", name, "--quick", "--json", "--out", str(out), *extra],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert doc["scenario"] == name and doc["quick"] is True
    assert json.loads((out / f"{name}.json").read_text())["rows"] == doc["rows"]
    assert doc["rows"]
    for row in doc["rows"]:
        assert set(row) == {"impl", "params", "metric", "value", "unit"}, row
        assert isinstance(row["impl"], str) and isinstance(row["metric"], str) and isinstance(row["unit"], str)
        assert isinstance(row["params"], dict)
        assert isinstance(row["value"], (int, float)) and not isinstance(row["value"], bool)
    return doc


def _value(rows: list[dict[str, Any]], impl: str, metric: str, **params: Any) -> float:
    found = [r["value"] for r in rows if r["impl"] == impl and r["metric"] == metric
             and all(r["params"].get(k) == v for k, v in params.items())]
    assert len(found) == 1, (impl, metric, params, found)
    return float(found[0])


def test_plans_stay_in_their_budgets() -> None:
    assert peers.plan_for(True).sizes == (20_000, 100_000) and peers.plan_for(True).window_s == 5.0
    assert peers.plan_for(False).sizes == (100_000, 1_000_000) and peers.plan_for(False).window_s == 20.0
    assert max(peers.plan_for(False, tiny=True).sizes) <= 5_000
    assert e2e_plan(True).carts == (50_000,) and e2e_plan(False).carts == (1_000_000, 5_000_000)
    assert clock_factor(1_000_000) == pytest.approx(5.41, rel=0.01)


def test_the_e2e_engine_config_is_valid(tmp_path: Path) -> None:
    for carts in (2_000, 50_000, 5_000_000):
        config = engine_config(tmp_path, clock_factor(carts))
        assert check_sections(config) == []
        assert 0.001 <= config.engine.tick_s <= 60


def test_peers_tiny_reports_every_peer_and_cartwheel_is_exact(tmp_path: Path) -> None:
    doc = _bench("peers", tmp_path)
    rows = doc["rows"]
    impls = {r["impl"] for r in rows}
    assert {"cartwheel", "call_later", "summary"} <= impls
    if HAS_REDIS:
        assert "redis_zset" in impls
        if HAS_ARQ:
            assert "arq" in impls
    n = peers.plan_for(True, tiny=True).sizes[0]
    kept = n - round(n * peers.CANCEL_FRACTION)
    for impl in impls - {"summary"}:
        assert _value(rows, impl, "schedule_rate", carts=n) > 0
        assert _value(rows, impl, "cancel_rate", carts=n) > 0
        assert _value(rows, impl, "duplicate", carts=n) == 0, impl
        assert _value(rows, impl, "fired_after_cancel", carts=n) == 0, impl
    assert _value(rows, "cartwheel", "fired", carts=n) == kept
    for metric in ("early", "missing", "duplicate", "fired_after_cancel"):
        assert _value(rows, "cartwheel", metric, carts=n) == 0, metric
    assert _value(rows, "cartwheel", "lateness_p50", carts=n) >= 0
    assert _value(rows, "summary", "cartwheel_wrong_firings", carts=n) == 0
    if HAS_REDIS:
        assert _value(rows, "redis_zset", "redis_bytes_per_pending", carts=n) > 0
        assert _value(rows, "redis_zset", "early", carts=n) == 0
        assert any(r["metric"] == "schedule_vs_redis_zset" for r in rows)


def test_e2e_tiny_runs_every_phase_at_the_size_asked_for(tmp_path: Path) -> None:
    n = 3_000  # --sizes: in place of the tiny plan's own size
    assert e2e_plan(True, tiny=True).carts != (n,)
    doc = _bench("e2e", tmp_path, "--sizes", "3k")
    rows = doc["rows"]
    assert {r["params"]["carts"] for r in rows if "carts" in r["params"]} == {n}
    assert _value(rows, "engine", "populate_rate", carts=n) > 0
    # the phases start once the overdue timers have fired and the messages that fell due meanwhile went
    assert _value(rows, "engine", "catchup_backlog", carts=n) >= 0
    assert 0 <= _value(rows, "engine", "catchup_sends", carts=n) <= _value(rows, "engine", "catchup", carts=n)
    assert _value(rows, "engine", "live_carts", carts=n, phase="timers") >= n
    for phase in ("timers", "saturated", "open"):
        assert _value(rows, "engine", "timers_fired_per_s", carts=n, phase=phase) >= 0
        assert _value(rows, "engine", "timer_lag_p99", carts=n, phase=phase) >= 0
        assert _value(rows, "engine", "rss", carts=n, phase=phase) > 0
    for phase in ("saturated", "open"):
        assert _value(rows, "engine", "events_per_s", carts=n, phase=phase) > 0
        assert _value(rows, "engine", "loadgen_errors", carts=n, phase=phase) == 0
        assert _value(rows, "engine", "reply_p99", carts=n, phase=phase) > 0
    assert any(r["metric"] == "timer_lag_p99_saturated_vs_target" for r in rows)
    # when the messages went, not only when their timers fired
    assert any(r["metric"].startswith("send_queue_p99.") and r["value"] >= 0 for r in rows)


def test_peers_summary_states_targets_as_ratios() -> None:
    def row(impl: str, metric: str, value: float, carts: int = 1000) -> dict[str, Any]:
        return {"impl": impl, "params": {"carts": carts}, "metric": metric, "value": value, "unit": ""}

    def cancels(impl: str, value: float, carts: int = 1000) -> dict[str, Any]:
        return {**row(impl, "cancel_rate", value, carts), "params": {"carts": carts, "cancelled": carts * 7 // 10}}

    rows = [row("cartwheel", "schedule_rate", 1e6), cancels("cartwheel", 2e6),
            row("redis_zset", "schedule_rate", 1e5), cancels("redis_zset", 1e6),
            row("arq", "schedule_rate", 1e4, carts=500), cancels("arq", 1e4, carts=500),
            row("cartwheel", "lateness_p99", 10.0), row("cartwheel", "lateness_max", 150.0),
            row("cartwheel", "bytes_per_pending", 100.0), row("call_later", "bytes_per_pending", 550.0)]
    rows += [row("cartwheel", m, 0.0) for m in ("early", "missing", "duplicate", "fired_after_cancel")]
    out = {r["metric"]: r for r in peers._summary(rows, peers.Plan((1000,), 1.0, 500))}
    assert out["schedule_vs_redis_zset"]["value"] == pytest.approx(10.0) and out["schedule_vs_redis_zset"]["params"]["met"]
    assert out["cancel_vs_redis_zset"]["value"] == pytest.approx(2.0) and not out["cancel_vs_redis_zset"]["params"]["met"]
    assert out["schedule_vs_arq"]["params"] == {"carts": 1000, "target": 50.0, "met": True, "arq_carts": 500}
    # the whole workload: 1 000 schedules + 700 cancels in 1.35 ms (cartwheel) vs 10.7 ms (zset)
    assert out["workload_vs_redis_zset"]["value"] == pytest.approx((1000 / 1e5 + 700 / 1e6) / (1000 / 1e6 + 700 / 2e6))
    assert out["workload_vs_redis_zset"]["params"]["met"]
    # arq measured at 500 carts (350 cancelled): its rate over that workload
    arq_rate = 850 / (500 / 1e4 + 350 / 1e4)
    assert out["workload_vs_arq"]["value"] == pytest.approx(1700 / 1.35e-3 / arq_rate)
    assert out["workload_vs_arq"]["params"]["arq_carts"] == 500
    assert out["lateness_p99_vs_target"]["params"]["met"] and not out["lateness_max_vs_target"]["params"]["met"]
    assert out["memory_vs_call_later"]["value"] == pytest.approx(5.5)
    assert out["cartwheel_wrong_firings"]["value"] == 0 and out["cartwheel_wrong_firings"]["params"]["met"]


# ---------------------------------------------------------------------- the report


def _doc(scenario: str, rows: list[dict[str, Any]], quick: bool = True) -> dict[str, Any]:
    return {"scenario": scenario, "quick": quick, "started_at": "2026-03-06T10:00:00Z", "duration_s": 12.5,
            "machine": {"cpu": "Test CPU", "cores": 2, "python": "3.11.7", "implementation": "CPython",
                        "platform": "Linux", "libraries": {"uvloop": "0.23.0"}, "git_commit": "abc1234"},
            "rows": rows}


def _fixture(directory: Path) -> None:
    directory.mkdir()
    wheel = [{"impl": impl, "params": {"pending": n}, "metric": op, "value": v * (1 + n / 1e6), "unit": "ns/op"}
             for impl, v in (("wheel", 300.0), ("heapq", 900.0)) for n in (10_000, 100_000, 1_000_000)
             for op in ("schedule", "cancel", "fire")]
    wheel.append({"impl": "summary", "params": {"pending": 1_000_000}, "metric": "mixed_vs_heapq", "value": 3.2, "unit": "x"})
    (directory / "wheel.json").write_text(json.dumps(_doc("wheel", wheel, quick=False)))
    rows = []
    for impl, p50, p99, mx in (("cartwheel", 5.0, 10.0, 12.0), ("redis_zset", 50.0, 100.0, 110.0)):
        for metric, value, unit in (("schedule_rate", 1e6 if impl == "cartwheel" else 5e4, "ops/s"),
                                    ("lateness_p50", p50, "ms"), ("lateness_p99", p99, "ms"), ("lateness_max", mx, "ms")):
            rows.append({"impl": impl, "params": {"carts": 2000, "window_s": 1.0}, "metric": metric, "value": value, "unit": unit})
    rows.append({"impl": "summary", "params": {"carts": 2000, "target": 5.0, "met": True}, "metric": "schedule_vs_redis_zset",
                 "value": 20.0, "unit": "x"})
    (directory / "peers.json").write_text(json.dumps(_doc("peers", rows)))
    ingest = [{"impl": "engine", "params": {"carts": 2000, "transport": "tcp", "batch": 100, "load": load},
               "metric": "p99", "value": 1.0 + load / 1e4, "unit": "ms"} for load in (10_000, 50_000)]
    (directory / "ingest.json").write_text(json.dumps(_doc("ingest", ingest)))
    (directory / "notes.txt").write_text("not a result")


def test_report_renders_tables_keeps_prose_and_draws_charts(tmp_path: Path) -> None:
    _fixture(tmp_path / "out")
    md = tmp_path / "bench" / "RESULTS.md"
    md.parent.mkdir()
    keep = "<!-- keep -->\nWritten by hand: **why** the wheel wins.\n\n| a | b |\n<!-- /keep -->"
    md.write_text(f"# old title\n\nold generated text\n\n{keep}\n\n## stale section\n")
    assert report.main(str(tmp_path / "out"), str(md)) == 0
    text = md.read_text()
    assert keep in text and "stale section" not in text and "old generated text" not in text
    assert [line for line in text.splitlines() if line.startswith("## ")] == ["## wheel", "## ingest", "## peers"]
    assert "Machine: Test CPU, 2 cores, CPython 3.11.7" in text and "commit abc1234" in text
    assert "Command: `cartwheel bench wheel`" in text and "Command: `cartwheel bench peers --quick`" in text
    assert "| impl | params | schedule (ns/op) | cancel (ns/op) | fire (ns/op) |" in text
    assert "| impl | params | schedule_rate (ops/s) | lateness_p50 (ms) | lateness_p99 (ms) | lateness_max (ms) |" in text
    assert "| metric | value | unit | met | params |" in text
    assert "| schedule_vs_redis_zset | 20.00 | x | yes | carts=2000 target=5.00 |" in text
    assert "| cartwheel | carts=2000 window_s=1.00 | 1,000,000 | 5.00 | 10.00 | 12.00 |" in text
    if HAS_MPL:
        for name in ("wheel_cost.png", "peers_lateness.png", "ingest_latency.png"):
            png = md.parent / "charts" / name
            assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
            assert f"(charts/{name})" in text
    # a second run keeps the prose exactly once
    assert report.main(str(tmp_path / "out"), str(md)) == 0
    assert md.read_text().count(keep) == 1


def test_report_keeps_the_sections_of_scenarios_not_rerun(tmp_path: Path) -> None:
    _fixture(tmp_path / "out")
    md = tmp_path / "RESULTS.md"
    assert report.main(str(tmp_path / "out"), str(md)) == 0
    first = md.read_text()
    wheel = first[first.index("## wheel"):first.index("## ingest")].strip()
    # Only ingest is rerun, with new figures: its section changes, the others stay as they were.
    (tmp_path / "out" / "wheel.json").unlink()
    (tmp_path / "out" / "peers.json").unlink()
    ingest = [{"impl": "engine", "params": {"carts": 2000, "transport": "tcp", "batch": 100, "load": 10_000},
               "metric": "p99", "value": 7.25, "unit": "ms"}]
    (tmp_path / "out" / "ingest.json").write_text(json.dumps(_doc("ingest", ingest)))
    assert report.main(str(tmp_path / "out"), str(md)) == 0
    text = md.read_text()
    assert [line for line in text.splitlines() if line.startswith("## ")] == ["## wheel", "## ingest", "## peers"]
    assert wheel in text
    assert "7.25" in text and "2.00" not in text[text.index("## ingest"):text.index("## peers")]


def test_report_without_matplotlib_writes_tables_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fixture(tmp_path / "out")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    md = tmp_path / "RESULTS.md"
    assert report.main(str(tmp_path / "out"), str(md)) == 0
    text = md.read_text()
    assert "Charts were skipped: matplotlib is not installed" in text
    assert "## peers" in text and not (tmp_path / "charts").exists()


def test_report_with_no_results_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main(str(tmp_path), str(tmp_path / "RESULTS.md")) == 2
    assert "no results" in capsys.readouterr().err
    assert not (tmp_path / "RESULTS.md").exists()


def test_e2e_summary_states_the_open_phase_targets_at_one_million_carts() -> None:
    from bench import e2e

    def row(phase: str, metric: str, value: float, carts: int = 1_000_000) -> dict:
        return {"impl": "engine", "params": {"carts": carts, "phase": phase}, "metric": metric, "value": value, "unit": "ms"}

    rows = [row("open", "reply_p99", 12.0), row("open", "timer_lag_p99", 150.0), row("saturated", "timer_lag_p99", 30.0),
            row("timers", "timer_lag_p99", 10.0), row("open", "reply_p99", 1.0, carts=5_000_000)]
    out = {r["metric"]: r for r in e2e._summary(rows, e2e.OPEN_TARGET_RATE) if r["params"]["carts"] == 1_000_000}
    assert out["open_reply_p99_vs_target"]["value"] == pytest.approx(1.2) and not out["open_reply_p99_vs_target"]["params"]["met"]
    assert out["open_timer_lag_p99_vs_target"]["params"]["met"] and out["timer_lag_p99_saturated_vs_idle"]["value"] == 3.0
    assert not any(r["metric"].startswith("open_") for r in e2e._summary(rows, 20_000))  # another offered load: no claim
    assert not any(r["metric"].startswith("open_") and r["params"]["carts"] != 1_000_000
                   for r in e2e._summary(rows, e2e.OPEN_TARGET_RATE))
