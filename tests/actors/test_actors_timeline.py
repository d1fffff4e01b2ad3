"""Recovery timelines on a manual clock: the exact virtual send time of every message."""
from __future__ import annotations

import re

from actorsim import DAY, HOUR, MIN, Sim, at, cart_event, make_registry, profile

from actors import CartState

MADRID = "Europe/Madrid"
WA = {"phone_number_id": "1055501", "token": "tok"}
PHONE = "+34600111222"


def demo_store(**extra: object) -> dict[str, object]:
    table: dict[str, object] = {
        "timezone": MADRID, "whatsapp": WA, "incentive": {"kind": "discount", "percent": 10, "code_prefix": "BACK"},
    }
    table.update(extra)
    return table


def full_profile(pid: str = "p1", **kw: object) -> dict[str, object]:
    return profile(pid, phone=PHONE, push="push-token-1", **kw)  # type: ignore[arg-type]


def test_full_revenue_recovery_run() -> None:
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 10:00", MADRID)  # a Wednesday
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    abandoned = t0 + 30 * MIN
    sim.advance(abandoned - 1)
    assert sim.metrics["abandoned"] == 0
    sim.advance(abandoned + 100 * HOUR)
    assert sim.sent() == [
        (abandoned + 1 * HOUR, 1, 1, "email"),
        (abandoned + 1 * HOUR, 1, 1, "push"),
        (abandoned + 90 * MIN, 1, 2, "whatsapp"),
        (abandoned + 4 * HOUR, 1, 3, "email"),
        (abandoned + 4 * HOUR, 1, 3, "push"),
        (abandoned + 24 * HOUR, 1, 4, "email"),
        (abandoned + 24 * HOUR, 1, 4, "push"),
        (abandoned + 40 * HOUR, 1, 5, "email"),
        (abandoned + 40 * HOUR, 1, 5, "push"),
    ]
    intents = [s.intent for s in sim.sends]
    assert [i.key for i in intents[:3]] == ["demo:c1:1:1:email", "demo:c1:1:1:push", "demo:c1:1:2:whatsapp"]
    assert [i.template for i in intents[::2]] == ["reminder", "reminder", "incentive", "resend", "final"][: len(intents[::2])]
    incentives = [i.incentive for i in intents]
    assert incentives[3] == incentives[4]
    assert incentives[3] is not None and incentives[3]["kind"] == "discount" and incentives[3]["percent"] == 10.0
    assert re.fullmatch(r"BACK-[A-Z2-7]{10}", incentives[3]["code"])
    assert [i for n, i in enumerate(incentives) if n not in (3, 4)] == [None] * 7
    assert intents[0].contact == "ann@example.com" and intents[2].contact == PHONE
    assert intents[0].value == 64.0 and intents[0].currency == "EUR" and intents[0].locale == "es-ES"
    # urgency falls with elapsed time for the same cart
    assert intents[0].priority > intents[5].priority > intents[7].priority > 0
    assert sim.metrics == {"abandoned": 1, "expired": 1}
    actor = reg.cart("demo", "c1")
    assert actor is not None and actor.state is CartState.EXPIRED and actor.due == abandoned + 48 * HOUR + 5 * DAY
    # the expiry happened at exactly 48 h: one second before, the run was still on
    assert reg.carts_by_state()["expired"] == 1
    sim.advance(abandoned + 48 * HOUR + 5 * DAY)
    assert len(reg) == 0 and reg.profile("demo", "p1") is None


def test_expiry_is_exactly_48h_after_abandonment() -> None:
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(t0 + 48 * HOUR - 0.001)
    assert reg.carts_by_state()["recovering"] == 1 and sim.metrics["expired"] == 0
    sim.advance(t0 + 48 * HOUR)
    assert reg.carts_by_state()["expired"] == 1 and sim.metrics["expired"] == 1


def test_cart_updates_cost_no_timer_effect() -> None:
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0)
    assert sim.apply(cart_event(prof=full_profile())) is not None  # the first update arms the one timer
    for minutes in (5, 10, 20):
        assert sim.apply(cart_event(prof=full_profile(), value=64.0 + minutes), t0 + minutes * MIN) is None
    assert sim.timer_effects == 1
    # the timer fires at t0+30m (early), re-arms for the remainder, abandonment at 20m + 30m
    sim.advance(t0 + 49 * MIN)
    assert sim.fired == 1 and sim.metrics["abandoned"] == 0
    actor = reg.cart("demo", "c1")
    assert actor is not None and actor.due == t0 + 50 * MIN
    sim.advance(t0 + 50 * MIN)
    assert sim.metrics["abandoned"] == 1 and actor.since == t0 + 50 * MIN


