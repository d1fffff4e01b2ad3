"""Benchmark ``wheel``: the timing wheel against heapq and asyncio's own timers, side by side.

What it measures, at 10 k, 100 k, 1 M and 5 M pending timers (quick: 10 k, 100 k, 1 M), with the
garbage collector on:

* ``schedule``    — fill an empty scheduler to N pending (delays uniform over 1 h of 100 ms ticks).
* ``reschedule``  — cancel a random pending timer and schedule it again (what a cart update would cost
  without the idle-timer trick); pending stays N.
* ``cancel``      — cancel random pending timers.
* ``move``        — move a pending timer to a new due tick: the wheel's ``reschedule()`` (one call,
  same slot, same handle); the peers have no such operation, so theirs is cancel + schedule.
* ``mixed``       — the cart workload: 80 % move a timer (a cart update), 20 % cancel one and schedule
  a new one (a purchase and a new cart), and every 1 000 ops time moves one tick and due timers fire
  (asyncio peers: no manual firing, so their mix is the same minus the ticks).
* ``fire``        — advance across a span that expires all N, each fired timer handed to a consumer
  loop (wheel: ``expire`` batches, the engine's path; heapq: pops; asyncio: dispatch of N already-due
  timers, scheduled in random order, by the running loop, each calling a callback).
* ``bytes_per_timer`` and ``peak_rss`` — RSS growth from filling N (keys pre-built, so excluded).
* ``churn_growth`` — RSS after R reschedules over 1 M pending, relative to after the fill (wheel,
  heapq only).
* ``jump_30d``    — with 1 M pending spread over 60 days, advance 30 days in one call: time per fired
  timer; and the same jump over 1 M timers all due after it (fires none): total time.

Every (implementation, size) runs in a fresh forked child so that memory figures do not leak between
peers; the comparison is still one run on one machine. Results are ratios first: see ``summary`` rows.
"""
from __future__ import annotations

import asyncio
import gc
import random
import sys
import time
from array import array
from collections.abc import Callable
from multiprocessing import get_context
from typing import Any

from bench.harness import peak_rss_bytes, rss_bytes
from bench.timer_peers import HeapScheduler
from timing_wheel import TimingWheel

TICKS_PER_HOUR = 36_000  # 100 ms ticks
START_TICK = 17_640_000_000  # about now, in 100 ms ticks since the epoch: realistic int sizes

Row = dict[str, Any]


def _row(impl: str, pending: int, metric: str, value: float, unit: str) -> Row:
    return {"impl": impl, "params": {"pending": pending}, "metric": metric, "value": value, "unit": unit}


def _dues(n: int, seed: int, span: int = TICKS_PER_HOUR) -> array:
    rnd = random.Random(seed)
    return array("q", (START_TICK + 1 + rnd.randrange(span) for _ in range(n)))


def _inputs(n: int, ops: int) -> tuple[list[str], array, array, array]:
    """The same keys, due ticks, new due ticks and picks for every implementation at one size."""
    keys = [f"cart:{i:08d}" for i in range(n)]
    picks = array("q", (random.Random(3).randrange(n) for _ in range(ops)))
    return keys, _dues(n, 1), _dues(ops, 2), picks


