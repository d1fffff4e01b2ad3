"""Benchmark ``ingest``: events/s and reply latency of a real engine process, next to a bare ceiling.

Setup. The engine runs as a subprocess (``.venv/bin/cartwheel run --config <tmp toml>``): ingest on a
free loopback TCP port and a UNIX socket in a temporary directory, admin socket and ``file:`` store there
too, every channel an ``outbox`` in that directory, snapshots every hour (so no snapshot lands inside
a measurement; a snapshot of a million carts encodes on the event loop) and the **manual clock**.
Manual, not real, because then nothing fires during a run: the runs measure ingest (decode, validate,
apply to the actors, re-arm timers in the wheel, reply), not timer firing or sends, and the figures
do not depend on how long a run lasts or when it starts. Timer *scheduling* is still in the path: each
``cart.updated`` re-arms its cart's idle timer and ``session.ended`` starts a flow.

The load generator (``bench/loadgen.py``) is a separate process per run, fed a pool of pre-generated,
pre-packed events (the realistic shop mix: ~75 % ``cart.updated``, ~8 % ``checkout.started``, ~10 %
``order.completed``, ~6 % ``session.ended``, opt-outs, clears, 1 % invalid events). For each size of the
shop (100 k and 1 M live carts; quick: 20 k) the engine is filled first through ingest at full speed
(one ``cart.updated`` per cart, batches of 1 000), its RSS read from ``/proc/PID/statm``, then:

* ``max``: closed loop (a window of frames in flight) over TCP and UNIX at batch sizes 1, 100, 1 000:
  the sustained events/s (and the queueing latency at saturation);
* ``open``: a fixed offered load of 10 k, 50 k and 100 k events/s (batch 100 over both transports;
  batch 1 over TCP at 10 k and 50 k), latency p50/p99/p99.9/max measured from each frame's *scheduled*
  send time (no coordinated omission).

The same cells run against ``bench/bare_server.py`` (decode, count, reply, discard: the ceiling of
a Python msgpack server on this machine), each right after the engine's cell so that both see the same
machine. ``summary`` rows give the engine/bare ratio per cell and the issue's targets: engine ≥ 60 % of
the ceiling, ≥ 250 k events/s at batch 100 and ≥ 50 k at batch 1, p99 < 5 ms at 50 k events/s offered.

Sizes: full, about 12 minutes; ``--quick`` (20 k carts, 3 s runs, six cells), under a minute;
``CARTWHEEL_BENCH_TINY=1`` (2 k carts, 0.5 s runs, three cells) for the test suite.
``python -m bench.ingest --profile`` profiles the engine's ingest path in-process (cProfile over
``IngestProtocol.data_received`` fed the same frames) and prints the top functions;
``python -m bench.ingest --stages`` times each stage of it on its own, without a profiler (see
:func:`stage_costs`); ``python -m bench.ingest --flood`` measures collector pauses while every event
creates a new cart, without and with the runtime's freeze-before-full-collection hook (see
:func:`flood_pauses`).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.loadgen import EventPool, ShopSpec, build_frames, generate_pool

__all__ = ["Plan", "engine_toml", "plan_for", "profile_engine", "run", "stage_costs"]

ROOT = Path(__file__).resolve().parent.parent
TINY_ENV = "CARTWHEEL_BENCH_TINY"
Row = dict[str, Any]
#: the engine's RSS per cart after populating (1 012-1 086 B measured at 100 k and 1 M, 962 B at 10 M), with
#: margin for the load generator's event pool and the run (memory check before a cell)
INGEST_BYTES_PER_CART = 1_200
TARGETS = {"vs_bare": 0.60, "batch100_events_per_s": 250_000, "batch1_events_per_s": 50_000, "p99_ms_at_50k": 5.0}


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run of the scenario measures."""

    carts: tuple[int, ...]
    run_s: float
    max_cells: tuple[tuple[str, int], ...]  #: (transport, batch), closed loop
    open_cells: tuple[tuple[str, int, int], ...]  #: (transport, batch, offered events/s)
    pool_events: int  #: pre-generated events per shop size (cycled by longer runs)