def test_purchase_at_2h_stops_everything_and_attributes_to_the_1h_email() -> None:
    reg = make_registry({"demo": {"timezone": MADRID}})  # no WhatsApp configured
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"}, t0 + 1 * MIN)
    abandoned = t0 + 1 * MIN
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o-1", "value": 80.0}, abandoned + 2 * HOUR)
    sim.advance(abandoned + 10 * DAY)
    assert sim.sent() == [(abandoned + HOUR, 1, 1, "email"), (abandoned + HOUR, 1, 1, "push")]
    assert sim.logged("skipped") == [(abandoned + 90 * MIN, 2, "whatsapp", "store has no WhatsApp configured")]
    assert sim.metrics == {
        "abandoned": 1, "recovered": 1, "revenue": 80.0, "recovered.step.1": 1, "recovered.channel.email": 1,
        "revenue.step.1": 80.0, "revenue.channel.email": 80.0, "revenue.currency.EUR": 80.0,
    }
    assert len(reg) == 0  # the tombstone went after the attribution window


def test_purchase_before_any_message_is_converted_not_recovered() -> None:
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    sim.advance(t0 + 30 * MIN + 45 * MIN)  # abandoned, first step not yet due
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o-1", "value": 64.0})
    sim.advance(t0 + 5 * DAY)
    assert sim.sent() == []
    assert sim.metrics == {"abandoned": 1, "converted": 1}
    # bought while still active: converted; a contentless tombstone until the attribution window ends
    sim.apply(cart_event("c2", prof=full_profile()))
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c2", "order": "o-2"}, sim.now + 10 * MIN)
    tomb = reg.cart("demo", "c2")
    assert sim.metrics["converted"] == 2 and tomb is not None and tomb.state is CartState.CONVERTED
    assert tomb.profile is None and tomb.describe()["items"] == []
    sim.advance(sim.now + 5 * DAY + MIN)
    assert reg.cart("demo", "c2") is None and sim.sent() == []


def test_opt_out_mid_run_applies_to_every_cart_of_the_profile() -> None:
    steps = [{"after": "1h", "channels": ["email", "push"]}, {"after": "4h", "channels": ["email", "push"]}]
    reg = make_registry({"demo": {"timezone": MADRID, "flow": "nocap"}}, {"nocap": {"frequency_cap": 0, "steps": steps}})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0)
    for cart in ("c1", "c2"):
        sim.apply(cart_event(cart, prof=full_profile()))
        sim.apply({"type": "session.ended", "store": "demo", "cart": cart})
    sim.apply({"type": "profile.updated", "store": "demo", "profile": {"id": "p1", "consent": {"email": False}}}, t0 + 2 * HOUR)
    sim.advance(t0 + 5 * HOUR)
    sent = sim.sent()
    assert (t0 + HOUR, 1, 1, "email") in sent
    assert sent.count((t0 + HOUR, 1, 1, "email")) == 2
    after = [s for s in sent if s[0] > t0 + 2 * HOUR]
    # c1 and c2 at 4h: push only
    assert after == [(t0 + 4 * HOUR, 1, 2, "push"), (t0 + 4 * HOUR, 1, 2, "push")]
    assert [(r.cart, r.channel, r.reason) for r in sim.logs if r.outcome == "skipped"] == [
        ("c1", "email", "no email consent"), ("c2", "email", "no email consent"),
    ]


def test_opt_out_cancels_a_queued_message() -> None:
    reg = make_registry({"demo": {"timezone": MADRID}})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0, auto_deliver=False)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(t0 + HOUR)
    assert [i.channel for i in sim.queue] == ["email", "push"]
    sim.apply({"type": "profile.updated", "store": "demo", "profile": {"id": "p1", "consent": {"email": False}}})
    sim.flush()
    assert [(s.intent.channel, s.outcome) for s in sim.sends] == [("email", "cancelled"), ("push", "sent")]
    assert [r.reason for r in sim.logs if r.outcome == "cancelled"] == ["consent withdrawn"]


