"""Benchmark ``e2e``: the whole engine at 1 M and 5 M live carts, recovery flows firing while events arrive.

Setup. The engine runs in a forked child (``engine.app.Engine``, the same object ``cartwheel run``
builds) on a **scaled clock**, ingest on a free loopback TCP port, every channel an ``outbox`` in a
temporary directory at a configured rate, snapshots and the message-log retention pushed out of the
run (the final snapshot is not taken: ``bench/snapshot.py`` measures snapshots). Sizes: 1 M and 5 M
carts (quick: 50 k; ``CARTWHEEL_BENCH_TINY=1``: 2 k).

Populate. The carts of the load generator's shop (``bench.loadgen.ShopModel(carts=N).populate()``: one
``cart.updated`` with a full profile per cart, four stores) are applied in-process through the engine's
own frame handler (validate + apply, batches of 1 000), each with an event time drawn uniformly over the
last 90 simulated minutes. The carts are thus at different points of their life when the clock starts:
two thirds are past the 30-minute abandonment timeout (their timers are overdue: the engine fires them
first, as after a restart — ``catchup_burst``; ``catchup`` lasts until half a second passes with no timer
more than 100 ms late and the channels' queues hold at most a second of their rates, and only then do
the phases start), their first recovery step (1 h after abandonment: email and push) falls due uniformly
over the next simulated hour, the other third abandons over the next 30 minutes. Loading and the burst
take a few simulated minutes, in which the first steps of a few percent of the carts fall due: at 10 M
carts 275 k messages (``catchup_backlog``, measured), which the engine sends before the phases start
(``catchup_sends``, seconds) so that they measure the steady state, not the draining of that backlog. The carts are frozen out of the collector's reach as they load (every ``POPULATE_FREEZE``
carts) and once more at the end, as the engine does every 10 s and after restoring a snapshot. The clock factor is chosen
per size so that about 2 000 timers fall due per real second whatever the size (``factor = 5.4e6 /
carts``: 5.4 at 1 M, 1.08 at 5 M, 108 at 50 k), and the wheel tick is 10 ms of real time. 2 000/s is
far above a real shop's rate at these sizes (a million carts over 48 h of flows is ~50 timers/s) and
leaves the engine room for ingest; at 10 000/s with sends to the outbox this machine's engine is
already near a full core before any event arrives.

Phases (``phase_s`` real seconds each: 30; quick 8; tiny 1):

* ``timers``: no events; flows fire and send.
* ``saturated``: ``bench/loadgen.py`` in its own process, closed loop (as fast as the engine answers),
  batches of 100 over TCP, the shop's realistic event mix on the same carts (pre-generated pool):
  ingest saturated while timers fire.
* ``open``: the same at a fixed offered load (``open_rate`` events/s), reply latency measured from each
  frame's scheduled send time (no coordinated omission).

Per phase: ``events_per_s`` (the engine's accepted-event counter), ``reply_p50/p99/p999/max`` (from the
load generator), ``timer_lag_p50/p99/p999/max`` (``engine.stats.timer_lag``, fire time minus due time,
divided by the clock factor: real milliseconds), ``timers_fired_per_s``, ``sends_per_s.<channel>``,
``send_queue_p99.<channel>`` (real milliseconds a message waited in its channel's queue, from being
offered to the channel, once its ledger record was durable, to its send starting: the timer lag says
when the engine noticed a deadline, this and the backlog say whether the message went then),
``send_backlog.<channel>`` (messages still in the channel's queue at the phase's end) and
``send_backlog.unrecorded`` (send intents still waiting for their ledger record to be durable), ``rss``,
``cpu`` (the engine process's user+system time over wall time, ``resource.getrusage``; the load
generator's is ``loadgen_cpu``), collector pauses (``gc_time``, ``gc_pause_max``, ``gc_full_collections``
from ``gc.callbacks``), ``timers_pending`` and ``live_carts`` at the end, and the machine's 1-minute
``load_average`` (above the core count: something else was competing for the cores). ``summary`` rows hold
the timer lag under saturation against the peers' targets (p99 < 20 ms, max < 100 ms) and against the
``timers`` phase: bounded lag while ingest is saturated is the point.

Simplifications admitted on purpose: one engine process, the load generator on the same machine
(they share its cores), no sockets for the channels (outbox files; the channel benchmark measures SMTP
and HTTP providers), the populated carts all come from one bulk load rather than days of history.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

__all__ = ["E2E_BYTES_PER_CART", "TINY_ENV", "Plan", "clock_factor", "engine_config", "plan_for", "run"]

TINY_ENV = "CARTWHEEL_BENCH_TINY"
ROOT = Path(__file__).resolve().parent.parent
TIMER_RATE_PER_S = 2_000  #: aimed-at timers due per real second (sets the clock factor)
TICK_REAL_S = 0.01
CATCHUP_LAG_S = 0.1  #: the engine keeps up when no timer in half a second fired later than this (real s)
CATCHUP_LIMIT_S = 600.0
#: the send backlog counts as drained when each channel's queue holds at most this many seconds of its rate
CATCHUP_BACKLOG_S = 1.0
POPULATE_BATCH = 1000
#: carts loaded between two ``gc.freeze()`` calls while populating. The engine's freeze timer is not
#: running yet; without these, each full collection walks every cart loaded so far (measured at 5 M: ~40
#: of them, the last ones 2.3-2.8 s each, about a third of the populate time).
POPULATE_FREEZE = 100_000
#: channel rates in real messages per second (converted to the scaled clock's seconds in the config)
CHANNEL_RATES = {"email": 10_000, "push": 10_000, "whatsapp": 1_000, "sms": 1_000}
STORES = 4
#: RSS per live cart at the end of a full run, with margin: 1.26 KB measured at 1 M carts (972 B after
#: populate, then the flows' runs, queued messages and the ledger), ~1.05 KB at 5 M, 1.14 KB at 10 M
E2E_BYTES_PER_CART = 1_300
TARGETS = {"p99_ms": 20.0, "max_ms": 100.0}

Row = dict[str, Any]
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run of the scenario measures."""

    carts: tuple[int, ...]
    phase_s: float  #: real seconds per measured phase
    pool_events: int  #: pre-generated events for the load generator (cycled)
    open_rate: int  #: offered events/s in the ``open`` phase


