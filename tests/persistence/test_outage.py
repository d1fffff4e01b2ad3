"""Redis goes away mid-run: the engine keeps ingesting and sending from memory, says so, and catches up."""
from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine.app import Engine
from engine.stores import StoreError
from tests.persistence.conftest import (
    RedisServer,
    async_wait_until,
    crash,
    engine_config,
    outbox_lines,
    start_engine,
)
from tests.persistence.helpers import HOUR, cart_event, feed, states


async def _synced_then_down(redis_server: RedisServer, tmp_path: Path, engines: list, carts: int) -> tuple[Any, Engine]:
    """An engine with ``carts`` carts synced to Redis, which then dies (``kill -9``); (config, engine)."""
    config = engine_config(tmp_path, redis_server.url, sync_timeout="1s")
    a = await start_engine(engines, config, tmp_path)
    for i in range(carts):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()
    redis_server.kill9()
    return config, a


async def test_outage_runs_from_memory_and_catches_up(redis_server: RedisServer, tmp_path: Path, engines: list) -> None:
    config, a = await _synced_then_down(redis_server, tmp_path, engines, 100)

    for i in range(100, 150):  # ingest goes on
        assert (await feed(a, cart_event(f"c{i}")))["accepted"] == 1
    with pytest.raises(StoreError) as failed:
        await a.sync()  # never claims durability it does not have
    assert "not durable after 1 s" in str(failed.value) and redis_server.url in str(failed.value)
    doc = a.stats_document()["persistence"]
    assert doc["up"] is False and doc["error"]
    assert a.snapshot_error  # what the admin `stats` (engine.stats.StatsView) reports as up: false

    await a.runtime.advance_clock(1.5 * HOUR)  # sends go out from memory meanwhile
    assert len(outbox_lines(tmp_path)) == 150
    assert a.ledger.unrecorded == 150

    redis_server.start()  # back, and empty: it had no persistence
    await async_wait_until(lambda: a.health.up and not a.snapshotter.rewrite and a.snapshotter.last_full,
                           deadline_s=20, what="the engine to rewrite the store")
    await a.sync()
    assert a.stats_document()["persistence"]["up"] is True
    expected = states(a)
    await crash(a)

    b = await start_engine(engines, config, tmp_path)
    assert states(b) == expected
    assert b.restore_report.ledger_entries == 150 or b.restore_report.ledger_entries == 0  # pruned once covered
    await b.runtime.advance_clock(1 * HOUR)
    keys = Counter(m["key"] for m in outbox_lines(tmp_path))
    assert max(keys.values()) == 1


async def test_journal_replies_say_not_durable_during_an_outage(redis_server: RedisServer, tmp_path: Path,
                                                               engines: list) -> None:
    config = engine_config(tmp_path, redis_server.url, durability="journal", sync_timeout="1s")
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c0"))
    redis_server.kill9()
    reply = a.handler.handle(99, cart_event("c1"))
    assert reply["accepted"] == 1  # applied in memory
    wait = a.handler.barrier()
    assert wait is not None
    with pytest.raises(StoreError) as failed:
        await asyncio.wait_for(wait, 10)
    assert "not durable" in str(failed.value)
    for i in range(2, 40):
        a.handler.handle(100 + i, cart_event(f"c{i}"))
        a.handler.barrier()
    redis_server.start()
    # the engine notices, rewrites the store, and then what was accepted meanwhile is durable
    await async_wait_until(lambda: a.health.up and a.snapshotter.last_full and not a.snapshotter.rewrite,
                           deadline_s=20, what="catch-up")
    await a.sync()
    await feed(a, cart_event("after"))
    expected = states(a)
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    assert states(b) == expected
    assert b.registry.cart("shop1", "c39") is not None and b.registry.cart("shop1", "after") is not None


async def test_ingest_sync_frame_fails_clearly(redis_server: RedisServer, tmp_path: Path, engines: list) -> None:
    """Over the wire: the sync reply during an outage is synced: false with the reason."""
    import msgpack

    config = engine_config(tmp_path, redis_server.url, sync_timeout="1s")
    a = await start_engine(engines, config, tmp_path)
    host, port = a.ingest.tcp_address
    reader, writer = await asyncio.open_connection(host, port)
    redis_server.kill9()
    writer.write(msgpack.packb(cart_event("c1")) + msgpack.packb({"type": "sync"}) + msgpack.packb(cart_event("c2")))
    await writer.drain()
    unpacker = msgpack.Unpacker(raw=False)
    replies: list = []
    while len(replies) < 3:
        data = await asyncio.wait_for(reader.read(65536), 10)
        assert data
        unpacker.feed(data)
        replies.extend(unpacker)
    assert replies[0]["accepted"] == 1
    assert replies[1]["synced"] is False and "not durable" in replies[1]["error"]
    assert replies[2]["seq"] == 3 and replies[2]["accepted"] == 1
    writer.close()
    redis_server.start()


async def test_dirty_marks_during_an_outage_track_the_carts_held(redis_server: RedisServer, tmp_path: Path,
                                                                 engines: list) -> None:
    """Every event naming a cart left a mark, also for carts the engine never held (a cart.cleared for an
    unknown id): while the store is down no cut takes them, and they grew with the events, not the carts."""
    config, a = await _synced_then_down(redis_server, tmp_path, engines, 3)
    with pytest.raises(StoreError):
        await a.snapshot()
    for k in range(5):
        await feed(a, [{"type": "cart.cleared", "store": "shop1", "cart": f"x{k}-{i}"} for i in range(1000)])
        await feed(a, [{"type": "session.ended", "store": "shop1", "cart": f"y{k}-{i}"} for i in range(1000)])
    assert len(a.registry) == 3 and len(a.runtime.dirty) == 0, f"{len(a.runtime.dirty)} marks"
    await feed(a, cart_event("c3"))  # created by the event: marked
    await feed(a, {"type": "order.completed", "store": "shop1", "cart": "c9", "order": "o9", "value": 5.0})
    await feed(a, {"type": "cart.cleared", "store": "shop1", "cart": "c0"})  # held before: its change is marked
    assert a.registry.cart("shop1", "c0") is None  # deleted by the event: its delete must reach the store
    assert a.runtime.dirty == {("shop1", "c3"), ("shop1", "c9"), ("shop1", "c0")}
    redis_server.start()
    await a.sync()
    expected = states(a)
    await crash(a)

    b = await start_engine(engines, config, tmp_path)
    assert states(b) == expected


async def test_connections_redis_closed_while_idle_are_replaced_not_reported(redis_server: RedisServer, tmp_path: Path,
                                                                              engines: list) -> None:
    """A Redis restart closes the engine's pooled connections; the next write or read on one of them used to
    fail ("Connection closed by server"): a final snapshot right after a restart failed (exit 4)."""
    config = engine_config(tmp_path, redis_server.url)
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1"))
    await a.sync()
    redis_server.restart()  # empty; every pooled connection is now closed on the server's side
    assert await a.store._call(b"GET", b"cw:{g}:meta") is None  # a read: on a new connection
    redis_server.restart()
    assert await a.store._send([(b"SET", b"cw:test", b"1")], transaction=True) == [b"OK"]  # a write too
    redis_server.restart()
    await a.stop()  # the final snapshot: the data are gone, it writes everything again
    assert a.final_snapshot_error is None, a.final_snapshot_error
    b = await start_engine(engines, config, tmp_path)
    assert b.registry.cart("shop1", "c1") is not None
