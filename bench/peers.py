"""Benchmark ``peers``: the delayed-send workload through cartwheel and the schedulers people build instead.

The workload (one per size: 100 k and 1 M carts; quick: 20 k and 100 k; ``CARTWHEEL_BENCH_TINY=1``: 2 k)
-------------------------------------------------------------------------------------------------------
Every abandoned cart gets one reminder, due at a whole millisecond drawn uniformly over a ``window``
(20 s; quick: 5 s; tiny: 1 s). Then 70 % of the carts buy, in random order, and their reminders are
cancelled; the other 30 % must fire, each exactly once and never before it is due. The phases:

1. **schedule** all N reminders back to back (timed: ``schedule_rate``), process RSS read before and
   after (``bytes_per_pending``; keys are pre-built and excluded) and, for the Redis peers, Redis's
   ``INFO memory`` ``used_memory`` (``redis_bytes_per_pending``);
2. **cancel** 70 % of them (timed: ``cancel_rate``);
3. **fire**: wait until every kept reminder has fired (or a deadline), then a short settle to catch
   duplicates. Each firing is handed to the same tiny consumer, which records ``time.time() - due``.

The window starts ``lead`` seconds after scheduling begins, so that nothing is due before the cancel
phase ends: ``lead`` is 1.5 times the phases' time estimated from a calibration (schedule and cancel
of 2 % of N with far-away due times) plus 2 s. Should the phases still run past it, ``phases`` shows
it, and a cancel that lost the race shows up as ``fired_after_cancel``. Reported per peer and size:
``schedule_rate``, ``cancel_rate``, ``bytes_per_pending`` (process RSS delta / N), lateness
``p50``/``p99``/``p999``/``max`` (exact, from the sorted list of every firing), ``fire_rate`` (firings
per second between the first and the last), ``early`` (fired before due; must be 0) and ``early_max``,
``missing`` (kept, not fired by the deadline), ``duplicate`` and ``fired_after_cancel``. The garbage
collector is ON everywhere. Each (peer, size) runs in its own forked child (clean RSS), each Redis
peer against its own fresh ``redis-server`` (``--save "" --appendonly no``, free loopback port).

The peers and their best honest configuration
---------------------------------------------
* ``cartwheel`` — ``timing_wheel.TimingWheel`` with 10 ms ticks driven by the engine's loop shape on
  uvloop (``engine.runtime.Runtime.run``): ``expire(now_tick, 5000)`` per turn, ``sleep(0)`` after a
  full batch, otherwise sleep until ``next_event()``. Ticks are computed from integer milliseconds
  (due tick = ceil, now tick = floor), so a reminder cannot fire before it is due.
* ``call_later`` — one ``loop.call_at`` per cart on uvloop (handles kept for cancel), the unix-to-loop
  time offset computed once right after a loop turn; ``TimerHandle.cancel`` to cancel. Everything stays
  in the process heap. (``call_later(due - time.time())`` from inside a long blocking loop would be
  worse: uvloop measures the delay from its cached time, stale by however long the loop has been
  blocked, so reminders would fire early by that much.) uvloop keeps timers in whole milliseconds
  (``round(delay * 1000)`` on libuv's millisecond clock), so it can fire up to about 1 ms before the
  due time: ``early`` counts that, ``early_max`` shows by how much.
* ``redis_zset`` — the sorted-set scheduler as people build it: ``ZADD reminders due member`` sent in
  pipelines of 1 000 commands, ``ZREM`` likewise; a poller every 100 ms runs one Lua script that
  claims atomically (``ZRANGEBYSCORE -inf now LIMIT 0 1000`` + ``ZREM`` of what it got), repeating at
  once while a claim comes back full. redis-py with hiredis, one connection.
* ``arq`` — arq deferred jobs (``enqueue_job(..., _job_id=..., _defer_until=due)``), 16 enqueues in
  flight; a separate worker process (uvloop) with ``max_jobs=1000``, ``poll_delay=0.1`` (default 0.5),
  ``keep_result=0``, ``max_tries=1``. Cancel = what is safe for a *deferred* job: ``ZREM`` of the id
  from ``arq:queue`` and ``DEL arq:job:<id>``, pipelined. Not ``Job.abort()``: on a deferred job it first
  re-scores the job to 1 (due at once) and only then asks the worker to abort it, so a worker polling
  in between runs it early — a reminder sent to a shopper who just bought. arq keeps due times in
  whole milliseconds and compares them with ``round(time() * 1000)``, so it may fire up to 0.5 ms early;
  ``early_max`` shows by how much. At 1 M carts (100 k quick) arq can be capped by ``Plan.arq_cap``; a
  capped row says so in ``params``.

``summary`` rows state the issue's targets as ratios measured here (``met`` in params): cartwheel's
schedule/cancel throughput ≥ 5× the sorted set and ≥ 50× arq, per operation (``schedule_vs_*``,
``cancel_vs_*``) and over the whole workload (``workload_vs_*``: every reminder scheduled, 70 % of them
cancelled, operations over the time both phases took); lateness p99 < 20 ms and max < 100 ms;
≥ 3× less memory per pending reminder than ``call_later``; zero early, missing, duplicate and
after-cancel firings. ``*_scaling`` rows give each peer's figure at the largest size over the smallest.

Running time: quick about 3 minutes, full about 22 minutes on 2 cores, most of it arq at 1 M (its
enqueue rate makes the schedule phase and the lead several minutes long, then it fires ~1.4 k/s).
arq's ``cancel_rate`` is plain pipelined Redis (the ZREM + DEL above, not an arq API), so it runs near
the sorted set's rate: the ``cancel_vs_arq`` target compares cartwheel with raw Redis there.

Simplifications admitted on purpose: one process per peer (no multi-core scale-out of the Redis
peers' clients), members are short decimal ids, the "send" is a function call that records lateness.
"""
from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import random
import select
import shutil
import socket
import subprocess
import sys
import time
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import Any, Self

