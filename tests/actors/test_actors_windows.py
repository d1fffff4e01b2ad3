"""Send windows, quiet hours and time zones: WhatsApp postponed to the window start, DST, midnight."""
from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from actorsim import DAY, HOUR, MIN, Sim, at, cart_event, local, make_registry, profile

from actors import StoreConfigError, next_send_time, parse_window

MADRID = "Europe/Madrid"
WA = {"phone_number_id": "1055501", "token": "tok"}


def wa_profile() -> dict[str, object]:
    return profile("p1", phone="+34600111222")


def whatsapp_sends(sim: Sim) -> list[float]:
    return [when for (when, _, _, channel) in sim.sent() if channel == "whatsapp"]


def run_abandoned_at(store: dict[str, object], abandoned: float, until: float) -> Sim:
    reg = make_registry({"demo": store})
    sim = Sim(reg, abandoned)
    sim.apply(cart_event(prof=wa_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(until)
    return sim


def test_evening_abandonment_whatsapp_waits_for_the_window() -> None:
    abandoned = at("2024-05-15 20:00", MADRID)  # Wednesday; WhatsApp would be due 21:30
    sim = run_abandoned_at({"timezone": MADRID, "whatsapp": WA}, abandoned, abandoned + 20 * HOUR)
    assert whatsapp_sends(sim) == [at("2024-05-16 09:00", MADRID)]
    assert sim.logged("postponed") == [
        (abandoned + 90 * MIN, 2, "whatsapp", "outside the whatsapp window until 2024-05-16T09:00+02:00"),
    ]
    # the emails keep their own schedule meanwhile
    assert [w for (w, _, _, ch) in sim.sent() if ch == "email"] == [abandoned + HOUR, abandoned + 4 * HOUR]


def test_saturday_night_whatsapp_waits_until_monday() -> None:
    abandoned = at("2024-05-18 20:30", MADRID)  # Saturday; default window is mon-sat 09:00-21:00
    sim = run_abandoned_at({"timezone": MADRID, "whatsapp": WA}, abandoned, abandoned + 3 * DAY)
    assert [local(w, MADRID) for w in whatsapp_sends(sim)] == ["2024-05-20 09:00"]


def test_whatsapp_on_dst_night_opens_at_local_nine() -> None:
    # Madrid springs forward on 2024-03-31: 09:00 local is 07:00 UTC that Sunday, 08:00 UTC the day before.
    abandoned = at("2024-03-30 20:00", MADRID)
    store = {"timezone": MADRID, "whatsapp": WA, "whatsapp_window": {"days": "mon-sun", "start": "09:00", "end": "21:00"}}
    sim = run_abandoned_at(store, abandoned, abandoned + DAY)
    assert whatsapp_sends(sim) == [at("2024-03-31 07:00", "UTC")]
    # and the 1 h email is exactly one real hour after abandonment, across nothing special
    assert sim.sent()[0][0] == abandoned + HOUR


def test_fall_back_night_quiet_hours_end_at_local_eight() -> None:
    # Madrid falls back on 2024-10-27: 08:00 local is 07:00 UTC (CET) after 06:00 UTC (CEST) the day before.
    steps = [{"after": "2h", "channels": ["email"]}]
    reg = make_registry({"demo": {"timezone": MADRID, "flow": "one", "quiet_hours": {"start": "22:00", "end": "08:00"}}},
                        {"one": {"steps": steps}})
    abandoned = at("2024-10-26 22:30", MADRID)
    sim = Sim(reg, abandoned)
    sim.apply(cart_event(prof=profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(abandoned + DAY)
    assert sim.sent() == [(at("2024-10-27 07:00", "UTC"), 1, 1, "email")]
    assert sim.logged("postponed")[0][3] == "quiet hours until 2024-10-27T08:00+01:00"


def test_quiet_hours_across_midnight() -> None:
    steps = [{"after": "30m", "channels": ["email"]}, {"after": "1h29m", "channels": ["push"]},
             {"after": "11h", "channels": ["sms"]}]
    reg = make_registry({"demo": {"timezone": MADRID, "flow": "q", "quiet_hours": {"start": "22:00", "end": "08:00"}}},
                        {"q": {"steps": steps, "frequency_cap": 0}})
    abandoned = at("2024-05-15 21:00", MADRID)
    sim = Sim(reg, abandoned)
    sim.apply(cart_event(prof=profile(phone="+34600111222", push="tok")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(abandoned + 2 * DAY)
    assert [(local(w, MADRID), ch) for (w, _, _, ch) in sim.sent()] == [
        ("2024-05-15 21:30", "email"),  # before quiet hours
        ("2024-05-16 08:00", "push"),  # due 22:29: held until they end the next morning
        ("2024-05-16 08:00", "sms"),  # due 08:00 exactly: the end of quiet hours is allowed
    ]


def test_send_in_profile_uses_the_shoppers_time_zone() -> None:
    steps = [{"after": "1h", "channels": ["email"], "send_in": "profile"}]
    stores = {"demo": {"timezone": MADRID, "flow": "tz", "quiet_hours": {"start": "22:00", "end": "08:00"}}}
    abandoned = at("2024-05-15 11:00", MADRID)  # step at 12:00 Madrid = 06:00 New York
    results = {}
    for tz in ("America/New_York", None):
        reg = make_registry(stores, {"tz": {"steps": steps}})
        sim = Sim(reg, abandoned)
        sim.apply(cart_event(prof=profile(timezone=tz)))
        sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
        sim.advance(abandoned + DAY)
        results[tz] = [w for (w, _, _, _) in sim.sent()]
    assert results["America/New_York"] == [at("2024-05-15 08:00", "America/New_York")]
    assert results[None] == [abandoned + HOUR]  # no time zone on the profile: the store's rules


def test_whatsapp_delay_options_move_the_step() -> None:
    abandoned = at("2024-05-15 10:00", MADRID)
    for delay, hours in (("90m", 1.5), ("2h", 2), ("6h", 6)):
        sim = run_abandoned_at({"timezone": MADRID, "whatsapp": WA, "whatsapp_delay": delay}, abandoned, abandoned + DAY)
        assert whatsapp_sends(sim) == [abandoned + hours * HOUR], delay
        assert sim.sends[[s.intent.channel for s in sim.sends].index("whatsapp")].intent.step == 2


def test_window_that_ends_after_the_run_is_skipped() -> None:
    steps = [{"after": "1h", "channels": ["whatsapp"], "window": "whatsapp"}]
    reg = make_registry({"demo": {"timezone": MADRID, "whatsapp": WA, "flow": "short"}},
                        {"short": {"steps": steps, "expire_after": "3h"}})
    abandoned = at("2024-05-15 20:30", MADRID)
    sim = Sim(reg, abandoned)
    sim.apply(cart_event(prof=wa_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(abandoned + DAY)
    assert sim.sent() == []
    assert sim.logged("skipped") == [
        (abandoned + HOUR, 1, "whatsapp", "outside the whatsapp window; the next send time is after the run ends"),
    ]


# ---------------------------------------------------------------------- the Window type itself
def test_window_across_midnight_belongs_to_its_start_day() -> None:
    tz = ZoneInfo(MADRID)
    w = parse_window("w", {"days": "fri", "start": "20:00", "end": "02:00"})
    assert w.spans_midnight
    sat_1am = at("2024-05-18 01:00", MADRID)
    assert w.next_open(sat_1am, tz) == sat_1am  # Friday's window still open
    sat_3am = at("2024-05-18 03:00", MADRID)
    assert local(w.next_open(sat_3am, ZoneInfo(MADRID)), MADRID) == "2024-05-24 20:00"
    thu_1am = at("2024-05-16 01:00", MADRID)  # Wednesday is not listed: closed
    assert local(w.next_open(thu_1am, tz), MADRID) == "2024-05-17 20:00"


def test_quiet_window_next_outside() -> None:
    tz = ZoneInfo("UTC")
    q = parse_window("q", {"start": "22:00", "end": "08:00"}, with_days=False)
    assert q.next_outside(at("2024-05-15 23:00"), tz) == at("2024-05-16 08:00")
    assert q.next_outside(at("2024-05-16 07:59"), tz) == at("2024-05-16 08:00")
    assert q.next_outside(at("2024-05-16 12:00"), tz) == at("2024-05-16 12:00")
    assert q.next_outside(at("2024-05-16 22:00"), tz) == at("2024-05-17 08:00")


def test_window_inside_quiet_hours_never_sends() -> None:
    tz = ZoneInfo("UTC")
    w = parse_window("w", {"start": "23:00", "end": "23:30"})
    q = parse_window("q", {"start": "22:00", "end": "08:00"}, with_days=False)
    assert next_send_time(at("2024-05-16 12:00"), tz, w, q) is None
    w2 = parse_window("w", {"start": "07:00", "end": "10:00"})
    assert next_send_time(at("2024-05-16 23:00"), tz, w2, q) == at("2024-05-17 08:00")


@pytest.mark.parametrize(("table", "message"), [
    ({"start": "9:00", "end": "21:00"}, 'stores.demo.whatsapp_window.start: expected a local time like "09:00", got "9:00"'),
    ({"start": "09:00"}, 'stores.demo.whatsapp_window.end: missing (a local time like "09:00")'),
    ({"days": "mon-sa", "start": "09:00", "end": "21:00"},
     'stores.demo.whatsapp_window.days: unknown day in "mon-sa" (use mon, tue, wed, thu, fri, sat, sun)'),
    ({"start": "09:00", "end": "09:00"},
     'stores.demo.whatsapp_window.end: must differ from start ("09:00"): a window needs a length'),
    ({"start": "09:00", "end": "21:00", "tz": "x"},
     "stores.demo.whatsapp_window.tz: unknown key (allowed: days, start, end)"),
])
def test_bad_window_config_names_the_field(table: dict[str, object], message: str) -> None:
    with pytest.raises(StoreConfigError) as info:
        make_registry({"demo": {"whatsapp_window": table}})
    assert str(info.value) == message


def test_days_parsing() -> None:
    from actors.windows import parse_days

    assert parse_days("d", "mon-sat") == frozenset(range(6))
    assert parse_days("d", "fri-mon") == frozenset({4, 5, 6, 0})
    assert parse_days("d", ["sat", "sun"]) == frozenset({5, 6})
    assert parse_days("d", "mon, wed,fri") == frozenset({0, 2, 4})


@pytest.mark.parametrize("days", [[], "", " , "])
def test_a_window_without_days_is_a_config_error(days: object) -> None:
    """A window that never opens would hold its step's messages forever (and failed when one fell due)."""
    with pytest.raises(StoreConfigError, match=r"^stores.demo.whatsapp_window.days: expected"):
        parse_window("stores.demo.whatsapp_window", {"days": days, "start": "09:00", "end": "21:00"})


def test_a_step_due_as_the_quiet_hours_end_supersedes_the_send_they_held() -> None:
    """Abandoned at 04:00: step 1's email (05:00) waits for the end of quiet hours at 08:00, when step 3's
    email (4 h) falls due too. A step falling due while a send of the same channel is held replaces it
    (abandoned at 03:59 the shopper gets one email at 08:00), also at the very instant the held one is
    due: not two emails at 08:00."""
    for abandoned_at in ("03:59", "04:00"):
        reg = make_registry({"demo": {"timezone": MADRID, "quiet_hours": {"start": "22:00", "end": "08:00"}}})
        abandoned = at(f"2024-05-15 {abandoned_at}", MADRID)
        sim = Sim(reg, abandoned)
        sim.apply(cart_event(prof=profile()))
        sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
        sim.advance(abandoned + 10 * HOUR)
        assert sim.sent() == [(at("2024-05-15 08:00", MADRID), 1, 3, "email")], abandoned_at
        assert [(r.step, r.reason) for r in sim.logs if r.outcome == "skipped" and r.channel == "email"] == [
            (1, "superseded by step 3"),
        ], abandoned_at


def test_after_downtime_an_overdue_step_supersedes_the_overdue_send_it_would_follow() -> None:
    """The engine was down from 07:00 to 09:00: step 1's email held until 08:00 and step 3's email due at
    08:30 are both overdue at the restart. Step 3 replaces the held one, as it would have had it fallen
    due first: one email at 09:00, not two at once."""
    reg = make_registry({"demo": {"timezone": MADRID, "quiet_hours": {"start": "22:00", "end": "08:00"}}})
    abandoned = at("2024-05-15 04:30", MADRID)
    sim = Sim(reg, abandoned)
    sim.apply(cart_event(prof=profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(at("2024-05-15 07:00", MADRID))
    restart = at("2024-05-15 09:00", MADRID)
    sim.advance(restart, down_until=restart)
    assert sim.sent() == [(restart, 1, 3, "email")]


def test_whatsapp_delay_moves_the_whatsapp_step_not_every_step_using_whatsapp() -> None:
    """A custom flow with a WhatsApp reminder at 2 h and a final email + WhatsApp at 30 h, in a store with
    whatsapp_delay = "6h": the delay replaces the WhatsApp step's 2 h. It also pulled the 30 h step to 6 h,
    so the shopper got two WhatsApp messages (and the final email) all at once, 6 h after abandonment."""
    steps = [{"after": "1h", "channels": ["email"]},
             {"after": "2h", "channels": ["whatsapp"], "window": "whatsapp"},
             {"after": "30h", "channels": ["email", "whatsapp"], "window": "whatsapp"}]
    reg = make_registry({"demo": {"timezone": MADRID, "flow": "f", "whatsapp": WA, "whatsapp_delay": "6h"}},
                        {"f": {"steps": steps}})
    abandoned = at("2024-05-15 10:00", MADRID)
    sim = Sim(reg, abandoned)
    sim.apply(cart_event(prof=wa_profile()))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(abandoned + 3 * DAY)
    assert [((w - abandoned) / HOUR, step, ch) for (w, _, step, ch) in sim.sent()] == [
        (1, 1, "email"), (6, 2, "whatsapp"), (30, 3, "email"), (30, 3, "whatsapp"),
    ]


def test_a_webhook_step_sent_in_the_profiles_zone_is_not_held_by_the_stores_quiet_hours() -> None:
    """A webhook step with send_in = "profile": issued at 23:00 Madrid (17:00 for a shopper in New York,
    outside their quiet hours) it was held back right before sending by the quiet hours read in the
    *store's* zone, until 08:00 Madrid, which is 02:00 in New York: inside the shopper's quiet hours."""
    steps = [{"after": "1h", "channels": ["webhook"], "send_in": "profile"}]
    reg = make_registry({"demo": {"timezone": MADRID, "flow": "hook", "quiet_hours": {"start": "22:00", "end": "08:00"}}},
                        {"hook": {"steps": steps}})
    abandoned = at("2024-05-15 22:00", MADRID)
    sim = Sim(reg, abandoned)
    sim.apply(cart_event(prof=profile(timezone="America/New_York")))
    sim.apply({"type": "session.ended", "store": "demo", "cart": "c1"})
    sim.advance(abandoned + DAY)
    assert sim.sent() == [(abandoned + HOUR, 1, 1, "webhook")]
