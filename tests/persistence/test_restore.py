"""Snapshots and restore in-process, on both stores: round trips, incremental cuts, copy-on-write."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.stores.base import Sequence
from tests.persistence.conftest import crash, engine_config, outbox_lines, start_engine
from tests.persistence.helpers import (
    HOUR,
    cart_event,
    feed,
    profile_states,
    states,
    strip_refs,
)


async def test_graceful_stop_and_restart_restores_everything(store_url: str, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, store_url, stores={"shop1": {"name": "Acme", "timezone": "UTC", "credits": 10_000}})
    a = await start_engine(engines, config, tmp_path)
    for i in range(200):
        await feed(a, cart_event(f"c{i}", value=10.0 + i))
    await a.runtime.advance_clock(1.5 * HOUR)  # abandoned at 30 min, first email at 1 h 30 min
    await feed(a, {"type": "order.completed", "store": "shop1", "cart": "c7", "order": "o7", "value": 17.0})
    await feed(a, {"type": "profile.updated", "store": "shop1", "profile": {"id": "lonely", "email": "l@example.test",
                                                                          "consent": {"email": True}}})
    a.registry.rules("shop1").credits = 5077
    before, profiles, log = states(a), strip_refs(profile_states(a)), [r.as_dict() for r in a.runtime.msglog]
    metrics = dict(a.stats.metrics)
    now = a.clock.now()
    await a.stop()
    sent = len(outbox_lines(tmp_path))
    assert sent == 200

    b = await start_engine(engines, config, tmp_path)
    assert states(b) == before
    assert strip_refs(profile_states(b)) == profiles
    assert ("shop1", "lonely") in profiles
    assert [r.as_dict() for r in b.runtime.msglog] == log
    assert dict(b.stats.metrics) == metrics
    assert b.registry.rules("shop1").credits == 5077
    assert b.clock.now() == now  # the manual clock resumes at the snapshot's time
    assert len(b.runtime.wheel) == len(a.runtime.wheel) or len(b.runtime.wheel) == sum(1 for c in b.registry if c.due is not None)
    # the restored flows continue: the 4 h step fires for the 199 carts still in their run
    await b.runtime.advance_clock(3 * HOUR)
    assert len(outbox_lines(tmp_path)) == sent + 199


async def test_incremental_snapshot_writes_only_dirty_carts(store_url: str, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    for i in range(500):
        await feed(a, cart_event(f"c{i}"))
    await a.snapshotter.snapshot()
    assert a.snapshotter.last_carts == 500
    for i in range(50):
        await feed(a, cart_event(f"c{i}", value=99.0))
    await feed(a, {"type": "cart.cleared", "store": "shop1", "cart": "c499"})
    await a.snapshotter.snapshot()
    assert a.snapshotter.last_carts == 50  # c499 was deleted, not written
    assert not a.snapshotter.last_full
    expected = states(a)
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    assert states(b) == expected
    assert b.registry.cart("shop1", "c499") is None


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
async def test_a_cut_is_consistent_while_events_keep_arriving(store_url: str, tmp_path: Path, engines: list,
                                                              full: bool) -> None:
    """Changes made while a cut is encoding are not in it (copy-on-write), and the next cut has them."""
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    a.snapshotter.slice_budget_s = 0.0  # yield every 64 carts: plenty of room for interleaving
    for i in range(1000):
        await feed(a, cart_event(f"c{i}"))
    at_cut = states(a)
    task = asyncio.get_running_loop().create_task(a.snapshotter.snapshot(full=full))
    await asyncio.sleep(0)  # the task takes its cut (synchronously) and starts encoding
    changed = 0
    while not task.done():
        # change carts, some already encoded, some not yet, and create new ones
        await feed(a, cart_event(f"c{(changed * 7) % 1000}", value=1000.0 + changed))
        await feed(a, cart_event(f"new{changed}"))
        changed += 1
        await asyncio.sleep(0)
    await task
    assert changed > 5
    after = states(a)
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    assert states(b) == at_cut  # exactly the cut: nothing newer, nothing older
    # and a second engine, after the next cut, has everything
    await crash(b)
    c = await start_engine(engines, config, tmp_path)
    assert states(c) == at_cut
    del after


async def test_journal_mode_replays_accepted_events_after_the_cut(store_url: str, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, store_url, durability="journal")
    a = await start_engine(engines, config, tmp_path)
    for i in range(100):
        await feed(a, cart_event(f"c{i}"))
    await a.snapshotter.snapshot()
    await feed(a, [cart_event(f"c{i}", value=50.0) for i in range(10)])
    await feed(a, [cart_event(f"n{i}") for i in range(20)])
    await feed(a, {"type": "session.ended", "store": "shop1", "cart": "c3"})
    await feed(a, {"type": "cart.cleared", "store": "shop1", "cart": "c4"})
    await feed(a, {"type": "profile.updated", "store": "shop1",
                   "profile": {"id": "p-c5", "email": "new@example.test", "consent": {"email": False}}})
    expected, profiles = states(a), strip_refs(profile_states(a))
    lsn = a.seq.lsn
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    assert b.restore_report is not None and b.restore_report.journal_events == 33
    assert states(b) == expected
    assert strip_refs(profile_states(b)) == profiles
    assert b.seq.lsn >= lsn


async def test_journal_replay_fires_timers_in_between(store_url: str, tmp_path: Path, engines: list) -> None:
    """A timer that fired between two journaled batches fires between them again on replay."""
    config = engine_config(tmp_path, store_url, durability="journal")
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1"))
    await a.runtime.advance_clock(2 * HOUR)  # abandoned, email sent at 1 h 30 min
    await feed(a, {"type": "order.completed", "store": "shop1", "cart": "c1", "order": "o1", "value": 30.0})
    assert a.registry.cart("shop1", "c1").state.value == "recovered"
    expected = states(a)
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    assert states(b) == expected  # recovered, not converted: the send's outcome was replayed in order
    assert b.stats.metrics["recovered"] == 1
    assert len(outbox_lines(tmp_path)) == 1


async def test_sequence_is_monotonic_over_restarts(store_url: str, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, store_url, durability="journal")
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1"))
    first = a.seq.lsn
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    assert b.seq.lsn >= first
    assert isinstance(b.seq, Sequence)


async def test_event_ids_are_remembered_across_a_restart(store_url: str, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1", id="evt-1"))
    await a.sync()
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    again = await feed(b, cart_event("c1", id="evt-1", value=99.0))
    assert again["accepted"] == 1 and b.stats.events_duplicate == 1
    assert b.registry.cart("shop1", "c1").contents()[1] == 30.0  # the repeat was ignored


async def test_event_ids_of_every_cut_are_remembered_across_a_restart(store_url: str, tmp_path: Path,
                                                                     engines: list) -> None:
    """Two cuts with no ledger operation between them share their lsn: on Redis the second one's ids
    used to overwrite the first one's (the hash field was the cut's lsn), so a client's retry of an
    acknowledged event was applied again after a restart."""
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1", id="evt-1"))
    await a.sync()
    await feed(a, cart_event("c2", id="evt-2"))
    await a.sync()
    await a.sync()  # a third cut, with nothing new
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    for cart, event_id in (("c1", "evt-1"), ("c2", "evt-2")):
        await feed(b, cart_event(cart, id=event_id, value=99.0))  # client retries of acknowledged events
    assert b.stats.events_duplicate == 2
    assert [b.registry.cart("shop1", c).contents()[1] for c in ("c1", "c2")] == [30.0, 30.0]


async def test_the_message_log_of_every_cut_is_kept_across_a_restart(store_url: str, tmp_path: Path,
                                                                     engines: list) -> None:
    """As for the ids: the records of a cut were overwritten on Redis by the next cut's at the same lsn."""
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    no_consent = {"consent": {"email": False}}
    await feed(a, cart_event("c1", profile="p1") | {"profile": {"id": "p1", "email": "a@x.test", **no_consent}})
    await a.runtime.advance_clock(1.6 * HOUR)  # c1: step 1 skipped (no consent): records, no send
    await a.sync()
    await feed(a, cart_event("c2", profile="p2") | {"profile": {"id": "p2", "email": "b@x.test", **no_consent}})
    await a.runtime.advance_clock(1.6 * HOUR)  # c2: step 1 skipped; c1: step 2 skipped
    await a.sync()
    before = [r.as_dict() for r in a.runtime.msglog]
    assert len(before) >= 3
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    assert [r.as_dict() for r in b.runtime.msglog] == before


