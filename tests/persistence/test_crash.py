"""Crash tests: ``cartwheel run`` killed with SIGKILL at random points, restarted, compared with a run
that was never interrupted. See :mod:`tests.persistence.crashkit` for the workload and the driver.

* journal durability: nothing missing, nothing duplicated, the same final state;
* snapshot durability: nothing duplicated; the client re-sends what followed its last ``sync`` (the
  events at risk), after which the result is the same as well;
* Redis killed (and restarted empty) mid-run, then the engine killed: the same;
* SIGTERM and restart: nothing lost, in either mode.
"""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.persistence.conftest import RedisServer, async_wait_until
from tests.persistence.crashkit import (
    START,
    Driver,
    EngineProcess,
    delivered,
    final_state,
    free_port,
    replayed_journal_events,
    workload,
    write_config,
)

STEPS = workload()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run (file store, snapshot durability): what every other run must match."""
    import asyncio

    directory = tmp_path_factory.mktemp("baseline")

    async def run() -> dict[str, Any]:
        port = free_port()
        cfg = write_config(directory, store=f"file:{directory / 'state'}", durability="snapshot", port=port)
        engine = EngineProcess(directory, cfg, port)
        await Driver(engine, STEPS, journal=False).run()
        state = await final_state(engine)
        assert engine.terminate() == 0
        return {"keys": delivered(directory), "state": state}

    result = asyncio.run(run())
    assert sum(result["keys"].values()) > 300  # the workload sends plenty
    return result


def kill_points(seed: int, n: int = 4) -> dict[int, int]:
    """``n`` random steps to kill at; for event steps, after a random number of replies."""
    rnd = random.Random(seed)
    points = sorted(rnd.sample(range(2, len(STEPS) - 1), n))
    return {p: rnd.randrange(0, max(1, len(STEPS[p].frames))) if STEPS[p].kind == "events" else 0 for p in points}


def _check(directory: Path, baseline: dict[str, Any], state: dict[str, Any]) -> None:
    keys = delivered(directory)
    twice = {k: n for k, n in keys.items() if n > 1}
    assert twice == {}, f"sent twice: {sorted(twice)[:5]}"
    missing = set(baseline["keys"]) - set(keys)
    extra = set(keys) - set(baseline["keys"])
    assert not missing, f"missing: {sorted(missing)[:5]} ({len(missing)})"
    assert not extra, f"unexpected: {sorted(extra)[:5]} ({len(extra)})"
    assert state == baseline["state"]


def _store(kind: str, directory: Path, redis: RedisServer | None) -> str:
    return f"file:{directory / 'state'}" if kind == "file" else redis.url  # type: ignore[union-attr]


@pytest.mark.parametrize("durability", ["journal", "snapshot"])
@pytest.mark.parametrize("kind", ["redis", "file"])
async def test_kill9_at_random_points(kind: str, durability: str, baseline: dict[str, Any], tmp_path: Path,
                                      request: pytest.FixtureRequest) -> None:
    redis = request.getfixturevalue("redis_server") if kind == "redis" else None
    port = free_port()
    cfg = write_config(tmp_path, store=_store(kind, tmp_path, redis), durability=durability, port=port)
    engine = EngineProcess(tmp_path, cfg, port)
    seed = {"redis": 10, "file": 20}[kind] + (durability == "journal")
    driver = Driver(engine, STEPS, journal=durability == "journal", kill_at=kill_points(seed, 6))
    try:
        await driver.run()
        assert driver.kills == 6
        state = await final_state(engine)
        uncertain = (await engine.admin("logs outcome=uncertain limit=100000"))["records"]
    finally:
        engine.kill9()
    assert uncertain == []  # kills between sends: every outcome was recorded
    if durability == "journal":
        assert replayed_journal_events(tmp_path) > 0  # restarts did replay the journal
    else:
        assert driver.replayed_steps > 0  # the client did re-send what followed its last sync
    _check(tmp_path, baseline, state)


async def test_redis_killed_mid_run_then_the_engine(redis_server: RedisServer, baseline: dict[str, Any],
                                                   tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, store=redis_server.url, durability="journal", port=port)
    engine = EngineProcess(tmp_path, cfg, port)
    outage = {"down": 0}

    async def on_step(i: int) -> None:
        if i == 8:
            redis_server.kill9()  # the engine goes on from memory...
            outage["down"] = i
            stats = await engine.admin("stats")
            assert stats["ok"]
        if i == 9:
            redis_server.start()  # ...and Redis comes back empty (no persistence)

            async def caught_up() -> bool:
                # a sync that succeeds: everything accepted is durable again (the store was rewritten)
                replies = await driver._frames([{"type": "sync"}], -1, None, set())
                return bool(replies[0].get("synced")) and (await engine.admin("stats"))["persistence"]["up"]

            await _wait_async(caught_up, 60)

    # the first event step after the outage would wait for durability: play it once Redis is back
    driver = Driver(engine, STEPS, journal=True, kill_at={14: 0, 20: 0}, on_step=on_step)
    try:
        await driver.run()
        state = await final_state(engine)
    finally:
        engine.kill9()
    assert outage["down"] == 8
    _check(tmp_path, baseline, state)


async def _wait_async(check: Any, deadline_s: float) -> None:
    import asyncio
    import time

    end = time.monotonic() + deadline_s
    while not await check():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("durability", ["journal", "snapshot"])
async def test_sigterm_and_restart_loses_nothing(durability: str, baseline: dict[str, Any], tmp_path: Path,
                                                 redis_server: RedisServer) -> None:
    port = free_port()
    cfg = write_config(tmp_path, store=redis_server.url, durability=durability, port=port, snapshot_interval="1h")
    engine = EngineProcess(tmp_path, cfg, port)
    stops = Counter[str]()

    async def on_step(i: int) -> None:
        if i in (5, 13, 22):
            assert engine.terminate() == 0  # graceful: final snapshot
            stops["sigterm"] += 1
            await engine.start()

    # no syncs are needed for a graceful stop: skip them so nothing but the stop makes state durable
    steps = [s for s in STEPS if s.kind != "sync"]
    driver = Driver(engine, steps, journal=durability == "journal", on_step=on_step)
    try:
        await driver.run()
        state = await final_state(engine)
    finally:
        engine.kill9()
    assert stops["sigterm"] == 3 and driver.kills == 0
    _check(tmp_path, baseline, state)


async def test_kill_during_sends_never_duplicates(tmp_path: Path, redis_server: RedisServer) -> None:
    """A kill while sends are in flight: nothing twice; whatever is missing was reported uncertain."""
    import asyncio

    port = free_port()
    cfg = write_config(tmp_path, store=redis_server.url, durability="journal", port=port)
    engine = EngineProcess(tmp_path, cfg, port)
    steps = STEPS
    first_send_step = next(i for i, s in enumerate(steps) if s.kind == "clock" and s.at - START >= 3600 * 1.3)
    driver = Driver(engine, steps[:first_send_step], journal=True)
    await driver.run()
    # advance into the 1 h emails and kill while the clock command is still running
    command = asyncio.get_running_loop().create_task(engine.admin(f"clock set {steps[first_send_step].at}"))
    await async_wait_until(lambda: delivered(tmp_path), deadline_s=30, what="the first emails")
    engine.kill9()
    await asyncio.gather(command, return_exceptions=True)
    sent_before = delivered(tmp_path)
    await engine.start()
    await engine.admin(f"clock set {steps[first_send_step].at}")
    uncertain = {r["id"] for r in (await engine.admin("logs outcome=uncertain limit=100000"))["records"]}
    engine.kill9()
    keys = delivered(tmp_path)
    assert max(keys.values()) == 1
    # every step-1 email either went out exactly once or is reported as uncertain (skip policy)
    expected = {k for k in keys} | uncertain
    assert len(sent_before) <= len(keys)
    assert all(k in expected for k in uncertain)
