"""The load generator: its shop's events validate as labelled, frames are well formed, the open loop
keeps its schedule (checked from the receiving side) and latency counts from the scheduled send time."""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgpack

from bench.bare_server import BareProtocol, BareStats
from bench.loadgen import (
    EventPool,
    ShopModel,
    ShopSpec,
    add_parser,
    build_frames,
    generate_pool,
    main,
    run_load,
)
from engine.config import EngineSettings
from engine.validate import Validator

ROOT = Path(__file__).resolve().parents[2]


def _wire(event: dict) -> dict:
    """What the engine sees: the event after a msgpack round trip (the validator normalises in place)."""
    return msgpack.unpackb(msgpack.packb(event), raw=False)


def test_generated_good_events_validate_and_bad_ones_are_rejected() -> None:
    validator = Validator(EngineSettings())
    model = ShopModel(ShopSpec(carts=5_000, bad_fraction=0.05, seed=7))
    mix: Counter[str] = Counter()
    for event, bad in model.iter_events(30_000):
        reason = validator.validate(_wire(event), 1_772_791_200.0)
        if bad:
            assert reason is not None, event
            mix["bad"] += 1
        else:
            assert reason is None, (reason, event)
            mix[event["type"]] += 1
    total = sum(mix.values())
    assert 0.04 < mix["bad"] / total < 0.06
    assert mix["cart.updated"] / total > 0.6  # mostly updates
    for etype in ("checkout.started", "session.ended", "order.completed", "profile.updated", "cart.cleared"):
        assert mix[etype] > 0, mix
    assert mix["session.ended"] + mix["order.completed"] > 0.1 * total


def test_populate_sends_one_valid_update_per_cart() -> None:
    validator = Validator(EngineSettings())
    events = [ev for ev, bad in ShopModel(ShopSpec(carts=3_000)).populate() if not bad]
    assert len(events) == 3_000
    assert len({(ev["store"], ev["cart"]) for ev in events}) == 3_000
    assert all(validator.validate(_wire(ev), 1.0) is None for ev in events)
    assert all(isinstance(ev["profile"], dict) for ev in events)


def test_frames_cut_the_pool_into_batches(tmp_path: Path) -> None:
    pool = generate_pool(ShopSpec(carts=500), 1_050)
    path = tmp_path / "pool.msgpack"
    pool.save(str(path))
    loaded = EventPool.load(str(path))
    assert loaded.data == pool.data and list(loaded.offsets) == list(pool.offsets) and len(loaded) == 1_050
    events = list(msgpack.Unpacker(__import__("io").BytesIO(pool.data), raw=False))
    frames, counts = build_frames(loaded, 100)
    assert counts == [100] * 10 + [50]
    decoded = [msgpack.unpackb(f, raw=False) for f in frames]
    assert all(type(d) is list for d in decoded)
    assert [e for d in decoded for e in d] == events
    singles, ones = build_frames(loaded, 1)
    assert ones == [1] * 1_050 and msgpack.unpackb(singles[3], raw=False) == events[3]
    big, n = build_frames(loaded, 70_000)  # array32 header
    assert n == [1_050] and msgpack.unpackb(big[0], raw=False) == events


def test_cli_parser_plugs_into_subcommands_and_saves_a_pool(tmp_path: Path) -> None:
    """As ``engine/cli.py`` wires it: ``add_parser(subparsers)``, then ``main(args)``."""
    parser = argparse.ArgumentParser(prog="cartwheel")
    add_parser(parser.add_subparsers(dest="command"))
    path = tmp_path / "pool.msgpack"
    args = parser.parse_args(["loadgen", "--carts", "300", "--pool", "2000", "--save-events", str(path), "--quiet"])
    assert args.command == "loadgen" and main(args) == 0
    assert len(EventPool.load(str(path))) == 2_000
    assert main(parser.parse_args(["loadgen", "--carts", "10", "--pool", "10", "--quiet"])) == 2  # no target