async def test_journal_replay_remembers_event_ids(store_url: str, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, store_url, durability="journal")
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1", id="evt-1"))
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    await feed(b, cart_event("c1", id="evt-1", value=99.0))
    assert b.stats.events_duplicate == 1


async def test_a_changed_partition_count_is_laid_out_again(redis_server, tmp_path: Path, engines: list) -> None:
    a = await start_engine(engines, engine_config(tmp_path, redis_server.url, partitions=16), tmp_path)
    for i in range(200):
        await feed(a, cart_event(f"c{i}"))
    expected = states(a)
    await a.stop()
    config = engine_config(tmp_path, redis_server.url, partitions=4)
    b = await start_engine(engines, config, tmp_path)
    assert states(b) == expected
    assert b.snapshotter.want_full  # the next cut writes the 4-partition layout
    await b.snapshotter.snapshot()
    assert not redis_server.command("KEYS", "cw:{p9}:*")
    await crash(b)
    c = await start_engine(engines, config, tmp_path)
    assert states(c) == expected


async def test_profile_reference_counts_are_right_after_a_restore(store_url: str, tmp_path: Path, engines: list) -> None:
    """A snapshot may hold a profile's count from before some of its carts went; restore recounts, so
    the profile is still forgotten when its last cart goes."""
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    for i in range(3):
        await feed(a, cart_event(f"c{i}", profile="shared"))
    await feed(a, cart_event("solo", profile="solo"))
    await a.snapshotter.snapshot(full=True)
    for i in range(2):
        await feed(a, {"type": "cart.cleared", "store": "shop1", "cart": f"c{i}"})
    await a.snapshotter.snapshot()
    assert a.registry.profile("shop1", "shared").refs == 1  # type: ignore[union-attr]
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    assert b.registry.profile("shop1", "shared").refs == 1  # type: ignore[union-attr]
    assert b.registry.profile("shop1", "solo").refs == 1  # type: ignore[union-attr]
    await feed(b, {"type": "cart.cleared", "store": "shop1", "cart": "c2"})
    assert b.registry.profile("shop1", "shared") is None  # its last cart went: forgotten
    assert b.registry.profile("shop1", "solo") is not None