__all__ = ["IMPLS", "TINY_ENV", "Plan", "RedisServer", "plan_for", "run"]

TINY_ENV = "CARTWHEEL_BENCH_TINY"
CANCEL_FRACTION = 0.7
TICK_MS = 10
FIRE_BATCH = 5000
ZSET_POLL_S = 0.1
ZSET_CLAIM = 1000
PIPELINE = 1000
ARQ_IN_FLIGHT = 16
ARQ_MAX_JOBS = 1000
ARQ_POLL_S = 0.1
SETTLE_S = 0.3
IMPLS = ("cartwheel", "call_later", "redis_zset", "arq")
REDIS_IMPLS = ("redis_zset", "arq")
#: memory per reminder of the costliest peer in its own process (``call_later``: 578 B measured at 1 M), with
#: margin for the workload's arrays (memory check before a cell)
PEERS_BYTES_PER_CART = 1_000
TARGETS = {"vs_redis_zset": 5.0, "vs_arq": 50.0, "p99_ms": 20.0, "max_ms": 100.0, "memory_vs_call_later": 3.0}

Row = dict[str, Any]
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run of the scenario measures."""

    sizes: tuple[int, ...]  #: carts (reminders scheduled) per cell
    window_s: float  #: due times uniform over this many seconds
    arq_cap: int  #: arq runs at min(size, arq_cap) carts
    impls: tuple[str, ...] = IMPLS


def plan_for(quick: bool, tiny: bool = False) -> Plan:
    if tiny:
        return Plan((2_000,), 1.0, 2_000)
    if quick:
        return Plan((20_000, 100_000), 5.0, 100_000)
    return Plan((100_000, 1_000_000), 20.0, 1_000_000)


# ---------------------------------------------------------------------- redis-server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` on a free loopback port, no persistence; ``stop()`` ends it.

    Ready means its log said "Ready to accept connections" (read from its stdout, no polling).
    """

    def __init__(self, *, executable: str = "redis-server", timeout_s: float = 20.0) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--protected-mode", "no", "--logfile", ""],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
        )
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        seen = b""
        while b"Ready to accept connections" not in seen:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([fd], [], [], max(left, 0.0))
            chunk = os.read(fd, 65536) if readable else b""
            if not chunk:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start: {seen[-2000:].decode(errors='replace')}")
            seen += chunk

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------- the workload


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Workload:
    """Due offsets (whole ms within the window) and which carts buy, in the order they buy."""

    def __init__(self, n: int, window_s: float, seed: int = 11) -> None:
        rnd = random.Random(seed)
        window_ms = max(int(window_s * 1000), 1)
        self.n = n
        self.window_s = window_s
        self.offset_ms = array("q", (rnd.randrange(window_ms) for _ in range(n)))
        cancelled = rnd.sample(range(n), round(n * CANCEL_FRACTION))
        self.cancel_order = array("q", cancelled)
        self.cancelled = bytearray(n)
        for i in cancelled:
            self.cancelled[i] = 1
        self.kept = n - len(cancelled)


