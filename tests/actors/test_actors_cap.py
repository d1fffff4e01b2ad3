"""The per-profile frequency cap across two carts of one shopper: drop and postpone."""
from __future__ import annotations

from actorsim import HOUR, MIN, Sim, at, cart_event, make_registry, profile

STEPS = [{"after": "1h", "channels": ["email"]}, {"after": "20h", "channels": ["email"]}]


def two_carts(on_cap: str) -> Sim:
    flows = {"capped": {"steps": STEPS, "expire_after": "30h", "frequency_cap": "12h", "on_cap": on_cap}}
    reg = make_registry({"demo": {"flow": "capped"}}, flows)
    t0 = at("2024-05-15 00:00")
    sim = Sim(reg, t0)
    sim.apply(cart_event("A", prof=profile("p")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "A"})
    sim.apply(cart_event("B", prof="p"), t0 + 2 * HOUR)  # same shopper, profile by id
    sim.apply({"type": "session.ended", "store": "demo", "cart": "B"})
    sim.advance(t0 + 3 * 24 * HOUR)
    return sim


def rows(sim: Sim, outcome: str) -> list[tuple[float, str, int, str]]:
    t0 = at("2024-05-15 00:00")
    return [((r.at - t0) / HOUR, r.cart, r.step, r.reason) for r in sim.logs if r.outcome == outcome]  # type: ignore[misc]


def test_postpone_until_the_cap_allows() -> None:
    sim = two_carts("postpone")
    assert rows(sim, "sent") == [(1.0, "A", 1, ""), (13.0, "B", 1, ""), (22.0, "B", 2, "")]
    assert rows(sim, "postponed") == [
        (3.0, "B", 1, "frequency cap (12h) until 2024-05-15T13:00+00:00"),
        (20.0, "A", 2, "frequency cap (12h) until 2024-05-16T01:00+00:00"),
    ]
    # A's held email would be allowed at 22h + 12h = 34h, after A's run ends at 30h
    assert rows(sim, "skipped") == [(25.0, "A", 2, "frequency cap: lifts after the run ends")]


def test_drop_when_capped() -> None:
    sim = two_carts("drop")
    assert rows(sim, "sent") == [(1.0, "A", 1, ""), (20.0, "A", 2, "")]
    assert rows(sim, "skipped") == [
        (3.0, "B", 1, "frequency cap: a email message for another cart within 12h"),
        (22.0, "B", 2, "frequency cap: a email message for another cart within 12h"),
    ]


def test_one_carts_own_messages_are_not_capped() -> None:
    flows = {"tight": {"steps": [{"after": "1h", "channels": ["email"]}, {"after": "2h", "channels": ["email"]}]}}
    reg = make_registry({"demo": {"flow": "tight"}}, flows)
    t0 = at("2024-05-15 00:00")
    sim = Sim(reg, t0)
    sim.apply(cart_event("A", prof=profile("p")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "A"})
    sim.advance(t0 + 3 * HOUR)
    assert [w - t0 for (w, _, _, _) in sim.sent()] == [HOUR, 2 * HOUR]


def test_a_newer_step_supersedes_a_held_send() -> None:
    # A sends at 1h and 3h (its own pace). B's first email (3h) is held by the cap until 3h + 12h; B's
    # second step (2h + 3h = 5h) replaces the held one and waits for the same instant.
    steps = [{"after": "1h", "channels": ["email"]}, {"after": "3h", "channels": ["email"]}]
    reg = make_registry({"demo": {"flow": "s"}}, {"s": {"steps": steps, "expire_after": "30h"}})
    t0 = at("2024-05-15 00:00")
    sim = Sim(reg, t0)
    sim.apply(cart_event("A", prof=profile("p")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "A"})
    sim.apply(cart_event("B", prof="p"), t0 + 2 * HOUR)
    sim.apply({"type": "session.ended", "store": "demo", "cart": "B"})
    sim.advance(t0 + 2 * 24 * HOUR)
    assert rows(sim, "skipped") == [(5.0, "B", 1, "superseded by step 2")]
    assert rows(sim, "sent") == [(1.0, "A", 1, ""), (3.0, "A", 2, ""), (15.0, "B", 2, "")]
    assert [(h, c, s) for (h, c, s, _) in rows(sim, "postponed")] == [(3.0, "B", 1), (5.0, "B", 2)]


