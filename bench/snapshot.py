"""Benchmark ``snapshot``: persistence to a local redis-server this benchmark starts itself.

What it measures (1 M carts; quick: 100 k), with the garbage collector on, uvloop as in production:

* ``full_snapshot``  — a full snapshot of every cart (and, in the second set, a profile per cart) to
  Redis: cut, copy-on-write encoding in slices into *chunks* (packed columns of a few hundred carts,
  ``actors.bulk``), staged per partition while encoding, one ``MULTI`` to commit. Target: 1 M carts in at
  most 3 s.
* ``restore``        — a fresh engine reading that snapshot back: read, decode, load into the registry,
  re-arm every timer. Target: at most 3 s. Broken down into ``restore_read`` (Redis) and
  ``restore_load`` (decoding the chunks, ``actors.bulk.load_carts`` and the wheel's ``schedule_many``).
  The first engine stays in memory meanwhile, so the restore touches fresh memory as a new process does.
* ``incremental``    — 1 % of the carts changed through the runtime's hot path, then one incremental
  cut. Target: 10 k dirty carts in at most 100 ms.
* peers, side by side with ``full_snapshot``: ``set_awaited`` — one awaited ``SET`` per cart;
  ``set_pipeline`` — a redis-py pipeline of one ``SET`` per cart, 10 k per round trip. Both measured on a
  subset and reported as carts/s and the time they would take for all carts.
* ``ingest``         — events/s through the engine's FrameHandler (frames of 100 events, up to 64
  replies outstanding like a pipelining client, a loop turn between frames as a server has) in ``snapshot`` and in ``journal`` durability, where every
  frame's reply waits for its journal append (group commit). Target: journal at least 60 % of snapshot.
* ``pause``          — reply latency of a client sending small frames over TCP (one every 2 ms) while
  an incremental cut (1 % dirty) and a full snapshot run: p50, p99, max. Target: p99 under 20 ms.

The ingest comparison runs after the 1 M-cart rounds, once their engines are collected (see ``_main``).

Run: ``cartwheel bench snapshot [--quick]``. Figures and commands: ``bench/RESULTS.md``.
"""
from __future__ import annotations

import asyncio
import gc
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

Row = dict[str, Any]
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
START = 1772791200.0  # 2026-03-06T10:00:00Z


def _row(impl: str, params: dict[str, Any], metric: str, value: float, unit: str) -> Row:
    return {"impl": impl, "params": params, "metric": metric, "value": value, "unit": unit}


