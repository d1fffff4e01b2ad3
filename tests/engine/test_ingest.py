"""The ingest wire protocol end to end, through real TCP and UNIX sockets (DESIGN.md "Wire protocol")."""
from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.app import Engine
from tests.engine.conftest import Client, cart_event, engine_config


async def test_pipelined_frames_are_answered_in_order(engine: Engine) -> None:
    client = await Client.tcp(engine)
    for i in range(50):
        client.send(cart_event(f"c{i}"))
    await client.writer.drain()
    seqs = [(await client.reply())["seq"] for _ in range(50)]
    assert seqs == list(range(1, 51))
    assert len(engine.registry) == 50
    await client.close()


async def test_batch_with_bad_events_applies_the_good_ones_and_names_the_bad(engine: Engine) -> None:
    client = await Client.unix(engine)
    bad_qty = cart_event("c2")
    bad_qty["items"] = [{"sku": "A", "name": "x", "qty": 1, "price": 1.0}, {"sku": "B", "name": "y", "qty": 0, "price": 1.0}]
    reply = await client.frame([cart_event("c1"), {"type": "cart.exploded", "store": "shop1"}, bad_qty,
                                cart_event("c3"), "not a map"])
    assert reply["seq"] == 1 and reply["accepted"] == 2
    rejected = dict(reply["rejected"])
    assert set(rejected) == {1, 2, 4}
    assert "cart.exploded" in rejected[1] and rejected[1].startswith("type:")
    assert rejected[2].startswith("items[1].qty:")
    assert engine.registry.cart("shop1", "c1") is not None and engine.registry.cart("shop1", "c3") is not None
    assert engine.registry.cart("shop1", "c2") is None
    assert engine.stats.events_accepted == 2 and engine.stats.events_rejected == 3
    await client.close()


async def test_invalid_msgpack_mid_stream_closes_only_that_connection(engine: Engine) -> None:
    bad = await Client.tcp(engine)
    good = await Client.tcp(engine)
    assert (await bad.frame(cart_event("c1")))["accepted"] == 1
    bad.send_raw(b"\xc1garbage")  # 0xc1 is never used in msgpack
    await bad.writer.drain()
    reply = await bad.reply()
    assert reply["seq"] == 2 and "invalid msgpack" in reply["error"]
    assert await bad.reply() is None  # closed by the server
    assert (await good.frame(cart_event("c2")))["accepted"] == 1
    assert engine.registry.cart("shop1", "c1") is not None  # the earlier frame stays accepted
    await good.close()
    await bad.close()


