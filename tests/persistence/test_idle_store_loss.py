"""Redis loses its data, or goes away, while the engine has nothing new to write: the engine notices
(a cut with nothing to write still probes the store) instead of answering ``sync`` from memory."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.stores import StoreError
from tests.persistence.conftest import RedisServer, crash, engine_config, start_engine
from tests.persistence.helpers import cart_event, feed, states


@pytest.mark.parametrize("durability", ["snapshot", "journal"])
async def test_sync_after_redis_restarted_empty_rewrites_before_answering(redis_server: RedisServer, tmp_path: Path,
                                                                          engines: list, durability: str) -> None:
    config = engine_config(tmp_path, redis_server.url, sync_timeout="3s", durability=durability)
    a = await start_engine(engines, config, tmp_path)
    for i in range(20):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()
    expected = states(a)
    redis_server.restart()  # no persistence: it comes back empty
    assert redis_server.command("DBSIZE") == 0

    await a.sync()  # answered only once the store holds everything again
    assert redis_server.command("EXISTS", "cw:{g}:meta") == 1
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    assert states(b) == expected


async def test_graceful_stop_after_redis_restarted_empty_writes_everything(redis_server: RedisServer, tmp_path: Path,
                                                                          engines: list) -> None:
    config = engine_config(tmp_path, redis_server.url)
    a = await start_engine(engines, config, tmp_path)
    for i in range(20):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()
    expected = states(a)
    redis_server.restart()  # empty, and up again before the stop
    await a.stop()  # its final full snapshot finds the data gone: it rewrites everything
    assert a.final_snapshot_error is None, a.final_snapshot_error
    b = await start_engine(engines, config, tmp_path)
    assert states(b) == expected


async def test_an_idle_engine_reports_a_dead_store(redis_server: RedisServer, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, redis_server.url)
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1"))
    await a.sync()
    redis_server.kill9()
    with pytest.raises(StoreError):
        await a.snapshotter.snapshot()  # the snapshot loop's next turn: nothing to write, the probe fails
    doc = a.stats_document()["persistence"]
    assert doc["up"] is False and doc["error"], doc
    redis_server.start()
    await a.snapshotter.snapshot()  # back (and empty): written again, reported up
    assert a.stats_document()["persistence"]["up"] is True
    assert redis_server.command("EXISTS", "cw:{g}:meta") == 1
