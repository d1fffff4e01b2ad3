"""``log_max_records``: the message log keeps the newest records only, in memory and in both stores.

A workload of carts whose shopper gave no consent produces nine "skipped" records per cart (no sends),
so a few hundred carts overflow a log capped at 1 000 records several times over.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from engine.app import Engine
from engine.metrics_http import render_metrics
from engine.stats import StatsView
from engine.stores import open_store
from tests.persistence.conftest import RedisServer, crash, engine_config, start_engine
from tests.persistence.helpers import HOUR, cart_event, feed

CAP = 1000


def record_everything(engine: Engine) -> list[Any]:
    """Every record the engine's log is handed from now on (the log itself keeps only the newest)."""
    seen: list[Any] = []
    msglog = engine.runtime.msglog
    append = msglog.append

    def appending(record: Any) -> None:
        append(record)
        seen.append(record.as_dict())

    msglog.append = appending  # type: ignore[method-assign]
    return seen


async def workload(engine: Engine, carts: range, *, flow_h: float = 3 * 24) -> None:
    """Carts a minute apart, each skipped at every step of its flow, then the flows run to their end."""
    no_consent = {"consent": {"email": False}}
    for i in carts:
        await feed(engine, cart_event(f"c{i}") | {"profile": {"id": f"p{i}", "email": f"p{i}@x.test", **no_consent}})
        await engine.runtime.advance_clock(60)
    await engine.runtime.advance_clock(flow_h * HOUR)


def logged(engine: Engine) -> list[dict[str, Any]]:
    return [r.as_dict() for r in engine.runtime.msglog]


def redis_log_records(server: RedisServer) -> list[Any]:
    fields = server.command("HGETALL", "cw:{g}:log")
    return [r for blob in fields.values() for r in msgpack.unpackb(blob, raw=False)]


async def test_memory_keeps_the_newest_records_and_counts_the_dropped(tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, f"file:{tmp_path / 'state'}", log_max_records=CAP)
    a = await start_engine(engines, config, tmp_path)
    everything = record_everything(a)
    await workload(a, range(400))
    assert len(everything) > 3 * CAP
    assert logged(a) == everything[-CAP:]
    # ``logs`` answers oldest first among the records held; ``since`` before them all finds them all
    assert a.runtime.msglog.query(limit=10 * CAP) == everything[-CAP:]
    assert a.runtime.msglog.query(limit=CAP, since=0.0) == everything[-CAP:]
    assert a.runtime.msglog.query(limit=3) == everything[-3:]
    c0 = [r for r in everything if r["cart"] == "c0"]
    assert a.runtime.msglog.query(cart="c0") == [r for r in everything[-CAP:] if r["cart"] == "c0"] != c0
    doc = a.stats_document()
    assert doc["message_log"] == CAP
    assert doc["message_log_dropped"] == len(everything) - CAP
    metrics = render_metrics(StatsView(a))
    assert f"cartwheel_message_log_dropped_total {len(everything) - CAP}" in metrics.splitlines()
    # expiry still works on a full log
    a.runtime.msglog.retention_s = 1.0
    await a.runtime.advance_clock(10.0)
    assert len(a.runtime.msglog) == 0
    assert a.stats_document()["message_log_dropped"] == len(everything) - CAP  # expired ones are not "dropped"


@pytest.mark.parametrize("durability", ["snapshot", "journal"])
async def test_the_restored_log_is_the_newest_records_once_each(store_url: str, tmp_path: Path, engines: list,
                                                               durability: str) -> None:
    """Cuts between which more than the cap was logged: the record the snapshotter remembered as the last
    one written was pushed out of memory, so every record held is written (none twice, none lost)."""
    config = engine_config(tmp_path, store_url, durability=durability, log_max_records=CAP)
    a = await start_engine(engines, config, tmp_path)
    everything = record_everything(a)
    await workload(a, range(30), flow_h=2)
    await a.snapshotter.snapshot()
    await workload(a, range(30, 330))  # ~2 700 records: the last one written is long gone from memory
    await a.snapshotter.snapshot()
    await workload(a, range(330, 340), flow_h=1)
    await a.sync()  # journal durability: these are replayed from the journal
    expected = everything[-CAP:]
    assert logged(a) == expected
    await crash(a)

    b = await start_engine(engines, config, tmp_path)
    restored = logged(b)
    assert len({r["id"] for r in restored}) == len(restored)  # no duplicates
    assert restored == expected  # exactly the newest cap records, nothing older


async def test_redis_keeps_about_as_many_records_as_memory(redis_server: RedisServer, tmp_path: Path,
                                                           engines: list) -> None:
    config = engine_config(tmp_path, redis_server.url, log_max_records=CAP)
    a = await start_engine(engines, config, tmp_path)
    everything = record_everything(a)
    for start in range(0, 600, 50):
        await workload(a, range(start, start + 50), flow_h=6)
        await a.sync()
        stored = redis_log_records(redis_server)
        assert len(stored) <= CAP + 450, (start, len(stored))  # the cap, and the rest of its oldest cut's field
    assert len(everything) > 4 * CAP
    ids = [r[0] for r in redis_log_records(redis_server)]
    assert len(ids) == len(set(ids))
    expected = [r["id"] for r in everything[-CAP:]]
    assert set(expected) <= set(ids)
    await crash(a)
    store = open_store(redis_server.url)
    store.log_max_records = CAP
    await store.open()
    try:
        loaded = await store.read(lambda _: None)
        assert loaded is not None
        assert [r[0] for r in loaded.log] == expected  # restore reads no more than the cap
    finally:
        await store.close()


async def test_the_file_store_keeps_about_as_many_records_as_memory(tmp_path: Path, engines: list) -> None:
    """Its deltas pile up records until a new base holds only those in memory: it comes once the deltas
    hold half the cap. Reading it never yields more than the cap."""
    spec = f"file:{tmp_path / 'state'}"
    config = engine_config(tmp_path, spec, log_max_records=CAP)
    a = await start_engine(engines, config, tmp_path)
    everything = record_everything(a)
    for start in range(0, 600, 25):
        await workload(a, range(start, start + 25), flow_h=3)
        await a.sync()
    assert len(everything) > 4 * CAP
    expected = everything[-CAP:]
    await crash(a)

    store = open_store(spec)
    await store.open()
    try:
        raw = store.load()
        assert raw is not None
        stored = msgpack.unpackb(raw, raw=False)["log"]
        assert len(stored) <= CAP + CAP // 2 + 250, len(stored)  # a base, deltas up to half the cap and one cut
        store.log_max_records = CAP
        loaded = await store.read(lambda _: None)
        assert loaded is not None
        assert [r[0] for r in loaded.log] == [r["id"] for r in expected]
    finally:
        await store.close()
