"""The ledger's two phases: a key is ``pending`` while its message waits in a channel's queue and
``attempted`` (durably) before the provider is called for it. After a crash only the attempted ones are
uncertain; the queued ones are sent, once, when their carts still want them."""
from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiohttp import web

from actors.packing import packb
from engine.intents import ATTEMPTED, PENDING, Entry
from tests.persistence.conftest import (
    RedisServer,
    async_wait_until,
    crash,
    crash_in_flight,
    engine_config,
    hold_sends,
    outbox_lines,
    start_engine,
)
from tests.persistence.crashkit import START, EngineProcess, free_port, write_config
from tests.persistence.helpers import HOUR, cart_event, feed


def _keys(tmp_path: Path) -> Counter[str]:
    return Counter(m["key"] for m in outbox_lines(tmp_path))


def _cart_of(key: str) -> str:
    return key.split(":")[1]


def _uncertain(engine: Any) -> list[str]:
    return [r.id for r in engine.runtime.msglog if r.outcome == "uncertain"]


@pytest.mark.parametrize("durability", ["snapshot", "journal"])
async def test_a_rate_limited_backlog_crashed_midway_is_sent_once_after_the_restart(
        store_url: str, durability: str, tmp_path: Path, engines: list) -> None:
    """30 emails behind a 1/s rate limit: 5 sent, the 6th's provider call under way, 24 queued at the
    crash. After the restart the 24 go out once each (but those whose cart was bought or opted out
    meanwhile), and only the one in flight is uncertain (not sent again: on_uncertain = skip). They were
    all reported uncertain and never sent: a crash lost the whole backlog."""
    config = engine_config(tmp_path, store_url, durability=durability, channels={
        "email": {"kind": "outbox", "dir": str(tmp_path / "outbox"), "rate": "1/s"}})
    a = await start_engine(engines, config, tmp_path)
    for i in range(30):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()
    holder = hold_sends(a, "email", hold_from=6)
    advance = asyncio.get_running_loop().create_task(a.runtime.advance_clock(1.5 * HOUR + 60))
    await async_wait_until(lambda: holder.held, what="the 6th provider call")
    await asyncio.sleep(0.05)  # (nothing else goes meanwhile: the rate limit waits for the manual clock)
    assert a.dispatcher.pools["email"].statistics().queued == 24
    sent_before = _keys(tmp_path)
    assert len(sent_before) == 5
    in_flight = holder.held[0]
    every = set(a.ledger.entries)
    assert len(every) == 30
    await crash_in_flight(a, holder, advance)
    assert _keys(tmp_path) == sent_before

    queued = sorted(every - set(sent_before) - {in_flight})
    bought, opted_out = _cart_of(queued[-1]), _cart_of(queued[-2])
    b = await start_engine(engines, config, tmp_path)
    assert _uncertain(b) == [in_flight]  # reported at the restart, the queued ones are not
    await feed(b, {"type": "order.completed", "store": "shop1", "cart": bought, "order": "o1", "value": 30.0})
    await feed(b, {"type": "profile.updated", "store": "shop1",
                   "profile": {"id": f"p-{opted_out}", "consent": {"email": False}}})
    await b.runtime.advance_clock(2 * HOUR)  # the backlog drains at 1/s; the restored carts' steps fire again
    keys = _keys(tmp_path)
    assert max(keys.values()) == 1, keys  # nothing twice
    assert in_flight not in keys  # uncertain: skipped
    expected = (every - {in_flight}) - {k for k in queued if _cart_of(k) in (bought, opted_out)}
    assert set(keys) == expected  # nothing lost
    assert b.ledger.uncertain == 1 and _uncertain(b) == [in_flight]