async def test_client_disconnecting_mid_frame_leaves_the_engine_serving(engine: Engine) -> None:
    client = await Client.tcp(engine)
    data = msgpack.packb(cart_event("half"))
    client.send_raw(data[: len(data) // 2])
    await client.writer.drain()
    await client.close()
    other = await Client.tcp(engine)
    assert (await other.frame(cart_event("c9")))["accepted"] == 1
    assert engine.registry.cart("shop1", "half") is None
    await other.close()


async def test_frame_too_large_is_refused_with_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from engine.clock import ManualClock
    from tests.engine.conftest import START, engine_config

    eng = Engine(engine_config(tmp_path, max_frame_bytes=4096), clock=ManualClock(START), base_dir=tmp_path)
    await eng.start()
    try:
        client = await Client.tcp(eng)
        client.send_raw(msgpack.packb({"type": "cart.updated", "store": "shop1", "pad": "x" * 100_000}))
        await client.writer.drain()
        reply = await client.reply()
        assert reply == {"seq": 1, "error": "frame: larger than 4096 bytes"}
        await client.close()

        # A valid frame in the same write as an oversize one is answered and applied; the error reply
        # carries the oversize frame's own seq; a frame over the limit by less than a read is refused too.
        for pad in (100_000, 5_000):
            client = await Client.tcp(eng)
            assert (await client.frame(cart_event("c0")))["seq"] == 1
            big = {"type": "cart.updated", "store": "shop1", "cart": "c2", "pad": "x" * pad}
            client.send_raw(msgpack.packb(cart_event(f"c1-{pad}")) + msgpack.packb(big))
            await client.writer.drain()
            assert await client.reply() == {"seq": 2, "accepted": 1, "rejected": []}
            assert await client.reply() == {"seq": 3, "error": "frame: larger than 4096 bytes"}
            assert eng.registry.cart("shop1", f"c1-{pad}") is not None and eng.registry.cart("shop1", "c2") is None
            await client.close()

        # a batch of 100 events (about 20 KB) is over 4096 bytes as a whole, however small each event is
        client = await Client.tcp(eng)
        reply = await client.frame([cart_event(f"b{i}") for i in range(100)])
        assert reply == {"seq": 1, "error": "frame: larger than 4096 bytes"}
        await client.close()
    finally:
        await eng.stop()


async def test_slow_consumer_is_paused_not_buffered(engine: Engine) -> None:
    """A client that never reads its replies stops being read; other clients are unaffected."""
    host, port = engine.ingest.tcp_address  # type: ignore[misc]
    slow = socket.create_connection((host, port))
    slow.setblocking(False)
    chunk = msgpack.packb({"type": "session.ended", "store": "shop1", "cart": "nope"}) * 256
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20

    def paused() -> bool:
        return any(c.write_paused for c in engine.ingest.connections)

    # Keep writing (yielding to the engine, which shares this loop) until it pauses reading us.
    while not paused() and loop.time() < deadline:
        try:
            slow.send(chunk)
        except BlockingIOError:
            pass
        await asyncio.sleep(0)
    assert paused(), "the engine never applied back-pressure to a client that does not read"
    frames_then = engine.stats.frames
    # While paused the engine reads nothing more from that client, however long we go on writing.
    for _ in range(200):
        try:
            slow.send(chunk)
        except BlockingIOError:
            pass
        await asyncio.sleep(0)
    assert engine.stats.frames - frames_then < 30_000  # at most what one read had already buffered
    buffered = max(c.transport.get_write_buffer_size() for c in engine.ingest.connections if c.transport)
    assert buffered < 4 * 2**20
    other = await Client.tcp(engine)
    assert (await other.frame(cart_event("ok")))["accepted"] == 1
    await other.close()
    slow.close()


async def test_a_thousand_concurrent_connections(engine: Engine) -> None:
    clients = [await Client.unix(engine) for _ in range(1000)]
    for i, client in enumerate(clients):
        client.send(cart_event(f"c{i}"))
    for client in clients:
        await client.writer.drain()
    replies = await asyncio.gather(*(c.reply() for c in clients))
    assert all(r["seq"] == 1 and r["accepted"] == 1 for r in replies)
    assert len(engine.registry) == 1000
    await asyncio.gather(*(c.close() for c in clients))


async def test_sync_is_answered_after_earlier_events_are_durable(engine: Engine) -> None:
    client = await Client.tcp(engine)
    client.send(cart_event("c1"))
    client.send({"type": "sync"})
    client.send(cart_event("c2"))
    await client.writer.drain()
    r1, r2, r3 = await client.reply(), await client.reply(), await client.reply()
    assert (r1["seq"], r2, r3["seq"]) == (1, {"seq": 2, "synced": True}, 3)
    # the snapshot on disk holds c1
    from actors.registry import Registry
    from engine.snapshot import restore_state

    fresh = Registry()
    restore_state(fresh, engine.store.load(), source="test")  # type: ignore[arg-type]
    assert fresh.cart("shop1", "c1") is not None
    await client.close()


async def test_duplicate_ids_are_accepted_once_and_ignored_after(engine: Engine) -> None:
    client = await Client.tcp(engine)
    first = await client.frame(cart_event("c1", id="evt-1"))
    again = await client.frame(cart_event("c1", id="evt-1", value=99.0, items=[{"sku": "Z", "name": "z", "qty": 1, "price": 99.0}]))
    assert first["accepted"] == again["accepted"] == 1
    assert engine.stats.events_duplicate == 1
    items, value, *_ = engine.registry.cart("shop1", "c1").contents()
    assert value == 30.0
    other_store = await client.frame(cart_event("c1", store="shop2", id="evt-1"))
    assert other_store["accepted"] == 1 and engine.stats.events_duplicate == 1  # ids are per store
    await client.close()


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10) | st.integers(-1000, 1000), children, max_size=6),
    max_leaves=30,
)
event_keys = st.sampled_from(["type", "store", "cart", "profile", "items", "value", "ts", "id", "currency", "checkout_url"])
eventish = st.dictionaries(event_keys, json_like | st.sampled_from(["cart.updated", "shop1", "order.completed"]), max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(eventish | json_like, min_size=1, max_size=8), noise=st.binary(max_size=64))
async def test_fuzz_random_maps_and_bytes_never_break_the_engine(engine: Engine, frames: list, noise: bytes) -> None:
    client = await Client.tcp(engine)
    for frame in frames:
        reply = await client.frame(frame)
        assert reply is not None and ("accepted" in reply or "error" in reply or "synced" in reply)
    client.send_raw(noise)
    await client.writer.drain()
    await client.close()
    good = await Client.unix(engine)
    assert (await good.frame(cart_event("steady")))["accepted"] == 1
    await good.close()