def plan_for(quick: bool, tiny: bool = False) -> Plan:
    if tiny:
        return Plan((2_000,), 0.5, (("tcp", 100), ("unix", 100)), (("tcp", 100, 10_000),), 20_000)
    if quick:
        return Plan((20_000,), 3.0, (("tcp", 1), ("tcp", 100), ("tcp", 1000), ("unix", 100)),
                    (("tcp", 100, 10_000), ("tcp", 100, 50_000)), 150_000)
    loads = (10_000, 50_000, 100_000)
    return Plan(
        (100_000, 1_000_000), 10.0,
        tuple((t, b) for t in ("tcp", "unix") for b in (1, 100, 1000)),
        tuple((t, 100, r) for t in ("tcp", "unix") for r in loads) + (("tcp", 1, 10_000), ("tcp", 1, 50_000)),
        500_000,
    )


def engine_toml(tmp: Path, port: int, stores: int = 4) -> str:
    """The benchmark engine's config: everything under ``tmp``, manual clock, hourly snapshots."""
    lines = [
        "[engine]",
        f'ingest_tcp = "127.0.0.1:{port}"',
        f'ingest_unix = "{tmp / "ingest.sock"}"',
        f'admin_unix = "{tmp / "admin.sock"}"',
        f'store = "file:{tmp / "state"}"',
        'clock = "manual"',
        'clock_start = "2026-03-06T10:00:00Z"',
        'snapshot_interval = "1h"',
        "max_frame_bytes = 4194304",
        "",
    ]
    for k in range(stores):
        lines += [f"[stores.shop{k + 1}]", f'name = "Shop {k + 1}"', 'timezone = "Europe/Madrid"',
                  "credits = 1000000000", 'incentive = { kind = "discount", percent = 10, code_prefix = "BACK" }', ""]
    for channel in ("email", "push", "whatsapp", "sms"):
        lines += [f"[channels.{channel}]", 'kind = "outbox"', f'dir = "{tmp / "outbox"}"', ""]
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """A subprocess that prints a line starting with ``ready`` on stdout once it listens."""

    def __init__(self, argv: list[str], *, cwd: Path, ready: str, log: Path, timeout_s: float = 60.0) -> None:
        self.argv = argv
        self.log_path = log
        with open(log, "wb") as stderr:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=stderr, bufsize=0)
        self.first_line = self._wait_ready(ready, timeout_s)

    def _wait_ready(self, prefix: str, timeout_s: float) -> str:
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        buf = b""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = buf.split(b"\n")
            for line in lines[:-1]:
                if line.decode(errors="replace").startswith(prefix):
                    return line.decode(errors="replace")
            buf = lines[-1]
            left = deadline - time.monotonic()
            readable, _, _ = select.select([fd], [], [], max(left, 0))
            chunk = os.read(fd, 65536) if readable else b""
            if not chunk:
                self.stop()
                raise RuntimeError(f"{self.argv[:4]} did not start: {self.log_path.read_text()[-2000:]}")
            buf += chunk

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used (``/proc/PID/stat``, clock-tick resolution)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout_s: float = 120.0) -> str:
        """SIGTERM, wait; returns what the process still wrote on stdout."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return (out or b"").decode(errors="replace")


def _cartwheel() -> list[str]:
    exe = Path(sys.executable).parent / "cartwheel"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "engine.cli"]


def _loadgen(target: list[str], args: list[str], timeout_s: float) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.loadgen", *target, *args, "--json", "--quiet"]
    proc = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if not proc.stdout.strip():
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _cell_rows(impl: str, params: dict[str, Any], s: dict[str, Any], cpu_s: float) -> list[Row]:
    lat = s["latency_ms"]
    events = s["accepted"] + s["rejected"]
    metrics: list[tuple[str, float, str]] = [("events_per_s", s["events_per_s"], "events/s"),
                                             ("p50", lat["p50"], "ms"), ("p99", lat["p99"], "ms")]
    if params["load"] != "max":
        metrics += [("p999", lat["p999"], "ms"), ("max", lat["max"], "ms")]
    # Server CPU per event and the share of one core it used: figures that survive a busy machine.
    metrics += [("cpu_per_event", cpu_s / max(events, 1) * 1e6, "us"),
                ("cpu_busy", cpu_s / max(s["duration_s"], 1e-9) * 100, "%"),
                ("errors", s["errors"], "count")]
    return [{"impl": impl, "params": dict(params), "metric": m, "value": v, "unit": u} for m, v, u in metrics]


class _Bench:
    def __init__(self, plan: Plan, progress: Callable[[str], None], tmp: Path) -> None:
        self.plan = plan
        self.progress = progress
        self.tmp = tmp
        self.rows: list[Row] = []
        self.loads: list[float] = []  #: 1-minute load average after each cell: how busy the machine was

    def cell(self, server: _Server, impl: str, target: dict[str, list[str]], carts: int, pool: Path,
             transport: str, batch: int, rate: int) -> dict[str, Any]:
        run_s = self.plan.run_s
        args = ["--events", str(pool), "--batch", str(batch), "--rate", str(rate), "--duration", str(run_s)]
        cpu0 = server.cpu_s()
        s = _loadgen(target[transport], args, timeout_s=run_s * 4 + 120)
        cpu_s = server.cpu_s() - cpu0
        params: dict[str, Any] = {"carts": carts if impl == "engine" else 0, "transport": transport,
                                  "batch": batch, "load": rate or "max"}
        self.rows.extend(_cell_rows(impl, params, s, cpu_s))
        lat = s["latency_ms"]
        self.loads.append(os.getloadavg()[0])
        self.progress(f"  ingest: {impl:6} carts={carts:,} {transport:4} batch={batch:<5} load={rate or 'max'}: "
                      f"{s['events_per_s']:,.0f} events/s, p50 {lat['p50']:.2f} p99 {lat['p99']:.2f} "
                      f"p99.9 {lat['p999']:.2f} ms, {cpu_s / max(s['accepted'] + s['rejected'], 1) * 1e6:.1f} us CPU/event "
                      f"({cpu_s / max(s['duration_s'], 1e-9):.0%} busy), errors {s['errors']}, load {self.loads[-1]:.1f}"
                      + (f" {s['error_samples'][:2]}" if s["errors"] else ""))
        if server.proc.poll() is not None:
            raise RuntimeError(f"{impl} exited during a run: {server.log_path.read_text()[-2000:]}")
        return s

    def run(self) -> list[Row]:
        plan = self.plan
        bare: _Server | None = None
        engine: _Server | None = None
        try:
            bare_sock = self.tmp / "bare.sock"
            bare = _Server([sys.executable, "-m", "bench.bare_server", "--tcp", "127.0.0.1:0", "--unix", str(bare_sock)],
                           cwd=ROOT, ready="ready", log=self.tmp / "bare.log")
            bare_tcp = bare.first_line.split("tcp=")[1].split()[0]
            bare_target = {"tcp": ["--tcp", bare_tcp], "unix": ["--unix", str(bare_sock)]}
            for n, carts in enumerate(plan.carts):
                work = self.tmp / f"engine-{carts}"
                work.mkdir()
                pool_path = self.tmp / f"pool-{carts}.msgpack"
                t0 = time.perf_counter()
                pool = generate_pool(ShopSpec(carts=carts), plan.pool_events)
                pool.save(str(pool_path))
                self.progress(f"  ingest: {len(pool):,} events generated for {carts:,} carts in "
                              f"{time.perf_counter() - t0:.1f}s ({len(pool.data) / len(pool):.0f} B/event), mix {pool.mix}")
                del pool
                port = _free_port()
                config = work / "cartwheel.toml"
                config.write_text(engine_toml(work, port))
                engine = _Server([*_cartwheel(), "run", "--config", str(config), "--log-level", "WARNING"],
                                 cwd=work, ready="cartwheel: running", log=work / "engine.log")
                target = {"tcp": ["--tcp", f"127.0.0.1:{port}"], "unix": ["--unix", str(work / "ingest.sock")]}
                self.populate(engine, target, carts)
                for transport, batch in plan.max_cells:
                    self.cell(engine, "engine", target, carts, pool_path, transport, batch, 0)
                    if n == 0:
                        self.cell(bare, "bare", bare_target, carts, pool_path, transport, batch, 0)
                for transport, batch, rate in plan.open_cells:
                    self.cell(engine, "engine", target, carts, pool_path, transport, batch, rate)
                    if n == 0:
                        self.cell(bare, "bare", bare_target, carts, pool_path, transport, batch, rate)
                self.rows.append({"impl": "engine", "params": {"carts": carts}, "metric": "rss_after_runs",
                                  "value": engine.rss_bytes() / 2**20, "unit": "MiB"})
                engine.stop()
                engine = None
                pool_path.unlink()
        finally:
            if engine is not None:
                engine.stop()
            if bare is not None:
                bare.stop()
        if self.loads:
            # Other work on the machine steals the core a server needs: tail latencies suffer first.
            self.rows += [{"impl": "machine", "params": {}, "metric": f"load_average_1m_{k}", "value": v, "unit": ""}
                          for k, v in (("mean", sum(self.loads) / len(self.loads)), ("max", max(self.loads)))]
        self.rows.extend(_summary(self.rows, plan))
        return self.rows

    def populate(self, engine: _Server, target: dict[str, list[str]], carts: int) -> None:
        rss0, cpu0 = engine.rss_bytes(), engine.cpu_s()
        s = _loadgen(target["tcp"], ["--populate", "--carts", str(carts), "--batch", "1000", "--rate", "0"],
                     timeout_s=600)
        rss1, cpu_s = engine.rss_bytes(), engine.cpu_s() - cpu0
        if s["accepted"] != carts or s["errors"]:
            raise RuntimeError(f"populating {carts} carts: {s}")
        p = {"carts": carts}
        self.rows += [
            {"impl": "engine", "params": dict(p, transport="tcp", batch=1000), "metric": "populate_events_per_s",
             "value": s["events_per_s"], "unit": "events/s"},
            {"impl": "engine", "params": dict(p, transport="tcp", batch=1000), "metric": "populate_cpu_per_event",
             "value": cpu_s / carts * 1e6, "unit": "us"},
            {"impl": "engine", "params": p, "metric": "rss_after_populate", "value": rss1 / 2**20, "unit": "MiB"},
            {"impl": "engine", "params": p, "metric": "rss_per_cart", "value": (rss1 - rss0) / carts, "unit": "B"},
        ]
        self.progress(f"  ingest: populated {carts:,} carts at {s['events_per_s']:,.0f} events/s; "
                      f"engine RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB ({(rss1 - rss0) / carts:.0f} B/cart)")


def _value(rows: list[Row], impl: str, metric: str, **params: Any) -> float | None:
    for r in rows:
        if r["impl"] == impl and r["metric"] == metric and all(r["params"].get(k) == v for k, v in params.items()):
            return float(r["value"])
    return None


def _summary(rows: list[Row], plan: Plan) -> list[Row]:
    """Engine vs the bare ceiling per cell, and the issue's targets as ratios (>= 1 meets, p99: <= 1)."""
    out: list[Row] = []
    for carts in plan.carts:
        for transport, batch in plan.max_cells:
            e = _value(rows, "engine", "events_per_s", carts=carts, transport=transport, batch=batch, load="max")
            b = _value(rows, "bare", "events_per_s", transport=transport, batch=batch, load="max")
            if e is not None and b:
                out.append({"impl": "summary", "params": {"carts": carts, "transport": transport, "batch": batch,
                            "target": TARGETS["vs_bare"], "met": e / b >= TARGETS["vs_bare"]},
                            "metric": "engine_vs_bare", "value": e / b, "unit": "x"})
            # The same comparison by CPU time per event: what the ratio would be with a core each.
            ec = _value(rows, "engine", "cpu_per_event", carts=carts, transport=transport, batch=batch, load="max")
            bc = _value(rows, "bare", "cpu_per_event", transport=transport, batch=batch, load="max")
            if ec and bc:
                out.append({"impl": "summary", "params": {"carts": carts, "transport": transport, "batch": batch},
                            "metric": "engine_vs_bare_by_cpu", "value": bc / ec, "unit": "x"})
        for batch, key in ((100, "batch100_events_per_s"), (1, "batch1_events_per_s")):
            e = _value(rows, "engine", "events_per_s", carts=carts, transport="tcp", batch=batch, load="max")
            if e is not None:
                out.append({"impl": "summary", "params": {"carts": carts, "transport": "tcp", "batch": batch,
                            "target": TARGETS[key], "met": e >= TARGETS[key]},
                            "metric": f"{key}_vs_target", "value": e / TARGETS[key], "unit": "x"})
        p99 = _value(rows, "engine", "p99", carts=carts, transport="tcp", batch=100, load=50_000)
        if p99 is not None:
            out.append({"impl": "summary", "params": {"carts": carts, "transport": "tcp", "batch": 100, "load": 50_000,
                        "target": TARGETS["p99_ms_at_50k"], "met": p99 < TARGETS["p99_ms_at_50k"]},
                        "metric": "p99_at_50k_vs_target", "value": p99 / TARGETS["p99_ms_at_50k"], "unit": "x"})
    return out