def test_no_consent_or_no_phone_is_skipped_with_reason() -> None:
    reg = make_registry({"demo": demo_store(), "nowa": {"timezone": MADRID}})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0)
    sim.apply(cart_event("no-phone", prof=profile("a")))
    sim.apply(cart_event("no-consent", prof=profile("b", phone=PHONE, consent={"email": True, "whatsapp": False})))
    sim.apply(cart_event("no-store-wa", store="nowa", prof=profile("c", phone=PHONE)))
    for store, cart in (("demo", "no-phone"), ("demo", "no-consent"), ("nowa", "no-store-wa")):
        sim.apply({"type": "session.ended", "store": store, "cart": cart})
    sim.advance(t0 + 2 * HOUR)
    skipped = {(r.cart, r.channel): r.reason for r in sim.logs if r.outcome == "skipped"}
    assert skipped == {
        ("no-phone", "push"): "no push subscription",
        ("no-phone", "whatsapp"): "no phone number",
        ("no-consent", "push"): "no push consent",
        ("no-consent", "whatsapp"): "no whatsapp consent",
        ("no-store-wa", "push"): "no push subscription",
        ("no-store-wa", "whatsapp"): "store has no WhatsApp configured",
    }
    assert all("@" not in r.reason and "600" not in r.reason for r in sim.logs)


def test_credits_run_out_mid_run() -> None:
    reg = make_registry({"demo": {"timezone": MADRID, "credits": 2}})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(t0 + 3 * DAY)
    emails = [s for s in sim.sent() if s[3] == "email"]
    assert emails == [(t0 + HOUR, 1, 1, "email"), (t0 + 4 * HOUR, 1, 3, "email")]
    assert [s[2] for s in sim.sent() if s[3] == "push"] == [1, 3, 4, 5]
    no_credit = [(a, step) for (a, step, ch, r) in sim.logged("skipped") if r == "no email credits left"]
    assert no_credit == [(t0 + 24 * HOUR, 4), (t0 + 40 * HOUR, 5)]
    assert reg.stores["demo"].credits == 0


def test_cancelled_email_gives_its_credit_back() -> None:
    reg = make_registry({"demo": {"timezone": MADRID, "credits": 1}})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0, auto_deliver=False)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(t0 + HOUR)
    assert reg.stores["demo"].credits == 0
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o"})
    sim.flush()
    assert {s.outcome for s in sim.sends} == {"cancelled"}
    assert reg.stores["demo"].credits == 1


def test_update_during_recovery_pauses_the_run_and_the_next_abandonment_resumes_it() -> None:
    """DESIGN.md: "a cart that was in recovery returns to active (the flow pauses)". The shopper back
    after the first reminder does not get it a second time when they leave again: the next run goes on
    with the next step, as far from the new abandonment as the flow puts it from the last one sent."""
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 10:00", MADRID)  # a Wednesday, inside the WhatsApp window
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.apply(cart_event(prof=full_profile(), value=90.0), t0 + 70 * MIN)  # back while the run is on
    actor = reg.cart("demo", "c1")
    assert actor is not None and actor.state is CartState.ACTIVE and actor.describe()["paused"] is True
    sim.advance(t0 + 70 * MIN + 30 * MIN + 50 * HOUR)
    second = t0 + 100 * MIN  # 30 min idle after the update: abandoned again
    start = second - HOUR  # the run's clock resumes at the last step sent (1 h)
    assert sim.sent() == [
        (t0 + HOUR, 1, 1, "email"), (t0 + HOUR, 1, 1, "push"),
        (start + 90 * MIN, 2, 2, "whatsapp"),
        (start + 4 * HOUR, 2, 3, "email"), (start + 4 * HOUR, 2, 3, "push"),
        (start + 24 * HOUR, 2, 4, "email"), (start + 24 * HOUR, 2, 4, "push"),
        (start + 40 * HOUR, 2, 5, "email"), (start + 40 * HOUR, 2, 5, "push"),
    ]
    keys = [s.intent.key for s in sim.sends]
    assert len(set(keys)) == len(keys) and keys[2] == "demo:c1:2:2:whatsapp"
    assert sim.sends[2].intent.value == 90.0  # the contents of the update
    assert sim.metrics["abandoned"] == 1 and sim.metrics["resumed"] == 1 and actor.run == 2
    assert sim.metrics["expired"] == 1 and actor.state is CartState.EXPIRED
    assert not actor.describe()["paused"]