class _Redis:
    """A private redis-server on a free port, no persistence, in a temporary directory."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = Path(tempfile.mkdtemp(prefix="cw-bench-redis-"))
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def close(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _config(directory: Path, store: str, durability: str = "snapshot") -> Any:
    from engine.config import parse_config

    return parse_config({
        "engine": {
            "ingest_tcp": "127.0.0.1:0", "ingest_unix": "", "admin_unix": str(directory / "admin.sock"),
            "store": store, "durability": durability, "clock": "manual", "clock_start": START,
            "snapshot_interval": "1h", "partitions": 16,
        },
        "stores": {"shop1": {"name": "Acme", "timezone": "UTC"}},
    }, source="bench")


def _engine(directory: Path, store: str, durability: str = "snapshot") -> Any:
    from engine.app import Engine
    from engine.clock import ManualClock

    return Engine(_config(directory, store, durability), clock=ManualClock(START), base_dir=directory,
                  build_channels=False)


def _event(i: int, value: float = 30.0, *, profile: bool = True) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "cart.updated", "store": "shop1", "cart": f"c{i:07d}", "ts": START, "value": value,
        "currency": "EUR", "items": [{"sku": f"S{i % 97}", "name": "Lamp", "qty": 1 + i % 3, "price": value}],
        "checkout_url": f"https://shop.test/c/{i}",
    }
    if profile:
        event["profile"] = {"id": f"p{i:07d}", "email": f"p{i}@example.test", "consent": {"email": True}}
    return event


def _fill(engine: Any, n: int, *, profiles: bool) -> None:
    """n carts (and a profile each) in the registry, fast: states cloned from one real cart."""
    registry = engine.registry
    proto_reg = type(registry)(registry.stores, registry.flows)
    proto_reg.apply(_event(0, profile=profiles), START)
    proto = next(iter(proto_reg)).to_state()
    pstate = None
    if profiles:
        pid = proto[2]
        pstate = proto_reg.profile("shop1", pid).to_state()
    effects: list[Any] = []
    gc.disable()
    try:
        for i in range(n):
            state = list(proto)
            state[1] = f"c{i:07d}"
            if profiles:
                pid = f"p{i:07d}"
                state[2] = pid
                p = list(pstate)  # type: ignore[arg-type]
                p[0] = pid
                registry.load_profile("shop1", p)
            state[7] = START + 1800 + (i % 3600)  # idle timers spread over an hour
            more = registry.load_cart(state)
            if more:
                effects.extend(more)
            if len(effects) > 50_000:
                engine.runtime.apply_effects(effects, START)
                effects = []
        engine.runtime.apply_effects(effects, START)
    finally:
        gc.enable()
        gc.freeze()  # as after a restore (engine.stores.restore): the carts are long-lived


async def _full_and_restore(n: int, url: str, directory: Path, profiles: bool, progress: Callable[[str], None]) -> list[Row]:
    from engine.stores.redis import RedisStore

    rows: list[Row] = []
    params = {"carts": n, "profiles": n if profiles else 0}
    engine = _engine(directory, url)
    await engine.store.open()
    progress(f"  snapshot bench: filling {n:,} carts{' with profiles' if profiles else ''}")
    _fill(engine, n, profiles=profiles)
    progress("  snapshot bench: full snapshot")
    took = await engine.snapshotter.snapshot(full=True)
    rows.append(_row("cartwheel", params, "full_snapshot", took, "s"))
    rows.append(_row("cartwheel", params, "full_snapshot_rate", n / took, "carts/s"))
    rows.append(_row("cartwheel", params, "max_slice", engine.snapshotter.max_slice_ms, "ms"))
    # incremental: 1 % through the hot path
    dirty = max(1, n // 100)
    for i in range(0, n, 100):
        engine.runtime.apply_event(_event(i, 40.0, profile=profiles), START + 1)
    engine.snapshotter.max_slice_ms = 0.0
    t0 = time.perf_counter()
    await engine.snapshotter.snapshot()
    inc = time.perf_counter() - t0
    rows.append(_row("cartwheel", {**params, "dirty": dirty}, "incremental", inc * 1000, "ms"))
    rows.append(_row("cartwheel", {**params, "dirty": dirty}, "incremental_max_slice", engine.snapshotter.max_slice_ms, "ms"))
    progress(f"  snapshot bench: full {took:.2f} s, incremental ({dirty:,} dirty) {inc * 1000:.0f} ms; restoring")
    await engine.store.close()
    del engine
    gc.collect()
    fresh = _engine(directory, url)
    store: RedisStore = fresh.store  # type: ignore[assignment]
    await store.open()
    t0 = time.perf_counter()
    loaded = await store.read(lambda line: None)
    t1 = time.perf_counter()
    from engine.stores.restore import restore

    assert loaded is not None
    restore(loaded, runtime=fresh.runtime, ledger=_NullLedger(), snapshotter=fresh.snapshotter, seq=fresh.seq,
            deduper=fresh.deduper, partitions=16, progress=progress)
    t2 = time.perf_counter()
    assert len(fresh.registry) == n, (len(fresh.registry), n)
    rows.append(_row("cartwheel", params, "restore", t2 - t0, "s"))
    rows.append(_row("cartwheel", params, "restore_read", t1 - t0, "s"))
    rows.append(_row("cartwheel", params, "restore_load", t2 - t1, "s"))
    rows.append(_row("cartwheel", params, "restore_rate", n / (t2 - t0), "carts/s"))
    progress(f"  snapshot bench: restore {t2 - t0:.2f} s (read {t1 - t0:.2f} s, load {t2 - t1:.2f} s)")
    # peers on the restored registry (subsets: they are slow)
    rows.extend(await _peers(fresh, url.replace("/0", "/1"), n, params, progress))
    await store.close()
    gc.unfreeze()
    return rows


class _NullLedger:
    def load(self, entries: list[Any], cut: int) -> None:
        return None

    def late_outcomes(self, cut: int) -> list[Any]:
        return []


async def _peers(engine: Any, url: str, n: int, params: dict[str, Any], progress: Callable[[str], None]) -> list[Row]:
    from redis.asyncio import Redis

    rows: list[Row] = []
    client = Redis.from_url(url)
    actors = list(engine.registry)
    packb = msgpack.packb
    m = min(n, 20_000)
    t0 = time.perf_counter()
    for actor in actors[:m]:
        await client.set(f"cw:{actor.store.id}:{actor.cart}", packb(actor.to_state()))
    took = time.perf_counter() - t0
    rows.append(_row("set_awaited", {**params, "measured": m}, "full_snapshot_rate", m / took, "carts/s"))
    rows.append(_row("set_awaited", {**params, "measured": m}, "full_snapshot", took / m * n, "s (projected)"))
    m = min(n, 200_000)
    t0 = time.perf_counter()
    for start in range(0, m, 10_000):
        pipe = client.pipeline(transaction=False)
        for actor in actors[start:min(start + 10_000, m)]:
            pipe.set(f"cw:{actor.store.id}:{actor.cart}", packb(actor.to_state()))
        await pipe.execute()
    took = time.perf_counter() - t0
    rows.append(_row("set_pipeline", {**params, "measured": m}, "full_snapshot_rate", m / took, "carts/s"))
    rows.append(_row("set_pipeline", {**params, "measured": m}, "full_snapshot", took / m * n, "s (projected)"))
    progress(f"  snapshot bench: peers: awaited SET {rows[0]['value']:,.0f} carts/s, pipeline {rows[2]['value']:,.0f} carts/s")
    await client.flushdb()
    await client.aclose()
    return rows


async def _ingest(url: str, directory: Path, durability: str, events: int) -> float:
    """events/s through the FrameHandler's byte path, frames of 100, up to 64 outstanding (journal: replies
    wait for their group commit)."""
    engine = _engine(directory, url, durability)
    await engine.start()
    handler = engine.handler
    # Packed frames through handle_bytes: the server's path (msgspec decode, then the validator only
    # for what fails it), so that both durabilities pay what they pay behind a socket.
    frames = [msgpack.packb([_event(f * 100 + j, 30.0 + f % 7) for j in range(100)]) for f in range(events // 100)]
    window: list[asyncio.Future[None]] = []
    t0 = time.perf_counter()
    for seq, frame in enumerate(frames, 1):
        handler.handle_bytes(seq, frame)
        barrier = handler.barrier
        wait = barrier() if barrier is not None else None
        if wait is not None:
            window.append(wait)
            while window and window[0].done():
                window.pop(0)
            if len(window) >= 64:
                await window.pop(0)
        await asyncio.sleep(0)  # a server yields to the loop between socket reads
    for wait in window:
        await wait
    took = time.perf_counter() - t0
    await engine.stop()
    return events / took


async def _pause(n: int, url: str, directory: Path, progress: Callable[[str], None]) -> list[Row]:
    """Reply latency over TCP while snapshots run, on an engine holding n carts."""
    from hdrh.histogram import HdrHistogram

    engine = _engine(directory, url)
    await engine.start()
    _fill(engine, n, profiles=True)
    await engine.snapshot()  # a base
    host, port = engine.ingest.tcp_address
    reader, writer = await asyncio.open_connection(host, port)
    unpacker = msgpack.Unpacker(raw=False)
    rows: list[Row] = []

    async def measure(label: str, work: Any) -> None:
        hist = HdrHistogram(1, 60_000_000, 3)
        task = asyncio.get_running_loop().create_task(work())
        i = 0
        while not task.done() or i < 50:
            frame = [_event((i * 10 + j) % n, 31.0) for j in range(10)]
            t0 = time.perf_counter()
            writer.write(msgpack.packb(frame))
            while True:
                got = next(unpacker, None)
                if got is not None:
                    break
                unpacker.feed(await reader.read(65536))
            hist.record_value(max(1, int((time.perf_counter() - t0) * 1e6)))
            i += 1
            await asyncio.sleep(0.002)
        await task
        params = {"carts": n, "during": label, "frames": i}
        for pct in (50, 99):
            rows.append(_row("cartwheel", params, f"reply_p{pct}", hist.get_value_at_percentile(pct) / 1000, "ms"))
        rows.append(_row("cartwheel", params, "reply_max", hist.get_max_value() / 1000, "ms"))
        rows.append(_row("cartwheel", params, "max_slice", engine.snapshotter.max_slice_ms, "ms"))
        progress(f"  snapshot bench: during {label}: p99 {hist.get_value_at_percentile(99) / 1000:.1f} ms, "
                 f"max {hist.get_max_value() / 1000:.1f} ms over {i} frames")

    async def incremental() -> None:
        engine.snapshotter.max_slice_ms = 0.0
        for cycle in range(5):  # five cuts of 1 % each, with ingest of the 1 % in between
            for i in range(cycle, n, 100):
                engine.runtime.apply_event(_event(i, 50.0 + cycle), START + 2)
                if i % 20_000 < 100:
                    await asyncio.sleep(0)
            await engine.snapshotter.snapshot()

    async def full() -> None:
        engine.snapshotter.max_slice_ms = 0.0
        await engine.snapshotter.snapshot(full=True)

    async def idle() -> None:
        await asyncio.sleep(1.0)

    await measure("nothing", idle)
    await measure("5 incremental 1%", incremental)
    await measure("full", full)
    writer.close()
    await engine.stop()
    return rows


async def _main(n: int, quick: bool, progress: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    redis = _Redis()
    directory = Path(tempfile.mkdtemp(prefix="cw-bench-snapshot-"))
    try:
        rows += await _full_and_restore(n, redis.url(0), directory, False, progress)
        _flush(redis)
        rows += await _full_and_restore(n, redis.url(0), directory, True, progress)
        _flush(redis)
        # The engines above are garbage now (unfrozen by _full_and_restore): collect them, so that the
        # ingest runs below do not pay for walking millions of dead carts in whichever mode happens to
        # trigger a full collection.
        gc.collect()
        events = 50_000 if quick else 200_000
        rates: dict[str, float] = {}
        for durability in ("snapshot", "journal", "snapshot", "journal"):  # alternated, best of two
            progress(f"  snapshot bench: ingest, {durability} durability, {events:,} events")
            rate = await _ingest(redis.url(2), directory, durability, events)
            rates[durability] = max(rate, rates.get(durability, 0.0))
            _flush(redis)
        for durability, rate in rates.items():
            rows.append(_row("cartwheel", {"durability": durability, "events": events}, "ingest", rate, "events/s"))
        rows.append(_row("cartwheel", {"events": events}, "journal_vs_snapshot", 100 * rates["journal"] / rates["snapshot"], "%"))
        progress(f"  snapshot bench: journal {rates['journal']:,.0f} vs snapshot {rates['snapshot']:,.0f} events/s")
        rows += await _pause(n, redis.url(3), directory, progress)
    finally:
        redis.close()
        shutil.rmtree(directory, ignore_errors=True)
    return rows


def _flush(redis: _Redis) -> None:
    with socket.create_connection(("127.0.0.1", redis.port)) as c:
        c.sendall(b"FLUSHALL\r\n")
        c.recv(16)


def run(quick: bool, progress: Callable[[str], None]) -> list[Row]:
    import uvloop

    n = 100_000 if quick else 1_000_000
    return uvloop.run(_main(n, quick, progress))


if __name__ == "__main__":  # pragma: no cover - manual use
    from bench.harness import scenario_main

    sys.exit(scenario_main("snapshot")[1]())
