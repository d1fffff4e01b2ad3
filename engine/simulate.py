"""``cartwheel simulate FILE``: preview a flow — what would be sent when, and why anything was not.

The events of FILE (as ``cartwheel send`` reads them) go through a fresh engine core on a manual clock
with no network and no store: validation, actors, the timing wheel. Events are applied in ``ts`` order
(an event without ``ts`` happens one second after the previous one; the first one at ``engine.clock_start``
of the config, else at the real time the preview starts, as the manual clock does; an event whose ``id``
was seen before is ignored, as the engine ignores it); before each, the clock moves to its
time and every timer due on the way fires, in order. After the last event the clock runs on for
``--horizon`` (default: long enough for the longest configured flow to finish). Every message the
flows would send is reported as ``sent`` at its virtual time, with the reason of every skip, postponement
and cancellation.
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from engine.clock import ManualClock
from engine.config import Config
from engine.runtime import Runtime
from engine.send import Problems, read_events
from engine.validate import Deduper, Validator

__all__ = ["simulate", "format_table"]


#: 3000-01-01T00:00:00Z: a later ts is a mistake (milliseconds), and past 9999 not even printable
_TS_MAX = 32503680000.0


def _horizon_s(registry: Any) -> float:
    longest = 0.0
    for flow in registry.flows.values():
        longest = max(longest, flow.abandon_after_s + flow.expire_after_s)
    return longest + 3600.0


async def simulate(config: Config, path: Path, *, horizon_s: float | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the events of ``path``; returns (message-log records, problems with the input)."""
    from engine.app import build_registry

    problems = Problems()
    raw = list(read_events(path, problems))
    validator = Validator(config.engine)
    deduper = Deduper(config.engine.dedup_window_s, config.engine.dedup_capacity)  # as the engine ignores repeats
    events: list[tuple[float, int, dict[str, Any]]] = []
    start = ManualClock(config.engine.clock_start).now()  # what an event without ts is received at
    last_ts: float | None = None
    for order, (where, event) in enumerate(raw):
        if isinstance(event, dict) and event.get("ts") is None:
            event["ts"] = start if last_ts is None else last_ts + 1.0
        reason = validator.validate(event, start if last_ts is None else last_ts)
        if reason is None and event["ts"] >= _TS_MAX:
            # The engine takes an event stamped in the future as happening now; here its ts *is* the
            # clock, and a flow in the year 58000 (ts in milliseconds, as JavaScript's Date.now() gives)
            # cannot be shown, nor is it what was meant.
            reason = f"ts: {event['ts']:.0f} is after the year 3000 (milliseconds? ts is in unix seconds)"
        if reason is not None:
            problems.append(f"{where}: rejected: {reason}")
            continue
        last_ts = event["ts"]
        events.append((event["ts"], order, event))
    events.sort(key=lambda e: (e[0], e[1]))
    # Repeated ids are judged in the order the events happen (ts), as the engine receiving them meets
    # them: the first copy counts, whichever line of the file it is on.
    kept = []
    for ts, order, event in events:
        event_id = event.get("id")
        if event_id is not None and deduper.seen(event["store"], event_id, ts):
            problems.append(f"{raw[order][0]}: ignored: id {event_id!r} was seen before (the engine accepts it once)")
            continue
        kept.append((ts, order, event))
    events = kept
    if not events:
        return [], list(problems.close())
    clock = ManualClock(events[0][0])
    registry = build_registry(config)
    # a preview keeps every record, however many (the engine's log_max_records bounds a live engine)
    runtime = Runtime(registry, clock, tick_s=config.engine.tick_s, log_retention_s=float("inf"),
                      log_max_records=sys.maxsize)
    for ts, _, event in events:
        if ts > clock.now():
            await runtime.advance_clock(ts - clock.now())
        runtime.apply_event(event, clock.now())
    await runtime.advance_clock(_horizon_s(registry) if horizon_s is None else horizon_s)
    return [r.as_dict() for r in runtime.msglog], list(problems.close())


def _when(t: float, origin: float) -> str:
    d = t - origin
    h, rem = divmod(int(round(d)), 3600)
    m, s = divmod(rem, 60)
    return f"+{h}h{m:02d}m" + (f"{s:02d}s" if s else "")


def format_table(records: list[dict[str, Any]], origin: float) -> str:
    """A readable table: virtual time (UTC and offset from the first event), cart, step, channel, outcome, why."""
    from datetime import datetime, timezone

    rows = [("time (UTC)", "offset", "store/cart", "run", "step", "channel", "outcome", "reason")]
    for r in records:
        at = datetime.fromtimestamp(r["at"], timezone.utc).strftime("%a %Y-%m-%d %H:%M")
        rows.append((at, _when(r["at"], origin), f"{r['store']}/{r['cart']}", str(r["run"]),
                     "-" if r["step"] is None else str(r["step"]), r["channel"] or "-", r["outcome"], r["reason"] or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(line.rstrip() for line in lines)


def run_simulate(config: Config, path: Path, *, horizon_s: float | None = None, out: Any = None) -> int:
    out = sys.stdout if out is None else out  # (not a default: sys.stdout may be replaced)
    records, problems = asyncio.run(simulate(config, path, horizon_s=horizon_s))
    for p in problems:
        print(p, file=sys.stderr)
    if not records:
        print("no messages would be sent (no valid events, or no cart was abandoned)", file=out)
        return 1 if problems else 0
    origin = min(r["at"] for r in records)
    print(format_table(records, origin), file=out)
    sent = sum(1 for r in records if r["outcome"] == "sent")
    print(f"\n{sent} message(s) would be sent; {len(records) - sent} other record(s) (skipped, postponed, cancelled)", file=out)
    return 0