def test_a_run_paused_before_its_first_message_went_out_starts_over() -> None:
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.apply(cart_event(prof=full_profile()), t0 + 20 * MIN)
    sim.advance(t0 + 20 * MIN + 30 * MIN + 2 * HOUR)
    again = t0 + 50 * MIN
    assert sim.sent() == [
        (again + HOUR, 2, 1, "email"), (again + HOUR, 2, 1, "push"), (again + 90 * MIN, 2, 2, "whatsapp"),
    ]
    assert sim.metrics["abandoned"] == 1 and sim.metrics["resumed"] == 1


def test_a_message_cancelled_in_its_queue_by_the_shoppers_return_is_sent_in_the_resumed_run() -> None:
    """Step 1 issued, still queued when the shopper comes back (cancelled: "cart active again"): nothing
    went out, so the resumed run starts with step 1 again, under its own key."""
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0, auto_deliver=False)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(t0 + HOUR)  # step 1 issued, not delivered yet
    sim.apply(cart_event(prof=full_profile()), t0 + HOUR + MIN)
    sim.flush()  # the queued messages meet still_wanted: cancelled
    sim.advance(t0 + 3 * HOUR)
    again = t0 + 91 * MIN
    sim.flush()
    assert [(s.intent.key, s.outcome) for s in sim.sends] == [
        ("demo:c1:1:1:email", "cancelled"), ("demo:c1:1:1:push", "cancelled"),
        ("demo:c1:2:1:email", "sent"), ("demo:c1:2:1:push", "sent"),
    ]
    assert [s.intent.created_at for s in sim.sends[2:]] == [again + HOUR] * 2


def test_resumed_steps_keep_the_flow_spacing_from_the_last_message_sent() -> None:
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 19:00", MADRID)
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})  # abandoned 19:00
    sim.advance(t0 + 2 * HOUR)  # 20:00 email + push; 20:30 WhatsApp: inside the window, sent
    # paused at 21:10 with step 3 (23:00) pending; abandoned again at 21:40, 2 h 30 before step 3's turn
    sim.apply(cart_event(prof=full_profile()), t0 + 2 * HOUR + 10 * MIN)
    sim.advance(t0 + 60 * HOUR)
    again = t0 + 2 * HOUR + 40 * MIN  # 21:40
    start = again - 90 * MIN  # last message sent: the WhatsApp one at 1 h 30
    assert [s for s in sim.sent() if s[2] >= 3] == [
        (start + 4 * HOUR, 2, 3, "email"), (start + 4 * HOUR, 2, 3, "push"),
        (start + 24 * HOUR, 2, 4, "email"), (start + 24 * HOUR, 2, 4, "push"),
        (start + 40 * HOUR, 2, 5, "email"), (start + 40 * HOUR, 2, 5, "push"),
    ]
    assert len(sim.sent()) == 9 and sim.logged("cancelled") == []


def test_a_postponed_whatsapp_send_is_postponed_again_in_the_resumed_run() -> None:
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 20:00", MADRID)
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})  # abandoned 20:00
    sim.advance(t0 + 100 * MIN)  # 21:00 email + push; 21:30 WhatsApp postponed to 09:00 tomorrow
    assert [(step, ch) for _, step, ch, _ in sim.logged("postponed")] == [(2, "whatsapp")]
    sim.apply(cart_event(prof=full_profile()), t0 + 2 * HOUR)  # 22:00: back
    sim.advance(t0 + 3 * DAY)  # abandoned again at 22:30: step 2 at 23:00, postponed again
    assert sim.logged("cancelled") == [(t0 + 2 * HOUR, 2, "whatsapp", "cart active again")]
    assert [s for s in sim.sent() if s[3] == "whatsapp"] == [(at("2024-05-16 09:00", MADRID), 2, 2, "whatsapp")]
    assert [s[2] for s in sim.sent()] == [1, 1, 3, 3, 2, 4, 4, 5, 5]  # step 3 at 01:30, before the window


