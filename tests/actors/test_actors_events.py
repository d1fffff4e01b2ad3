"""Event handling edge cases: out-of-order and duplicate events, empty carts, clearing, deliveries."""
from __future__ import annotations

import msgpack
from actorsim import DAY, HOUR, MIN, Sim, at, cart_event, make_registry, profile

from actors import SCHEDULE, CartActor, CartState, Profile, Registry, StoreRules

T0 = at("2024-05-15 10:00")


def fresh(**store: object) -> tuple[Registry, Sim]:
    reg = make_registry({"demo": dict(store)})
    return reg, Sim(reg, T0)


def test_out_of_order_event_is_applied_without_moving_time_back() -> None:
    reg, sim = fresh()
    sim.apply(cart_event(prof=profile(), ts=T0 + 10 * MIN), T0 + 10 * MIN)
    # an older update arrives a minute later: its contents apply, the cart's clock stays at +10 min
    late_items = [{"sku": "X", "name": "Old", "qty": 1, "price": 5.0}]
    assert sim.apply(cart_event(prof=profile(), items=late_items, value=5.0, ts=T0 + 5 * MIN), T0 + 11 * MIN) is None
    actor = reg.cart("demo", "c1")
    assert actor is not None and actor.seen == T0 + 10 * MIN
    assert actor.describe()["items"] == late_items and actor.describe()["value"] == 5.0
    sim.advance(T0 + 40 * MIN - 0.001)
    assert sim.metrics["abandoned"] == 0
    sim.advance(T0 + 40 * MIN)
    assert sim.metrics["abandoned"] == 1 and actor.since == T0 + 40 * MIN


def test_event_from_the_future_is_clamped_to_now() -> None:
    reg, sim = fresh()
    sim.apply(cart_event(prof=profile(), ts=T0 + HOUR))
    actor = reg.cart("demo", "c1")
    assert actor is not None and actor.seen == T0 and actor.due == T0 + 30 * MIN


def test_old_event_abandons_at_the_carts_time() -> None:
    reg, sim = fresh()
    sim.apply(cart_event(prof=profile()), T0)
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1", "ts": T0 - HOUR}, T0 + 5 * MIN)
    actor = reg.cart("demo", "c1")
    assert actor is not None and actor.since == T0  # not an hour back in time


def test_duplicate_events_count_once() -> None:
    reg, sim = fresh()
    sim.apply(cart_event(prof=profile()))
    ended = {"type": "session.ended", "store": "demo", "cart": "c1"}
    sim.apply(ended)
    assert sim.apply(ended, T0 + MIN) is None
    sim.advance(T0 + 2 * HOUR)
    order = {"type": "order.completed", "store": "demo", "cart": "c1", "order": "o", "value": 64.0}
    sim.apply(order)
    assert sim.apply(order, T0 + 3 * HOUR) is None
    assert sim.metrics["abandoned"] == 1 and sim.metrics["recovered"] == 1 and sim.metrics["revenue"] == 64.0
    assert [s[2] for s in sim.sent()] == [1]  # only the 1 h email went out (no push, no whatsapp)


def test_empty_carts_are_never_abandoned() -> None:
    reg, sim = fresh()
    sim.apply(cart_event(prof=profile(), items=[], value=0.0))
    assert sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"}) is None
    assert sim.apply({"type": "payment.failed", "store": "demo", "cart": "c1", "reason": "declined"}) is None
    sim.advance(T0 + 30 * MIN - 1)
    assert reg.carts_by_state()["active"] == 1
    # idle and empty for 30 min: forgotten, never abandoned
    sim.advance(T0 + 3 * DAY)
    assert sim.metrics == {} and len(reg) == 0 and reg.profile("demo", "p1") is None
    # filled, then emptied before the timer fires: nothing is abandoned, and the cart goes away
    sim.apply(cart_event(prof=profile()))
    sim.apply(cart_event(prof=profile(), items=[], value=0.0), sim.now + 10 * MIN)
    assert reg.cart("demo", "c1") is not None
    sim.advance(sim.now + 3 * HOUR)
    assert sim.metrics == {} and len(reg) == 0 and sim.pending() == 0


