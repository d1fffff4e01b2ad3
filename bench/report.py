"""``cartwheel bench report``: the scenarios' JSON results as ``bench/RESULTS.md`` tables and PNG charts.

Input: every ``<in_dir>/<scenario>.json`` the harness wrote (``bench/out`` by default). Output:

* ``RESULTS.md`` — a title, then every hand-written ``<!-- keep -->...<!-- /keep -->`` block of the
  previous file verbatim (prose survives regeneration), then one section per scenario present, in the
  harness's order (unknown scenarios after, by name). A section gives the machine line (CPU, cores,
  Python, git commit, when, how long), the command that produced it, a table per group of metrics
  (one line per implementation and parameter set, one column per metric with its unit) and the
  ``summary`` rows (the targets as ratios, with ``met``), then links to its charts. A scenario with no
  JSON this time keeps its section from the previous file verbatim, so rerunning one scenario and
  the report updates that scenario's section only.
* ``charts/*.png`` beside ``RESULTS.md`` (matplotlib, the optional ``bench`` extra; without it the
  tables are written and the report says the charts were skipped):

  - ``wheel_cost.png``: cost per operation (ns) versus pending timers, log-scale x, one line per
    implementation, one panel per operation (from ``wheel.json``);
  - ``ingest_latency.png``: reply latency p99 versus offered load, one line per implementation,
    transport and batch size (from ``ingest.json``);
  - ``peers_lateness.png``: firing lateness p50 / p99 / max per peer at each size, log-scale bars
    (from ``peers.json``);
  - ``e2e_timer_lag.png``: timer lag p50 / p99 / max per phase (from ``e2e.json``).

Usage: ``main(in_dir, out_md)`` returns a process exit code (2: no results found);
``python -m bench.report [--in bench/out] [--out bench/RESULTS.md]``.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["load_results", "main", "render_markdown", "write_charts"]

Row = dict[str, Any]
Doc = dict[str, Any]

TITLE = "# cartwheel — benchmark results"
KEEP_RE = re.compile(r"<!-- keep -->.*?<!-- /keep -->", re.DOTALL)
#: metric columns per table: wider tables do not read well in a terminal or on a forge
MAX_COLUMNS = 8
ORDER = ("wheel", "memory", "channels", "ingest", "peers", "e2e", "snapshot")
SECTION_RE = re.compile(r"^## (\w+)\n", re.MULTILINE)


def load_results(in_dir: str | Path) -> list[Doc]:
    """Every harness JSON document in ``in_dir``, in the harness's scenario order."""
    docs: list[Doc] = []
    for path in sorted(Path(in_dir).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"cartwheel bench report: skipping {path}: {exc}", file=sys.stderr)
            continue
        if isinstance(doc, dict) and isinstance(doc.get("rows"), list) and "scenario" in doc:
            docs.append(doc)
    rank = {name: i for i, name in enumerate(ORDER)}
    docs.sort(key=lambda d: (rank.get(d["scenario"], len(ORDER)), d["scenario"]))
    return docs


# ---------------------------------------------------------------------- markdown


def previous_sections(text: str) -> dict[str, str]:
    """The generated sections of an earlier ``RESULTS.md``, by scenario (hand-written blocks left out)."""
    body = KEEP_RE.sub("", text)
    marks = list(SECTION_RE.finditer(body))
    sections: dict[str, str] = {}
    for i, mark in enumerate(marks):
        if mark.group(1) in ORDER:
            end = marks[i + 1].start() if i + 1 < len(marks) else len(body)
            sections[mark.group(1)] = body[mark.start():end].strip()
    return sections


def _fmt(value: Any, unit: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if unit == "count" and float(value).is_integer():
        return f"{int(value):,}"
    if math.isnan(value):
        return "—"
    if isinstance(value, int) or (value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    if value == 0:
        return "0"
    return f"{value:.3g}"


def _params(params: dict[str, Any], skip: Iterable[str] = ()) -> str:
    skip = set(skip)
    return " ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in params.items() if k not in skip)


def _machine_line(doc: Doc) -> str:
    m = doc.get("machine", {})
    libs = ", ".join(f"{k} {v}" for k, v in (m.get("libraries") or {}).items() if v)
    return (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('implementation', 'Python')} "
            f"{m.get('python', '?')}, {m.get('platform', '?')}; commit {m.get('git_commit') or '?'}; "
            f"run {doc.get('started_at', '?')}, {_fmt(float(doc.get('duration_s', 0)))} s"
            + (f"; {libs}" if libs else ""))


def _command(doc: Doc) -> str:
    return f"cartwheel bench {doc['scenario']}{' --quick' if doc.get('quick') else ''}"


def _table(header: list[str], lines: list[list[str]], right: set[int]) -> list[str]:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines]
    return out


