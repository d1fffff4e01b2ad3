"""The benchmark harness: one runner, one JSON shape, one table format for every scenario.

A scenario is a module ``bench/<name>.py`` with ``run(quick: bool, progress) -> list[dict]``; each row
is ``{"impl": str, "params": {...}, "metric": str, "value": float, "unit": str}`` and ``progress`` takes
one line of text (printed to stderr so that ``--json`` output stays clean). The harness adds the
machine description and the git commit, prints a table (or the JSON document with ``--json``) and
writes ``<out>/<name>.json``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["SCENARIOS", "run_scenario", "machine_info", "format_table", "rss_bytes", "peak_rss_bytes"]

#: scenario name -> module under bench/
SCENARIOS: dict[str, str] = {
    "wheel": "bench.wheel", "memory": "bench.memory", "channels": "bench.channels", "ingest": "bench.ingest",
    "peers": "bench.peers", "e2e": "bench.e2e",
    "snapshot": "bench.snapshot",
}

Row = dict[str, Any]


def rss_bytes() -> int:
    """Current resident set size of this process, from /proc (bytes)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (bytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, Python, library versions, git commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent.parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "libraries": {d: _version(d) for d in ("uvloop", "msgpack", "redis", "hiredis", "orjson", "aiohttp")},
        "git_commit": commit,
    }


def _fmt_value(value: float) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4g}"


def format_table(rows: list[Row]) -> str:
    """A fixed-width text table, one line per row, grouped as the scenario produced them."""
    cells = [("impl", "params", "metric", "value", "unit")]
    for r in rows:
        params = " ".join(f"{k}={v}" for k, v in r.get("params", {}).items())
        cells.append((str(r["impl"]), params, str(r["metric"]), _fmt_value(r["value"]), str(r.get("unit", ""))))
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(c[i].rjust(widths[i]) if i == 3 else c[i].ljust(widths[i]) for i in range(5)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_scenario(
    name: str, *, quick: bool = False, as_json: bool = False, out_dir: str | None = "bench/out",
    progress: Callable[[str], None] = _stderr,
) -> int:
    """Run one scenario (or ``all``); returns a process exit code."""
    names = list(SCENARIOS) if name == "all" else [name]
    for n in names:
        if n not in SCENARIOS:
            print(f"cartwheel bench: unknown scenario {n!r} (known: {', '.join(SCENARIOS)}, all)", file=sys.stderr)
            return 2
    for n in names:
        module = importlib.import_module(SCENARIOS[n])
        progress(f"bench {n}{' (quick)' if quick else ''}: running")
        started = time.perf_counter()
        rows: list[Row] = module.run(quick, progress)
        doc = {
            "scenario": n,
            "quick": quick,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_s": round(time.perf_counter() - started, 3),
            "machine": machine_info(),
            "rows": rows,
        }
        if out_dir:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{n}.json").write_text(json.dumps(doc, indent=1) + "\n")
        if as_json:
            print(json.dumps(doc))
        else:
            print(f"\n== {n} ({doc['duration_s']:.1f} s, {doc['machine']['cpu']}, Python {doc['machine']['python']})")
            print(format_table(rows))
    return 0


def add_scenario_options(parser: argparse.ArgumentParser) -> None:
    """The options every scenario takes, on ``cartwheel bench NAME`` and ``python -m bench.NAME`` alike."""
    parser.add_argument("--quick", action="store_true", help="small sizes, finishes in under 60 s")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--out", default="bench/out", help="directory for the JSON result (default bench/out)")


def scenario_main(
    name: str, argv: list[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[argparse.Namespace, Callable[[], int]]:
    """The command line of ``python -m bench.NAME``: the options of ``cartwheel bench NAME`` (``--quick``,
    ``--json``, ``--out``) plus whatever ``extra`` adds. Returns the parsed options and a function that
    runs the scenario with them, so that a module with its own modes (``--stages``) checks those first.
    ``--help`` prints the options instead of starting a run that may take many minutes."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=f"the {name} benchmark scenario")
    add_scenario_options(parser)
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    return args, lambda: run_scenario(name, quick=args.quick, as_json=args.json, out_dir=args.out)
