"""Bulk chunks (actors.bulk): carts and profiles round-trip through chunk rows, with skips, duplicates,
corrupt input and reference counts made right."""
from __future__ import annotations

import math

import msgpack
import pytest
from actorsim import DAY, HOUR, Sim, at, cart_event, make_registry, profile

from actors import FINAL_STATES, SCHEDULE, TAG_IDLE, TAG_PURGE, TAG_STEP, CartActor, CartState, Registry
from actors.bulk import (
    CART_WIDTH,
    STATE_CODES,
    book_ids,
    cart_row,
    load_carts,
    load_profiles,
    new_counts,
    row_of_state,
    settle_refs,
    state_of_row,
)
from actors.profiles import record_refs, with_refs
from timing_wheel import TimingWheel

T0 = at("2024-05-15 20:00", "Europe/Madrid")
STORE = {"timezone": "Europe/Madrid", "whatsapp": {"phone_number_id": "1", "token": "t"}}
TICK_S = 0.1


def busy_registry() -> Registry:
    """Carts in every kind of state: active, in a run with a held send and a last message, final."""
    return busy()[0]


def busy() -> tuple[Registry, Sim]:
    reg = make_registry({"demo": STORE})
    sim = Sim(reg, T0)
    sim.apply(cart_event("A", prof=profile("p", phone="+34600111222", push="t")))
    sim.apply(cart_event("B", prof="p"))
    sim.apply(cart_event("C", prof=profile("q")))
    sim.apply(cart_event("D"))  # no profile
    sim.apply({"type": "session.ended", "store": "demo", "cart": "A"})
    sim.advance(T0 + 3 * HOUR)  # A holds a WhatsApp send until morning, B and C are in their runs
    sim.apply({"type": "order.completed", "store": "demo", "cart": "C", "order": "o", "value": 1.0})
    sim.apply(cart_event("E", prof="p"))
    return reg, sim


def chunk_of(reg: Registry, store: str = "demo") -> list:
    flat: list = []
    for actor in reg:
        if actor.store.id == store:
            cart_row(actor, flat)
    return msgpack.unpackb(msgpack.packb(flat))  # what a store hands back


def profile_chunk(reg: Registry, store: str = "demo") -> list:
    flat: list = []
    for pid, record in reg.stores[store].profiles._records.items():
        flat += [pid, record]
    return msgpack.unpackb(msgpack.packb(flat))


def load_into(fresh: Registry, carts: list, profiles: list, wheel: TimingWheel, **kw: object) -> dict:
    load_profiles(fresh, "demo", profiles)
    counts = new_counts(fresh, "demo")
    load_carts(fresh, "demo", carts, counts=counts, schedule_many=wheel.schedule_many, tick_s=TICK_S,
               ids=book_ids(fresh, "demo"), **kw)  # type: ignore[arg-type]
    settle_refs(fresh, "demo", counts)
    return counts


def test_chunk_round_trip_restores_every_cart_timer_and_count() -> None:
    reg = busy_registry()
    states = sorted(a.to_state() for a in reg)
    assert any(s[11] for s in states) and any(s[12] for s in states)  # held sends and a last message
    fresh = make_registry({"demo": STORE})
    wheel = TimingWheel(math.ceil(T0 / TICK_S))
    load_into(fresh, chunk_of(reg), profile_chunk(reg), wheel)
    assert sorted(a.to_state() for a in fresh) == states
    assert len(fresh) == len(reg) and fresh.carts_by_state() == reg.carts_by_state()
    assert fresh.profile("demo", "p").to_state() == reg.profile("demo", "p").to_state()  # type: ignore[union-attr]
    keys = {k: k for k in fresh.stores["demo"].profiles._records}
    linked = [a for a in fresh if a.profile is not None]
    assert linked and all(a.profile is keys[a.profile] for a in linked)  # the book's own id string, not a copy
    armed = [a for a in fresh if a.due is not None]
    assert len(wheel) == len(armed)
    fired = wheel.expire(math.ceil((T0 + 30 * DAY) / TICK_S))
    assert {id(k) for k in fired[::2]} == {id(a) for a in armed}
    for actor, tag in zip(fired[::2], fired[1::2]):
        assert tag == _tag(actor), actor