def test_the_cap_outlives_the_purchase_of_the_cart_it_was_for() -> None:
    """Cart A got an email and was bought; the shopper's next cart B, abandoned within the cap, waits:
    A's tombstone keeps the profile (and its cap) while the cap holds, instead of forgetting it."""
    T0 = at("2024-05-15 10:00")
    reg = make_registry({"demo": {}})
    sim = Sim(reg, T0)
    sim.apply(cart_event("A", prof=profile(), ts=T0), T0)
    sim.advance(T0 + 90 * MIN)
    assert sim.sent() == [(T0 + 90 * MIN, 1, 1, "email")]
    sim.apply({"type": "order.completed", "store": "demo", "cart": "A", "order": "o1", "value": 64.0}, T0 + 100 * MIN)
    assert reg.profile("demo", "p1") is not None  # still remembered: the cap holds until +13h30
    sim.apply(cart_event("B", prof=profile()), T0 + 110 * MIN)
    sim.advance(T0 + 14 * HOUR)
    emails = [s[0] for s in sim.sent() if s[3] == "email"]
    assert emails[0] == T0 + 90 * MIN and all(b - a >= 12 * HOUR for a, b in zip(emails, emails[1:])), emails
    assert len(emails) == 2 and emails[1] == T0 + 90 * MIN + 12 * HOUR


def test_a_cancelled_message_does_not_lift_the_cap_an_earlier_sent_one_set() -> None:
    """A's 1 h email went out; A's 4 h email was issued (the cap's last) and then cancelled (the cart was
    emptied while it waited): the cap must fall back to the email that did go, not vanish."""
    T0 = at("2024-05-15 10:00")
    reg = make_registry({"demo": {}})
    sim = Sim(reg, T0, auto_deliver=False)
    sim.apply(cart_event("A", prof=profile(), ts=T0), T0)
    sim.advance(T0 + 90 * MIN)
    sim.flush()  # A's step-1 email sent
    sim.apply(cart_event("B", prof=profile()), T0 + 269 * MIN)
    sim.advance(T0 + 270 * MIN)
    assert len(sim.queue) == 1  # A's step-3 email, queued
    sim.apply(cart_event("A", prof=profile(), items=[], value=0.0), T0 + 271 * MIN)
    sim.flush()  # ... and cancelled: the cart is active again
    for minute in range(272, 14 * 60):
        sim.advance(T0 + minute * MIN)
        sim.flush()
    emails = [(s.at, s.intent.cart) for s in sim.sends if s.outcome == "sent" and s.intent.channel == "email"]
    assert emails[0] == (T0 + 90 * MIN, "A") and emails[1][1] == "B", emails
    assert emails[1][0] >= T0 + 90 * MIN + 12 * HOUR, emails


def test_cap_entries_round_trip_with_the_message_before_the_last() -> None:
    from actors.profiles import Profile

    p = Profile("p")
    p.record_send("email", "A", 100.0)
    p.record_send("email", "B", 200.0)
    assert p.caps == {"email": (200.0, "B", 100.0, "A")}
    again = Profile.from_state(p.to_state())
    assert again.caps == p.caps
    assert again.forget_send("email", "B", 200.0) and again.caps == {"email": (100.0, "A")}
    assert again.forget_send("email", "A", 100.0) and again.caps is None
    old = Profile.from_state(["p", None, None, None, None, None, 1, 0, 1, [["email", 50.0, "Z"]]])  # as stored before
    assert old.caps == {"email": (50.0, "Z")}


def test_the_cap_outlives_the_tombstone_when_it_is_longer_than_the_attribution_window() -> None:
    """A weekly cap (7 d) is longer than the attribution window (5 d) that keeps a final cart's tombstone:
    when A's tombstone went, the shopper's profile (their last cart gone) went with it, cap and all, and
    the next cart B, abandoned on day 6, was emailed within the week. The tombstone stays while the cap
    still holds."""
    steps = [{"after": "1h", "channels": ["email"]}]
    reg = make_registry({"demo": {"flow": "weekly"}},
                        {"weekly": {"steps": steps, "expire_after": "2h", "frequency_cap": "7d"}})
    t0 = at("2024-05-15 00:00")
    sim = Sim(reg, t0)
    sim.apply(cart_event("A", prof=profile("p")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "A"})
    sim.advance(t0 + 6 * 24 * HOUR)  # A expired at 2 h; its tombstone's 5 d are over
    sim.apply(cart_event("B", prof=profile("p")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "B"})
    sim.advance(t0 + 9 * 24 * HOUR)
    emails = [(s.at - t0, s.intent.cart) for s in sim.sends if s.outcome == "sent"]
    assert emails == [(HOUR, "A")], emails  # B's email would lift after B's run ended (2 h)
    assert rows(sim, "skipped") == [(6 * 24 + 1, "B", 1, "frequency cap: lifts after the run ends")]
    sim.advance(t0 + 20 * 24 * HOUR)
    assert len(reg) == 0 and reg.profile("demo", "p") is None  # and all of it is forgotten in the end