def _measure_manual(impl: str, n: int, ops: int) -> list[Row]:
    """Wheel or heapq: every operation, driven by hand."""
    make = {"wheel": lambda: TimingWheel(START_TICK), "heapq": lambda: HeapScheduler(START_TICK)}[impl]
    sched = make()
    keys, dues, redues, picks = _inputs(n, ops)
    gc.collect()
    rows: list[Row] = []
    rss0 = rss_bytes()
    schedule, cancel = sched.schedule, sched.cancel
    t0 = time.perf_counter()
    handles = [schedule(dues[i], keys[i], 1) for i in range(n)]
    t1 = time.perf_counter()
    rss1 = rss_bytes()
    rows.append(_row(impl, n, "schedule", (t1 - t0) / n * 1e9, "ns/op"))
    # The caller's list of handles is not the scheduler's cost; what a handle is (the wheel's int, the
    # heap's entry) is.
    rows.append(_row(impl, n, "bytes_per_timer", (rss1 - rss0 - sys.getsizeof(handles)) / n, "B"))

    t0 = time.perf_counter()
    for j in range(ops):
        i = picks[j]
        cancel(handles[i])
        handles[i] = schedule(redues[j], keys[i], 1)
    t1 = time.perf_counter()
    rows.append(_row(impl, n, "reschedule", (t1 - t0) / ops * 1e9, "ns/op"))

    # move: the wheel's reschedule() keeps the slot and the handle (Linux's mod_timer); heapq has no
    # such operation, so its "move" is the same cancel + schedule as above.
    move = getattr(sched, "reschedule", None)
    t0 = time.perf_counter()
    if move is not None:
        for j in range(ops):
            move(handles[picks[j]], redues[j])
    else:
        for j in range(ops):
            i = picks[j]
            cancel(handles[i])
            handles[i] = schedule(redues[j], keys[i], 1)
    t1 = time.perf_counter()
    rows.append(_row(impl, n, "move", (t1 - t0) / ops * 1e9, "ns/op"))

    # mixed: the cart workload, with time moving one tick per 1 000 ops: 80 % of the ops move a
    # timer (a cart update), 20 % cancel one and schedule a new one (a purchase and a new cart).
    now = START_TICK
    advance = sched.advance
    fired = 0
    t0 = time.perf_counter()
    for start in range(0, ops, 1000):  # each 1 000 ops: 800 moves, 200 cancel + schedule, one tick
        off = now - START_TICK
        split = min(start + 800, ops)
        if move is not None:
            for j in range(start, split):
                i = picks[j]
                if not move(handles[i], redues[j] + off):  # it fired meanwhile: arm it again
                    handles[i] = schedule(redues[j] + off, keys[i], 1)
        else:
            for j in range(start, split):
                i = picks[j]
                cancel(handles[i])
                handles[i] = schedule(redues[j] + off, keys[i], 1)
        for j in range(split, min(start + 1000, ops)):
            i = picks[j]
            cancel(handles[i])
            handles[i] = schedule(redues[j] + off, keys[i], 2)
        now += 1
        for _key, _tag in advance(now):
            fired += 1
    t1 = time.perf_counter()
    rows.append(_row(impl, n, "mixed", ops / (t1 - t0), "ops/s"))

    m = min(ops, n)
    t0 = time.perf_counter()
    for j in range(m):
        cancel(handles[picks[j]])
    t1 = time.perf_counter()
    rows.append(_row(impl, n, "cancel", (t1 - t0) / m * 1e9, "ns/op"))
    # refill what was cancelled so that firing runs at N pending
    for j in range(m):
        i = picks[j]
        handles[i] = schedule(redues[j], keys[i], 1)
    pending = len(sched)
    end = START_TICK + 2 * TICKS_PER_HOUR + 10
    count = 0
    t0 = time.perf_counter()
    if impl == "wheel":
        # The engine's firing path: batches from expire(), each timer handed to a consumer.
        while True:
            batch = sched.expire(end, 10_000)
            if not batch:
                break
            for j in range(0, len(batch), 2):
                count += 1
    else:
        for _ in advance(end):
            count += 1
    t1 = time.perf_counter()
    rows.append(_row(impl, n, "fire", (t1 - t0) / max(count, 1) * 1e9, "ns/timer"))
    rows.append(_row(impl, n, "fire_rate", count / (t1 - t0), "timers/s"))
    assert count == pending, (impl, count, pending)
    rows.append(_row(impl, n, "peak_rss", peak_rss_bytes() / 2**20, "MiB"))
    return rows