def _tag(actor: CartActor) -> int:
    return TAG_IDLE if actor.state is CartState.ACTIVE else TAG_PURGE if actor.state in FINAL_STATES else TAG_STEP


def test_restored_carts_go_on_exactly_like_the_originals() -> None:
    def run(split: bool) -> list:
        reg, sim = busy()
        before, recovered = len(sim.sent()), sim.metrics["recovered"]
        if split:
            fresh = make_registry({"demo": STORE})
            load_into(fresh, chunk_of(reg), profile_chunk(reg), TimingWheel(0))
            sim = Sim(fresh, sim.now)
            sim.run([(SCHEDULE, a, a.due, _tag(a)) for a in fresh if a.due is not None])  # re-arm in the sim's wheel
            before = recovered = 0
        sim.advance(T0 + 3 * DAY)
        sim.apply({"type": "order.completed", "store": "demo", "cart": "A", "order": "o", "value": 1.0})
        return sim.sent()[before:] + [sim.metrics["recovered"] - recovered]

    after = run(split=False)
    assert len(after) > 3 and after[-1] == 1  # there is something to compare: sends, and a recovery
    assert run(split=True) == after


def test_skipped_and_repeated_carts_are_neither_loaded_nor_counted() -> None:
    reg = busy_registry()
    flat = chunk_of(reg)
    first_a = flat[flat.index("A") - 0: flat.index("A") + CART_WIDTH]
    fresh = make_registry({"demo": STORE})
    wheel = TimingWheel(0)
    counts = load_into(fresh, flat + first_a, profile_chunk(reg), wheel, skip={"B"})
    assert fresh.cart("demo", "B") is None and fresh.cart("demo", "A") is not None
    assert len(fresh) == len(reg) - 1
    assert len(wheel) == sum(1 for a in fresh if a.due is not None)  # the second copy of A armed nothing
    p_carts = sum(1 for a in fresh if a.profile == "p")
    assert counts["p"] == p_carts and fresh.profile("demo", "p").refs == p_carts  # type: ignore[union-attr]


def test_reference_counts_are_made_right_whatever_the_records_say() -> None:
    reg = make_registry({"demo": {}})
    book = reg.rules("demo").profiles
    records = book._records
    records["stale"] = with_refs(records.get("x") or _record(), 5)  # carts that are gone
    records["short"] = with_refs(_record(), 1)
    records["alone"] = _record()  # made by profile.updated: no carts, and it stays
    records["gone"] = with_refs(_record(), 2)  # its carts went: the live engine forgot it
    records["many"] = with_refs(_record(), 200)  # refs >= 128: not a one-byte fixint
    assert record_refs(records["many"]) == 200 and record_refs(records["short"]) == 1
    rows: list = []
    for i, pid in enumerate(["short"] * 3 + ["stale"] + ["many"] * 130 + ["unknown"] * 2):
        rows += [f"c{i}", pid, msgpack.packb([[], 0.0, None, None]), STATE_CODES[CartState.ACTIVE], 1, 0.0, None, 0, 0,
                 None, None, None]
    counts = new_counts(reg, "demo")
    load_carts(reg, "demo", rows, counts=counts, schedule_many=TimingWheel(0).schedule_many, tick_s=TICK_S)
    fixed = settle_refs(reg, "demo", counts)
    refs = {pid: reg.profile("demo", pid).refs for pid in ("stale", "short", "alone", "many", "unknown")}  # type: ignore[union-attr]
    assert refs == {"stale": 1, "short": 3, "alone": 0, "many": 130, "unknown": 2}
    assert reg.profile("demo", "gone") is None
    assert fixed == 5  # stale, short, gone, many, and the unknown profile (made, empty)
    assert reg.profile("demo", "unknown").consent == 0  # type: ignore[union-attr]