async def test_redis_compacts_single_fields_into_a_new_generation(redis_server, tmp_path: Path, engines: list) -> None:
    """Incremental cuts add single fields (and tombstones) over the chunks; past a share of the carts the
    store asks for a full snapshot, which writes chunks only, and the state reads back the same."""
    config = engine_config(tmp_path, redis_server.url, partitions=4)
    a = await start_engine(engines, config, tmp_path)
    a.store.compact_min = 50  # type: ignore[attr-defined]
    for i in range(400):
        await feed(a, cart_event(f"c{i}"))
    await a.snapshotter.snapshot(full=True)
    gen = a.snapshotter.gen
    assert all(name.startswith(b"\0") for key in redis_server.command("KEYS", "cw:{p*}:g*:carts")
               for name in redis_server.command("HKEYS", key))  # a full snapshot writes chunks only
    for i in range(20):
        await feed(a, cart_event(f"c{i}", value=99.0))
    for i in range(60, 70):
        await feed(a, {"type": "cart.cleared", "store": "shop1", "cart": f"c{i}"})
    await a.snapshotter.snapshot()
    assert not a.snapshotter.last_full and a.snapshotter.gen == gen
    # 20 carts and their profiles, 10 tombstones of carts and 10 of their profiles (forgotten with them):
    # 60 single fields, not over 400 carts / 4
    assert a.store._singles == 60 and not a.store.wants_full()  # type: ignore[attr-defined]
    for i in range(20, 60):
        await feed(a, cart_event(f"c{i}", value=98.0))
    await a.snapshotter.snapshot()
    assert a.store._singles == 140 and a.store.wants_full()  # type: ignore[attr-defined]
    expected = states(a)
    await crash(a)  # restore reads chunks, single fields over them and tombstones
    b = await start_engine(engines, config, tmp_path)
    assert states(b) == expected and b.registry.cart("shop1", "c65") is None
    b.store.compact_min = 50  # type: ignore[attr-defined]
    assert b.store._singles == 140 and b.store.wants_full()  # type: ignore[attr-defined]  # counted again on read
    await b.snapshotter.snapshot()
    assert b.snapshotter.last_full and b.store._singles == 0  # type: ignore[attr-defined]
    await crash(b)
    c = await start_engine(engines, config, tmp_path)
    assert states(c) == expected


