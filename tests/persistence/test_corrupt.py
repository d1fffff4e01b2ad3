"""Corrupt or foreign data: a clear error naming the key or file, never a half-loaded engine."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from engine.app import Engine
from engine.clock import ManualClock
from engine.stores import CorruptStore
from tests.persistence.conftest import (
    START,
    RedisServer,
    async_wait_until,
    crash,
    engine_config,
    start_engine,
)
from tests.persistence.helpers import cart_event, feed, states

EXE = str(Path(sys.executable).parent / "cartwheel")


async def _start_fails(config: object, tmp_path: Path) -> CorruptStore:
    engine = Engine(config, clock=ManualClock(START), base_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(CorruptStore) as failed:
        await engine.start()
    await engine.store.close()
    if engine.dispatcher is not None:
        await engine.dispatcher.stop()
    await engine.journal.close(timeout_s=0.1)
    return failed.value


async def test_foreign_meta_in_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    redis_server.command("SET", "cw:{g}:meta", "hello")
    error = await _start_fails(engine_config(tmp_path, redis_server.url), tmp_path)
    assert "cw:{g}:meta" in str(error) and "not msgpack" in str(error)
    redis_server.command("SET", "cw:{g}:meta", msgpack.packb({"format": "someone-else/9"}))
    error = await _start_fails(engine_config(tmp_path, redis_server.url), tmp_path)
    assert "cw:{g}:meta" in str(error) and "someone-else/9" in str(error)


async def test_corrupt_cart_in_redis_names_key_and_field(redis_server: RedisServer, tmp_path: Path,
                                                        engines: list) -> None:
    config = engine_config(tmp_path, redis_server.url)
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1"))
    await a.stop()
    key = next(k for k in redis_server.command("KEYS", "cw:{p*}:g*:carts"))
    redis_server.command("HSET", key, b"shop1\0c1", b"\x93\x01\x02")  # msgpack, but not a cart
    error = await _start_fails(config, tmp_path)
    assert key.decode() in str(error) and "c1" in str(error) and "not a cartwheel cart" in str(error)


async def test_a_foreign_field_in_the_redis_dedup_hash_names_key_and_field(redis_server: RedisServer, tmp_path: Path,
                                                                          engines: list) -> None:
    config = engine_config(tmp_path, redis_server.url)
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1", id="evt-1"))
    await a.stop()
    redis_server.command("HSET", "cw:{g}:dedup", "x7", msgpack.packb([]))
    error = await _start_fails(config, tmp_path)
    assert "cw:{g}:dedup" in str(error) and "x7" in str(error) and "not a write number" in str(error)


async def test_stray_keys_without_meta(redis_server: RedisServer, tmp_path: Path) -> None:
    redis_server.command("XADD", "cw:{p3}:journal", "5-0", "b", "x")
    error = await _start_fails(engine_config(tmp_path, redis_server.url), tmp_path)
    assert "cw:{p3}:journal" in str(error) and "cw:{g}:meta" in str(error)


async def test_wrong_type_key_is_reported_and_the_engine_keeps_running(redis_server: RedisServer, tmp_path: Path,
                                                                       engines: list) -> None:
    config = engine_config(tmp_path, redis_server.url, durability="journal", sync_timeout="1s")
    a = await start_engine(engines, config, tmp_path)
    from engine.stores.base import event_partition

    part = event_partition(cart_event("c1"), 16)
    redis_server.command("DEL", f"cw:{{p{part}}}:journal")
    redis_server.command("SET", f"cw:{{p{part}}}:journal", "not a stream")
    reply = a.handler.handle(1, cart_event("c1"))
    assert reply["accepted"] == 1
    assert a.handler.barrier() is not None  # the frame's batch goes to the journal writer
    await async_wait_until(lambda: not a.health.up, deadline_s=10, what="the store reported down")
    assert f"cw:{{p{part}}}:journal" in a.stats_document()["persistence"]["error"]
    assert "another type" in a.stats_document()["persistence"]["error"]
    await crash(a)


async def test_corrupt_file_snapshot(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "snapshot.msgpack").write_bytes(b"\x00garbage")
    error = await _start_fails(engine_config(tmp_path, f"file:{state}"), tmp_path)
    assert str(state / "snapshot.msgpack") in str(error)


async def test_torn_journal_tail_is_cut_off(tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, f"file:{tmp_path / 'state'}", durability="journal")
    a = await start_engine(engines, config, tmp_path)
    for i in range(10):
        await feed(a, cart_event(f"c{i}"))
    expected = states(a)
    await crash(a)
    segment = max((tmp_path / "state").glob("journal-*.log"))
    with open(segment, "ab") as f:  # noqa: ASYNC230 - a test tearing a file on purpose
        f.write(b"\x40\x00\x00\x00\x12\x34")  # half a frame header: the process died mid-write
    b = await start_engine(engines, config, tmp_path)
    assert states(b) == expected


def test_cartwheel_run_reports_corrupt_redis_data_and_exits(redis_server: RedisServer, tmp_path: Path) -> None:
    redis_server.command("SET", "cw:{g}:meta", "hello")
    cfg = tmp_path / "cartwheel.toml"
    cfg.write_text(f'''
[engine]
ingest_tcp = "127.0.0.1:0"
ingest_unix = ""
admin_unix = "{tmp_path / 'admin.sock'}"
store = "{redis_server.url}"
clock = "manual"
''')
    proc = subprocess.run([EXE, "run", "--config", str(cfg)], cwd=tmp_path, capture_output=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode != 0
    assert b"cw:{g}:meta" in proc.stderr + proc.stdout


@pytest.mark.parametrize("kind", ["carts", "profiles"])
async def test_corrupt_chunk_in_redis_names_key_and_chunk(redis_server: RedisServer, tmp_path: Path, engines: list,
                                                          kind: str) -> None:
    config = engine_config(tmp_path, redis_server.url)
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1"))
    await a.stop()  # a graceful stop writes a full snapshot: chunks only
    key = next(k for k in redis_server.command("KEYS", f"cw:{{p*}}:g*:{kind}") if redis_server.command("HLEN", k))
    name = redis_server.command("HKEYS", key)[0]
    assert name.startswith(b"\0")
    redis_server.command("HSET", key, name, msgpack.packb(["shop1", [1, 2, 3]]))  # msgpack, but not a chunk
    error = await _start_fails(config, tmp_path)
    what = "cart" if kind == "carts" else "profile"
    assert key.decode() in str(error) and f"chunk {name[1:].decode()}" in str(error)
    assert f"not a cartwheel {what} chunk" in str(error)
    redis_server.command("HSET", key, name, b"\xc1")  # not even msgpack
    error = await _start_fails(config, tmp_path)
    assert key.decode() in str(error) and f"not a cartwheel {what} chunk" in str(error)


async def _seed(redis_server: RedisServer, tmp_path: Path, engines: list, durability: str = "snapshot") -> object:
    """A store holding one cart c1 (in journal durability: in the journal, after the cut)."""
    config = engine_config(tmp_path, redis_server.url, durability=durability)
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1", id="e1"))
    if durability == "snapshot":
        await a.stop()
    else:
        await crash(a)
    return config


async def test_a_wrong_type_partition_key_is_named_itself(redis_server: RedisServer, tmp_path: Path,
                                                          engines: list) -> None:
    config = await _seed(redis_server, tmp_path, engines)
    redis_server.command("SET", "cw:{p9}:intents", "not a hash")  # a foreign string where a hash belongs
    error = await _start_fails(config, tmp_path)
    assert "key cw:{p9}:intents holds data of another type" in str(error), str(error)


def _set_meta(redis_server: RedisServer, **fields: object) -> None:
    meta = msgpack.unpackb(redis_server.command("GET", "cw:{g}:meta"), raw=False)
    meta.update(fields)
    redis_server.command("SET", "cw:{g}:meta", msgpack.packb(meta))


async def test_a_meta_time_that_is_not_a_number_is_named(redis_server: RedisServer, tmp_path: Path,
                                                         engines: list) -> None:
    config = await _seed(redis_server, tmp_path, engines)
    _set_meta(redis_server, at="yesterday")
    error = await _start_fails(config, tmp_path)
    assert "cw:{g}:meta" in str(error) and "'at'" in str(error), str(error)


async def test_event_ids_with_a_time_that_is_not_a_number_are_named(redis_server: RedisServer, tmp_path: Path,
                                                                    engines: list) -> None:
    config = await _seed(redis_server, tmp_path, engines)
    redis_server.command("HSET", "cw:{g}:dedup", "999", msgpack.packb([["shop1", "e9", "noon"]]))
    error = await _start_fails(config, tmp_path)
    assert "cw:{g}:dedup field b'999'" in str(error) and "not cartwheel event ids" in str(error), str(error)


async def test_an_event_id_digest_that_is_not_one_is_named(redis_server: RedisServer, tmp_path: Path,
                                                            engines: list) -> None:
    """A long id is stored as ("", its digest in hex): an entry without a store must be such a digest."""
    config = await _seed(redis_server, tmp_path, engines)
    redis_server.command("HSET", "cw:{g}:dedup", "999", msgpack.packb([["", "e9", START]]))
    error = await _start_fails(config, tmp_path)
    assert "event ids" in str(error) and "not cartwheel event ids" in str(error) and "e9" in str(error), str(error)


async def test_a_journal_event_the_engine_cannot_apply_is_named(redis_server: RedisServer, tmp_path: Path,
                                                                engines: list) -> None:
    config = await _seed(redis_server, tmp_path, engines, durability="journal")
    from engine.stores.base import event_partition

    key = f"cw:{{p{event_partition(cart_event('c1'), 16)}}}:journal"
    assert redis_server.command("XRANGE", key, "-", "+"), "the journal holds the event"
    redis_server.command("XADD", key, "999999-0", "g", msgpack.packb([[999999, 1.0, [[0, {"store": "shop1"}]]]]))
    error = await _start_fails(config, tmp_path)
    assert f"{key} entry 999999-0" in str(error) and "not a cartwheel event" in str(error), str(error)


def test_cartwheel_run_on_a_meta_time_that_is_not_a_number_exits_3(redis_server: RedisServer, tmp_path: Path) -> None:
    redis_server.command("SET", "cw:{g}:meta", msgpack.packb({
        "format": "cartwheel-store/3", "gen": 1, "cut": 0, "partitions": 16, "epoch": "x", "at": "yesterday"}))
    cfg = tmp_path / "cartwheel.toml"
    cfg.write_text(f'[engine]\ningest_tcp = "127.0.0.1:0"\ningest_unix = ""\nadmin_unix = "{tmp_path / "a.sock"}"\n'
                   f'store = "{redis_server.url}"\nclock = "manual"\n')
    proc = subprocess.run([EXE, "run", "--config", str(cfg)], cwd=tmp_path, capture_output=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 3 and b"Traceback" not in proc.stderr, (proc.returncode, proc.stderr[-300:])
    assert b"cw:{g}:meta" in proc.stderr