class Recorder:
    """The consumer every peer hands a fired reminder to: lateness and a fire count per cart."""

    __slots__ = ("counts", "done", "due_s", "expected", "fired", "first_at", "last_at", "late")

    def __init__(self, due_s: array[float], expected: int) -> None:
        self.due_s = due_s
        self.late = array("d")
        self.counts = bytearray(len(due_s))
        self.fired = 0
        self.expected = expected
        self.done: asyncio.Event | None = None
        self.first_at = 0.0
        self.last_at = 0.0

    def fire(self, i: int) -> None:
        now = time.time()
        self.late.append(now - self.due_s[i])
        c = self.counts[i]
        if c < 255:
            self.counts[i] = c + 1
        if not self.fired:
            self.first_at = now
        self.last_at = now
        self.fired += 1
        if self.fired >= self.expected and self.done is not None:
            self.done.set()


def _dues(w: Workload, base_ms: int) -> tuple[array[int], array[float]]:
    due_ms = array("q", (base_ms + o for o in w.offset_ms))
    return due_ms, array("d", (d / 1000 for d in due_ms))


def _lead_s(w: Workload, sched_s_per: float, cancel_s_per: float) -> float:
    return 1.5 * (w.n * sched_s_per + len(w.cancel_order) * cancel_s_per) + 2.0


# ---------------------------------------------------------------------- peers


class _Peer:
    """One implementation: calibrate, schedule, cancel, fire; memory of its external store if any."""

    poll_s = 0.0
    deadline_extra_s = 10.0
    keys: list[int]  # the carts' keys, pre-built by the caller (set by _make_peer)

    async def calibrate(self, k: int) -> tuple[float, float]:
        """Seconds per schedule and per cancel, from ``k`` reminders due in an hour (then cancelled)."""
        far = int(time.time() * 1000) + 3_600_000
        due_ms = array("q", [far + i for i in range(k)])
        due_s = array("d", (d / 1000 for d in due_ms))
        idx = array("q", range(k))
        t0 = time.perf_counter()
        await self.schedule(due_ms, due_s, k, calib=True)
        t1 = time.perf_counter()
        await self.cancel(idx, calib=True)
        t2 = time.perf_counter()
        return (t1 - t0) / k, (t2 - t1) / k

    async def start(self, rec: Recorder) -> None: ...
    async def schedule(self, due_ms: array[int], due_s: array[float], n: int, *, calib: bool = False) -> None: ...
    async def cancel(self, order: array[int], *, calib: bool = False) -> None: ...
    async def stop(self) -> Recorder | None: return None
    async def external_memory(self) -> int | None: return None
    def fired_so_far(self, rec: Recorder) -> int: return rec.fired