async def test_a_profile_whose_carts_went_is_not_brought_back(store_url: str, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1", profile="leaving"))
    await feed(a, {"type": "profile.updated", "store": "shop1", "profile": {"id": "lonely", "email": "l@example.test"}})
    await a.snapshotter.snapshot(full=True)
    await feed(a, {"type": "cart.cleared", "store": "shop1", "cart": "c1"})
    assert a.registry.profile("shop1", "leaving") is None
    await a.snapshotter.snapshot()
    await crash(a)
    b = await start_engine(engines, config, tmp_path)
    assert b.registry.profile("shop1", "leaving") is None
    assert b.registry.profile("shop1", "lonely") is not None  # never had a cart: it stays


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
async def test_event_ids_applied_while_a_cut_encodes_belong_to_the_next_cut(store_url: str, tmp_path: Path,
                                                                         engines: list, full: bool) -> None:
    """An id is stored with the cut that holds its event's effect: an event applied while a cut encodes is
    not in that cut, so after a restore to it the client's re-sent event must be applied, not ignored as
    a duplicate (it was, when the ids were taken after encoding)."""
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    a.snapshotter.slice_budget_s = 0.0  # yield every 64 carts
    for i in range(500):
        await feed(a, cart_event(f"c{i}", id=f"e{i}"))
    task = asyncio.get_running_loop().create_task(a.snapshotter.snapshot(full=full))
    await asyncio.sleep(0)  # the cut is taken; encoding has started
    late = [cart_event(f"late{n}", id=f"late-{n}") for n in range(3)]
    for event in late:
        assert not task.done()
        await feed(a, event)
        await asyncio.sleep(0)
    await task
    await crash(a)  # a restore goes back to that cut
    b = await start_engine(engines, config, tmp_path)
    assert all(b.registry.cart("shop1", e["cart"]) is None for e in late)  # not in the cut
    for event in late:  # the client sends again what came after its last sync
        await feed(b, dict(event))
    assert all(b.registry.cart("shop1", e["cart"]) is not None for e in late)
    reply = await feed(b, cart_event("c1", id="e1", value=99.0))  # an id that is in the cut stays a duplicate
    assert b.registry.cart("shop1", "c1").describe()["value"] == 30.0, reply  # type: ignore[union-attr]


async def test_a_journal_piece_stored_twice_is_replayed_once(redis_server, tmp_path: Path, engines: list) -> None:  # type: ignore[no-untyped-def]
    """An append whose reply was lost is retried together with later batches, so its records can be in
    the stream twice (in their own entry and inside a later one): replay applies each event once."""
    config = engine_config(tmp_path, redis_server.url, durability="journal")
    a = await start_engine(engines, config, tmp_path)
    await a.snapshotter.snapshot()
    await feed(a, [cart_event(f"c{i}") for i in range(5)])
    expected = states(a)
    await crash(a)
    copied = 0
    for key in redis_server.command("KEYS", "cw:{p*}:journal"):
        entries = redis_server.command("XRANGE", key, "-", "+")
        for entry_id, fields in entries:
            top = int(entry_id.split(b"-")[0])
            flat = [x for kv in fields.items() for x in kv] if isinstance(fields, dict) else list(fields)
            redis_server.command("XADD", key, f"{top + 1000}-0", *flat)  # the same records again, later
            copied += 1
    assert copied > 0
    b = await start_engine(engines, config, tmp_path)
    assert b.restore_report is not None and b.restore_report.journal_events == 5
    assert states(b) == expected


async def test_a_changed_whatsapp_delay_neither_repeats_nor_skips_a_step(store_url: str, tmp_path: Path,
                                                                       engines: list) -> None:
    """A store moves its WhatsApp step from 1h30m to 6h and restarts; a cart abandoned at 10:30 has had
    steps 1 and 2 by 13:00. It still gets step 3 (the 4 h incentive email) and step 2 is not issued again
    (the ledger would stop the send, but the message log would say 'sent' twice)."""
    wa = {"name": "Acme", "timezone": "UTC", "whatsapp": {"phone_number_id": "1055501", "token": "tok"}}
    event = cart_event("c1")
    event["profile"].update(phone="+34600111222", consent={"email": True, "whatsapp": True})
    a = await start_engine(engines, engine_config(tmp_path, store_url, stores={"shop1": wa}), tmp_path)
    await feed(a, event)
    await a.runtime.advance_clock(3 * HOUR)  # abandoned 10:30; 11:30 step 1, 12:00 step 2
    assert [(r.step, r.channel) for r in a.runtime.msglog if r.outcome == "sent"] == [(1, "email"), (2, "whatsapp")]
    await a.stop()

    config = engine_config(tmp_path, store_url, stores={"shop1": dict(wa, whatsapp_delay="6h")})
    b = await start_engine(engines, config, tmp_path)
    await b.runtime.advance_clock(2 * 24 * HOUR)
    sent = [(r.step, r.channel) for r in b.runtime.msglog if r.outcome == "sent"]
    assert sent == [(1, "email"), (2, "whatsapp"), (3, "email"), (4, "email"), (5, "email")]
    assert [m["channel"] for m in outbox_lines(tmp_path)].count("whatsapp") == 1
