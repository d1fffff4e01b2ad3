"""The send-intent ledger across restarts: completed keys never go twice, unknown outcomes are reported."""
from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from tests.persistence.conftest import (
    async_wait_until,
    crash,
    crash_in_flight,
    engine_config,
    hold_sends,
    outbox_lines,
    start_engine,
)
from tests.persistence.helpers import HOUR, cart_event, feed


def _keys(tmp_path: Path) -> Counter[str]:
    return Counter(m["key"] for m in outbox_lines(tmp_path))


async def test_a_completed_send_is_not_repeated_after_a_crash(store_url: str, tmp_path: Path, engines: list) -> None:
    """Snapshot mode: the carts come back from before their sends; re-firing finds the keys done."""
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    for i in range(50):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()  # the carts are durable, in state active
    await a.runtime.advance_clock(2 * HOUR)  # 50 emails out; no snapshot since
    assert len(_keys(tmp_path)) == 50
    await crash(a)

    b = await start_engine(engines, config, tmp_path)
    assert all(c.state.value == "active" for c in b.registry)  # restored from before the sends
    await b.runtime.advance_clock(2 * HOUR)  # the same steps fire again at their own times
    keys = _keys(tmp_path)
    assert len(keys) == 50 and max(keys.values()) == 1  # nothing twice
    assert b.ledger.suppressed == 50
    # the actors heard the stored outcomes: the send is credited, an order now is a recovery
    sent = [r for r in b.runtime.msglog if r.outcome == "sent"]
    assert len(sent) == 50
    await feed(b, {"type": "order.completed", "store": "shop1", "cart": "c1", "order": "o1", "value": 30.0})
    assert b.registry.cart("shop1", "c1").state.value == "recovered"
    await b.runtime.advance_clock(3 * HOUR)  # the 4 h step is new: it goes out once
    keys = _keys(tmp_path)
    assert len(keys) == 99 and max(keys.values()) == 1


async def test_a_snapshot_after_the_restart_keeps_the_keys_the_restored_carts_will_issue_again(
        store_url: str, tmp_path: Path, engines: list) -> None:
    """The periodic snapshot (or a client's ``sync``) usually lands between a restart and the restored
    carts' timers. The carts are back in run 0, before the run whose keys are done: the cut must not
    prune those keys as "no longer issuable", or every message goes out twice."""
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    for i in range(5):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()  # the carts are durable, in state active
    await a.runtime.advance_clock(2 * HOUR)  # 5 step-1 emails out; no snapshot since
    assert len(_keys(tmp_path)) == 5
    await crash(a)

    b = await start_engine(engines, config, tmp_path)
    assert all(c.state.value == "active" and c.run == 0 for c in b.registry)
    assert b.seq.lsn < 1_000  # the restored lsn counter is the highest lsn stored, not a marker's value
    await b.sync()  # a cut before the timers fire again
    assert b.ledger.statistics()["entries"] == 5
    await b.runtime.advance_clock(2 * HOUR)
    keys = _keys(tmp_path)
    assert len(keys) == 5 and max(keys.values()) == 1, keys
    assert b.ledger.suppressed == 5
    await b.sync()  # issued again and covered by a cut now: pruned as usual
    assert b.ledger.statistics()["entries"] == 0


