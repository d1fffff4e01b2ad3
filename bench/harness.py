"""The benchmark harness: one runner, one JSON shape, one table format for every scenario.

A scenario is a module ``bench/<name>.py`` with ``run(quick: bool, progress) -> list[dict]``; each row
is ``{"impl": str, "params": {...}, "metric": str, "value": float, "unit": str}`` and ``progress`` takes
one line of text (printed to stderr so that ``--json`` output stays clean). The harness adds the
machine description and the git commit, prints a table (or the JSON document with ``--json``) and
writes ``<out>/<name>.json``.

Scenarios measured per shop size (``e2e``, ``ingest``, ``peers``) also take ``sizes``: the live carts of
each cell, from ``--sizes 250k,10M``, in place of the plan's own (that is how a user sizes a deployment:
run ``e2e`` at the carts they expect). A scenario refuses a setup this machine cannot hold by raising
:class:`BenchSetupError`; the harness prints its message and exits with status 2, no traceback.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "SCENARIOS", "BenchSetupError", "run_scenario", "machine_info", "format_table", "parse_sizes", "rss_bytes",
    "peak_rss_bytes", "available_memory_bytes", "check_memory", "GcWatch",
]

#: scenario name -> module under bench/
SCENARIOS: dict[str, str] = {
    "wheel": "bench.wheel", "memory": "bench.memory", "channels": "bench.channels", "ingest": "bench.ingest",
    "peers": "bench.peers", "e2e": "bench.e2e",
    "snapshot": "bench.snapshot",
}

Row = dict[str, Any]

#: ``--sizes`` bounds: below a thousand carts nothing is measured; above a hundred million no machine of
#: this project's kind holds the carts (about 1 KB each).
MIN_SIZE, MAX_SIZE = 1_000, 100_000_000
_SUFFIXES = {"k": 1_000, "m": 1_000_000}


class BenchSetupError(Exception):
    """A scenario cannot run as asked on this machine (e.g. the carts asked for do not fit in memory)."""


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"250k,1M,10000000"`` -> ``(250000, 1000000, 10000000)``: live carts per cell, in the order given,
    duplicates dropped. ``k`` is a thousand, ``M`` a million (either case); ``1.5M`` is allowed.

    Raises:
        argparse.ArgumentTypeError: naming the part that is not a count in range.
    """
    sizes: list[int] = []
    for part in text.split(","):
        word = part.strip().replace("_", "")
        scale = _SUFFIXES.get(word[-1:].lower(), 1)
        number = word[:-1] if scale != 1 else word
        try:
            value = float(number) * scale if "." in number else int(number) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a count of carts (examples: 250k, 1M, 1.5M, 10000000)") from None
        if value != int(value) or not MIN_SIZE <= value <= MAX_SIZE:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r}: a whole number of carts from {MIN_SIZE:,} to {MAX_SIZE:,} is expected")
        if int(value) not in sizes:
            sizes.append(int(value))
    return tuple(sizes)


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo (what can be allocated without swapping), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(carts: int, bytes_per_cart: int, what: str, available: int | None = None) -> None:
    """Refuse a size that would not fit in ``available`` bytes (default: ``MemAvailable``; unknown: no check).

    Better a clear refusal up front than the kernel's OOM killer, minutes into populating, taking the
    benchmark or something else on the machine with it.

    Args:
        bytes_per_cart: the scenario's measured memory per cart, with margin.
        what: what that covers, for the message ("with its profile, timer, flow and queued messages").

    Raises:
        BenchSetupError: with the estimate, what the machine has and how many carts would fit.
    """
    if available is None:
        available = available_memory_bytes()
    need = carts * bytes_per_cart
    if available is None or need <= available:
        return
    fits = available // bytes_per_cart
    unit = 1_000_000 if fits >= 1_000_000 else 1_000
    hint = f"; at most about {fits // unit * unit:,} fit" if fits >= MIN_SIZE else ""
    raise BenchSetupError(
        f"{carts:,} carts need about {need / 1e9:.1f} GB ({bytes_per_cart} B per cart {what}) and this machine "
        f"has {available / 1e9:.1f} GB available{hint}")


def _takes_sizes(module: Any) -> bool:
    return "sizes" in inspect.signature(module.run).parameters


class GcWatch:
    """Collector pauses, from ``gc.callbacks``: how many and the longest, young (generations 0 and 1) and
    full (generation 2) apart, and their total time (seconds). :meth:`reset` starts a new period,
    :meth:`close` unhooks it. A hook added after this one (the runtime's freeze) is not counted in."""

    def __init__(self) -> None:
        self.started = 0.0
        self.reset()
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.total_s = 0.0
        self.young = self.full = 0
        self.max_young_s = self.max_full_s = 0.0

    @property
    def max_s(self) -> float:
        """The longest pause of either kind."""
        return max(self.max_young_s, self.max_full_s)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        self.total_s += took
        if info.get("generation") == 2:
            self.full += 1
            self.max_full_s = max(self.max_full_s, took)
        else:
            self.young += 1
            self.max_young_s = max(self.max_young_s, took)

    def close(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


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
    progress: Callable[[str], None] = _stderr, sizes: tuple[int, ...] | None = None,
) -> int:
    """Run one scenario (or ``all``); returns a process exit code.

    ``sizes``: live carts per cell for the scenarios that take them (``--sizes``); any other refuses it.
    """
    names = list(SCENARIOS) if name == "all" else [name]
    for n in names:
        if n not in SCENARIOS:
            print(f"cartwheel bench: unknown scenario {n!r} (known: {', '.join(SCENARIOS)}, all)", file=sys.stderr)
            return 2
    modules = {n: importlib.import_module(SCENARIOS[n]) for n in names}
    if sizes:
        fixed = [n for n, module in modules.items() if not _takes_sizes(module)]
        if fixed:
            sized = [n for n in SCENARIOS if _takes_sizes(importlib.import_module(SCENARIOS[n]))]
            print(f"cartwheel bench: --sizes applies to {', '.join(sized)} (live carts per cell); "
                  f"{', '.join(fixed)} {'takes' if len(fixed) == 1 else 'take'} no sizes", file=sys.stderr)
            return 2
    for n, module in modules.items():
        at = f" at {', '.join(f'{size:,}' for size in sizes)} carts" if sizes else ""
        progress(f"bench {n}{' (quick)' if quick else ''}{at}: running")
        started = time.perf_counter()
        try:
            rows: list[Row] = module.run(quick, progress, sizes=sizes) if sizes else module.run(quick, progress)
        except BenchSetupError as exc:
            print(f"cartwheel bench {n}: {exc}", file=sys.stderr)
            return 2
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
    parser.add_argument("--sizes", type=parse_sizes, metavar="N[,N...]",
                        help="e2e, ingest, peers: live carts per cell instead of the plan's, e.g. 250k,10M")


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
    return args, lambda: run_scenario(name, quick=args.quick, as_json=args.json, out_dir=args.out, sizes=args.sizes)