def test_a_run_paused_until_it_would_have_expired_is_over_and_a_new_run_starts() -> None:
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(t0 + 70 * MIN)  # step 1 sent
    for k in range(1, 145):  # the shopper keeps the cart busy for two days
        sim.apply(cart_event(prof=full_profile()), t0 + 55 * MIN + k * 20 * MIN)
    again = t0 + 55 * MIN + 48 * HOUR + 30 * MIN
    sim.advance(again + 2 * HOUR)
    assert sim.sent()[2:4] == [(again + HOUR, 2, 1, "email"), (again + HOUR, 2, 1, "push")]  # step 1 again
    assert sim.metrics["abandoned"] == 2 and "resumed" not in sim.metrics


def test_four_touch_end_to_end() -> None:
    reg = make_registry({"shop": {"flow": "four_touch", "timezone": "UTC"}})
    t0 = at("2024-05-15 10:00")
    sim = Sim(reg, t0)
    sim.apply(cart_event(store="shop", prof=full_profile()))
    abandoned = t0 + 30 * MIN
    sim.advance(abandoned + 11 * DAY - 1)
    assert sim.metrics["expired"] == 0
    sim.advance(abandoned + 12 * DAY)
    assert sim.sent() == [
        (abandoned + 1 * DAY, 1, 1, "sms"),
        (abandoned + 3 * DAY, 1, 2, "email"),
        (abandoned + 7 * DAY, 1, 3, "email"),
        (abandoned + 10 * DAY, 1, 4, "sms"),
    ]
    assert [s.intent.template for s in sim.sends] == ["reminder", "reminder", "urgency", "final"]
    assert sim.metrics["expired"] == 1
    tomb = reg.cart("shop", "c1")
    assert tomb is not None and tomb.due == abandoned + 11 * DAY + 5 * DAY
    sim.advance(abandoned + 16 * DAY)
    assert len(reg) == 0


def test_late_order_on_expired_cart_is_still_attributed() -> None:
    reg = make_registry({"demo": {"timezone": MADRID}})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o", "value": 10.0}, t0 + 3 * DAY)
    assert sim.metrics["recovered"] == 1 and sim.metrics["recovered.step.5"] == 1
    # beyond the window (5 days after the 40 h message) an order is a plain conversion
    sim.apply(cart_event("c2", prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c2"})
    start = sim.now
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c2", "order": "o2"}, start + 40 * HOUR + 5 * DAY + 1)
    assert sim.metrics["converted"] == 1


def test_a_late_order_is_attributed_to_the_last_message_before_it() -> None:
    """DESIGN.md: "if any recovery message went out, the cart is *recovered* and the order is attributed
    to the last message". The 1 h email goes out, the shopper buys at 1 h 20 min, and the shop's order
    event arrives at 2 h, after the 1 h 30 min WhatsApp went out: recovered, credited to the email."""
    reg = make_registry({"demo": {"timezone": "UTC", "whatsapp": WA}})
    t0 = at("2024-05-15 10:00")
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=profile(phone=PHONE)))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(t0 + 2 * HOUR)
    assert [(w - t0, step, ch) for (w, _, step, ch) in sim.sent()] == [(HOUR, 1, "email"), (1.5 * HOUR, 2, "whatsapp")]
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o1", "value": 64.0,
               "ts": t0 + HOUR + 20 * MIN})
    assert sim.metrics["recovered"] == 1 and sim.metrics["recovered.step.1"] == 1, dict(sim.metrics)
    assert sim.metrics["recovered.channel.email"] == 1 and "converted" not in sim.metrics
    # the same, bought before the first message: a conversion
    sim.apply(cart_event("c2", prof=profile("p2", phone=PHONE)))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c2"})
    t2 = sim.now
    sim.advance(t2 + 2 * HOUR)
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c2", "order": "o2", "ts": t2 + 50 * MIN})
    assert sim.metrics["converted"] == 1 and sim.metrics["recovered"] == 1


def test_with_a_6h_whatsapp_delay_the_whatsapp_step_is_the_last_message() -> None:
    """``whatsapp_delay = "6h"`` sends step 2 after step 3: an order after it is attributed to it (the
    last message), not to the 4 h email because 3 > 2."""
    reg = make_registry({"demo": {"timezone": "UTC", "whatsapp": WA, "whatsapp_delay": "6h"}})
    t0 = at("2024-05-15 08:00")
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=profile(phone=PHONE)))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(t0 + 7 * HOUR)
    assert [(w - t0, step, ch) for (w, _, step, ch) in sim.sent()] == [
        (HOUR, 1, "email"), (4 * HOUR, 3, "email"), (6 * HOUR, 2, "whatsapp")]
    sim.apply({"type": "order.completed", "store": "demo", "cart": "c1", "order": "o1", "value": 64.0})
    assert sim.metrics["recovered.step.2"] == 1 and sim.metrics["recovered.channel.whatsapp"] == 1, dict(sim.metrics)