async def test_unknown_outcomes_are_reported_and_skipped(store_url: str, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    for i in range(20):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()
    holder = hold_sends(a, "email")  # every provider call hangs: 20 under way at the crash
    advance = asyncio.get_running_loop().create_task(a.runtime.advance_clock(1.5 * HOUR))
    await async_wait_until(lambda: len(holder.held) == 20, what="20 provider calls under way")
    assert a.ledger.statistics()["entries"] == 20
    await crash_in_flight(a, holder, advance)  # attempted, never done: the provider may have sent them
    assert _keys(tmp_path) == Counter()

    b = await start_engine(engines, config, tmp_path)
    uncertain = [r for r in b.runtime.msglog if r.outcome == "uncertain"]
    assert len(uncertain) == 20  # reported at restart
    assert b.stats_document()["persistence"]["intents"]["uncertain"] == 20
    assert b.stats.sends["email"]["uncertain"] == 20
    await b.runtime.advance_clock(2 * HOUR)  # the restored carts reach the step again
    assert _keys(tmp_path) == Counter()  # skip: never sent blindly
    assert len([r for r in b.runtime.msglog if r.outcome == "uncertain"]) == 20  # reported once
    # a second restart does not report them again
    await b.stop()
    c = await start_engine(engines, config, tmp_path)
    assert c.ledger.uncertain == 0


async def test_unknown_outcomes_are_sent_again_with_resend(store_url: str, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, store_url, channels={
        "email": {"kind": "outbox", "dir": str(tmp_path / "outbox"), "on_uncertain": "resend"}})
    a = await start_engine(engines, config, tmp_path)
    for i in range(10):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()  # the carts are durable (snapshot mode), their sends are not
    holder = hold_sends(a, "email")
    advance = asyncio.get_running_loop().create_task(a.runtime.advance_clock(1.5 * HOUR))
    await async_wait_until(lambda: len(holder.held) == 10, what="10 provider calls under way")
    await crash_in_flight(a, holder, advance)
    b = await start_engine(engines, config, tmp_path)
    assert b.ledger.uncertain == 10  # reported at restart
    await b.runtime.advance_clock(2 * HOUR)  # sent again when the restored carts reach the step
    keys = _keys(tmp_path)
    assert len(keys) == 10 and max(keys.values()) == 1
    assert b.ledger.uncertain == 10
    assert len([r for r in b.runtime.msglog if r.outcome == "uncertain"]) == 10


async def test_graceful_stop_with_queued_sends_sends_them_after_restart(store_url: str, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    for i in range(15):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()
    a.pause_channel("email", True)
    await a.runtime.advance_clock(1.5 * HOUR)
    await a.stop()  # still queued: recorded as unsent, not as failed
    assert _keys(tmp_path) == Counter()
    assert not [r for r in a.runtime.msglog if r.outcome == "failed"]
    b = await start_engine(engines, config, tmp_path)
    await b.dispatcher.idle()
    keys = _keys(tmp_path)
    assert len(keys) == 15 and max(keys.values()) == 1
    assert b.ledger.uncertain == 0


async def test_ledger_entries_are_pruned_once_a_snapshot_covers_them(store_url: str, tmp_path: Path, engines: list) -> None:
    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    for i in range(30):
        await feed(a, cart_event(f"c{i}"))
    await a.runtime.advance_clock(1.5 * HOUR)
    assert a.ledger.statistics()["entries"] == 30
    await a.snapshotter.snapshot()
    assert a.ledger.statistics()["entries"] == 0
    await a.stop()
    b = await start_engine(engines, config, tmp_path)
    assert b.restore_report.ledger_entries == 0


@pytest.mark.parametrize("durability", ["snapshot", "journal"])
async def test_a_cut_soon_after_a_restart_keeps_the_keys_through_the_next_restart(
        store_url: str, durability: str, tmp_path: Path, engines: list) -> None:
    """A cut right after a restart (a ``sync`` frame, the periodic snapshot) covers the lsn of every
    entry loaded at restore, while the restored carts are still before those sends. The entries must come
    back after the next crash as "to be issued again", not as covered by that cut: otherwise the next cut
    prunes them and every message goes out twice when the carts reach the step."""
    config = engine_config(tmp_path, store_url, durability=durability)
    a = await start_engine(engines, config, tmp_path)
    for i in range(5):
        await feed(a, cart_event(f"c{i}"))
    await a.snapshotter.snapshot()  # the carts are durable, in state active
    await a.runtime.advance_clock(2 * HOUR)  # 5 step-1 emails out; no snapshot since
    await a.journal.flush()
    assert len(_keys(tmp_path)) == 5
    await crash(a)

    b = await start_engine(engines, config, tmp_path)
    assert all(cart.state.value == "active" and cart.run == 0 for cart in b.registry)
    await b.snapshotter.snapshot()  # at once: the carts have not reached the step again
    assert b.ledger.statistics()["entries"] == 5
    await crash(b)

    c = await start_engine(engines, config, tmp_path)
    assert all(cart.state.value == "active" and cart.run == 0 for cart in c.registry)
    await c.snapshotter.snapshot()  # a cut before the timers fire again must not prune the keys
    assert c.ledger.statistics()["entries"] == 5
    await c.runtime.advance_clock(2 * HOUR)
    keys = _keys(tmp_path)
    assert len(keys) == 5 and max(keys.values()) == 1, keys
    assert c.ledger.suppressed == 5


async def test_a_cart_lost_with_the_crash_and_sent_again_by_the_client_does_not_repeat_its_sends(
        store_url: str, tmp_path: Path, engines: list) -> None:
    """Snapshot durability: the carts' events came after the last ``sync``, so the crash loses them (the
    client re-sends them, as it must), but the sends they led to are recorded in the ledger. A cut taken
    after the restart, before the client's re-send arrives (``snapshot_interval``, 5 s by default), must
    keep those keys: the re-sent events recreate the carts, which issue the same keys again."""
    from tests.persistence.conftest import START

    config = engine_config(tmp_path, store_url)
    a = await start_engine(engines, config, tmp_path)
    events = [cart_event(f"c{i}", id=f"e{i}", ts=START) for i in range(5)]
    await a.sync()
    for event in events:
        await feed(a, dict(event))  # never synced: at risk
    await a.runtime.advance_clock(2 * HOUR)  # 5 step-1 emails out; no snapshot since
    assert len(_keys(tmp_path)) == 5
    await a.journal.flush()  # (the ledger's records are durable before a send goes out)
    await crash(a)

    b = await start_engine(engines, config, tmp_path)
    assert len(b.registry) == 0  # the carts were never durable
    await b.sync()  # the periodic cut, before the client's re-send
    for event in events:
        await feed(b, dict(event))  # the client re-sends what followed its last sync
    await b.runtime.advance_clock(2 * HOUR)
    keys = _keys(tmp_path)
    assert max(keys.values()) == 1, keys
