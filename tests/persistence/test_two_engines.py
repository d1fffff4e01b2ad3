"""Two engines pointed at the same Redis database: each process writes its own epoch, so the one that
finds the other's in the meta stops writing there and says so (one engine owns a store)."""
from __future__ import annotations

import logging
from pathlib import Path

import msgpack
import pytest

from engine.stores import StoreError, StoreTaken
from tests.persistence.conftest import RedisServer, engine_config, start_engine
from tests.persistence.helpers import cart_event, feed, states


async def test_a_second_engine_on_the_same_redis_is_noticed(redis_server: RedisServer, tmp_path: Path,
                                                            engines: list, caplog: pytest.LogCaptureFixture) -> None:
    config = engine_config(tmp_path, redis_server.url, sync_timeout="1s")
    a = await start_engine(engines, config, tmp_path)
    for i in range(10):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()
    other = tmp_path / "b"
    other.mkdir()
    b = await start_engine(engines, engine_config(other, redis_server.url, sync_timeout="1s"), other)
    meta = msgpack.unpackb(redis_server.command("GET", "cw:{g}:meta"), raw=False)
    assert meta["epoch"] == b.snapshotter.epoch != a.snapshotter.epoch  # an epoch names a process: B claimed it
    await feed(b, cart_event("only-in-b"))
    await b.sync()

    with pytest.raises(StoreTaken):
        await a.store.intact(a.snapshotter.gen, a.snapshotter.store_epoch)
    caplog.set_level(logging.ERROR)
    await feed(a, cart_event("only-in-a"))
    with pytest.raises(StoreError):
        await a.sync()  # A no longer claims durability in a store another engine writes
    doc = a.stats_document()["persistence"]
    assert doc["up"] is False and "another engine" in doc["error"], doc
    assert any("another engine" in r.getMessage() for r in caplog.records)
    # A did not write over B's state: B's meta, B's carts
    meta = msgpack.unpackb(redis_server.command("GET", "cw:{g}:meta"), raw=False)
    assert meta["epoch"] == b.snapshotter.epoch
    expected = states(b)
    await b.stop()
    c = await start_engine(engines, engine_config(other, redis_server.url), other)
    assert states(c) == expected and ("shop1", "only-in-a") not in expected