def _record() -> bytes:
    return msgpack.packb([0, None, None, None, None, None, 0, 0, None])


def test_corrupt_chunks_are_refused_with_what_is_wrong() -> None:
    reg = busy_registry()
    flat = chunk_of(reg)
    fresh = make_registry({"demo": STORE})
    kw = {"counts": {}, "schedule_many": TimingWheel(0).schedule_many, "tick_s": TICK_S}
    with pytest.raises(ValueError, match=f"{CART_WIDTH} values per cart"):
        load_carts(fresh, "demo", flat[:-1], **kw)  # type: ignore[arg-type]
    bad = list(flat)
    bad[3] = 99
    with pytest.raises(ValueError, match="unknown state number 99"):
        load_carts(fresh, "demo", bad, **kw)  # type: ignore[arg-type]
    bad = list(flat)
    bad[0] = 12345
    with pytest.raises(ValueError, match="cart id 12345 is not a string"):
        load_carts(fresh, "demo", bad, **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pairs"):
        load_profiles(fresh, "demo", ["p"])
    with pytest.raises(ValueError, match="'p2': not an id and a packed profile record"):
        load_profiles(fresh, "demo", ["p1", _record(), "p2", b"\x93\x01\x02\x03"])
    with pytest.raises(ValueError, match="'7'"):
        load_profiles(fresh, "demo", [7, _record()])


def test_state_lists_and_rows_convert_both_ways() -> None:
    for actor in busy_registry():
        state = msgpack.unpackb(msgpack.packb(actor.to_state()))
        store, row = row_of_state(list(state))
        assert store == "demo" and len(row) == CART_WIDTH and isinstance(row[3], int)
        assert state_of_row(store, row) == state
    with pytest.raises(ValueError, match="unknown state 'lost'"):
        row_of_state(["demo", "c", None, b"", "lost", 0, 0.0, None, 0, 0, None, None, None])
    with pytest.raises(ValueError, match="expected a list of 13"):
        row_of_state(["demo", "c"])


@pytest.mark.parametrize("bulk", [False, True], ids=["load_cart", "chunks"])
def test_the_message_before_the_last_is_kept_through_a_restore(bulk: bool) -> None:
    """A cart keeps its last message and the one of the step before it (a late order placed between the
    two is attributed to the earlier one); both come back from a snapshot."""
    store = {"timezone": "UTC", "whatsapp": STORE["whatsapp"]}
    reg = make_registry({"demo": store})
    t0 = at("2024-05-15 10:00")
    sim = Sim(reg, t0)
    sim.apply(cart_event("A", prof=profile("p", phone="+34600111222")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "A"})
    sim.advance(t0 + 2 * HOUR)  # the 1 h email and the 1 h 30 min WhatsApp went out
    touch = reg.cart("demo", "A").touch  # type: ignore[union-attr]
    assert touch == (1, 2, "whatsapp", t0 + 1.5 * HOUR, 1, 1, "email", t0 + HOUR)
    fresh = make_registry({"demo": store})
    if bulk:
        load_into(fresh, chunk_of(reg), profile_chunk(reg), TimingWheel(0))
    else:
        for sid, p in reg.profiles():
            fresh.load_profile(sid, msgpack.unpackb(msgpack.packb(p.to_state())))
        for actor in reg:
            fresh.load_cart(msgpack.unpackb(msgpack.packb(actor.to_state())))
    assert fresh.cart("demo", "A").touch == touch  # type: ignore[union-attr]
    after = Sim(fresh, sim.now)
    after.apply({"type": "order.completed", "store": "demo", "cart": "A", "order": "o", "ts": t0 + 80 * 60})
    assert after.metrics["recovered.step.1"] == 1 and after.metrics["recovered.channel.email"] == 1