def test_emptied_during_a_run_pauses_and_leaves_a_tombstone() -> None:
    reg, sim = fresh()
    sim.apply(cart_event(prof=profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.apply(cart_event(prof=profile(), items=[], value=0.0), T0 + 10 * MIN)
    sim.advance(T0 + 40 * MIN)
    tomb = reg.cart("demo", "c1")
    assert tomb is not None and tomb.state is CartState.CLEARED and tomb.run == 1
    assert sim.sent() == [] and sim.metrics == {"abandoned": 1}
    assert tomb.due == T0 + 40 * MIN + 5 * DAY


def test_payment_failed_abandons_now_and_flags() -> None:
    reg, sim = fresh()
    sim.apply(cart_event(prof=profile(), type="checkout.started"))
    sim.apply({"type": "payment.failed", "store": "demo", "cart": "c1", "reason": "card declined"}, T0 + 2 * MIN)
    assert sim.metrics == {"abandoned": 1, "abandoned.payment_failed": 1}
    sim.advance(T0 + 2 * MIN + HOUR)
    intent = sim.sends[0].intent
    assert sim.sent()[0][0] == T0 + 2 * MIN + HOUR
    # high intent and a failed payment raise the priority above a plain cart of the same value
    sim.apply(cart_event("plain", prof=profile("p2")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "plain"})
    sim.advance(sim.now + HOUR)
    assert intent.priority > sim.sends[-1].intent.priority


def test_cleared_cart_is_forgotten() -> None:
    reg, sim = fresh()
    sim.apply(cart_event(prof=profile()))
    sim.apply({"type": "cart.cleared", "store": "demo", "cart": "c1"}, T0 + MIN)
    assert reg.cart("demo", "c1") is None and len(reg) == 0 and reg.profile("demo", "p1") is None
    assert sim.pending() == 0
    # cleared during a run: a contentless tombstone keeps the run counter; and its profile, since the
    # shopper's frequency cap holds for 12 h after the email (forgetting it would lift the cap)
    sim.apply(cart_event(prof=profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(sim.now + 2 * HOUR)
    sim.apply({"type": "cart.cleared", "store": "demo", "cart": "c1"})
    tomb = reg.cart("demo", "c1")
    assert tomb is not None and tomb.state is CartState.CLEARED and tomb.profile == "p1" and tomb.run == 1
    assert tomb.describe()["items"] == [] and reg.profile("demo", "p1") is not None
    # the same cart id comes back: run 2, fresh keys
    sim.apply(cart_event(prof=profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(sim.now + 2 * HOUR)
    keys = [s.intent.key for s in sim.sends]
    assert keys == ["demo:c1:1:1:email", "demo:c1:2:1:email"]


def test_cart_updated_while_queued_cancels_the_send() -> None:
    reg, sim = fresh()
    sim.auto_deliver = False
    sim.apply(cart_event(prof=profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(T0 + HOUR)
    (intent,) = sim.queue
    assert reg.still_wanted(intent, sim.now) is None
    sim.apply(cart_event(prof=profile()))
    assert reg.still_wanted(intent, sim.now) == "cart active again"
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o"})
    assert reg.still_wanted(intent, sim.now) == "cart converted"
    sim.apply(cart_event(prof=profile(email="new@example.com")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    assert reg.still_wanted(intent, sim.now) == "superseded by a newer run"


def test_contact_changes_and_invalidation() -> None:
    reg, sim = fresh()
    sim.auto_deliver = False
    sim.apply(cart_event(prof=profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(T0 + HOUR)
    (intent,) = sim.queue
    sim.apply({"type": "profile.updated", "store": "demo", "profile": {"id": "p1", "email": "other@example.com"}})
    assert reg.still_wanted(intent, sim.now) == "contact changed"
    effects = reg.delivered(intent, "failed", sim.now, detail="550 mailbox other@example.com unknown, call +34 600 111 222",
                            invalidate_contact=True)
    assert effects is not None
    (_, record), = effects
    assert record.outcome == "failed" and record.reason == "550 mailbox <email> unknown, call <number>"
    p = reg.profile("demo", "p1")
    assert p is not None and p.reach("email") == (None, "email address marked undeliverable")
    assert reg.still_wanted(intent, sim.now) == "email address marked undeliverable"
    # a new address clears the mark
    sim.apply({"type": "profile.updated", "store": "demo", "profile": {"id": "p1", "email": "fixed@example.com"}})
    assert p.reach("email") == (None, "email address marked undeliverable")  # a copy: unchanged
    p = reg.profile("demo", "p1")
    assert p is not None and p.reach("email") == ("fixed@example.com", "")


def test_invalid_push_token_stops_push_for_every_cart() -> None:
    reg, sim = fresh()
    sim.outcome_for = lambda intent: "failed" if intent.channel == "push" else "sent"
    sim.apply(cart_event(prof=profile(push="dead-token")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(T0 + 5 * HOUR)
    assert [(s[2], s[3]) for s in sim.sent()] == [(1, "email"), (3, "email")]
    assert ("push", "push token marked invalid") in [(r.channel, r.reason) for r in sim.logs if r.step == 3]


def test_engagement_metrics() -> None:
    reg, _ = fresh()
    assert reg.apply({"type": "message.opened", "store": "demo", "message": "demo:c1:1:3:email"}, T0) == [
        (5, "opened", 1), (5, "opened.step.3", 1), (5, "opened.channel.email", 1),
    ]
    clicked = reg.apply({"type": "message.clicked", "store": "demo", "message": "demo:c:1:2:push"}, T0)
    assert clicked is not None and [m[1] for m in clicked] == ["clicked", "clicked.step.2", "clicked.channel.push"]
    assert reg.apply({"type": "message.opened", "store": "demo", "message": 5}, T0) is None
    # ids this engine never gives are counted, but not per step and channel: a client must not be able to
    # add metric series (and stats entries) without bound
    for made_up in ("x:y:1:1:chan7", "demo:c1:1:1:fax", "demo:c1:1:99:email", "demo:c1:1:\u0661:email",
                    "other:c1:1:1:email", "demo:c1:1:0:email", "demo:c1:x:1:email", "demo:c1:1:1:email}\r",
                    "demo:c1:1:01:email", "demo:c1:1:0003:email", "demo:c1:1:+1:email", "demo:c1:1: 1:email",
                    f"demo:c1:1:{'0' * 5000}1:email"):  # (a step number spelled otherwise: one series each)
        effects = reg.apply({"type": "message.opened", "store": "demo", "message": made_up}, T0)
        assert effects == [(5, "opened", 1)], made_up


def test_unknown_store_gets_default_rules() -> None:
    reg = Registry({}, None)
    sim = Sim(reg, T0)
    sim.apply(cart_event(store="elsewhere", prof=profile(phone="+34600111222")))
    rules = reg.stores["elsewhere"]
    assert rules.timezone == "UTC" and rules.flow.name == "revenue_recovery" and not rules.has_whatsapp
    sim.advance(T0 + 2 * HOUR + 30 * MIN)
    assert [s[3] for s in sim.sent()] == ["email"]
    assert reg.cart("elsewhere", "c1").store is rules  # type: ignore[union-attr]
    # a configured default template is copied per store id
    template = StoreRules("tmpl", timezone="Europe/Madrid", credits=5)
    reg2 = Registry({}, None, default_store=template)
    assert reg2.rules("x").timezone == "Europe/Madrid" and reg2.rules("x").credits == 5 and reg2.rules("x").id == "x"


def test_an_unknown_stores_rules_are_forgotten_with_the_last_of_its_carts_and_profiles() -> None:
    """Each made-up store id gets a copy of the default rules (~1 KB): it goes when nothing is left of the
    store (no cart, no profile, the default's credits), not forever."""
    reg = Registry({"demo": StoreRules("demo")}, None)
    sim = Sim(reg, T0)
    for i in range(50):
        sim.apply(cart_event(f"c{i}", store=f"ghost{i}", prof=profile(f"p{i}")))
    sim.apply(cart_event("c1", store="cleared", prof="p1"))
    sim.apply({"type": "cart.cleared", "store": "cleared", "cart": "c1"})  # never ran a flow: gone at once
    assert "cleared" not in reg.stores and len(reg.stores) == 51
    sim.apply({"type": "profile.updated", "store": "lonely", "profile": {"id": "p", "email": "p@example.test"}})
    sim.apply({"type": "message.opened", "store": "nowhere", "message": "nowhere:c1:1:1:email"})
    sim.advance(T0 + 10 * DAY)  # every run expired and every tombstone's attribution window passed
    assert len(reg) == 0 and reg.statistics()["profiles"] == 1
    assert set(reg.stores) == {"demo", "lonely"}  # configured, or with a profile left
    sim.apply(cart_event("c1", store="ghost1", prof=profile("p1")))  # the store comes back: rules again
    sim.apply({"type": "session.ended", "store": "ghost1", "cart": "c1"})
    sim.advance(sim.now + 2 * HOUR)
    assert reg.cart("ghost1", "c1").store is reg.stores["ghost1"]  # type: ignore[union-attr]
    assert sim.sent()[-1][2:] == (1, "email")
    # credits other than the default's (spent) are kept with the rules
    limited = Registry({}, None, default_store=StoreRules("tmpl", credits=5))
    sim = Sim(limited, T0)
    sim.apply(cart_event("c1", store="spent", prof=profile()))
    sim.apply(cart_event("c1", store="unspent"))
    sim.advance(T0 + 10 * DAY)
    assert len(limited) == 0 and set(limited.stores) == {"spent"} and limited.stores["spent"].credits == 1  # 4 emails


def test_events_for_unknown_carts_are_ignored() -> None:
    reg, _ = fresh()
    for etype in ("session.ended", "payment.failed", "cart.cleared"):
        assert reg.apply({"type": etype, "store": "demo", "cart": "nope"}, T0) is None
    assert len(reg) == 0


def test_an_order_that_overtakes_its_carts_updates_stops_them_starting_a_flow() -> None:
    """``order.completed`` before the cart's first update (the order overtook it, or the update was
    late): the order is remembered, so the older update does not start a flow after the purchase."""
    reg, sim = fresh()
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o1", "value": 64.0,
               "ts": T0 + 10 * MIN}, T0 + 10 * MIN)
    tomb = reg.cart("demo", "c1")
    assert tomb is not None and tomb.state is CartState.CONVERTED and reg.carts_by_state()["converted"] == 1
    assert sim.metrics == {}  # not a conversion of a cart the engine knew
    sim.apply(cart_event(prof=profile(), ts=T0), T0 + 11 * MIN)  # stamped before the order
    sim.advance(T0 + 3 * DAY)
    assert sim.sent() == []
    sim.apply(cart_event(prof=profile()), sim.now)  # a new session after the purchase starts afresh
    sim.advance(sim.now + 2 * HOUR)
    assert [s[3] for s in sim.sent()] == ["email"]
    sim.advance(sim.now + 7 * DAY)
    assert reg.cart("demo", "c1") is None and sim.pending() == 0


def test_a_late_update_after_a_purchase_before_any_abandonment_sends_nothing() -> None:
    reg, sim = fresh()
    sim.apply(cart_event(prof=profile(), ts=T0), T0)
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o1", "value": 64.0,
               "ts": T0 + 10 * MIN}, T0 + 10 * MIN)
    sim.apply(cart_event(prof=profile(), ts=T0 + 5 * MIN), T0 + 11 * MIN)  # stamped before the order
    sim.advance(T0 + 3 * DAY)
    assert sim.sent() == [] and sim.metrics == {"converted": 1}


def test_profile_switch_moves_references() -> None:
    reg, sim = fresh()
    sim.apply(cart_event(prof={"id": "guest-1", "email": "g@example.com", "consent": {"email": True}}))
    sim.apply(cart_event(prof="known-7"))
    actor = reg.cart("demo", "c1")
    assert actor is not None and actor.profile == "known-7"
    assert reg.profile("demo", "guest-1") is None and reg.profile("demo", "known-7").refs == 1  # type: ignore[union-attr]
    # a profile map without an id is private to its cart
    sim.apply(cart_event("c2", prof={"email": "anon@example.com", "consent": {"email": True}}))
    assert reg.cart("demo", "c2").profile == "~c2"  # type: ignore[union-attr]


def test_carts_by_state_and_repr() -> None:
    reg, sim = fresh()
    for cart in ("a", "b", "c"):
        sim.apply(cart_event(cart, prof=profile(cart)))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "b"})
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c"})
    sim.advance(T0 + 20 * MIN)
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c", "order": "o"})
    assert reg.carts_by_state() == {
        "active": 1, "abandoned": 1, "recovering": 0, "recovered": 0, "converted": 1, "expired": 0, "cleared": 0,
    }
    assert len(reg) == 3
    assert repr(reg) == "<Registry carts=3 active=1 abandoned=1 converted=1>"
    assert sorted(a.cart for a in reg) == ["a", "b", "c"]
    assert repr(reg.cart("demo", "a")).startswith("<CartActor demo/a active run=0 due=")


def test_snapshot_round_trip_continues_identically() -> None:
    store = {"timezone": "Europe/Madrid", "whatsapp": {"phone_number_id": "1", "token": "t"}, "credits": 10,
             "incentive": {"kind": "free_shipping"}}

    def scenario(split: bool) -> list[tuple[float, int, int, str]]:
        reg = make_registry({"demo": store})
        start = at("2024-05-15 20:00", "Europe/Madrid")
        sim = Sim(reg, start)
        sim.apply(cart_event("A", prof=profile("p", phone="+34600111222", push="t")))
        sim.apply(cart_event("B", prof="p"))
        sim.apply({"type": "session.ended", "store": "demo", "cart": "A"})
        sim.advance(start + 3 * HOUR)  # A has a WhatsApp send held until 09:00, and a last message
        if split:
            carts = [msgpack.unpackb(msgpack.packb(a.to_state())) for a in reg]
            profiles = [(s, msgpack.unpackb(msgpack.packb(p.to_state()))) for s, p in reg.profiles()]
            a_state = [s for s in carts if s[1] == "A"][0]
            assert a_state[11] and a_state[12]  # held sends and attribution data are in the snapshot
            old_sends = sim.sends
            reg = make_registry({"demo": store})
            reg.stores["demo"].credits = 10 - 1
            sim = Sim(reg, sim.now)
            sim.sends = old_sends
            for s, p in profiles:
                reg.load_profile(s, p)
            for c in carts:
                sim.run(reg.load_cart(c))
            assert reg.profile("demo", "p").refs == 2  # type: ignore[union-attr]
        sim.advance(start + 3 * DAY)
        sim.apply({"type": "order.completed", "store": "demo", "cart": "A", "order": "o", "value": 1.0})
        assert sim.metrics["recovered"] == 1
        return sim.sent()

    assert scenario(split=True) == scenario(split=False)


def test_actor_and_profile_state_round_trip() -> None:
    rules = StoreRules("demo")
    p = Profile("p1")
    assert p.update(profile("p1", phone="+1555", push={"endpoint": "https://push", "keys": {"a": 1}}))
    assert not p.update({"id": "p1", "phone": "+1555", "consent": {"sms": True}})
    p.record_send("email", "c1", 12.5)
    p.mark_invalid("sms")
    p2 = Profile.from_state(msgpack.unpackb(msgpack.packb(p.to_state())))
    assert p2.to_state() == p.to_state() and p2.reach("push")[0] == '{"endpoint":"https://push","keys":{"a":1}}'
    assert p2.reach("sms") == (None, "phone number marked undeliverable by sms") and p2.caps == {"email": (12.5, "c1")}
    rules.profiles.put(p2)
    assert rules.profiles.get("p1").to_state() == p.to_state()  # type: ignore[union-attr]
    actor = CartActor(rules, "c1", "p1", 100.0)
    actor.handle(cart_event(prof=None, type="checkout.started"), 100.0)
    actor.hold(5000.0, 2, "whatsapp")
    actor.touch = (1, 1, "email", 4000.0)
    state = msgpack.unpackb(msgpack.packb(actor.to_state()))
    back = CartActor.from_state(state, rules)
    assert back.to_state() == actor.to_state()
    assert back.describe()["high_intent"] is True
    reg = Registry({"demo": rules})
    effects = reg.load_cart(state)
    assert effects is not None and effects[0][0] is SCHEDULE and effects[0][2] == 1900.0


def test_a_late_or_resent_update_does_not_reopen_a_cart_in_a_run_or_final() -> None:
    """An update stamped in the past and no newer than what the cart saw is old news for a cart in a run:
    the run goes on (a client re-sending events after a restart must not start run 2)."""
    reg, sim = fresh()
    first = cart_event(prof=profile(), ts=T0)
    sim.apply(first, T0)
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"}, T0 + MIN)
    actor = reg.cart("demo", "c1")
    assert actor is not None and actor.state is CartState.ABANDONED and actor.run == 1
    sim.apply(dict(first), T0 + 2 * HOUR)  # the same event again, hours later
    sim.apply(cart_event(prof=profile(), ts=T0 - MIN), T0 + 2 * HOUR)  # an older one, late
    assert actor.state is not CartState.ACTIVE and actor.run == 1 and actor.seen == T0 + MIN
    sends_before = len(sim.sends)
    sim.advance(T0 + 3 * DAY)
    assert len(sim.sends) > sends_before  # the flow went on
    # new activity (stamped now) does reopen it, and a purchase is not undone by a late update
    sim.apply(cart_event(prof=profile()), sim.now)
    assert actor.state is CartState.ACTIVE
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o"}, sim.now + MIN)
    bought = reg.cart("demo", "c1")
    assert bought is not None and bought.state in (CartState.CONVERTED, CartState.RECOVERED)
    sim.apply(cart_event(prof=profile(), ts=T0), sim.now + MIN)
    assert bought.state in (CartState.CONVERTED, CartState.RECOVERED)


def test_a_late_copy_of_an_old_update_does_not_undo_an_opt_out() -> None:
    """The opt-out at +40 min is newer than the consent a late copy of the first update carries (its time
    is +0): the copy must not give consent back, for this cart or another of the shopper's."""
    reg, sim = fresh()
    sim.apply(cart_event(prof=profile(push="tok-1"), ts=T0), T0)
    sim.apply({"type": "profile.updated", "store": "demo",
               "profile": {"id": "p1", "consent": {"email": False}}}, T0 + 40 * MIN)
    sim.apply(cart_event(prof=profile(push="tok-1"), ts=T0), T0 + 45 * MIN)  # the first update again, late
    sim.apply(cart_event("c2", prof=profile(push="tok-1"), ts=T0 + 20 * MIN), T0 + 46 * MIN)  # another cart, older map
    sim.advance(T0 + 3 * DAY)
    assert [s for s in sim.sent() if s[3] == "email"] == [], sim.sent()
    assert [s for s in sim.sent() if s[3] == "push"] != []  # what the opt-out did not touch still goes
    p1 = reg.profile("demo", "p1")
    assert p1 is not None and p1.consent == 2 | 4 | 8 and p1.consent_at == int((T0 + 40 * MIN) * 1000)


def test_a_consent_given_again_later_is_applied() -> None:
    reg, sim = fresh()
    sim.apply(cart_event(prof=profile(), ts=T0), T0)
    sim.apply({"type": "profile.updated", "store": "demo",
               "profile": {"id": "p1", "consent": {"email": False}}, "ts": T0 + 5 * MIN}, T0 + 5 * MIN)
    sim.apply({"type": "profile.updated", "store": "demo",
               "profile": {"id": "p1", "consent": {"email": True}}, "ts": T0 + 10 * MIN}, T0 + 10 * MIN)
    sim.advance(T0 + 2 * HOUR)
    assert [s for s in sim.sent() if s[3] == "email"] != []
    # stored and restored with its time: a snapshot's record keeps the layout (9 fields, consent an int)
    p1 = reg.profile("demo", "p1")
    assert p1 is not None
    again = Profile.from_state(p1.to_state())
    assert (again.consent, again.consent_at) == (p1.consent, p1.consent_at) == (1 | 2 | 4 | 8, int((T0 + 10 * MIN) * 1000))


def test_a_profile_stated_by_profile_updated_outlives_its_first_cart() -> None:
    """The shop states the shopper's consents once (profile.updated) and then refers to them by id. Their
    first cart is bought at once; their second is abandoned: its email goes. (The profile used to go with
    the first cart, refs 0, and the id alone made a new empty one: "no email consent".)"""
    reg, sim = fresh()
    sim.apply({"type": "profile.updated", "store": "demo", "profile": profile("p1")})
    sim.apply(cart_event("c1", prof="p1"))
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o1", "value": 64.0})
    sim.apply(cart_event("c2", prof="p1"), T0 + DAY)
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c2"})
    sim.advance(T0 + DAY + 2 * HOUR)
    assert [(r.cart, r.channel, r.outcome) for r in sim.logs if r.channel == "email"] == [("c2", "email", "sent")]
