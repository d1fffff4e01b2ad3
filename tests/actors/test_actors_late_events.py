"""Late events, opt-outs and purchases: cases found by property-based fuzzing of the send invariants
(never after a purchase, never after an opt-out unless a newer event gave consent again, quiet hours
for every channel), kept as plain, deterministic tests."""
from __future__ import annotations

from typing import Any

from actorsim import DAY, HOUR, MIN, Sim, at, cart_event, local, make_registry

from actors import CartState

T0 = at("2024-05-15 10:00")


def _pm(consent: dict[str, bool]) -> dict[str, Any]:
    return {"id": "p1", "email": "ann@example.com", "consent": consent}


def test_a_repeated_opt_out_is_dated_so_an_older_late_map_gives_no_consent() -> None:
    """Opt-out at +10 min, repeated at +20 min (a cart update carrying the shopper's map), then a late
    copy of a map from +15 min with email consent: the newest statement (+20 min) says no email."""
    reg = make_registry({"demo": {}})
    sim = Sim(reg, T0)
    sim.apply(cart_event(prof=_pm({"email": True}), ts=T0), T0)
    sim.apply({"type": "profile.updated", "store": "demo", "profile": {"id": "p1", "consent": {"email": False}},
               "ts": T0 + 10 * MIN}, T0 + 10 * MIN)
    sim.apply(cart_event(prof=_pm({"email": False}), ts=T0 + 20 * MIN), T0 + 20 * MIN)  # repeats the opt-out
    sim.apply(cart_event(prof=_pm({"email": True}), ts=T0 + 15 * MIN), T0 + 21 * MIN)  # late, older than +20
    sim.advance(T0 + 3 * DAY)
    assert [s for s in sim.sent() if s[3] == "email"] == [], sim.sent()


def test_a_first_map_saying_no_is_dated_so_an_older_late_map_gives_no_consent() -> None:
    """The shopper's first map (+1 s) says email: false; a late map stamped +0.5 s says true."""
    reg = make_registry({"demo": {}})
    sim = Sim(reg, T0)
    sim.apply(cart_event("a", prof=_pm({"email": False})), T0 + 1)
    sim.apply(cart_event("a", prof=_pm({"email": True}), ts=T0 + 0.5), T0 + 2)
    sim.advance(T0 + 3 * DAY)
    assert [s for s in sim.sent() if s[3] == "email"] == [], sim.sent()


def test_a_queued_webhook_waits_for_the_end_of_quiet_hours() -> None:
    """A webhook message issued at 21:00 (outside the 22:00-08:00 quiet hours) waits in its channel's queue
    until 23:00: every other channel is held back until 08:00; the webhook goes out at 23:00."""
    flows = {"hook": {"abandon_after": "30m", "steps": [{"after": "1h", "channels": ["webhook", "email"]}]}}
    reg = make_registry({"demo": {"flow": "hook", "quiet_hours": {"start": "22:00", "end": "08:00"}}}, flows)
    start = at("2024-05-15 19:30")
    sim = Sim(reg, start, auto_deliver=False)
    sim.apply(cart_event(prof=_pm({"email": True})), start)
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"}, start + 1)
    sim.advance(at("2024-05-15 20:31"))  # step 1 issued at 20:30: webhook + email queued
    assert sorted(i.channel for i in sim.queue) == ["email", "webhook"]
    sim.advance(at("2024-05-15 23:00"))
    sim.flush()  # the channel queue drains inside the quiet hours
    sim.advance(at("2024-05-16 08:00"))
    sim.flush()
    sends = {s.intent.channel: local(s.at) for s in sim.sends if s.outcome == "sent"}
    assert sends == {"email": "2024-05-16 08:00", "webhook": "2024-05-16 08:00"}, sends


def test_cart_cleared_after_the_order_keeps_the_purchase() -> None:
    """Bought at +10 min (before any abandonment), then the shop clears the cart (+11 min): the bought cart's
    tombstone is dropped, so a late update stamped +5 min (before the purchase) starts a flow."""
    reg = make_registry({"demo": {}})
    sim = Sim(reg, T0)
    sim.apply(cart_event(prof=_pm({"email": True}), ts=T0), T0)
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o1", "value": 64.0,
               "ts": T0 + 10 * MIN}, T0 + 10 * MIN)
    sim.apply({"type": "cart.cleared", "store": "demo", "cart": "c1", "ts": T0 + 11 * MIN}, T0 + 11 * MIN)
    sim.apply(cart_event(prof=_pm({"email": True}), ts=T0 + 5 * MIN), T0 + 12 * MIN)  # late, before the order
    sim.advance(T0 + 3 * DAY)
    assert sim.sent() == [], sim.sent()


