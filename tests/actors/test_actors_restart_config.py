"""A restart with a changed store config: carts in a run go on with the steps they have not handled yet.

``whatsapp_delay`` reorders a store's schedule (6 h puts the WhatsApp step after the 4 h one); a cart
records the step numbers its run has handled, so the new order neither repeats a step nor skips one.
Both restore paths are covered: one cart at a time (``load_cart``) and chunks (``actors.bulk``).
"""
from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from actorsim import DAY, HOUR, Sim, at, cart_event, make_registry, profile

from actors import SCHEDULE, TAG_STEP, Registry
from actors.bulk import CART_WIDTH, book_ids, cart_row, load_carts, load_profiles, new_counts, settle_refs
from timing_wheel import TimingWheel

MADRID = "Europe/Madrid"
WA = {"phone_number_id": "1055501", "token": "tok"}
BASE = {"timezone": MADRID, "whatsapp": WA}
T0 = at("2024-05-15 10:00", MADRID)  # a Wednesday: the WhatsApp window is open all afternoon


def _abandoned(store: dict[str, Any], until: float) -> Sim:
    reg = make_registry({"demo": store})
    sim = Sim(reg, T0)
    sim.apply(cart_event(prof=profile(phone="+34600111222")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})  # abandoned at T0
    sim.advance(until)
    return sim


def _restore(old: Registry, store: dict[str, Any], now: float, *, bulk: bool, position: int | None = None) -> Sim:
    """``old``'s carts and profiles as a snapshot gives them back (through msgpack), loaded one by one or
    as chunks into a registry built from ``store``. ``position``: the carts' run field as an engine that
    saved a position in the schedule there wrote it."""
    reg = make_registry({"demo": store})
    sim = Sim(reg, now)
    if not bulk:
        for store_id, p in old.profiles():
            reg.load_profile(store_id, msgpack.unpackb(msgpack.packb(p.to_state())))
        for actor in old:
            state = msgpack.unpackb(msgpack.packb(actor.to_state()))
            if position is not None:
                state[9] = position
            sim.run(reg.load_cart(state))
        return sim
    load_profiles(reg, "demo", [x for item in old.stores["demo"].profiles._records.items() for x in item])
    flat: list[Any] = []
    for actor in old:
        cart_row(actor, flat)
    flat = msgpack.unpackb(msgpack.packb(flat))
    if position is not None:
        flat[8::CART_WIDTH] = [position] * len(old)
    counts = new_counts(reg, "demo")
    load_carts(reg, "demo", flat, counts=counts, schedule_many=TimingWheel(math.ceil(now / 0.1)).schedule_many,
               tick_s=0.1, ids=book_ids(reg, "demo"))
    settle_refs(reg, "demo", counts)
    sim.run([(SCHEDULE, a, a.due, TAG_STEP) for a in reg if a.due is not None])  # re-armed in the sim's wheel
    return sim


def _sent(sim: Sim) -> list[tuple[float, int, str]]:
    return [(round((w - T0) / HOUR, 2), step, ch) for (w, _, step, ch) in sim.sent()]


@pytest.mark.parametrize("bulk", [False, True], ids=["load_cart", "chunks"])
def test_a_later_whatsapp_step_after_a_restart_skips_nothing_and_repeats_nothing(bulk: bool) -> None:
    """90m -> 6h at +2 h: steps 1 and 2 are done; step 3 (4 h, the incentive) is next, then step 4."""
    sim = _abandoned(BASE, T0 + 2 * HOUR)
    assert _sent(sim) == [(1.0, 1, "email"), (1.5, 2, "whatsapp")]
    new = _restore(sim.reg, {**BASE, "whatsapp_delay": "6h"}, sim.now, bulk=bulk)
    new.advance(T0 + 25 * HOUR)
    assert _sent(new) == [(4.0, 3, "email"), (24.0, 4, "email")]