def _pivot(rows: list[Row]) -> list[str]:
    """One line per (impl, params), one column per metric; metrics in order of first appearance."""
    metrics: dict[str, str] = {}
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        metrics.setdefault(r["metric"], r.get("unit", ""))
        key = (str(r["impl"]), _params(r.get("params", {})))
        cells.setdefault(key, {})[r["metric"]] = r["value"]
    # group metrics that occur on the same lines, then cut into tables of MAX_COLUMNS
    names = list(metrics)
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for name in names:
        where = tuple(k for k, v in cells.items() if name in v)
        groups.setdefault(where, []).append(name)
    out: list[str] = []
    for where, group in groups.items():
        for lo in range(0, len(group), MAX_COLUMNS):
            cols = group[lo:lo + MAX_COLUMNS]
            header = ["impl", "params"] + [f"{c} ({metrics[c]})" if metrics[c] else c for c in cols]
            lines = [[impl, params] + [_fmt(cells[(impl, params)].get(c, ""), metrics[c]) for c in cols]
                     for impl, params in where]
            out += _table(header, lines, set(range(2, len(header)))) + [""]
    return out


def _summary_table(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        params = r.get("params", {})
        met = params.get("met")
        mark = "" if met is None else ("yes" if met else "**no**")
        unit = str(r.get("unit", ""))
        lines.append([str(r["metric"]), _fmt(r["value"], unit), unit, mark, _params(params, ("met",))])
    return _table(["metric", "value", "unit", "met", "params"], lines, {1})


def render_markdown(docs: list[Doc], *, keep: list[str] | None = None, charts: dict[str, list[str]] | None = None,
                    charts_note: str | None = None, previous: dict[str, str] | None = None) -> str:
    """The whole ``RESULTS.md`` text. ``charts`` maps a scenario to chart paths relative to the file;
    ``previous`` holds earlier sections (:func:`previous_sections`) for scenarios without a document."""
    out = [TITLE, ""]
    for block in keep or []:
        out += [block, ""]
    out += [("Generated by `cartwheel bench report` from the JSON results in `bench/out/` "
             "(rerun a scenario with the command shown under it, then the report). Figures are from one "
             "run on one machine; ratios between implementations measured in the same run are what carries over."), ""]
    if charts_note:
        out += [f"_{charts_note}_", ""]
    present = {doc["scenario"] for doc in docs}
    rank = {name: i for i, name in enumerate(ORDER)}
    entries: list[tuple[int, str, Doc | str]] = [(rank.get(d["scenario"], len(ORDER)), d["scenario"], d) for d in docs]
    entries += [(rank[name], name, text) for name, text in (previous or {}).items() if name not in present]
    for _, name, entry in sorted(entries, key=lambda e: (e[0], e[1])):
        if isinstance(entry, str):
            out += [entry, ""]  # no new results for it: the previous run's section stands
            continue
        doc = entry
        rows = [r for r in doc["rows"] if isinstance(r, dict) and "metric" in r]
        out += [f"## {name}", "", f"Machine: {_machine_line(doc)}", "", f"Command: `{_command(doc)}`", ""]
        body = [r for r in rows if r["impl"] != "summary"]
        summary = [r for r in rows if r["impl"] == "summary"]
        if body:
            out += _pivot(body)
        if summary:
            out += ["Summary (targets as ratios; `met` says whether this run meets them):", ""]
            out += _summary_table(summary) + [""]
        for chart in (charts or {}).get(name, []):
            out += [f"![{name}: {Path(chart).stem}]({chart})", ""]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------- charts


def _rows(docs: list[Doc], scenario: str) -> list[Row] | None:
    for d in docs:
        if d["scenario"] == scenario:
            return [r for r in d["rows"] if isinstance(r, dict)]
    return None


def _chart_wheel(plt: Any, rows: list[Row], path: Path) -> bool:
    ops = [op for op in ("schedule", "reschedule", "cancel", "fire") if any(r["metric"] == op for r in rows)]
    if not ops:
        return False
    fig, axes = plt.subplots(1, len(ops), figsize=(4.2 * len(ops), 3.8), squeeze=False)
    for ax, op in zip(axes[0], ops):
        impls = list(dict.fromkeys(r["impl"] for r in rows if r["metric"] == op))
        for impl in impls:
            pts = sorted((r["params"]["pending"], r["value"]) for r in rows
                         if r["impl"] == impl and r["metric"] == op and "pending" in r["params"])
            if pts:
                ax.plot([p for p, _ in pts], [v for _, v in pts], marker="o", label=impl)
        unit = next((r["unit"] for r in rows if r["metric"] == op), "")
        ax.set_xscale("log")
        ax.set_title(op)
        ax.set_xlabel("pending timers")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("cost per operation versus pending timers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _chart_ingest(plt: Any, rows: list[Row], path: Path) -> bool:
    lines: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        p = r.get("params", {})
        if r["metric"] != "p99" or not isinstance(p.get("load"), (int, float)) or isinstance(p.get("load"), bool):
            continue
        label = f"{r['impl']} {p.get('transport', '')} batch {p.get('batch', '')}" + (
            f" ({_fmt(p['carts'])} carts)" if p.get("carts") else "")
        lines.setdefault(label, []).append((float(p["load"]), float(r["value"])))
    if not lines:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, pts in lines.items():
        pts.sort()
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label)
    ax.set_xlabel("offered load (events/s)")
    ax.set_ylabel("reply latency p99 (ms)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("ingest: latency versus offered load")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _bars(plt: Any, groups: list[str], series: dict[str, list[float]], path: Path, title: str, ylabel: str) -> None:
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.2))
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, [max(v, 1e-3) for v in values], width, label=name)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _chart_peers(plt: Any, rows: list[Row], path: Path) -> bool:
    keys = list(dict.fromkeys((r["impl"], r["params"].get("carts")) for r in rows
                              if r["impl"] != "summary" and r["metric"] == "lateness_p50"))
    if not keys:
        return False

    def get(impl: str, carts: Any, metric: str) -> float:
        for r in rows:
            if r["impl"] == impl and r["params"].get("carts") == carts and r["metric"] == metric:
                return float(r["value"])
        return 0.0

    groups = [f"{impl} {_fmt(carts)}" for impl, carts in keys]
    series = {m: [get(i, c, f"lateness_{m}") for i, c in keys] for m in ("p50", "p99", "max")}
    _bars(plt, groups, series, path, "peers: firing lateness (fire time - due time)", "ms (log)")
    return True