@pytest.mark.parametrize("durability", ["snapshot", "journal"])
async def test_a_paused_channels_queue_survives_a_crash(store_url: str, durability: str, tmp_path: Path,
                                                        engines: list) -> None:
    """Messages held by a paused channel never reached the provider: after a crash they are sent (once),
    not reported uncertain and dropped."""
    config = engine_config(tmp_path, store_url, durability=durability)
    a = await start_engine(engines, config, tmp_path)
    for i in range(20):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()
    a.pause_channel("email", True)
    await a.runtime.advance_clock(1.5 * HOUR)
    await a.journal.flush()
    assert a.ledger.statistics()["entries"] == 20
    assert a.ledger.attempted == 0
    await crash(a)
    assert _keys(tmp_path) == Counter()

    b = await start_engine(engines, config, tmp_path)
    assert b.ledger.uncertain == 0 and _uncertain(b) == []
    await b.runtime.advance_clock(2 * HOUR)
    keys = _keys(tmp_path)
    assert len(keys) == 20 and max(keys.values()) == 1
    assert b.ledger.uncertain == 0 and _uncertain(b) == []
    await b.stop()  # and a restart after that sends nothing more
    c = await start_engine(engines, config, tmp_path)
    await c.runtime.advance_clock(2 * HOUR)
    assert _keys(tmp_path) == keys and c.ledger.uncertain == 0


def _old_pack(entry: Entry) -> bytes:
    """``Entry.pack`` as engines before the attempted mark wrote it (no attempted element)."""
    intent = entry.intent
    fields = {name: getattr(intent, name) for name in intent.__slots__}
    state = PENDING if entry.state == ATTEMPTED else entry.state
    return packb([1, intent.key, fields, state, entry.outcome, entry.at, entry.detail, entry.invalidate,
                  entry.issue_lsn, entry.done_lsn, entry.reported])