@pytest.mark.parametrize("bulk", [False, True], ids=["load_cart", "chunks"])
def test_an_earlier_whatsapp_step_after_a_restart_is_sent_and_the_rest_goes_on(bulk: bool) -> None:
    """6h -> 90m at +5 h: steps 1 and 3 are done; step 2, now first in the schedule and overdue, goes when
    the cart's pending timer fires (armed for 6 h before the restart: a restore keeps it), then step 4 at
    24 h; step 3 is not sent again."""
    sim = _abandoned({**BASE, "whatsapp_delay": "6h"}, T0 + 5 * HOUR)
    assert _sent(sim) == [(1.0, 1, "email"), (4.0, 3, "email")]
    new = _restore(sim.reg, BASE, sim.now, bulk=bulk)
    new.advance(T0 + 25 * HOUR)
    assert _sent(new) == [(6.0, 2, "whatsapp"), (24.0, 4, "email")]


@pytest.mark.parametrize("bulk", [False, True], ids=["load_cart", "chunks"])
def test_a_snapshot_that_saved_a_schedule_position_still_loads(bulk: bool) -> None:
    """Snapshots written before ``done`` hold a position in the schedule (2: two entries handled); it is
    read against the store's current schedule (the best there is) and the run goes on from there."""
    sim = _abandoned(BASE, T0 + 2 * HOUR)
    assert next(iter(sim.reg)).to_state()[9] == -0b11  # steps 1 and 2, stored negated
    new = _restore(sim.reg, BASE, sim.now, bulk=bulk, position=2)
    assert next(iter(new.reg)).done == 0b11
    new.advance(T0 + 2 * DAY + HOUR)
    assert _sent(new) == [(4.0, 3, "email"), (24.0, 4, "email"), (40.0, 5, "email")]
    assert new.metrics["expired"] == 1


@pytest.mark.parametrize("bulk", [False, True], ids=["load_cart", "chunks"])
def test_a_paused_run_survives_a_restart_and_resumes(bulk: bool) -> None:
    """A shopper back after the first two messages: the paused run (abandonment time, last message) is in
    the snapshot, so the abandonment after the restart resumes with step 3, not with step 1."""
    sim = _abandoned(BASE, T0 + 2 * HOUR)
    assert _sent(sim) == [(1.0, 1, "email"), (1.5, 2, "whatsapp")]
    sim.apply(cart_event(prof=profile(phone="+34600111222")), T0 + 2 * HOUR)
    new = _restore(sim.reg, BASE, sim.now, bulk=bulk)
    assert next(iter(new.reg)).describe()["paused"] is True
    new.advance(T0 + 30 * HOUR)  # abandoned again at 2 h 30; its run starts at 1 h (2 h 30 - 1 h 30)
    assert _sent(new) == [(5.0, 3, "email"), (25.0, 4, "email")]
    assert new.metrics == {"resumed": 1}


@pytest.mark.parametrize("bulk", [False, True], ids=["load_cart", "chunks"])
def test_a_profile_stated_by_profile_updated_is_still_kept_after_a_restart(bulk: bool) -> None:
    """The 'kept' mark is part of the profile's record: after a restore, the profile still outlives its
    last cart (and its consents reach the shopper's next cart, cited by id alone)."""
    reg = make_registry({"demo": BASE})
    sim = Sim(reg, T0)
    sim.apply({"type": "profile.updated", "store": "demo", "profile": profile("p1")})
    sim.apply(cart_event(prof="p1"))
    new = _restore(sim.reg, BASE, sim.now, bulk=bulk)
    new.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o1", "value": 10.0})
    new.advance(T0 + 6 * DAY)  # the tombstone is gone
    assert len(new.reg) == 0 and new.reg.profile("demo", "p1") is not None
    new.apply(cart_event("c2", prof="p1"))
    new.apply({"type": "session.ended", "store": "demo", "cart": "c2"})
    new.advance(T0 + 6 * DAY + 2 * HOUR)
    assert [(s.intent.cart, s.intent.channel) for s in new.sends] == [("c2", "email")]


def test_a_kept_profile_whose_snapshot_still_counts_a_cart_that_is_gone_stays() -> None:
    """Chunks restore: a profile written while it had a cart, restored without that cart (dropped since),
    is dropped as the live engine would have dropped it, unless it was stated by profile.updated."""
    reg = make_registry({"demo": BASE})
    sim = Sim(reg, T0)
    sim.apply({"type": "profile.updated", "store": "demo", "profile": profile("kept")})
    sim.apply(cart_event("c1", prof="kept"))
    sim.apply(cart_event("c2", prof=profile("plain")))
    book = reg.stores["demo"].profiles
    for store_id, cart in (("demo", "c1"), ("demo", "c2")):
        reg._carts[store_id].pop(cart)  # the carts went after the profiles were written
    reg._size = 0
    new = _restore(reg, BASE, sim.now, bulk=True)
    assert new.reg.profile("demo", "kept") is not None and new.reg.profile("demo", "plain") is None
    assert len(book) == 2  # (the old registry's book, untouched)