class _WheelPeer(_Peer):
    """cartwheel: the TimingWheel driven like engine.runtime.Runtime.run, 10 ms ticks, uvloop."""

    def __init__(self) -> None:
        from timing_wheel import TimingWheel

        now_tick = int(time.time() * 1000) // TICK_MS
        self.wheel = TimingWheel(now_tick, tick_s=TICK_MS / 1000)
        self.handles: list[int] = []
        self.running = True
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()

    async def schedule(self, due_ms: array[int], due_s: array[float], n: int, *, calib: bool = False) -> None:
        schedule = self.wheel.schedule
        keys = self.keys
        # due tick = ceil(due_ms / TICK_MS): integer arithmetic, so never early.
        self.handles = [schedule(-(-due_ms[i] // TICK_MS), keys[i], 1) for i in range(n)]

    async def cancel(self, order: array[int], *, calib: bool = False) -> None:
        cancel, handles = self.wheel.cancel, self.handles
        for i in order:
            cancel(handles[i])

    async def start(self, rec: Recorder) -> None:
        self.task = asyncio.get_running_loop().create_task(self._ticks(rec))

    async def _ticks(self, rec: Recorder) -> None:
        wheel, fire = self.wheel, rec.fire
        expire, next_event = wheel.expire, wheel.next_event
        while self.running:
            now_ms = int(time.time() * 1000)  # floor: the tick reached is never ahead of real time
            batch = expire(now_ms // TICK_MS, FIRE_BATCH)
            if batch:
                for j in range(0, len(batch), 2):
                    fire(batch[j])
                await asyncio.sleep(0)  # more may be due: one turn for everything else first
                continue
            nxt = next_event()
            delay = 1.0 if nxt is None else min(max((nxt * TICK_MS - now_ms) / 1000, 0.0), 1.0)
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), delay)
            except TimeoutError:
                pass

    async def stop(self) -> Recorder | None:
        self.running = False
        self.wake.set()
        if self.task is not None:
            await self.task
        return None


class _CallLaterPeer(_Peer):
    """call_later: one uvloop TimerHandle per cart."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.rec: Recorder | None = None

    async def schedule(self, due_ms: array[int], due_s: array[float], n: int, *, calib: bool = False) -> None:
        loop = asyncio.get_running_loop()
        # uvloop's time() is libuv's cached time, refreshed once per loop turn: take one turn first so
        # that the offset is not off by however long this task has been running.
        await asyncio.sleep(0)
        offset = time.time() - loop.time()  # once: loop time = unix time - offset
        call_at = loop.call_at
        fire = self.rec.fire if self.rec is not None and not calib else _noop
        keys = self.keys
        self.handles = [call_at(due_s[i] - offset, fire, keys[i]) for i in range(n)]

    async def cancel(self, order: array[int], *, calib: bool = False) -> None:
        handles = self.handles
        for i in order:
            handles[i].cancel()

    async def start(self, rec: Recorder) -> None:
        self.rec = rec


def _noop(_: int) -> None:
    pass


class _ZsetPeer(_Peer):
    """redis_zset: ZADD/ZREM pipelines, a 100 ms poller claiming with one Lua script."""

    KEY = "reminders"
    CLAIM = (
        "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))\n"
        "if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end\n"
        "return ids\n"
    )
    poll_s = ZSET_POLL_S

    def __init__(self, port: int) -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.Redis(host="127.0.0.1", port=port)
        self.claim = self.redis.register_script(self.CLAIM)
        self.running = True
        self.task: asyncio.Task[None] | None = None

    async def schedule(self, due_ms: array[int], due_s: array[float], n: int, *, calib: bool = False) -> None:
        key, r = self.KEY, self.redis
        for lo in range(0, n, PIPELINE):
            pipe = r.pipeline(transaction=False)
            for i in range(lo, min(lo + PIPELINE, n)):
                pipe.zadd(key, {str(i): due_s[i]})
            await pipe.execute()

    async def cancel(self, order: array[int], *, calib: bool = False) -> None:
        key, r = self.KEY, self.redis
        for lo in range(0, len(order), PIPELINE):
            pipe = r.pipeline(transaction=False)
            for i in order[lo:lo + PIPELINE]:
                pipe.zrem(key, str(i))
            await pipe.execute()

    async def start(self, rec: Recorder) -> None:
        self.task = asyncio.get_running_loop().create_task(self._poll(rec))

    async def _poll(self, rec: Recorder) -> None:
        claim, fire, key = self.claim, rec.fire, self.KEY
        while self.running:
            ids = await claim(keys=[key], args=[repr(time.time()), ZSET_CLAIM])
            for member in ids:
                fire(int(member))
            if len(ids) < ZSET_CLAIM:
                await asyncio.sleep(self.poll_s)

    async def stop(self) -> Recorder | None:
        self.running = False
        if self.task is not None:
            await self.task
        await self.redis.aclose()
        return None

    async def external_memory(self) -> int | None:
        return int((await self.redis.info("memory"))["used_memory"])


async def _remind(ctx: dict[str, Any], i: int, due_s: float) -> None:
    """The arq job: the worker's recorder notes the lateness."""
    ctx["recorder"].fire_at(i, due_s)


class _WorkerRecorder:
    """Lateness recorded in the arq worker process; the count is shared with the bench for progress."""

    def __init__(self, counter: Any) -> None:
        self.idx = array("q")
        self.late = array("d")
        self.counter = counter
        self.first_at = 0.0
        self.last_at = 0.0

    def fire_at(self, i: int, due_s: float) -> None:
        now = time.time()
        self.idx.append(i)
        self.late.append(now - due_s)
        if not self.first_at:
            self.first_at = now
        self.last_at = now
        self.counter.value += 1


def _arq_worker_main(port: int, conn: Any, counter: Any) -> None:
    """The arq worker process: runs until the bench writes to ``conn``, then sends what it recorded."""
    import uvloop
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    rec = _WorkerRecorder(counter)

    async def main() -> None:
        worker = Worker(
            functions=[func(_remind, name="remind", keep_result=0, max_tries=1)],
            redis_settings=RedisSettings(host="127.0.0.1", port=port), max_jobs=ARQ_MAX_JOBS,
            poll_delay=ARQ_POLL_S, keep_result=0, handle_signals=False, log_results=False,
            allow_abort_jobs=False, ctx={"recorder": rec},
        )
        task = asyncio.get_running_loop().create_task(worker.async_run())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), stop.set)
        conn.send("ready")
        await stop.wait()
        loop.remove_reader(conn.fileno())
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await worker.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    os.set_blocking(conn.fileno(), True)  # add_reader made it non-blocking; the results are large
    conn.recv()
    conn.send((rec.idx.tobytes(), rec.late.tobytes(), rec.first_at, rec.last_at))


