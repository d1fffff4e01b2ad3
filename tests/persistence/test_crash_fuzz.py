"""Crash tests over :mod:`tests.persistence.fuzzkit`'s randomised workload: shoppers who come back during a
run and leave again (resumed runs, some past the paused run's expiry), orders right after a clear, admin
cancels followed by orders, profiles stated only by ``profile.updated`` and cited by id (also after their
only cart went), several carts per shopper under the frequency cap, WhatsApp with ``whatsapp_delay``
changed across graceful restarts, and a message log capped at 1 000 records.

An uninterrupted run is the baseline; it must keep the invariants (:func:`fuzzkit.violations`), and runs
killed with SIGKILL (or stopped with SIGTERM) at random points must send exactly its messages, once each,
and end with its ``stats`` figures.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.persistence import fuzzkit
from tests.persistence.conftest import RedisServer
from tests.persistence.crashkit import EngineProcess, delivered, final_state, free_port

# 90m -> 6h -> 2h -> 90m: the WhatsApp step moves after the 4 h one and back, during runs and pauses
# (tests/actors/test_actors_restart_config.py has the reduced cases)
DELAYS = fuzzkit.DELAYS
PLAN = fuzzkit.workload(4, 60, delays=DELAYS)


async def _play(tmp_path: Path, store: str, durability: str, *, kills: int = 0, sigterms: int = 0,
                seed: int = 0) -> dict[str, Any]:
    port = free_port()
    conf = {"directory": tmp_path, "store": store, "durability": durability, "port": port, "whatsapp_delay": None}
    engine = EngineProcess(tmp_path, fuzzkit.write_config(**conf), port)
    steps = PLAN.steps
    rnd = random.Random(seed)
    points = [k for k in range(2, len(steps) - 1) if steps[k].kind != "restart"]
    kill_at = {p: rnd.randrange(max(1, len(steps[p].frames))) if steps[p].kind == "events" else 0
               for p in rnd.sample(points, kills)}
    stops = set(rnd.sample(points, sigterms))

    async def on_step(i: int) -> None:
        if i in stops:
            assert engine.terminate() == 0
            await engine.start()

    driver = fuzzkit.FuzzDriver(engine, steps, journal=durability == "journal", config=conf, kill_at=kill_at,
                                on_step=on_step)
    try:
        await driver.run()
        state = await final_state(engine)
        uncertain = (await engine.admin("logs outcome=uncertain limit=100000"))["records"]
    finally:
        engine.kill9()
    assert driver.kills == kills and uncertain == []
    return {"keys": delivered(tmp_path), "state": state, "violations": fuzzkit.violations(tmp_path, PLAN),
            "admin_errors": driver.admin_errors}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import asyncio

    directory = tmp_path_factory.mktemp("fuzz-baseline")
    result = asyncio.run(_play(directory, f"file:{directory / 'state'}", "snapshot"))
    assert result["violations"] == []
    assert result["admin_errors"] == []  # every cancel found its run
    recovery = result["state"]["recovery"]
    # the workload does take the new paths
    assert recovery["resumed"] > 0 and recovery["stopped"] > 0 and recovery["recovered"] > 0
    assert {k.rsplit(":", 1)[1] for k in result["keys"]} == {"email", "whatsapp"}
    assert any(k.split(":")[1] in PLAN.late_kept for k in result["keys"])  # a kept profile, cited by id, got mail
    return result


@pytest.mark.parametrize(("kind", "durability", "kills", "sigterms"), [
    ("file", "journal", 4, 0), ("redis", "snapshot", 3, 1),
])
async def test_new_paths_survive_kills_and_restarts(kind: str, durability: str, kills: int, sigterms: int,
                                                    baseline: dict[str, Any], tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    redis: RedisServer | None = request.getfixturevalue("redis_server") if kind == "redis" else None
    store = f"file:{tmp_path / 'state'}" if redis is None else redis.url
    result = await _play(tmp_path, store, durability, kills=kills, sigterms=sigterms, seed=len(kind) + kills)
    assert result["violations"] == []
    missing = set(baseline["keys"]) - set(result["keys"])
    extra = set(result["keys"]) - set(baseline["keys"])
    assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])
    assert result["state"] == baseline["state"]