async def _bare(tmp_path: Path, pause_s: float = 0.0) -> tuple[asyncio.AbstractServer, BareStats]:
    loop = asyncio.get_running_loop()
    stats = BareStats()

    class Stalling(BareProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            if pause_s:  # the server stops reading for a while: a stall the open loop must not hide
                transport.pause_reading()  # type: ignore[attr-defined]
                loop.call_later(pause_s, transport.resume_reading)  # type: ignore[attr-defined]

    server = await loop.create_unix_server(lambda: Stalling(stats), str(tmp_path / "bare.sock"))
    return server, stats


async def test_closed_loop_sends_a_count_and_gets_every_reply(tmp_path: Path) -> None:
    server, stats = await _bare(tmp_path)
    try:
        frames, counts = build_frames(generate_pool(ShopSpec(carts=200), 2_000), 100)
        # duration_s is ignored when a count is given (populating must not stop at the default 10 s)
        summary = await run_load(frames, counts, unix=str(tmp_path / "bare.sock"), rate=0, count=5_000, window=3,
                                 duration_s=1e-9)
    finally:
        server.close()
        await server.wait_closed()
    assert summary["mode"] == "closed" and summary["errors"] == 0, summary
    assert summary["events_sent"] == 5_000 and summary["accepted"] == 5_000 and summary["frames_replied"] == 50
    assert stats.events == 5_000 and stats.frames == 50
    assert summary["latency_ms"]["p50"] > 0


async def test_open_loop_latency_counts_from_the_schedule(tmp_path: Path) -> None:
    """A 300 ms stall at the start: every frame due during it is late, not just the first one."""
    server, _ = await _bare(tmp_path, pause_s=0.3)
    try:
        frames, counts = build_frames(generate_pool(ShopSpec(carts=200), 1_000), 1)
        summary = await run_load(frames, counts, unix=str(tmp_path / "bare.sock"), rate=2_000, duration_s=1.0)
    finally:
        server.close()
        await server.wait_closed()
    lat = summary["latency_ms"]
    assert summary["errors"] == 0 and summary["events_sent"] == 2_000, summary
    assert lat["max"] >= 280, lat  # the first frame waited the whole stall
    # ~600 frames were due during the stall: with coordinated omission only one of them would be slow.
    assert lat["p90"] >= 50, lat


def test_open_loop_pacing_is_within_2_percent_over_5_s_at_20k_per_s(tmp_path: Path) -> None:
    """20 000 events/s for 5 s against the bare server, batch 1, checked where the events arrive."""
    sock = tmp_path / "bare.sock"
    with subprocess.Popen([sys.executable, "-m", "bench.bare_server", "--unix", str(sock)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as server:
        try:
            ready = server.stdout.readline()  # type: ignore[union-attr]
            assert ready.startswith("ready"), ready + server.stderr.read()  # type: ignore[union-attr]
            gen = subprocess.run(
                [sys.executable, "-m", "bench.loadgen", "--unix", str(sock), "--rate", "20000", "--duration", "5",
                 "--batch", "1", "--carts", "2000", "--pool", "20000", "--json", "--quiet"],
                check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
            )
        finally:
            server.terminate()
            out, _ = server.communicate(timeout=30)
    assert gen.returncode == 0, gen.stderr
    summary = json.loads(gen.stdout)
    received = json.loads(out.strip().splitlines()[-1])
    assert summary["events_sent"] == 100_000 and summary["accepted"] + summary["rejected"] == 100_000
    assert summary["errors"] == 0, summary
    assert abs(summary["send_duration_s"] - 5.0) <= 0.1, summary  # the schedule spans 5 s
    assert received["events"] == 100_000
    rate = received["events"] / received["span_s"]
    assert abs(rate - 20_000) <= 400, (rate, received)  # +-2 % over the 5 s
    # Smoothness: every whole second carries its share (an unpaced sender would put it all in the first).
    for k, n in enumerate(received["per_second"][:5]):
        assert abs(n - 20_000) <= 2_000, (k, received["per_second"])


def test_loadgen_says_what_is_wrong_with_its_arguments_or_its_target(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    base = [sys.executable, "-m", "engine.cli", "loadgen", "--unix", str(tmp_path / "none.sock"), "--count", "10",
            "--pool", "10", "--quiet"]
    for extra, status, text in ((["--carts", "0"], 2, "--carts: expected at least 1"),
                                (["--connections", "0"], 2, "--connections: expected at least 1"),
                                (["--bad-fraction", "2"], 2, "--bad-fraction: expected a fraction within 0..1"),
                                (["--rate", "nan"], 2, "--rate: expected a finite number"),
                                ([], 1, "cannot reach the engine at")):
        done = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert done.returncode == status and text in done.stderr and "Traceback" not in done.stderr, (extra, done.stderr)