async def test_a_burst_over_the_per_turn_budget_is_handled_in_slices_in_order(engine: Engine) -> None:
    """10 000 events in one write exceed EVENTS_PER_TURN: the connection yields and continues."""
    from engine import ingest

    client = await Client.tcp(engine)
    frames = [[cart_event(f"b{i}-{j}") for j in range(1000)] for i in range(10)]
    client.send_raw(b"".join(msgpack.packb(f) for f in frames) + msgpack.packb(cart_event("single")))
    await client.writer.drain()
    replies = [await client.reply() for _ in range(11)]
    assert [r["seq"] for r in replies] == list(range(1, 12))
    assert sum(r["accepted"] for r in replies) == 10_001
    assert len(engine.registry) == 10_001 and 10_000 > ingest.EVENTS_PER_TURN
    await client.close()


async def test_a_running_engine_collects_young_objects_less_often(engine: Engine) -> None:
    """The runtime raises the young-generation threshold (ingest allocates ~7 containers per event: the
    default 700 collected every ~100 events); a collector switched off stays off."""
    import gc

    from engine.runtime import GC_GEN0_THRESHOLD, Runtime

    assert gc.get_threshold()[0] >= GC_GEN0_THRESHOLD
    saved = gc.get_threshold()
    try:
        gc.set_threshold(0)
        Runtime.start(_NoTask(engine.runtime))  # type: ignore[arg-type]
        assert gc.get_threshold()[0] == 0
        gc.set_threshold(700, 10, 10)
        Runtime.start(_NoTask(engine.runtime))  # type: ignore[arg-type]
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 10, 10)
    finally:
        gc.set_threshold(*saved)


class _NoTask:
    """Stands in for a runtime whose tick driver must not start twice: run() returns at once."""

    def __init__(self, runtime: object) -> None:
        self._task = None
        self._runtime = runtime

    async def run(self) -> None:
        return None

    def _freeze(self) -> None:
        return None