def _measure_asyncio(impl: str, n: int, ops: int) -> list[Row]:
    """``loop.call_later`` / ``TimerHandle.cancel`` on uvloop or the default loop."""
    if impl == "call_later/uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    rows: list[Row] = []
    keys, dues, redues, picks = _inputs(n, ops)
    fired = [0]

    def callback(key: str) -> None:
        fired[0] += 1

    async def work() -> None:
        call_later = loop.call_later
        gc.collect()
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        handles = [call_later((dues[i] - START_TICK) * 0.1 + 600, callback, keys[i]) for i in range(n)]
        t1 = time.perf_counter()
        rss1 = rss_bytes()
        rows.append(_row(impl, n, "schedule", (t1 - t0) / n * 1e9, "ns/op"))
        rows.append(_row(impl, n, "bytes_per_timer", (rss1 - rss0 - sys.getsizeof(handles)) / n, "B"))
        t0 = time.perf_counter()
        for j in range(ops):
            i = picks[j]
            handles[i].cancel()
            handles[i] = call_later((redues[j] - START_TICK) * 0.1 + 600, callback, keys[i])
        t1 = time.perf_counter()
        rows.append(_row(impl, n, "reschedule", (t1 - t0) / ops * 1e9, "ns/op"))
        # The cart mix has no move operation here and no manual ticks, so every one of its ops is a
        # cancel + call_later: exactly the loop just measured, reported as ops/s.
        rows.append(_row(impl, n, "mixed", ops / (t1 - t0), "ops/s"))
        m = min(ops, n)
        t0 = time.perf_counter()
        for j in range(m):
            handles[picks[j]].cancel()
        t1 = time.perf_counter()
        rows.append(_row(impl, n, "cancel", (t1 - t0) / m * 1e9, "ns/op"))
        for h in handles:
            h.cancel()
        del handles
        # firing: N timers due within the next 50 ms; block until all are due, then let the loop
        # dispatch them and time that.
        done = asyncio.Event()
        fired[0] = 0
        base = loop.time()

        def last(_: str) -> None:
            fired[0] += 1
            done.set()

        spread = 0.05
        # Random order, like the manual schedulers' dues: no free memory locality for the heap.
        rnd = random.Random(7)
        handles = [loop.call_at(base + spread * rnd.random(), callback, keys[i]) for i in range(n - 1)]
        handles.append(loop.call_at(base + spread, last, keys[-1]))
        while loop.time() < base + spread + 0.01:
            time.sleep(0.01)
        t0 = time.perf_counter()
        await done.wait()
        t1 = time.perf_counter()
        rows.append(_row(impl, n, "fire", (t1 - t0) / fired[0] * 1e9, "ns/timer"))
        rows.append(_row(impl, n, "fire_rate", fired[0] / (t1 - t0), "timers/s"))
        rows.append(_row(impl, n, "peak_rss", peak_rss_bytes() / 2**20, "MiB"))

    try:
        loop.run_until_complete(work())
    finally:
        loop.close()
    return rows


def _measure_churn(impl: str, n: int, reschedules: int) -> list[Row]:
    """RSS after many reschedules over N pending, relative to right after the fill."""
    sched: Any = TimingWheel(START_TICK) if impl == "wheel" else HeapScheduler(START_TICK)
    keys = [f"cart:{i:08d}" for i in range(n)]
    dues = _dues(n, 1)
    rnd = random.Random(4)
    handles = [sched.schedule(dues[i], keys[i], 1) for i in range(n)]
    gc.collect()
    schedule, cancel = sched.schedule, sched.cancel
    chunk = 1_000_000
    redues = _dues(chunk, 5)
    picks = array("q", (rnd.randrange(n) for _ in range(chunk)))
    gc.collect()
    rss0 = rss_bytes()  # after every input array exists: only the scheduler may grow from here
    done = 0
    while done < reschedules:
        for j in range(min(chunk, reschedules - done)):
            i = picks[j]
            cancel(handles[i])
            handles[i] = schedule(redues[j], keys[i], 1)
        done += chunk
    gc.collect()
    rss1 = rss_bytes()
    return [
        {"impl": impl, "params": {"pending": n, "reschedules": reschedules}, "metric": "churn_growth",
         "value": (rss1 - rss0) / max(rss0, 1) * 100, "unit": "%"},
        {"impl": impl, "params": {"pending": n, "reschedules": reschedules}, "metric": "rss_after_churn",
         "value": rss1 / 2**20, "unit": "MiB"},
    ]