def _chart_e2e(plt: Any, rows: list[Row], path: Path) -> bool:
    keys = list(dict.fromkeys((r["params"].get("carts"), r["params"].get("phase")) for r in rows
                              if r["metric"] == "timer_lag_p99" and r["params"].get("phase")))
    if not keys:
        return False

    def get(carts: Any, phase: Any, metric: str) -> float:
        for r in rows:
            if r["params"].get("carts") == carts and r["params"].get("phase") == phase and r["metric"] == metric:
                return float(r["value"])
        return 0.0

    groups = [f"{_fmt(c)} carts, {p}" for c, p in keys]
    series = {m: [get(c, p, f"timer_lag_{m}") for c, p in keys] for m in ("p50", "p99", "max")}
    _bars(plt, groups, series, path, "e2e: timer lag per phase (real time)", "ms (log)")
    return True


def write_charts(docs: list[Doc], charts_dir: Path) -> tuple[dict[str, list[Path]], str | None]:
    """PNG charts for the scenarios present; returns ``({scenario: [paths]}, note)`` (note: why skipped)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}, "Charts were skipped: matplotlib is not installed (pip install 'cartwheel[bench]')."
    charts_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[Path]] = {}
    for scenario, name, draw in (("wheel", "wheel_cost.png", _chart_wheel), ("ingest", "ingest_latency.png", _chart_ingest),
                                 ("peers", "peers_lateness.png", _chart_peers), ("e2e", "e2e_timer_lag.png", _chart_e2e)):
        rows = _rows(docs, scenario)
        if rows is None:
            continue
        path = charts_dir / name
        if draw(plt, rows, path):
            made.setdefault(scenario, []).append(path)
    return made, None


# ---------------------------------------------------------------------- entry point


def main(in_dir: str = "bench/out", out_md: str = "bench/RESULTS.md") -> int:
    """Write ``out_md`` (and ``charts/`` beside it) from the results in ``in_dir``; returns an exit code."""
    docs = load_results(in_dir)
    if not docs:
        print(f"cartwheel bench report: no results in {in_dir} (run `cartwheel bench NAME` first)", file=sys.stderr)
        return 2
    out = Path(out_md)
    keep: list[str] = []
    previous: dict[str, str] = {}
    if out.exists():
        old = out.read_text()
        keep = KEEP_RE.findall(old)
        previous = previous_sections(old)
    charts, note = write_charts(docs, out.parent / "charts")
    rel = {s: [p.relative_to(out.parent).as_posix() for p in paths] for s, paths in charts.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(docs, keep=keep, charts=rel, charts_note=note, previous=previous))
    made = sum(len(v) for v in charts.values())
    print(f"cartwheel bench report: {out} ({len(docs)} scenarios: {', '.join(d['scenario'] for d in docs)}); "
          + (note or f"{made} charts in {out.parent / 'charts'}"), file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--in", dest="in_dir", default="bench/out", help="directory of JSON results (default bench/out)")
    parser.add_argument("--out", dest="out_md", default="bench/RESULTS.md", help="markdown file (default bench/RESULTS.md)")
    a = parser.parse_args()
    sys.exit(main(a.in_dir, a.out_md))