async def test_long_lived_objects_are_frozen_on_a_manual_clock_too(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The collector freeze runs on real time: a manual clock's tick driver sleeps until it is advanced,
    but load still arrives (tests, benchmarks), and a million carts left in the collector's reach cost
    a full collection's pause."""
    import gc
    import time

    from engine import runtime
    from engine.clock import ManualClock
    from tests.engine.conftest import START, engine_config

    monkeypatch.setattr(runtime, "GC_FREEZE_INTERVAL_S", 0.01)
    gc.unfreeze()
    eng = Engine(engine_config(tmp_path), clock=ManualClock(START), base_dir=tmp_path)
    await eng.start()
    try:
        kept = [[i] for i in range(1000)]  # long-lived containers, as carts are
        deadline = time.monotonic() + 10
        while gc.get_freeze_count() < len(kept) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert gc.get_freeze_count() >= len(kept)
        frozen = gc.get_freeze_count()
        await eng.stop()  # ... and stops with the engine
        await asyncio.sleep(0.05)
        gc.unfreeze()
        await asyncio.sleep(0.05)
        assert gc.get_freeze_count() == 0, frozen
    finally:
        if eng.runtime._freezer is not None:
            await eng.stop()


async def test_ingest_stops_reading_while_sends_overflow_the_channels_queues(tmp_path: Path) -> None:
    """DESIGN.md "Wire protocol": when the engine falls behind, the server stops reading sockets. An
    email channel sending 10 messages/s holds 1 000 messages; the sends beyond overflow, and ingest
    pauses until the channel has taken them (the clock moves on, the channel sends, room frees)."""
    from tests.engine.conftest import START, engine_config, start_engine

    config = engine_config(tmp_path)
    config.channels["email"].update(rate="10/s", burst=100, queue=1000)
    engine = await start_engine(config, tmp_path)
    client = await Client.tcp(engine)
    try:
        n = 1_300
        batch: list[dict[str, object]] = []
        for i in range(n):
            batch.append(cart_event(f"c{i}", profile=f"p{i}"))
            batch.append({"type": "session.ended", "store": "shop1", "cart": f"c{i}"})
        assert (await client.frame(batch))["accepted"] == len(batch)
        clock = engine.runtime.clock
        clock.set(START + 3600 + 1)  # every cart's first step: 1 300 emails, 100 go at once, 1 000 queue
        assert engine.runtime.fire_due(clock.now(), limit=1 << 30) >= n
        for _ in range(100):  # the intents reach the pools once the ledger has recorded them
            await asyncio.sleep(0.01)
            if engine.dispatcher.overflow:
                break
        assert engine.dispatcher.overflow and engine.ingest.paused
        client.send(cart_event("more", profile="pm"))
        try:
            reply = await client.reply(timeout=0.5)
        except asyncio.TimeoutError:
            reply = None
        assert reply is None  # not read while the sends overflow
        for _ in range(4):  # 100 sends each 10 s: room for the overflow; reading resumes
            await engine.runtime.advance_clock(10)
        reply = await client.reply(timeout=30)
        assert reply["accepted"] == 1 and not engine.dispatcher.overflow and not engine.ingest.paused
    finally:
        await client.close()
        await engine.stop()


async def test_a_stalled_channel_does_not_stop_ingest_and_its_backlog_is_cancelled_by_purchases(tmp_path: Path) -> None:
    """A paused channel whose queue is full must not stop ingest: purchases and opt-outs must still be
    read, and they cancel its backlog (the overflow is swept of unwanted messages as it grows).
    `clock advance` returns although the paused channel's overflow cannot move."""
    from tests.engine.conftest import engine_config, start_engine

    config = engine_config(tmp_path)
    config.channels["email"].update(queue=50)
    engine = await start_engine(config, tmp_path)
    client = await Client.tcp(engine)
    try:
        engine.pause_channel("email", True)
        reply = await client.frame([cart_event(f"c{i}", profile=f"p{i}") for i in range(500)])
        assert reply["accepted"] == 500
        await asyncio.wait_for(engine.runtime.advance_clock(5400), 30)  # 1 h 30: 500 emails, 50 fit
        assert len(engine.dispatcher.overflow) == 450 and not engine.ingest.paused
        orders = [{"type": "order.completed", "store": "shop1", "cart": f"c{i}", "order": f"o{i}"} for i in range(400)]
        assert (await asyncio.wait_for(client.frame(orders), 10))["accepted"] == 400  # read although email is stuck
        await client.frame([cart_event(f"d{i}", profile=f"q{i}") for i in range(1000)])
        await asyncio.wait_for(engine.runtime.advance_clock(5400), 30)  # 1 000 more: the overflow doubles: swept
        overflow = engine.dispatcher.overflow
        unwanted = [m.cart for _, m in overflow if m.cart.startswith("c") and int(m.cart[1:]) < 400]
        assert len(overflow) == 1450 - 349 and len(unwanted) == 1  # (the head, in hand, is asked when it goes)
        engine.pause_channel("email", False)
        await asyncio.wait_for(engine.runtime.advance_clock(60), 60)
        sent = [r.cart for r in engine.runtime.msglog if r.channel == "email" and r.outcome == "sent"]
        assert len(sent) == 1100 and not any(c.startswith("c") and int(c[1:]) < 400 for c in sent)
        assert not engine.dispatcher.overflow
    finally:
        engine.pause_channel("email", False)
        await client.close()
        await engine.stop()


async def test_a_second_engine_does_not_steal_a_live_ingest_socket(engine: Engine, tmp_path: Path) -> None:
    """The ingest socket, like the admin one: a socket another process answers on is refused, not
    unlinked (the second engine would take the first one's clients without anyone noticing)."""
    other = tmp_path / "other"
    other.mkdir()
    config = engine_config(other, ingest_unix=engine.ingest.unix_path, ingest_tcp="")
    second = Engine(config, base_dir=other)
    with pytest.raises(OSError, match="another process is listening"):
        await second.start()
    await second.stop()
    client = await Client.unix(engine)  # the first engine still serves its socket
    assert (await client.frame(cart_event("c1")))["accepted"] == 1
    await client.close()


async def test_an_event_answered_not_applied_can_be_retried_with_its_id(engine: Engine) -> None:
    """An internal error while applying an event is answered "not applied"; its id is forgotten, so the
    client's retry with the same id is applied instead of being ignored as a duplicate."""
    apply = engine.handler.apply
    failures = [RuntimeError("an actor bug")]

    def flaky(event: dict, now: float) -> None:
        if failures:
            raise failures.pop()
        apply(event, now)

    engine.handler.apply = flaky
    client = await Client.tcp(engine)
    try:
        first = await client.frame(cart_event("c1", id="e-1"))
        assert first["accepted"] == 0 and "internal error" in first["rejected"][0][1], first
        assert [r for r in engine.deduper.recent if r[1] == "e-1"] == []  # the next cut does not store it
        again = await client.frame(cart_event("c1", id="e-1"))
        assert again == {"seq": 2, "accepted": 1, "rejected": []}
        assert engine.registry.cart("shop1", "c1") is not None and engine.stats.events_duplicate == 0
        third = await client.frame(cart_event("c1", id="e-1"))  # now it was applied: a duplicate
        assert third["accepted"] == 1 and engine.stats.events_duplicate == 1
    finally:
        await client.close()
        engine.handler.apply = apply