#: the issue's condition for the open phase: 100 k events/s offered at 1 M carts, where the reply p99
#: must stay under 10 ms and the timer lag p99 under 200 ms (``summary`` rows ``open_*_vs_target``)
OPEN_TARGET_RATE = 100_000
OPEN_TARGETS_MS = {"reply_p99": 10.0, "timer_lag_p99": 200.0}


def plan_for(quick: bool, tiny: bool = False) -> Plan:
    if tiny:
        return Plan((2_000,), 1.0, 5_000, 2_000)
    if quick:
        return Plan((50_000,), 8.0, 100_000, 20_000)
    return Plan((1_000_000, 5_000_000), 30.0, 400_000, OPEN_TARGET_RATE)


def clock_factor(carts: int) -> float:
    """Simulated seconds per real second so that about TIMER_RATE_PER_S timers fall due per second."""
    return TIMER_RATE_PER_S * 3600 / (1.33 * carts)


def engine_config(tmp: Path, factor: float, *, unlimited: bool = False) -> Any:
    """The engine's config: ingest on a free port, everything in ``tmp``, rates and tick in real terms.

    ``unlimited``: channel bursts and queues large enough that no rate limit holds a message back (for a
    manual clock, on which a rate limit's tokens never refill: ``bench/flow_costs.py``).
    """
    from engine.config import parse_config

    tick_ms = max(1, min(60_000, round(TICK_REAL_S * factor * 1000)))
    stores = {
        f"shop{k + 1}": {"name": f"Shop {k + 1}", "timezone": "Europe/Madrid", "credits": 1_000_000_000,
                         "incentive": {"kind": "discount", "percent": 10, "code_prefix": "BACK"}}
        for k in range(STORES)
    }
    # Rates are given in engine time (the clock runs ``factor`` times faster than real time); so is the
    # burst, which by default is a tenth of a second's worth: of *engine* seconds, i.e. a tenth of that in
    # real time, fewer tokens than a busy loop turn takes at large factors. It is set to a tenth of a
    # real second's worth, what the default gives on the real clock.
    channels = {name: {"kind": "outbox", "dir": str(tmp / "outbox"), "rate": rate / factor,
                       "burst": 10_000_000 if unlimited else max(1.0, rate / 10), "queue": 1_000_000 if unlimited else 50_000}
                for name, rate in CHANNEL_RATES.items()}
    return parse_config({
        "engine": {
            "ingest_tcp": "127.0.0.1:0", "ingest_unix": "", "admin_unix": str(tmp / "admin.sock"),
            "store": f"file:{tmp / 'state'}", "snapshot_interval": "3650d", "log_retention": "3650d",
            "tick": f"{tick_ms}ms", "max_frame_bytes": 4 << 20,
        },
        "stores": stores,
        "channels": channels,
    }, source="<bench e2e>")