@pytest.mark.parametrize("bulk", [False, True], ids=["load_cart", "chunks"])
def test_a_paused_run_resumed_after_whatsapp_delay_moved_back_does_not_repeat_the_incentive(bulk: bool) -> None:
    """README: "a restart with another whatsapp_delay neither repeats a step nor skips one". With 6 h the
    shopper got step 1 (1 h), step 3 (the 4 h incentive) and then step 2 (WhatsApp at 6 h), came back (the
    run pauses) and the engine restarted with the default 1 h 30. The next abandonment resumes after the
    later, in the new order, of the last two messages (steps 2 and 3): not after step 2 alone, which
    the new order places before step 3 (the incentive went again)."""
    six = {**BASE, "whatsapp_delay": "6h"}
    sim = _abandoned(six, T0 + 7 * HOUR)
    assert _sent(sim) == [(1.0, 1, "email"), (4.0, 3, "email"), (6.0, 2, "whatsapp")]
    sim.apply(cart_event(prof=profile(phone="+34600111222")), T0 + 7 * HOUR)  # back: the run pauses
    new = _restore(sim.reg, BASE, sim.now, bulk=bulk)
    new.advance(T0 + 60 * HOUR)  # abandoned again at 7 h 30: resumes after step 2
    assert [step for _, step, _ in _sent(new)] == [4, 5]


@pytest.mark.parametrize("bulk", [False, True], ids=["load_cart", "chunks"])
def test_a_paused_run_resumed_after_whatsapp_delay_moved_later_does_not_skip_the_incentive(bulk: bool) -> None:
    """The other way: with 1 h 30 the shopper got steps 1 and 2 (WhatsApp), came back at 2 h, and the
    engine restarted with 6 h, which places step 3 (the 4 h incentive) before step 2. The resumed run
    does not skip it: it was never reached (overdue in the resumed run's clock, it goes at once)."""
    sim = _abandoned(BASE, T0 + 2 * HOUR)
    assert _sent(sim) == [(1.0, 1, "email"), (1.5, 2, "whatsapp")]
    sim.apply(cart_event(prof=profile(phone="+34600111222")), T0 + 2 * HOUR)
    new = _restore(sim.reg, {**BASE, "whatsapp_delay": "6h"}, sim.now, bulk=bulk)
    new.advance(T0 + 60 * HOUR)  # abandoned again at 2 h 30; the run's start: 6 h (step 2's turn) before
    assert _sent(new) == [(2.5, 3, "email"), (20.5, 4, "email"), (36.5, 5, "email")]


@pytest.mark.parametrize("bulk", [False, True], ids=["load_cart", "chunks"])
def test_a_run_reordered_twice_while_under_way_then_resumed_repeats_nothing(bulk: bool) -> None:
    """With 1 h 30 the run sends steps 1 and 2; a restart with 6 h; step 3 goes at 4 h (under 6 h it
    counts as *before* step 2, so the cart's last-message record kept step 2 and dropped step 3); the
    shopper comes back; a restart with 1 h 30 again; the resumed run must not send step 3 again."""
    sim = _abandoned(BASE, T0 + 2 * HOUR)
    mid = _restore(sim.reg, {**BASE, "whatsapp_delay": "6h"}, sim.now, bulk=bulk)
    mid.advance(T0 + 5 * HOUR)
    assert _sent(sim) + _sent(mid) == [(1.0, 1, "email"), (1.5, 2, "whatsapp"), (4.0, 3, "email")]
    mid.apply(cart_event(prof=profile(phone="+34600111222")), T0 + 5 * HOUR)  # back: the run pauses
    new = _restore(mid.reg, BASE, mid.now, bulk=bulk)
    new.advance(T0 + 60 * HOUR)  # abandoned again at 5 h 30: resumes after step 3
    assert [step for _, step, _ in _sent(new)] == [4, 5]
