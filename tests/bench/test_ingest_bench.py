"""``cartwheel bench ingest`` at a tiny size: a real engine and the bare peer, the harness's JSON shape."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.ingest import TINY_ENV, engine_toml, plan_for
from engine.config import check_sections, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_config_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "cartwheel.toml"
    path.write_text(engine_toml(tmp_path, 7780))
    config = load_config(str(path))
    assert check_sections(config) == []
    assert config.engine.clock == "manual"


def test_quick_plan_stays_small() -> None:
    quick = plan_for(True)
    cells = len(quick.max_cells) + len(quick.open_cells)
    assert quick.carts == (20_000,) and quick.run_s <= 5 and 2 * cells * quick.run_s < 45


def test_bench_ingest_quick_json_matches_the_harness_schema(tmp_path: Path) -> None:
    env = dict(os.environ, **{TINY_ENV: "1"})
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "bench", "ingest", "--quick", "--json", "--out", str(tmp_path)],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=100,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["scenario"] == "ingest" and doc["quick"] is True
    assert json.loads((tmp_path / "ingest.json").read_text())["rows"] == doc["rows"]
    rows = doc["rows"]
    assert rows
    for row in rows:
        assert set(row) == {"impl", "params", "metric", "value", "unit"}, row
        assert isinstance(row["impl"], str) and isinstance(row["metric"], str) and isinstance(row["unit"], str)
        assert isinstance(row["params"], dict)
        assert isinstance(row["value"], (int, float)) and not isinstance(row["value"], bool)
    impls = {r["impl"] for r in rows}
    assert {"engine", "bare", "summary"} <= impls
    metrics = {(r["impl"], r["metric"]) for r in rows}
    for needed in [("engine", "events_per_s"), ("bare", "events_per_s"), ("engine", "p99"), ("engine", "p999"),
                   ("engine", "rss_after_populate"), ("engine", "populate_events_per_s"),
                   ("summary", "engine_vs_bare"), ("summary", "batch100_events_per_s_vs_target")]:
        assert needed in metrics, needed
    assert all(r["value"] == 0 for r in rows if r["metric"] == "errors"), [r for r in rows if r["metric"] == "errors"]
    assert all(r["value"] > 0 for r in rows if r["metric"] == "events_per_s")


def test_stage_costs_times_every_stage_of_the_ingest_path() -> None:
    import re

    from bench.ingest import stage_costs

    report = stage_costs(carts=2_000, events=4_000)
    found = dict(re.findall(r"(whole path|\(msgspec\)|checks in Python|wheel\)) (-?[0-9.]+)", report))
    assert set(found) == {"whole path", "(msgspec)", "checks in Python", "wheel)"}, report
    assert all(float(v) > 0 for v in found.values()), report
    assert float(found["whole path"]) > float(found["wheel)"]), report


def test_flood_pauses_runs_without_and_with_the_hook() -> None:
    import re

    from bench.ingest import flood_pauses

    report = flood_pauses(carts=2_000, seconds=0.5)
    runs = re.findall(r"^(without|with) the freeze-before-full-collection hook: ([0-9,]+) new carts/s, (\d+) young", report, re.M)
    assert [r[0] for r in runs] == ["without", "with"], report
    assert all(int(rate.replace(",", "")) > 0 and int(young) > 0 for _, rate, young in runs), report
