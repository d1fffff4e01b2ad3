"""The per-profile frequency cap across two carts of one shopper: drop and postpone."""
from __future__ import annotations

from actorsim import HOUR, Sim, at, cart_event, make_registry, profile

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