class _ArqPeer(_Peer):
    """arq deferred jobs; a worker process; cancel = ZREM from the queue + DEL of the job key."""

    poll_s = ARQ_POLL_S

    def __init__(self, port: int) -> None:
        self.port = port
        ctx = get_context("fork")
        self.counter = ctx.Value("q", 0, lock=False)
        self.conn, child = ctx.Pipe()
        self.worker = ctx.Process(target=_arq_worker_main, args=(port, child, self.counter), name="arq-worker")
        self.worker.start()
        child.close()
        if self.conn.recv() != "ready":
            raise RuntimeError("arq worker did not start")
        self.pool: Any = None
        self.due_s: array[float] | None = None

    async def _pool(self) -> Any:
        if self.pool is None:
            from arq.connections import RedisSettings, create_pool

            self.pool = await create_pool(RedisSettings(host="127.0.0.1", port=self.port))
        return self.pool

    async def schedule(self, due_ms: array[int], due_s: array[float], n: int, *, calib: bool = False) -> None:
        pool = await self._pool()
        prefix = "c" if calib else "r"
        utc = UTC

        async def enqueue(lo: int) -> None:
            for i in range(lo, n, ARQ_IN_FLIGHT):
                job = await pool.enqueue_job("remind", i, due_s[i], _job_id=f"{prefix}{i}",
                                             _defer_until=datetime.fromtimestamp(due_ms[i] / 1000, tz=utc))
                if job is None:
                    raise RuntimeError(f"arq refused job {prefix}{i}")

        await asyncio.gather(*(enqueue(k) for k in range(min(ARQ_IN_FLIGHT, n))))

    async def cancel(self, order: array[int], *, calib: bool = False) -> None:
        pool = await self._pool()
        prefix = "c" if calib else "r"
        for lo in range(0, len(order), PIPELINE // 2):
            pipe = pool.pipeline(transaction=False)
            for i in order[lo:lo + PIPELINE // 2]:
                job_id = f"{prefix}{i}"
                pipe.zrem("arq:queue", job_id)
                pipe.delete("arq:job:" + job_id)
            await pipe.execute()

    async def start(self, rec: Recorder) -> None:
        self.due_s = rec.due_s

    def fired_so_far(self, rec: Recorder) -> int:
        return int(self.counter.value)

    async def stop(self) -> Recorder | None:
        self.conn.send("stop")
        loop = asyncio.get_running_loop()
        idx_b, late_b, first_at, last_at = await loop.run_in_executor(None, self.conn.recv)
        self.worker.join(30)
        if self.pool is not None:
            await self.pool.aclose()
        assert self.due_s is not None
        rec = Recorder(self.due_s, 0)
        idx, late = array("q"), array("d")
        idx.frombytes(idx_b)
        late.frombytes(late_b)
        rec.late = late
        for i in idx:
            if rec.counts[i] < 255:
                rec.counts[i] += 1
        rec.fired = len(idx)
        rec.first_at, rec.last_at = first_at, last_at
        return rec

    async def external_memory(self) -> int | None:
        pool = await self._pool()
        return int((await pool.info("memory"))["used_memory"])


def _make_peer(impl: str, port: int | None, keys: list[int]) -> _Peer:
    peer: _Peer
    if impl == "cartwheel":
        peer = _WheelPeer()
    elif impl == "call_later":
        peer = _CallLaterPeer()
    elif impl == "redis_zset" and port is not None:
        peer = _ZsetPeer(port)
    elif impl == "arq" and port is not None:
        peer = _ArqPeer(port)
    else:
        raise ValueError(f"unknown peer {impl!r} (or no redis port)")
    peer.keys = keys
    return peer


# ---------------------------------------------------------------------- one cell


def _percentile(sorted_late: list[float], p: float) -> float:
    if not sorted_late:
        return 0.0
    k = min(len(sorted_late) - 1, max(0, round(p / 100 * len(sorted_late) + 0.5) - 1))
    return sorted_late[k]


async def _measure(impl: str, n: int, plan: Plan, port: int | None, progress: Progress) -> list[Row]:
    w = Workload(n, plan.window_s)
    keys = list(range(n))  # pre-built: excluded from the memory figures
    peer = _make_peer(impl, port, keys)
    k = min(n, max(1000, n // 50))
    sched_per, cancel_per = await peer.calibrate(k)
    lead = _lead_s(w, sched_per, cancel_per)
    base_ms = int((time.time() + lead) * 1000)
    due_ms, due_s = _dues(w, base_ms)
    rec = Recorder(due_s, w.kept)
    rec.done = asyncio.Event()
    await peer.start(rec)
    gc.collect()
    rss0 = _rss()
    ext0 = await peer.external_memory()
    t0 = time.perf_counter()
    await peer.schedule(due_ms, due_s, n)
    t1 = time.perf_counter()
    rss1 = _rss()
    ext1 = await peer.external_memory()
    await peer.cancel(w.cancel_order)
    t2 = time.perf_counter()
    overrun_s = time.time() - base_ms / 1000
    progress(f"  peers: {impl} {n:,}: scheduled at {n / (t1 - t0):,.0f}/s, cancelled at "
             f"{len(w.cancel_order) / (t2 - t1):,.0f}/s (lead {lead:.1f} s{', OVERRUN' if overrun_s > 0 else ''}); firing")
    last_due = (base_ms + plan.window_s * 1000) / 1000
    deadline = last_due + peer.deadline_extra_s + (w.kept / 500 if impl == "arq" else 0.0)
    if impl == "arq":
        while peer.fired_so_far(rec) < w.kept and time.time() < deadline:
            await asyncio.sleep(0.02)
    else:
        try:
            await asyncio.wait_for(rec.done.wait(), max(deadline - time.time(), 0.0))
        except TimeoutError:
            pass
    await asyncio.sleep(SETTLE_S + peer.poll_s)  # catch a duplicate or a cancelled reminder firing late
    external = await peer.stop()
    if external is not None:
        rec = external
    late = sorted(rec.late)
    counts, cancelled = rec.counts, w.cancelled
    missing = sum(1 for i in range(n) if not cancelled[i] and not counts[i])
    duplicate = sum(c - 1 for c in counts if c > 1)
    after_cancel = sum(1 for i in range(n) if cancelled[i] and counts[i])
    early = sum(1 for x in late if x < 0)
    fire_span = rec.last_at - rec.first_at
    params: dict[str, Any] = {"carts": n, "cancelled": len(w.cancel_order), "window_s": plan.window_s}
    if impl == "arq" and n < max(plan.sizes) and n == plan.arq_cap:
        params["capped_from"] = max(plan.sizes)
    metrics: list[tuple[str, float, str]] = [
        ("schedule_rate", n / (t1 - t0), "ops/s"),
        ("cancel_rate", len(w.cancel_order) / (t2 - t1), "ops/s"),
        ("bytes_per_pending", (rss1 - rss0) / n, "B"),
        ("rss_delta", (rss1 - rss0) / 2**20, "MiB"),
    ]
    if ext0 is not None and ext1 is not None:
        metrics += [("redis_bytes_per_pending", (ext1 - ext0) / n, "B"), ("redis_used_memory_delta", (ext1 - ext0) / 2**20, "MiB")]
    metrics += [
        ("fired", float(len(late)), "count"),
        ("lateness_p50", _percentile(late, 50) * 1000, "ms"),
        ("lateness_p99", _percentile(late, 99) * 1000, "ms"),
        ("lateness_p999", _percentile(late, 99.9) * 1000, "ms"),
        ("lateness_max", (late[-1] if late else 0.0) * 1000, "ms"),
        ("fire_rate", len(late) / fire_span if fire_span > 0 else 0.0, "timers/s"),
        ("early", float(early), "count"),
        ("early_max", (-late[0] * 1000) if late and late[0] < 0 else 0.0, "ms"),
        ("missing", float(missing), "count"),
        ("duplicate", float(duplicate), "count"),
        ("fired_after_cancel", float(after_cancel), "count"),
        ("lead", lead, "s"),
        ("phases", t2 - t0, "s"),
    ]
    progress(f"  peers: {impl} {n:,}: fired {len(late):,}/{w.kept:,}, lateness p50 {_percentile(late, 50) * 1000:.1f} "
             f"p99 {_percentile(late, 99) * 1000:.1f} max {(late[-1] if late else 0) * 1000:.1f} ms, early {early}, "
             f"missing {missing}, duplicate {duplicate}, after cancel {after_cancel}, "
             f"{(rss1 - rss0) / n:.0f} B/pending" + (f", redis {(ext1 - ext0) / n:.0f} B/pending" if ext0 is not None and ext1 is not None else ""))
    return [{"impl": impl, "params": dict(params), "metric": m, "value": float(v), "unit": u} for m, v, u in metrics]


def _child_main(impl: str, n: int, plan: Plan, port: int | None, conn: Any, progress: Progress) -> None:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            rows = runner.run(_measure(impl, n, plan, port, progress))
        conn.send(("ok", rows))
    except Exception:  # noqa: BLE001 - whatever it is, the parent reports it
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _cell(impl: str, n: int, plan: Plan, progress: Progress, timeout_s: float) -> list[Row]:
    """Run one (peer, size) in a forked child, with its own redis-server if it needs one."""
    server = RedisServer() if impl in REDIS_IMPLS else None
    try:
        ctx = get_context("fork")
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child_main, args=(impl, n, plan, server.port if server else None, child, progress),
                           name=f"peers-{impl}")
        proc.start()
        child.close()
        if not parent.poll(timeout_s):
            proc.kill()
            proc.join()
            raise RuntimeError(f"peers: {impl} at {n:,} did not finish in {timeout_s:.0f} s")
        status, payload = parent.recv()
        proc.join()
        if status != "ok":
            raise RuntimeError(f"peers: {impl} at {n:,} failed:\n{payload}")
        rows: list[Row] = payload
        return rows
    finally:
        if server is not None:
            server.stop()


# ---------------------------------------------------------------------- summary


def _value(rows: list[Row], impl: str, metric: str, carts: int) -> float | None:
    for r in rows:
        if r["impl"] == impl and r["metric"] == metric and r["params"].get("carts") == carts:
            return float(r["value"])
    return None


def _largest(rows: list[Row], impl: str) -> int | None:
    sizes = [r["params"]["carts"] for r in rows if r["impl"] == impl]
    return max(sizes) if sizes else None


def _workload_rate(rows: list[Row], impl: str, carts: int) -> float | None:
    """Operations per second over the cell's schedule and cancel phases together: ``carts`` schedules
    plus ``cancelled`` cancels, over the time both phases took (each count over its measured rate)."""
    sched, cancel = _value(rows, impl, "schedule_rate", carts), _value(rows, impl, "cancel_rate", carts)
    cancelled = next((r["params"].get("cancelled") for r in rows if r["impl"] == impl
                      and r["metric"] == "cancel_rate" and r["params"].get("carts") == carts), None)
    if not sched or not cancel or cancelled is None:
        return None
    return (carts + cancelled) / (carts / sched + cancelled / cancel)


def _summary(rows: list[Row], plan: Plan) -> list[Row]:
    """The issue's targets as ratios (``met`` in params) and how each peer scales."""
    out: list[Row] = []

    def add(metric: str, value: float, params: dict[str, Any]) -> None:
        out.append({"impl": "summary", "params": params, "metric": metric, "value": float(value), "unit": "x"})

    big = _largest(rows, "cartwheel")
    if big is None:
        return out
    for peer, key in (("redis_zset", "vs_redis_zset"), ("arq", "vs_arq")):
        at = big if _value(rows, peer, "schedule_rate", big) is not None else _largest(rows, peer)
        if at is None:
            continue

        def against(metric: str, a: float | None, b: float | None) -> None:
            """A ratio row ``metric`` = ``a / b`` with the target and the peer's size when it differs."""
            if a is None or not b:
                return
            p: dict[str, Any] = {"carts": big, "target": TARGETS[key], "met": a / b >= TARGETS[key]}
            if at != big:
                p[f"{peer}_carts"] = at
            add(metric, a / b, p)

        for op in ("schedule", "cancel"):
            against(f"{op}_{key}", _value(rows, "cartwheel", f"{op}_rate", big), _value(rows, peer, f"{op}_rate", at))
        # The whole workload: every reminder scheduled once, the cancelled share cancelled once. This is
        # what a shop pays per abandoned cart; the per-operation rows above say where each side spends it.
        against(f"workload_{key}", _workload_rate(rows, "cartwheel", big), _workload_rate(rows, peer, at))
    for metric, key in (("lateness_p99", "p99_ms"), ("lateness_max", "max_ms")):
        v = _value(rows, "cartwheel", metric, big)
        if v is not None:
            add(f"{metric}_vs_target", v / TARGETS[key], {"carts": big, "target_ms": TARGETS[key], "met": v < TARGETS[key]})
    a, b = _value(rows, "cartwheel", "bytes_per_pending", big), _value(rows, "call_later", "bytes_per_pending", big)
    if a and b is not None:
        target = TARGETS["memory_vs_call_later"]
        add("memory_vs_call_later", b / a, {"carts": big, "target": target, "met": b / a >= target})
    for carts in sorted({r["params"]["carts"] for r in rows if r["impl"] == "cartwheel"}):
        bad = sum(_value(rows, "cartwheel", m, carts) or 0.0 for m in ("early", "missing", "duplicate", "fired_after_cancel"))
        out.append({"impl": "summary", "params": {"carts": carts, "target": 0, "met": bad == 0},
                    "metric": "cartwheel_wrong_firings", "value": bad, "unit": "count"})
    for impl in plan.impls:
        sizes = sorted({r["params"]["carts"] for r in rows if r["impl"] == impl})
        if len(sizes) < 2:
            continue
        lo, hi = sizes[0], sizes[-1]
        for metric in ("schedule_rate", "cancel_rate", "bytes_per_pending", "lateness_p99", "lateness_max"):
            a, b = _value(rows, impl, metric, hi), _value(rows, impl, metric, lo)
            if a is not None and b:
                out.append({"impl": impl, "params": {"from": lo, "to": hi}, "metric": f"{metric}_scaling",
                            "value": a / b, "unit": "x"})
    return out


def run(quick: bool, progress: Progress, *, tiny: bool | None = None, plan: Plan | None = None,
        sizes: tuple[int, ...] | None = None) -> list[Row]:
    """The harness entry point (``tiny``: default from ``CARTWHEEL_BENCH_TINY``; ``sizes``: carts per cell
    in place of the plan's; arq still runs at most ``arq_cap`` of them)."""
    if tiny is None:
        tiny = os.environ.get(TINY_ENV, "") not in ("", "0")
    plan = plan or plan_for(quick, tiny)
    if sizes:
        plan = replace(plan, sizes=tuple(sizes))
    from bench.harness import check_memory

    for n in plan.sizes:
        check_memory(n, PEERS_BYTES_PER_CART, "for the costliest peer, one call_later per cart")
    impls = list(plan.impls)
    if shutil.which("redis-server") is None:
        progress("  peers: redis-server not found: redis_zset and arq skipped")
        impls = [i for i in impls if i not in REDIS_IMPLS]
    if "arq" in impls and importlib.util.find_spec("arq") is None:
        progress("  peers: arq is not installed (pip install 'cartwheel[bench]'): arq skipped")
        impls.remove("arq")
    progress(f"  peers: {plan}")
    rows: list[Row] = []
    for n in plan.sizes:
        for impl in impls:
            m = min(n, plan.arq_cap) if impl == "arq" else n
            if impl == "arq" and any(r["impl"] == "arq" and r["params"]["carts"] == m for r in rows):
                continue  # capped: already measured at this size
            timeout = 120 + plan.window_s * 3 + m * (1e-3 if impl == "arq" else 1e-4)
            rows.extend(_cell(impl, m, plan, progress, timeout))
    rows.extend(_summary(rows, plan))
    return rows


if __name__ == "__main__":  # pragma: no cover - manual use
    from bench.harness import scenario_main

    sys.exit(scenario_main("peers")[1]())