def test_a_late_opt_out_of_one_channel_applies_after_a_newer_change_of_another() -> None:
    """Push opt-out stamped +10 min arrives late (+20 min), after an email opt-out stamped +15 min: the push
    opt-out is compared with the profile's one consent time (+15 min) and dropped; push messages go."""
    reg = make_registry({"demo": {}})
    sim = Sim(reg, T0)
    prof = {"id": "p1", "email": "ann@example.com", "push": "tok-1", "consent": {"email": True, "push": True}}
    sim.apply(cart_event(prof=prof, ts=T0), T0)
    sim.apply({"type": "profile.updated", "store": "demo", "profile": {"id": "p1", "consent": {"email": False}},
               "ts": T0 + 15 * MIN}, T0 + 15 * MIN)
    sim.apply({"type": "profile.updated", "store": "demo", "profile": {"id": "p1", "consent": {"push": False}},
               "ts": T0 + 10 * MIN}, T0 + 20 * MIN)  # late: nothing newer speaks about push
    sim.advance(T0 + 3 * DAY)
    assert sim.sent() == [], sim.sent()


def test_the_cap_counts_from_when_a_queued_message_went_out() -> None:
    """A's email is issued at 21:00, waits in a paused channel queue past 22:00 and is held by the quiet
    hours until 08:00, when it goes out. B's email (same shopper) is issued at 09:30 - 12.5 h after A's
    was *issued* - and goes out at once: the shopper gets two emails for two carts 1.5 h apart."""
    flows = {"one": {"abandon_after": "30m", "expire_after": "48h", "steps": [{"after": "1h", "channels": ["email"]}]}}
    reg = make_registry({"demo": {"flow": "one", "quiet_hours": {"start": "22:00", "end": "08:00"}}}, flows)
    start = at("2024-05-15 19:30")
    sim = Sim(reg, start, auto_deliver=False)
    sim.apply(cart_event("A", prof=_pm({"email": True})), start)
    sim.apply({"type": "session.ended", "store": "demo", "cart": "A"}, at("2024-05-15 20:00"))
    sim.advance(at("2024-05-15 21:00"))  # A's email issued, queued (the channel is paused)
    assert [i.cart for i in sim.queue] == ["A"]
    sim.advance(at("2024-05-15 22:30"))
    sim.flush()  # the channel resumes inside the quiet hours: A's email is held until 08:00
    sim.advance(at("2024-05-16 08:00"))
    sim.flush()  # ... and goes out at 08:00
    sim.apply(cart_event("B", prof="p1"), at("2024-05-16 08:29"))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "B"}, at("2024-05-16 08:30"))
    for minute in range(0, 24 * 60, 5):
        sim.advance(at("2024-05-16 08:30") + minute * MIN)
        sim.flush()
    emails = [(local(s.at), s.intent.cart) for s in sim.sends if s.outcome == "sent"]
    assert emails[0] == ("2024-05-16 08:00", "A"), emails
    assert len(emails) == 2 and emails[1][0] >= "2024-05-16 20:00", emails  # B's at least 12 h after A's


def test_an_order_right_after_the_shop_cleared_the_cart_is_still_credited() -> None:
    """Many shops empty the cart at checkout and send the order right after: the purchase of a cart that
    got a recovery email counts as recovered (the cleared cart's tombstone kept its last message)."""
    reg = make_registry({"demo": {}})
    sim = Sim(reg, T0)
    sim.apply(cart_event(prof=_pm({"email": True})), T0)
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"}, T0)
    sim.advance(T0 + 2 * HOUR)  # the 1 h email went out
    sim.apply({"type": "cart.cleared", "store": "demo", "cart": "c1"}, T0 + 2 * HOUR)
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o1", "value": 64.0},
              T0 + 2 * HOUR + 1)
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o1", "value": 64.0},
              T0 + 2 * HOUR + 2)  # sent again: counted once
    assert sim.metrics["recovered"] == 1 and sim.metrics["revenue"] == 64.0 and sim.metrics["cleared"] == 1
    assert reg.cart("demo", "c1").state is CartState.RECOVERED  # type: ignore[union-attr]
    # a cleared cart that got no message and is then bought: a plain conversion
    sim.apply(cart_event("c2", prof=_pm({"email": False})), sim.now)
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c2"}, sim.now)
    sim.apply({"type": "cart.cleared", "store": "demo", "cart": "c2"}, sim.now + MIN)
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c2", "order": "o2", "value": 5.0}, sim.now + MIN)
    assert sim.metrics["converted"] == 1 and sim.metrics["recovered"] == 1
