"""Ingest event ids kept for snapshots: bounded by ``dedup_capacity`` in memory and in the store."""
from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from engine.stores import StoreError
from tests.persistence.conftest import RedisServer, crash, engine_config, start_engine
from tests.persistence.helpers import feed

DAY = 86400.0


def _clears(prefix: str, n: int) -> list[dict[str, str]]:
    return [{"type": "cart.cleared", "store": "shop1", "cart": f"{prefix}{i}", "id": f"{prefix}{i}"} for i in range(n)]


def _kept_ids(engine) -> list[int]:
    """How many ids each blob the snapshotter keeps for a full rewrite holds (oldest first)."""
    return [len(msgpack.unpackb(blob, raw=False)) for _, blob, *_ in engine.snapshotter.dedup_blobs]


async def test_ids_kept_for_snapshots_are_bounded_by_capacity(store_url: str, tmp_path: Path, engines: list) -> None:
    """The snapshotter kept a packed copy of every id of the last 24 h, however small ``dedup_capacity``
    (at 1 000 ids/s, 86 M ids next to the deduper's 1 M)."""
    a = await start_engine(engines, engine_config(tmp_path, store_url, dedup_capacity=1000), tmp_path)
    for k in range(20):
        await feed(a, _clears(f"a{k}-", 1000))
    assert len(a.deduper) == 1000
    await a.snapshot()
    assert _kept_ids(a) == [1000]  # one cut took 20 000 ids: the newest 1 000 are worth keeping
    for k in range(4):
        await a.runtime.advance_clock(1.0)
        await feed(a, _clears(f"b{k}-", 700))
        await a.sync()
    assert _kept_ids(a) == [700, 700]  # the newest 1 000 ids live in the last two cuts' blobs
    await a.snapshot()  # a full rewrite writes them (the file store writes every id it keeps)
    await crash(a)

    b = await start_engine(engines, engine_config(tmp_path, store_url, dedup_capacity=1000), tmp_path)
    assert sum(_kept_ids(b)) <= 1000
    await feed(b, _clears("b3-", 700) + _clears("b2-", 700)[400:])  # the newest 1 000: re-sent, duplicates
    assert b.stats.events_duplicate == 1000
    await feed(b, _clears("b2-", 1))  # older: forgotten (as by the deduper before the restart)
    assert b.stats.events_duplicate == 1000


async def test_redis_drops_the_id_blobs_the_engine_let_go(redis_server: RedisServer, tmp_path: Path,
                                                          engines: list) -> None:
    """The store held a day of ids too (pruned by age only): a restore read them all."""
    a = await start_engine(engines, engine_config(tmp_path, redis_server.url, dedup_capacity=1000), tmp_path)
    for k in range(6):
        await a.runtime.advance_clock(1.0)
        await feed(a, _clears(f"c{k}-", 700))
        await a.sync()
    assert redis_server.command("HLEN", "cw:{g}:dedup") == 2


async def test_a_store_with_more_ids_than_the_capacity_restores_the_newest(store_url: str, tmp_path: Path,
                                                                        engines: list) -> None:
    """A store written with a larger capacity (or before ids were bounded by it) still loads: the
    newest ``dedup_capacity`` ids are remembered, and only those are kept for the next rewrite."""
    a = await start_engine(engines, engine_config(tmp_path, store_url, dedup_capacity=100_000), tmp_path)
    for k in range(3):
        await a.runtime.advance_clock(1.0)
        await feed(a, _clears(f"d{k}-", 1000))
        await a.sync()
    await crash(a)

    b = await start_engine(engines, engine_config(tmp_path, store_url, dedup_capacity=1500), tmp_path)
    assert _kept_ids(b) == [500, 1000]
    assert len(b.deduper) == 1500
    await feed(b, _clears("d2-", 1000) + _clears("d1-", 1000)[500:])
    assert b.stats.events_duplicate == 1500
    await feed(b, _clears("d1-", 500) + _clears("d0-", 1000))
    assert b.stats.events_duplicate == 1500


async def test_long_ids_are_stored_as_digests_and_remembered_after_a_restart(store_url: str, tmp_path: Path,
                                                                           engines: list) -> None:
    """Ids and stores may be 2 048 characters (max_string): the snapshotter kept and stored each whole."""
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    events = [{"type": "cart.cleared", "store": "shop1", "cart": f"c{i}", "id": f"{i:04d}" + "x" * 2044}
              for i in range(50)]
    events.append({"type": "cart.cleared", "store": "shop1", "cart": "c-short", "id": "short-1"})
    await feed(a, events)
    await a.sync()
    stored = sum(len(blob) for _, blob, *_ in a.snapshotter.dedup_blobs)
    assert stored < 51 * 100, f"{stored} bytes for 51 ids"
    await crash(a)

    b = await start_engine(engines, config, tmp_path)
    await feed(b, events)
    assert b.stats.events_duplicate == 51
    await feed(b, [dict(events[0], id="z" + events[0]["id"][1:])])  # another long id: new
    assert b.stats.events_duplicate == 51


async def test_ids_waiting_for_a_cut_during_an_outage_are_bounded(redis_server: RedisServer, tmp_path: Path,
                                                                 engines: list) -> None:
    """While the store is down no cut takes the ids: they piled up (one per id'd event, older than the
    window too, and written later), and so did the blobs of the cuts that failed."""
    config = engine_config(tmp_path, redis_server.url, sync_timeout="1s", dedup_capacity=1000)
    a = await start_engine(engines, config, tmp_path)
    redis_server.kill9()
    for day in range(3):
        for k in range(5):
            await feed(a, _clears(f"e{day}-{k}-", 1000))
            assert len(a.deduper.recent) <= 1000
        await a.runtime.advance_clock(DAY)
    await feed(a, _clears("g", 1))  # a day later the deduper forgets them (at its next id): so does the cut
    assert len(a.deduper) == 1 and len(a.deduper.recent) == 1
    for k in range(5):
        await feed(a, _clears(f"f{k}-", 1000))
        with pytest.raises(StoreError):
            await a.snapshotter.snapshot()  # a cut the store refuses: its ids wait for the next one
        await a.runtime.advance_clock(1.0)
    assert len(a.deduper.recent) == 0 and _kept_ids(a) == [1000]  # what waits: the newest 1 000
    assert a.snapshotter._dedup_unsent == 1  # blobs for the next commit: that one (not all five)
    redis_server.start()
    await a.snapshotter.snapshot()  # the store came back empty: the full rewrite
    await crash(a)

    b = await start_engine(engines, config, tmp_path)
    await feed(b, _clears("f4-", 1000) + _clears("f3-", 1))
    assert b.stats.events_duplicate == 1000



async def test_ids_taken_by_a_cut_the_store_refused_are_written_by_the_next(redis_server: RedisServer,
                                                                          tmp_path: Path, engines: list) -> None:
    """A full cut refused before it encoded (its generation could not even be begun) took the ids
    recorded since the previous cut and dropped them: after a restart, a client's retry of an event
    acknowledged as durable by a later sync was applied again."""
    config = engine_config(tmp_path, redis_server.url, sync_timeout="1s")
    a = await start_engine(engines, config, tmp_path)
    await feed(a, _clears("h", 3))
    redis_server.kill9()
    with pytest.raises(StoreError):
        await a.snapshot()
    redis_server.start()  # empty: the next cut rewrites everything, ids included
    await a.sync()
    await crash(a)

    b = await start_engine(engines, config, tmp_path)
    await feed(b, _clears("h", 3))
    assert b.stats.events_duplicate == 3