@pytest.mark.parametrize("durability", ["snapshot", "journal"])
async def test_pending_entries_of_an_older_engine_stay_uncertain(
        store_url: str, durability: str, tmp_path: Path, engines: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ledger written before the attempted mark existed loads: its pending entries may have been
    attempted, so they are uncertain, as they always were; entries written since (pending, never attempted)
    are sent."""
    config = engine_config(tmp_path, store_url, durability=durability)
    a = await start_engine(engines, config, tmp_path)
    for i in range(20):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()
    new_pack = Entry.pack
    old = {f"c{i}" for i in range(10)}
    monkeypatch.setattr(Entry, "pack", lambda e: _old_pack(e) if e.intent.cart in old else new_pack(e))
    a.pause_channel("email", True)
    await a.runtime.advance_clock(1.5 * HOUR)
    await a.journal.flush()
    await crash(a)
    monkeypatch.setattr(Entry, "pack", new_pack)

    b = await start_engine(engines, config, tmp_path)
    assert sorted(_cart_of(k) for k in _uncertain(b)) == sorted(old)
    await b.runtime.advance_clock(2 * HOUR)
    keys = _keys(tmp_path)
    assert max(keys.values()) == 1
    assert {_cart_of(k) for k in keys} == {f"c{i}" for i in range(10, 20)}
    assert b.ledger.uncertain == 10


def test_entry_formats() -> None:
    """The stored forms: attempted is stored as pending plus the attempted element (an older engine reads
    it as pending: uncertain); an old pending entry (no element) loads as attempted, its report flag kept."""
    from actors.effects import SendIntent

    intent = SendIntent(key="s:c:1:1:email", message_id="m1", store="s", cart="c", profile="p", run=1, step=1,
                        channel="email", priority=0.0, contact="a@b.test", locale=None, items=b"", value=1.0,
                        currency="EUR", checkout_url=None, incentive=None)
    entry = Entry(intent, 0, 5)
    for state, stored, attempted in ((PENDING, PENDING, False), (ATTEMPTED, PENDING, True)):
        entry.state = state
        raw = msgpack.unpackb(entry.pack(), raw=False)
        assert raw[3] == stored and raw[11] is attempted
        assert Entry.unpack(entry.pack(), where="x", partitions=4).state == state
    old = _old_pack(entry)
    entry.reported = True
    old_reported = _old_pack(entry)
    assert Entry.unpack(old, where="x", partitions=4).state == ATTEMPTED
    loaded = Entry.unpack(old_reported, where="x", partitions=4)
    assert loaded.state == ATTEMPTED and loaded.reported


# ---------------------------------------------------------------------------------------------- kill -9


class _Hook:
    """The shop's webhook endpoint: records each message key; the ``hang_at``-th request is never answered."""

    def __init__(self, hang_at: int) -> None:
        self.hang_at = hang_at
        self.keys: list[str] = []
        self.hanging = asyncio.Event()
        self.release = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/hook", self._hook)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self.runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        await request.read()
        self.keys.append(request.headers["Idempotency-Key"])
        if len(self.keys) == self.hang_at:
            self.hanging.set()
            await self.release.wait()  # the engine is killed meanwhile
        return web.json_response({"ok": True})


def _config(directory: Path, *, store: str, durability: str, port: int, url: str) -> Path:
    channel = f'\n[channels.email]\nkind = "webhook"\nurl = "{url}"\nsecret = "s3cret"\nrate = "1/s"\ntimeout = "1h"\n'
    return write_config(directory, store=store, durability=durability, port=port, snapshot_interval="1h",
                        channels=channel)


async def _frame(port: int, frame: Any) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(msgpack.packb(frame))
        await writer.drain()
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            data = await asyncio.wait_for(reader.read(65536), 30)
            assert data, "the engine closed the connection"
            unpacker.feed(data)
            for reply in unpacker:
                return reply
    finally:
        writer.close()


@pytest.mark.parametrize("durability", ["snapshot", "journal"])
async def test_kill_9_mid_backlog_sends_the_backlog_once_and_only_the_call_in_flight_is_uncertain(
        store_kind: str, durability: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """``cartwheel run`` killed with SIGKILL while its webhook channel works through a rate-limited
    backlog, one provider call under way (the endpoint never answers it). The restarted engine sends the
    rest of the backlog, each message once, and reports only the call under way as uncertain."""
    store = f"file:{tmp_path / 'state'}"
    if store_kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        store = server.url
    hook = _Hook(hang_at=4)
    await hook.start()
    port = free_port()
    cfg = _config(tmp_path, store=store, durability=durability, port=port, url=hook.url)
    engine = EngineProcess(tmp_path, cfg, port)
    try:
        await engine.start()
        events = [cart_event(f"c{i}", ts=START) for i in range(12)]
        assert (await _frame(port, events))["accepted"] == 12
        assert (await _frame(port, {"type": "sync"}))["synced"] is True
        assert (await engine.admin("clock advance 90m"))["ok"]  # step 1: the first email goes at once
        for _ in range(2):
            assert (await engine.admin("clock advance 1s"))["ok"]
        assert len(hook.keys) == 3
        advance = asyncio.get_running_loop().create_task(engine.admin("clock advance 1s"))
        await asyncio.wait_for(hook.hanging.wait(), 30)  # the 4th call: under way, never answered
        engine.kill9()
        await asyncio.gather(advance, return_exceptions=True)
        in_flight = hook.keys[3]

        hook.hang_at = 0
        await engine.start()
        assert (await engine.admin("clock advance 2h"))["ok"]
        received = Counter(hook.keys)
        assert len(received) == 12 and max(received.values()) == 1, received
        stats = await engine.admin("stats")
        assert stats["persistence"]["intents"]["uncertain"] == 1, stats["persistence"]
        logs = await engine.admin("logs outcome=uncertain")
        assert [r["id"] for r in logs["records"]] == [in_flight], json.dumps(logs)
        assert engine.terminate() == 0
    finally:
        engine.kill9()
        hook.release.set()
        if hook.runner is not None:
            await hook.runner.cleanup()


async def test_a_store_that_dies_while_marks_are_waiting_does_not_hold_the_sends(
        redis_server: RedisServer, tmp_path: Path, engines: list) -> None:
    """The provider calls waiting for their attempted marks go out from memory once the store is found
    down (as every send does during an outage), counted as unmarked; nothing waits for the store."""
    config = engine_config(tmp_path, redis_server.url)
    a = await start_engine(engines, config, tmp_path)
    for i in range(20):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()
    a.pause_channel("email", True)
    await a.runtime.advance_clock(1.5 * HOUR)
    await a.journal.flush()  # recorded (pending), durable
    redis_server.kill9()
    a.pause_channel("email", False)  # the marks are queued while the store still counts as up
    await asyncio.wait_for(a.dispatcher.idle(), 30)
    keys = _keys(tmp_path)
    assert len(keys) == 20 and max(keys.values()) == 1
    assert a.ledger.unmarked == 20 and not a.health.up
    await crash(a)  # (a graceful stop would wait for the dead store)