def test_late_timers_send_late_but_keep_the_schedule() -> None:
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 10:00", MADRID) + 0.05  # not on a 100 ms tick
    sim = Sim(reg, t0, tick_s=0.1)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(t0 + 5 * HOUR)
    for (when, _, step, _), after in zip(sim.sent(), (1, 1, 1.5, 4, 4), strict=True):
        assert 0 <= when - (t0 + after * HOUR) < 0.1, step


def test_timers_after_downtime_fire_in_order_at_restart() -> None:
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    restart = t0 + 3 * HOUR
    sim.advance(restart, down_until=restart)  # down from t0 to t0+3h: every timer fires at the restart
    abandoned = t0 + 30 * MIN
    assert reg.cart("demo", "c1").since == abandoned  # type: ignore[union-attr]
    assert sim.sent() == [(restart, 1, 1, "email"), (restart, 1, 1, "push"), (restart, 1, 2, "whatsapp")]
    sim.advance(abandoned + 4 * HOUR)
    assert sim.sent()[3:] == [(abandoned + 4 * HOUR, 1, 3, "email"), (abandoned + 4 * HOUR, 1, 3, "push")]


def test_timers_firing_a_hair_early_do_not_spin() -> None:
    # A wheel's seconds->ticks->seconds rounding may fire a timer a fraction of a us early. The cart must
    # treat that as due (a re-arm for the remainder would fire again at once, forever, on a manual clock); a
    # window or frequency cap that opens at exactly that due time must count as open.
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 20:00", MADRID)  # WhatsApp postponed to 09:00 the next day
    sim = Sim(reg, t0, early_s=5e-7)  # two float ulps at this magnitude
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(t0 + 60 * HOUR)
    assert [(round(w - t0, 3), step, ch) for (w, _, step, ch) in sim.sent()] == [
        (HOUR, 1, "email"), (HOUR, 1, "push"), (4 * HOUR, 3, "email"), (4 * HOUR, 3, "push"),
        (round(at("2024-05-16 09:00", MADRID) - t0, 3), 2, "whatsapp"),
        (24 * HOUR, 4, "email"), (24 * HOUR, 4, "push"), (40 * HOUR, 5, "email"), (40 * HOUR, 5, "push"),
    ]
    assert sim.fired == 7  # 1h, 1h30 (postponed), 4h, 09:00, 24h, 40h, 48h: no re-arm loops
    assert sim.metrics["expired"] == 1


def test_a_resumed_run_paused_again_before_its_next_message_resumes_again() -> None:
    """Back after the 1 h reminder, gone again (run 2 resumes after it), back once more before run 2's
    first message and gone again: run 3 goes on after the 1 h reminder too. The paused run sent nothing
    itself, but it is the same recovery attempt, whose last message is run 1's: the shopper must not get
    the 1 h reminder (and then the incentive email) a second time."""
    reg = make_registry({"demo": demo_store()})
    t0 = at("2024-05-15 10:00", MADRID)  # a Wednesday, inside the WhatsApp window
    sim = Sim(reg, t0)
    sim.apply(cart_event(prof=full_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(t0 + 70 * MIN)  # step 1 sent at 11:00
    sim.apply(cart_event(prof=full_profile()), t0 + 70 * MIN)  # back: run 1 pauses
    sim.advance(t0 + 105 * MIN)  # abandoned again at 11:40: run 2 resumes, WhatsApp due at 12:10
    sim.apply(cart_event(prof=full_profile()), t0 + 105 * MIN)  # back before it: run 2 pauses
    sim.advance(t0 + 60 * HOUR)  # abandoned again at 12:15: run 3
    assert sim.metrics["abandoned"] == 1 and sim.metrics["resumed"] == 2
    steps = [(step, channel) for _, _, step, channel in sim.sent()]
    assert steps.count((1, "email")) == 1 and steps.count((3, "email")) == 1, sim.sent()
    again = t0 + 135 * MIN
    assert sim.sent()[2] == (again + 30 * MIN, 3, 2, "whatsapp")