def _measure_jump(n: int) -> list[Row]:
    """A 30-day clock jump: cost follows the timers fired, not the 25.9 M ticks skipped."""
    days = 864_000  # ticks per day
    rows: list[Row] = []
    w = TimingWheel(START_TICK)
    rnd = random.Random(6)
    for i in range(n):
        w.schedule(START_TICK + 1 + rnd.randrange(60 * days), i, 1)
    t0 = time.perf_counter()
    fired = sum(1 for _ in w.advance(START_TICK + 30 * days))
    t1 = time.perf_counter()
    rows.append({"impl": "wheel", "params": {"pending": n, "jump_days": 30, "fired": fired},
                 "metric": "jump_30d", "value": (t1 - t0) / max(fired, 1) * 1e9, "unit": "ns/fired"})
    w = TimingWheel(START_TICK)
    for i in range(n):
        w.schedule(START_TICK + 31 * days + rnd.randrange(days), i, 1)
    t0 = time.perf_counter()
    fired = sum(1 for _ in w.advance(START_TICK + 30 * days))
    t1 = time.perf_counter()
    rows.append({"impl": "wheel", "params": {"pending": n, "jump_days": 30, "fired": fired},
                 "metric": "jump_30d_none_due", "value": (t1 - t0) * 1e6, "unit": "us"})
    return rows


def _in_child(fn: Callable[..., list[Row]], *args: Any) -> list[Row]:
    """Run ``fn(*args)`` in a fresh forked child (clean RSS figures) and return its rows."""
    with get_context("fork").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def _value(rows: list[Row], impl: str, metric: str, pending: int) -> float | None:
    for r in rows:
        if r["impl"] == impl and r["metric"] == metric and r["params"].get("pending") == pending:
            return float(r["value"])
    return None


def _summary(rows: list[Row], sizes: list[int]) -> list[Row]:
    """The issue's targets as ratios measured in this run."""
    out: list[Row] = []

    def ratio(name: str, a: float | None, b: float | None, pending: int) -> None:
        if a is not None and b:
            out.append({"impl": "summary", "params": {"pending": pending}, "metric": name, "value": a / b, "unit": "x"})

    big = 1_000_000 if 1_000_000 in sizes else sizes[-1]
    ratio("mixed_vs_call_later_uvloop", _value(rows, "wheel", "mixed", big), _value(rows, "call_later/uvloop", "mixed", big), big)
    ratio("mixed_vs_heapq", _value(rows, "wheel", "mixed", big), _value(rows, "heapq", "mixed", big), big)
    ratio("fire_vs_heapq", _value(rows, "wheel", "fire_rate", big), _value(rows, "heapq", "fire_rate", big), big)
    ratio("fire_vs_call_later_uvloop", _value(rows, "wheel", "fire_rate", big), _value(rows, "call_later/uvloop", "fire_rate", big), big)
    ratio("fire_vs_call_later_asyncio", _value(rows, "wheel", "fire_rate", big), _value(rows, "call_later/asyncio", "fire_rate", big), big)
    lo, hi = sizes[0], sizes[-1]
    for impl in ("wheel", "heapq"):
        a, b = _value(rows, impl, "reschedule", hi), _value(rows, impl, "reschedule", lo)
        if a is not None and b:
            out.append({"impl": "summary", "params": {"from": lo, "to": hi}, "metric": f"reschedule_cost_growth_{impl}",
                        "value": a / b, "unit": "x"})
    return out


def run(quick: bool, progress: Callable[[str], None]) -> list[Row]:
    sizes = [10_000, 100_000, 1_000_000] if quick else [10_000, 100_000, 1_000_000, 5_000_000]
    impls = ["wheel", "heapq", "call_later/uvloop", "call_later/asyncio"]
    rows: list[Row] = []
    for n in sizes:
        ops = min(max(n, 100_000), 1_000_000) if not quick else min(max(n, 50_000), 300_000)
        for impl in impls:
            progress(f"  wheel bench: {impl} at {n:,} pending ({ops:,} ops)")
            fn = _measure_manual if impl in ("wheel", "heapq") else _measure_asyncio
            rows.extend(_in_child(fn, impl, n, ops))
    churn_n = 1_000_000 if not quick else 200_000
    churn_r = 10_000_000 if not quick else 2_000_000
    for impl in ("wheel", "heapq"):
        progress(f"  wheel bench: churn {impl}: {churn_r:,} reschedules over {churn_n:,}")
        rows.extend(_in_child(_measure_churn, impl, churn_n, churn_r))
    progress("  wheel bench: 30-day clock jump")
    rows.extend(_in_child(_measure_jump, 1_000_000 if not quick else 200_000))
    rows.extend(_summary(rows, sizes))
    return rows


if __name__ == "__main__":  # pragma: no cover - manual use
    from bench.harness import scenario_main

    sys.exit(scenario_main("wheel")[1]())