def _cpu_s(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Cell:
    """One size: populate, catch up, then the phases; runs inside the forked child's event loop."""

    def __init__(self, carts: int, plan: Plan, tmp: Path, progress: Progress) -> None:
        self.carts = carts
        self.plan = plan
        self.tmp = tmp
        self.progress = progress
        self.factor = clock_factor(carts)
        self.rows: list[Row] = []
        self.engine: Any = None
        from bench.harness import GcWatch

        self.gc = GcWatch()

    def row(self, metric: str, value: float, unit: str, **params: Any) -> None:
        self.rows.append({"impl": "engine", "params": {"carts": self.carts, **params}, "metric": metric,
                          "value": float(value), "unit": unit})

    async def _pool(self) -> asyncio.subprocess.Process:
        """Generate the load generator's event pool in a separate process (in parallel with populate)."""
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadgen", "--carts", str(self.carts), "--stores", str(STORES),
            "--pool", str(self.plan.pool_events), "--save-events", str(self.tmp / "pool.msgpack"), "--quiet",
            cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

    def populate(self) -> int:
        """Apply one ``cart.updated`` per cart through the frame handler; returns the overdue timers."""
        from bench.loadgen import ShopModel, ShopSpec

        engine = self.engine
        handle, clock = engine.handler.handle, engine.clock
        rnd = random.Random(5)
        span_s = 90 * 60.0
        abandon_s = 30 * 60.0
        batch: list[dict[str, Any]] = []
        seq = 0
        overdue = 0  # timers already due when their cart is applied: a lower bound of those due at start
        rss0, cpu0, t0 = _rss(), _cpu_s(resource.RUSAGE_SELF), time.perf_counter()
        step = max(self.carts // 5, 1)
        for n, (event, _bad) in enumerate(ShopModel(ShopSpec(carts=self.carts, stores=STORES)).populate(), 1):
            now = clock.now()
            ts = now - rnd.random() * span_s
            event["ts"] = ts
            if ts + abandon_s <= now:
                overdue += 1
            batch.append(event)
            if len(batch) == POPULATE_BATCH:
                seq += 1
                reply = handle(seq, batch)
                if reply.get("rejected"):
                    raise RuntimeError(f"populate: rejected {reply['rejected'][:3]}")
                batch = []
            if n % POPULATE_FREEZE == 0:
                gc.freeze()  # as the running engine does every 10 s (see POPULATE_FREEZE)
            if n % step == 0:
                self.progress(f"  e2e: populated {n:,}/{self.carts:,} carts, rss {_rss() / 2**20:,.0f} MiB")
        if batch:
            seq += 1
            handle(seq, batch)
        took = time.perf_counter() - t0
        cpu = _cpu_s(resource.RUSAGE_SELF) - cpu0
        gc.collect()
        gc.freeze()  # what the engine does after a restore: the bulk of carts leaves the collector's scans
        rss1 = _rss()
        live = len(engine.registry)
        self.row("populate_rate", self.carts / took, "carts/s")
        self.row("populate_cpu_per_cart", cpu / self.carts * 1e6, "us")
        self.row("rss_after_populate", rss1 / 2**20, "MiB")
        self.row("bytes_per_cart", (rss1 - rss0) / self.carts, "B")
        self.progress(f"  e2e: {live:,} carts in {took:.1f} s ({self.carts / took:,.0f}/s), rss {rss1 / 2**20:,.0f} MiB "
                      f"({(rss1 - rss0) / self.carts:.0f} B/cart); {overdue:,} timers overdue; clock x{self.factor:g}")
        return overdue

    async def catch_up(self, overdue: int) -> None:
        """Start the engine; wait until the overdue timers have fired and the engine is keeping up.

        Keeping up: over half a second of real time, no timer fired more than CATCHUP_LAG_S late (real
        time), or none fired at all; then the messages that fell due meanwhile are sent, until each
        channel's queue holds at most CATCHUP_BACKLOG_S of its rate; all in at most CATCHUP_LIMIT_S. The
        phases start only then, so that none of them measures the tail of the restart burst.
        """
        from engine.stats import LatencyHistogram

        engine = self.engine
        stats = engine.stats
        t0 = time.perf_counter()
        await engine.start()
        while stats.timers_fired < overdue:
            await asyncio.sleep(0.02)
        burst_s = time.perf_counter() - t0
        while time.perf_counter() - t0 < CATCHUP_LIMIT_S:
            stats.timer_lag = LatencyHistogram()
            await asyncio.sleep(0.5)
            lag = stats.timer_lag.summary()
            if not lag["count"] or lag["max_ms"] / 1000 / self.factor < CATCHUP_LAG_S:
                break
        t1 = time.perf_counter()
        backlog = self.backlog()
        self.progress(f"  e2e: {overdue:,} overdue timers fired in {burst_s:.1f} s after start; keeping up after "
                      f"{t1 - t0:.1f} s; {sum(backlog.values()):,} messages queued, sending them")
        while time.perf_counter() - t0 < CATCHUP_LIMIT_S and not self._drained(self.backlog()):
            await asyncio.sleep(0.5)
        left = self.backlog()
        took = time.perf_counter() - t0
        self.row("catchup_burst", burst_s, "s")
        self.row("catchup_rate", overdue / burst_s if burst_s > 0 else 0.0, "timers/s")
        self.row("catchup_backlog", sum(backlog.values()), "msgs")
        self.row("catchup_sends", took - (t1 - t0), "s")
        self.row("catchup", took, "s")
        self.progress(f"  e2e: sent down to {sum(left.values()):,} queued in {took - (t1 - t0):.1f} s"
                      f"{'' if self._drained(left) else ' (time limit: the phases start with a backlog)'}")

    def backlog(self) -> dict[str, int]:
        """Messages waiting per channel (queued in its pool or in the dispatcher's overflow), and under
        ``unrecorded`` the send intents still waiting for their ledger record to be durable."""
        dispatcher = self.engine.dispatcher
        if dispatcher is None:
            return {}
        waiting: dict[str, int] = {name: pool.statistics().queued for name, pool in dispatcher.pools.items()}
        for _pool, message in dispatcher.overflow:
            waiting[message.channel] = waiting.get(message.channel, 0) + 1
        if dispatcher.ledger is not None:
            waiting["unrecorded"] = dispatcher.ledger.waiting()
        return waiting

    @staticmethod
    def _drained(backlog: dict[str, int]) -> bool:
        """At most CATCHUP_BACKLOG_S of each channel's rate waiting (unrecorded intents: of all rates)."""
        every = sum(CHANNEL_RATES.values())
        return all(n <= CHANNEL_RATES.get(ch, every) * CATCHUP_BACKLOG_S for ch, n in backlog.items())

    async def phase(self, name: str, loadgen: list[str] | None) -> None:
        from engine.stats import LatencyHistogram

        engine = self.engine
        stats = engine.stats
        stats.timer_lag = LatencyHistogram()  # this phase's lag only (the runtime reads it per batch)
        stats.queue_time.clear()  # and this phase's time in the channels' queues
        sent0 = {ch: outcomes.get("sent", 0) for ch, outcomes in stats.sends.items()}
        fired0, events0 = stats.timers_fired, stats.events_accepted
        cpu0, child0, t0 = _cpu_s(resource.RUSAGE_SELF), _cpu_s(resource.RUSAGE_CHILDREN), time.perf_counter()
        summary: dict[str, Any] | None = None
        self.gc.reset()
        if loadgen is None:
            await asyncio.sleep(self.plan.phase_s)
        else:
            # subprocess.Popen, not the loop's create_subprocess_exec: uvloop spawns with fork(), and
            # copying the page tables of a multi-GB engine blocked its loop for the whole fork
            # (measured: ~110 ms at 3 GB; it was each phase's maximum timer lag, ~220 ms at 5 M
            # carts). Popen uses vfork(): under a millisecond.
            proc = subprocess.Popen(loadgen, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await asyncio.get_running_loop().run_in_executor(None, proc.communicate)
            if not out.strip():
                raise RuntimeError(f"loadgen failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
            summary = json.loads(out)
        wall = time.perf_counter() - t0
        cpu = _cpu_s(resource.RUSAGE_SELF) - cpu0
        lag = stats.timer_lag.summary()
        f = self.factor
        p = {"phase": name}
        self.row("events_per_s", (stats.events_accepted - events0) / wall, "events/s", **p)
        if summary is not None:
            lat = summary["latency_ms"]
            self.row("offered_rate", float(summary.get("offered_rate") or 0.0), "events/s", **p)
            for key in ("p50", "p99", "p999", "max"):
                self.row(f"reply_{key}", lat[key], "ms", **p)
            self.row("loadgen_errors", summary["errors"], "count", **p)
            self.row("loadgen_cpu", (_cpu_s(resource.RUSAGE_CHILDREN) - child0) / wall * 100, "%", **p)
        for key in ("p50", "p99", "p999", "max"):
            self.row(f"timer_lag_{key}", lag[f"{key}_ms"] / f, "ms", **p)
        self.row("timers_fired_per_s", (stats.timers_fired - fired0) / wall, "timers/s", **p)
        for ch in sorted(stats.sends):
            if ch == "-":
                continue
            sent = stats.sends[ch].get("sent", 0) - sent0.get(ch, 0)
            self.row(f"sends_per_s.{ch}", sent / wall, "msg/s", **p)
        for ch, h in sorted(stats.queue_time.items()):
            self.row(f"send_queue_p99.{ch}", h.summary()["p99_ms"], "ms", **p)
        for ch, n in sorted(self.backlog().items()):
            if n or ch in stats.queue_time or ch == "unrecorded":
                self.row(f"send_backlog.{ch}", n, "msgs", **p)
        self.row("cpu", cpu / wall * 100, "%", **p)
        self.row("gc_time", self.gc.total_s / wall * 100, "%", **p)
        self.row("gc_pause_max", self.gc.max_s * 1000, "ms", **p)
        self.row("gc_full_collections", self.gc.full, "count", **p)
        # The machine may be shared: a 1-minute load average above the core count means the figures
        # above were measured with other work competing for the cores.
        self.row("load_average", os.getloadavg()[0], "procs", **p)
        self.row("rss", _rss() / 2**20, "MiB", **p)
        self.row("timers_pending", len(engine.runtime.wheel), "count", **p)
        self.row("live_carts", len(engine.registry), "count", **p)
        extra = "" if summary is None else (
            f", reply p50 {summary['latency_ms']['p50']:.2f} p99 {summary['latency_ms']['p99']:.2f} ms, errors {summary['errors']}")
        self.progress(f"  e2e: {self.carts:,} carts, {name}: {(stats.events_accepted - events0) / wall:,.0f} events/s, "
                      f"{(stats.timers_fired - fired0) / wall:,.0f} timers/s, lag p50 {lag['p50_ms'] / f:.1f} "
                      f"p99 {lag['p99_ms'] / f:.1f} max {lag['max_ms'] / f:.1f} ms (real), cpu {cpu / wall:.0%}, "
                      f"gc {self.gc.total_s / wall:.0%} (longest {self.gc.max_s * 1000:.0f} ms, {self.gc.full} full){extra}")

    async def run(self) -> list[Row]:
        from engine.app import Engine
        from engine.clock import ScaledClock

        config = engine_config(self.tmp, self.factor)
        pool_proc = await self._pool()
        self.engine = Engine(config, clock=ScaledClock(self.factor), base_dir=self.tmp)
        overdue = self.populate()
        _, err = await pool_proc.communicate()
        if pool_proc.returncode != 0:
            raise RuntimeError(f"loadgen --save-events failed: {err.decode(errors='replace')[-2000:]}")
        await self.catch_up(overdue)
        host, port = self.engine.ingest.tcp_address[:2]
        base = [sys.executable, "-m", "bench.loadgen", "--tcp", f"{host}:{port}", "--events", str(self.tmp / "pool.msgpack"),
                "--batch", "100", "--duration", str(self.plan.phase_s), "--json", "--quiet"]
        await self.phase("timers", None)
        await self.phase("saturated", [*base, "--rate", "0"])
        await self.phase("open", [*base, "--rate", str(self.plan.open_rate)])
        return self.rows


def _child_main(carts: int, plan: Plan, tmp: str, conn: Any, progress: Progress) -> None:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            rows = runner.run(_Cell(carts, plan, Path(tmp), progress).run())
        conn.send(("ok", rows))
    except Exception:  # noqa: BLE001 - whatever it is, the parent reports it
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()
        os._exit(0)  # skip tearing down millions of carts and the engine's tasks: the run is over


def _summary(rows: list[Row], offered: int = 0) -> list[Row]:
    """Target rows: timer lag under saturation (every size), and the issue's open-phase targets at 1 M
    carts when the plan offered their load (``offered``: the plan's ``open_rate``)."""
    out: list[Row] = []

    def get(carts: int, phase: str, metric: str) -> float | None:
        for r in rows:
            if r["params"].get("carts") == carts and r["params"].get("phase") == phase and r["metric"] == metric:
                return float(r["value"])
        return None

    for carts in sorted({r["params"]["carts"] for r in rows}):
        for metric, key in (("timer_lag_p99", "p99_ms"), ("timer_lag_max", "max_ms")):
            v = get(carts, "saturated", metric)
            if v is not None:
                out.append({"impl": "summary", "params": {"carts": carts, "phase": "saturated", "target_ms": TARGETS[key],
                            "met": v < TARGETS[key]}, "metric": f"{metric}_saturated_vs_target",
                            "value": v / TARGETS[key], "unit": "x"})
        if offered == OPEN_TARGET_RATE and carts == 1_000_000:
            for metric, target in OPEN_TARGETS_MS.items():
                v = get(carts, "open", metric)
                if v is not None:
                    out.append({"impl": "summary", "params": {"carts": carts, "phase": "open", "rate": offered,
                                "target_ms": target, "met": v < target}, "metric": f"open_{metric}_vs_target",
                                "value": v / target, "unit": "x"})
        a, b = get(carts, "saturated", "timer_lag_p99"), get(carts, "timers", "timer_lag_p99")
        if a is not None and b:
            out.append({"impl": "summary", "params": {"carts": carts}, "metric": "timer_lag_p99_saturated_vs_idle",
                        "value": a / b, "unit": "x"})
    return out


def run(quick: bool, progress: Progress, *, tiny: bool | None = None, plan: Plan | None = None,
        sizes: tuple[int, ...] | None = None) -> list[Row]:
    """The harness entry point (``tiny``: default from ``CARTWHEEL_BENCH_TINY``; ``sizes``: live carts per
    cell in place of the plan's)."""
    from bench.harness import check_memory

    if tiny is None:
        tiny = os.environ.get(TINY_ENV, "") not in ("", "0")
    plan = plan or plan_for(quick, tiny)
    if sizes:
        plan = replace(plan, carts=tuple(sizes))
    for carts in plan.carts:
        check_memory(carts, E2E_BYTES_PER_CART, "with its profile, timer, flow and queued messages")
    progress(f"  e2e: {plan}")
    rows: list[Row] = []
    for carts in plan.carts:
        tmp = tempfile.mkdtemp(prefix="cw-e2e-")
        try:
            ctx = get_context("fork")
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child_main, args=(carts, plan, tmp, child, progress), name=f"e2e-{carts}")
            t0 = time.perf_counter()
            proc.start()
            child.close()
            timeout = 300 + carts * 2e-4 + 4 * plan.phase_s
            if not parent.poll(timeout):
                proc.kill()
                proc.join()
                raise RuntimeError(f"e2e: {carts:,} carts did not finish in {timeout:.0f} s")
            status, payload = parent.recv()
            proc.join()
            if status != "ok":
                raise RuntimeError(f"e2e at {carts:,} carts failed:\n{payload}")
            rows.extend(payload)
            rows.append({"impl": "engine", "params": {"carts": carts}, "metric": "cell_duration",
                         "value": time.perf_counter() - t0, "unit": "s"})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    rows.extend(_summary(rows, plan.open_rate))
    return rows


if __name__ == "__main__":  # pragma: no cover - manual use
    from bench.harness import scenario_main

    sys.exit(scenario_main("e2e")[1]())