def run(quick: bool, progress: Callable[[str], None], *, tiny: bool | None = None,
        sizes: tuple[int, ...] | None = None) -> list[Row]:
    """The harness entry point (``tiny``: default from ``CARTWHEEL_BENCH_TINY``; ``sizes``: live carts per
    cell in place of the plan's)."""
    if tiny is None:
        tiny = os.environ.get(TINY_ENV, "") not in ("", "0")
    plan = plan_for(quick, tiny)
    if sizes:
        plan = replace(plan, carts=tuple(sizes))
    from bench.harness import check_memory

    for carts in plan.carts:
        check_memory(carts, INGEST_BYTES_PER_CART, "in the engine, with its profile, and the events' pool")
    tmp = Path(tempfile.mkdtemp(prefix="cw-ingest-"))
    try:
        load = os.getloadavg()
        progress(f"  ingest: {plan}; load average before: {load[0]:.2f}")
        return _Bench(plan, progress, tmp).run()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------- in-process profile


class _NullTransport:
    """Enough of a transport for ``IngestProtocol``: counts reply bytes, never blocks."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def _populated_engine(tmp: Path, carts: int) -> tuple[Any, Any, ShopSpec]:
    """An in-process engine (benchmark config, manual clock, no channels) with ``carts`` carts loaded
    through an ``IngestProtocol`` on a null transport; returns ``(engine, protocol, shop spec)``."""
    from engine.app import Engine
    from engine.config import load_config
    from engine.ingest import IngestProtocol, IngestServer

    path = tmp / "cartwheel.toml"
    path.write_text(engine_toml(tmp, _free_port()))
    engine = Engine(load_config(str(path)), base_dir=tmp, build_channels=False)
    server = IngestServer(engine.handler, engine.stats, max_frame_bytes=engine.config.engine.max_frame_bytes)
    proto = IngestProtocol(server)
    proto.connection_made(_NullTransport())  # type: ignore[arg-type]
    spec = ShopSpec(carts=carts)
    for frame in build_frames(generate_pool(spec, 0, populate=True), 1000)[0]:
        proto.data_received(frame)
        await asyncio.sleep(0)
    return engine, proto, spec


def profile_engine(*, carts: int = 100_000, batch: int = 100, events: int = 200_000, top: int = 15) -> str:
    """cProfile of the engine's ingest path fed pre-generated frames, after populating ``carts``.

    Builds the engine in-process from the benchmark config (manual clock, no channels), connects an
    ``IngestProtocol`` to a null transport and calls ``data_received`` once per frame, with one loop turn
    after each (the protocol works in slices and continues a long one on the next turn): decode,
    validate, apply, reply, as over a socket minus the syscalls. Returns a report: events/s without the
    profiler, then the top functions by own time.
    """
    import uvloop

    return uvloop.run(_profile_engine(carts=carts, batch=batch, events=events, top=top))


async def _profile_engine(*, carts: int, batch: int, events: int, top: int) -> str:
    import cProfile
    import io
    import pstats

    tmp = Path(tempfile.mkdtemp(prefix="cw-ingest-prof-"))
    try:
        engine, proto, spec = await _populated_engine(tmp, carts)
        pool: EventPool = generate_pool(spec, events)
        frames, _ = build_frames(pool, batch)
        half = len(frames) // 2
        receive = proto.data_received
        t0, c0 = time.perf_counter(), time.process_time()
        for frame in frames[:half]:
            receive(frame)
            await asyncio.sleep(0)
        rate = half * batch / (time.perf_counter() - t0)
        cpu_rate = half * batch / (time.process_time() - c0)
        prof = cProfile.Profile()
        prof.enable()
        for frame in frames[half:]:
            receive(frame)
            await asyncio.sleep(0)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
        head = (f"in-process ingest, {carts:,} carts, batch {batch}: {rate:,.0f} events/s without the profiler "
                f"({1e6 / rate:.2f} us/event wall, {1e6 / cpu_rate:.2f} us/event CPU); accepted {engine.stats.events_accepted:,}, "
                f"rejected {engine.stats.events_rejected:,}\n")
        return head + buf.getvalue()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stage_costs(*, carts: int = 100_000, events: int = 200_000) -> str:
    """Microseconds per event of each ingest stage, timed one stage at a time on the benchmark's events.

    After populating ``carts`` in-process (as :func:`profile_engine` does, then ``gc.freeze()`` as the
    running engine does every 10 s): the whole path (``data_received`` per frame of 100), then decoding
    and type-checking with the validator's msgspec decoder, then :meth:`Validator.check_decoded`, then
    applying the valid events (``Runtime.apply_event``: actors, profiles, wheel, dirty marks). The
    stages do not add up to the whole: besides cutting frames (~0.2 us per event), per-frame work and
    replies, each stage runs faster alone in a tight loop (warm caches) than interleaved with the others
    (measured: the collector and the loop's turns are not where the difference goes).
    """
    import uvloop

    return uvloop.run(_stage_costs(carts=carts, events=events))


async def _stage_costs(*, carts: int, events: int) -> str:
    import gc

    import msgspec

    from engine.runtime import GC_GEN0_THRESHOLD
    from engine.schema import split_batch

    tmp = Path(tempfile.mkdtemp(prefix="cw-ingest-stages-"))
    saved = gc.get_threshold()
    try:
        gc.set_threshold(GC_GEN0_THRESHOLD, saved[1], saved[2])
        engine, proto, spec = await _populated_engine(tmp, carts)
        gc.freeze()
        frames, _ = build_frames(generate_pool(spec, events), 100)
        whole, rest = frames[: len(frames) // 2], frames[len(frames) // 2:]
        n_whole = sum(len(split_batch(f)) for f in whole)
        t0 = time.perf_counter()
        for frame in whole:
            proto.data_received(frame)
            await asyncio.sleep(0)
        whole_us = (time.perf_counter() - t0) / n_whole * 1e6
        raws = [raw for frame in rest for raw in split_batch(frame)]
        validator, now = engine.handler.validator, engine.handler.now()
        decode = validator.decoder.decode
        decoded = []
        for raw in raws:  # once untimed: first-touch memory is not the decoder's cost
            try:
                decoded.append(decode(raw))
            except msgspec.ValidationError:
                pass
        t0 = time.perf_counter()
        for raw in raws:
            try:
                decode(raw)
            except msgspec.ValidationError:
                pass
        decode_us = (time.perf_counter() - t0) / len(raws) * 1e6
        check = validator.check_decoded
        t0 = time.perf_counter()
        valid = [event for event in decoded if check(event, now) is None]
        check_us = (time.perf_counter() - t0) / len(decoded) * 1e6
        apply = engine.runtime.apply_event
        t0 = time.perf_counter()
        for event in valid:
            apply(event, now)
        apply_us = (time.perf_counter() - t0) / len(valid) * 1e6
        return (f"ingest stages, {carts:,} carts, frames of 100, us per event: whole path {whole_us:.2f} "
                f"({1e6 / whole_us:,.0f} events/s); decode + type checks (msgspec) {decode_us:.2f}; "
                f"checks in Python {check_us:.2f}; apply (actors, profiles, wheel) {apply_us:.2f}; "
                f"the rest (frames, replies, and the stages interleaved rather than each in a tight loop) "
                f"{whole_us - decode_us - check_us - apply_us:.2f}")
    finally:
        gc.set_threshold(*saved)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------- new-cart flood


def flood_pauses(*, carts: int = 100_000, seconds: float = 15.0) -> str:
    """Collector pauses while every event creates a new cart, with and without the runtime's hook.

    The in-process engine of :func:`profile_engine` (``carts`` carts, then frozen), the engine's collector
    threshold and its periodic freeze (every ``GC_FREEZE_INTERVAL_S`` of wall time, done here in the feed
    loop): frames of 100 ``cart.updated`` events for carts never seen, as fast as the path takes them,
    for ``seconds``, first without ``engine.runtime._freeze_before_full_collection`` and then with it.
    Returns one line per run: new carts/s, full collections and the longest pauses.
    """
    import uvloop

    return uvloop.run(_flood_pauses(carts=carts, seconds=seconds))


async def _flood_pauses(*, carts: int, seconds: float) -> str:
    import gc

    from msgpack import packb

    from bench.harness import GcWatch
    from engine.runtime import GC_FREEZE_INTERVAL_S, GC_GEN0_THRESHOLD, _freeze_before_full_collection

    tmp = Path(tempfile.mkdtemp(prefix="cw-ingest-flood-"))
    saved = gc.get_threshold()
    lines = []
    try:
        engine, proto, _spec = await _populated_engine(tmp, carts)
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, saved[1], saved[2])
        item = [{"sku": "A1", "name": "Lamp", "qty": 1, "price": 30.0}]
        n = 0
        for hooked in (False, True):
            watch = GcWatch()  # before the hook: its pauses do not include the hook's freeze
            if hooked:
                gc.callbacks.append(_freeze_before_full_collection)
            t0 = last_freeze = time.perf_counter()
            n0 = n
            try:
                while time.perf_counter() - t0 < seconds:
                    proto.data_received(packb([
                        {"type": "cart.updated", "store": "shop1", "cart": f"flood{n + k}", "profile": f"fp{n + k}",
                         "items": item, "value": 30.0, "currency": "EUR",
                         "checkout_url": f"https://shop1.example.test/c/flood{n + k}"} for k in range(100)]))
                    n += 100
                    await asyncio.sleep(0)
                    if time.perf_counter() - last_freeze > GC_FREEZE_INTERVAL_S:
                        gc.freeze()
                        last_freeze = time.perf_counter()
            finally:
                watch.close()
                if hooked:
                    gc.callbacks.remove(_freeze_before_full_collection)
            wall = time.perf_counter() - t0
            lines.append(
                f"{'with' if hooked else 'without'} the freeze-before-full-collection hook: {(n - n0) / wall:,.0f} new carts/s, "
                f"{watch.young} young and {watch.full} full collections in {wall:.0f} s, "
                f"longest full {watch.max_full_s * 1e3:.0f} ms, longest young {watch.max_young_s * 1e3:.0f} ms, "
                f"collector {watch.total_s / wall:.1%} of the time")
        lines.insert(0, f"new-cart flood into {carts:,} carts, frames of 100, {engine.stats.events_accepted:,} events accepted in all")
        return "\n".join(lines)
    finally:
        gc.set_threshold(*saved)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - manual use
    from bench.harness import scenario_main

    def _modes(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--stages", action="store_true", help="time each stage of the ingest path in-process")
        parser.add_argument("--profile", action="store_true", help="cProfile of the ingest path in-process")
        parser.add_argument("--flood", action="store_true",
                            help="collector pauses under a flood of new carts, without and with the runtime's hook")
        parser.add_argument("--carts", type=int, default=100_000, help="--stages/--profile/--flood: live carts (default 100000)")
        parser.add_argument("--batch", type=int, default=100, help="--profile: events per frame (default 100)")

    _args, _run = scenario_main("ingest", extra=_modes)
    if _args.stages:
        print(stage_costs(carts=_args.carts))
    elif _args.profile:
        print(profile_engine(carts=_args.carts, batch=_args.batch))
    elif _args.flood:
        print(flood_pauses(carts=_args.carts))
    else:
        sys.exit(_run())
