"""Config parsing: durations, flows, stores, incentives. Every rejection names the exact field."""
from __future__ import annotations

import re
from typing import Any

import pytest

from actors import (
    BUILTIN_FLOWS,
    FOUR_TOUCH,
    REVENUE_RECOVERY,
    FlowConfigError,
    Incentive,
    StoreConfigError,
    discount_code,
    format_duration,
    parse_duration,
    parse_flow,
    parse_store,
)
from actors.flows import flows_from_config

H = 3600.0


@pytest.mark.parametrize(("text", "seconds"), [
    ("30m", 1800.0), ("1h30m", 5400.0), ("2d", 172800.0), ("45s", 45.0), ("100ms", 0.1), ("1h 30m", 5400.0),
    ("1.5h", 5400.0), ("1d2h3m4s", 93784.0), (90, 90.0), (2.5, 2.5), (0, 0.0), ("0s", 0.0), ("5H", 18000.0),
])
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("value", "message"), [
    (-5, 'expected a duration like "90m", got -5'),
    ("90", 'expected a duration like "90m", got "90" (missing unit: d, h, m, s or ms)'),
    ("5x", 'expected a duration like "90m", got "5x"'),
    ("30m1h", 'expected a duration like "90m", got "30m1h" (units must appear once each, largest first)'),
    ("", 'expected a duration like "90m", got ""'),
    (True, 'expected a duration like "90m", got True'),
    (None, 'expected a duration like "90m", got None'),
    (float("inf"), 'expected a duration like "90m", got inf'),
    ("\u0661h", 'expected a duration like "90m", got "\u0661h"'),  # an Arabic-Indic digit is not a digit here
])
def test_parse_duration_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == message


def test_format_duration() -> None:
    assert [format_duration(s) for s in (5400, 0.25, 0, 86400 + 60, 45)] == ["1h30m", "250ms", "0s", "1d1m", "45s"]


def test_builtin_flows_match_the_design_table() -> None:
    rr = REVENUE_RECOVERY
    assert rr.abandon_after_s == 1800 and rr.expire_after_s == 48 * H and rr.attribution_window_s == 5 * 86400
    assert rr.frequency_cap_s == 12 * H and rr.on_cap == "postpone"
    assert [(s.after_s / H, s.channels, s.incentive, s.window) for s in rr.steps] == [
        (1, ("email", "push"), False, None), (1.5, ("whatsapp",), False, "whatsapp"),
        (4, ("email", "push"), True, None), (24, ("email", "push"), False, None), (40, ("email", "push"), False, None),
    ]
    ft = FOUR_TOUCH
    assert [(s.after_s / 86400, s.channels, s.template) for s in ft.steps] == [
        (1, ("sms",), "reminder"), (3, ("email",), "reminder"), (7, ("email",), "urgency"), (10, ("sms",), "final"),
    ]
    assert ft.expire_after_s == 11 * 86400
    assert set(BUILTIN_FLOWS) == {"revenue_recovery", "four_touch"}


def test_parse_flow_with_defaults_and_conditions() -> None:
    flow = parse_flow("vip", {
        "abandon_after": "1h", "on_cap": "drop",
        "steps": [
            {"after": "90m", "channels": ["email"], "min_value": 100, "currency": "eur", "template": "vip"},
            {"after": "2d", "channels": ["sms", "webhook"], "high_intent": True, "send_in": "profile", "incentive": True},
        ],
    })
    assert flow.abandon_after_s == H and flow.expire_after_s == 3 * 86400 and flow.on_cap == "drop"
    first, second = flow.steps
    assert first.currency == "EUR" and first.unmet(99.0, "EUR", False) == "condition: value 99.00 below min_value 100"
    assert first.unmet(150.0, "USD", False) == "condition: currency USD is not EUR"
    assert first.unmet(150.0, "EUR", False) is None
    assert second.unmet(1.0, None, False) == "condition: cart is not high-intent" and second.send_in == "profile"
    assert flow.describe()[0] == {"step": 1, "after": "1h30m", "channels": ["email"], "incentive": False,
                                  "window": None, "template": "vip", "send_in": "store", "min_value": 100.0,
                                  "max_value": None, "high_intent": None, "currency": "EUR"}
    assert flow.describe()[1]["high_intent"] is True and flow.describe()[1]["send_in"] == "profile"


GOOD_STEP: dict[str, Any] = {"after": "1h", "channels": ["email"]}


@pytest.mark.parametrize(("table", "message"), [
    ({"steps": [GOOD_STEP, GOOD_STEP, {"after": -5, "channels": ["email"]}]},
     'flows.vip.steps[2].after: expected a duration like "90m", got -5'),
    ({"steps": [{"channels": ["email"]}]}, 'flows.vip.steps[0].after: missing (a delay from abandonment, like "1h")'),
    ({"steps": [{"after": "1h", "channels": ["email", "fax"]}]},
     'flows.vip.steps[0].channels[1]: expected one of "email", "push", "whatsapp", "sms", "webhook", got "fax"'),
    ({"steps": [{"after": "1h", "channels": []}]},
     "flows.vip.steps[0].channels: expected a non-empty list of channel names, got []"),
    ({"steps": [{"after": "1h", "channels": ["sms", "sms"]}]}, 'flows.vip.steps[0].channels[1]: duplicate channel "sms"'),
    ({"steps": [{"after": "2h", "channels": ["sms"]}, {"after": "1h", "channels": ["sms"]}]},
     "flows.vip.steps[1].after: steps must be in time order: 1h comes before the previous step's 2h"),
    ({"steps": [GOOD_STEP], "colour": "red"},
     "flows.vip.colour: unknown key (allowed: abandon_after, expire_after, attribution_window, frequency_cap, on_cap, steps)"),
    ({"steps": [GOOD_STEP | {"delay": "1h"}]}, "flows.vip.steps[0].delay: unknown key (allowed: after, channels, incentive, "
     "window, template, send_in, min_value, max_value, high_intent, currency)"),
    ({"steps": [GOOD_STEP | {"window": "night"}]}, 'flows.vip.steps[0].window: expected one of "whatsapp", got "night"'),
    ({"steps": [GOOD_STEP | {"send_in": "shopper"}]},
     'flows.vip.steps[0].send_in: expected one of "store", "profile", got "shopper"'),
    ({"steps": [GOOD_STEP | {"min_value": "10"}]}, 'flows.vip.steps[0].min_value: expected a number >= 0, got "10"'),
    ({"steps": [GOOD_STEP | {"min_value": 10, "max_value": 5}]},
     "flows.vip.steps[0].max_value: must not be below min_value (10), got 5"),
    ({"steps": [GOOD_STEP | {"high_intent": "yes"}]}, 'flows.vip.steps[0].high_intent: expected true or false, got "yes"'),
    ({"steps": [GOOD_STEP | {"currency": "EURO"}]},
     'flows.vip.steps[0].currency: expected a 3-letter currency code like "EUR", got "EURO"'),
    ({"steps": [GOOD_STEP | {"incentive": 1}]}, "flows.vip.steps[0].incentive: expected true or false, got 1"),
    ({"steps": []}, "flows.vip.steps: expected a non-empty list of step tables, got []"),
    ({}, "flows.vip.steps: expected a non-empty list of step tables, got None"),
    ({"steps": ["1h"]}, 'flows.vip.steps[0]: expected a table, got "1h"'),
    ({"steps": [GOOD_STEP], "expire_after": "30m"}, 'flows.vip.expire_after: must be after the last step (1h), got "30m"'),
    ({"steps": [GOOD_STEP], "abandon_after": 0}, "flows.vip.abandon_after: must be longer than 0, got 0"),
    ({"steps": [GOOD_STEP], "on_cap": "queue"}, 'flows.vip.on_cap: expected one of "drop", "postpone", got "queue"'),
    ({"steps": [GOOD_STEP], "frequency_cap": "12 hours"},
     'flows.vip.frequency_cap: expected a duration like "90m", got "12 hours"'),
    ("fast", 'flows.vip: expected a table, got "fast"'),
    # timers are int64 ticks: a longer duration overflowed them at the first order or restart
    ({"steps": [GOOD_STEP], "attribution_window": "100000000000000d"},
     'flows.vip.attribution_window: must be at most 3650d, got "100000000000000d"'),
    ({"steps": [{"after": "3651d", "channels": ["email"]}]}, 'flows.vip.steps[0].after: must be at most 3650d, got "3651d"'),
    ({"steps": [GOOD_STEP] * 64}, "flows.vip.steps: at most 63 steps, got 64"),  # a cart keeps a bit per step
])
def test_invalid_flow_config_names_the_field(table: Any, message: str) -> None:
    with pytest.raises(FlowConfigError) as info:
        parse_flow("vip", table)
    assert str(info.value) == message
    assert info.value.path == message.split(": ", 1)[0]


def test_flows_from_config_adds_and_validates() -> None:
    flows = flows_from_config({"vip": {"steps": [GOOD_STEP]}})
    assert set(flows) == {"revenue_recovery", "four_touch", "vip"}
    with pytest.raises(FlowConfigError, match=r"^flows\.bad\.steps"):
        flows_from_config({"bad": {"steps": 3}})


def test_store_config_full() -> None:
    rules = parse_store("demo", {
        "name": "Demo Shop", "timezone": "Europe/Madrid", "flow": "revenue_recovery", "credits": 1000,
        "whatsapp_window": {"days": "mon-sat", "start": "09:00", "end": "21:00"},
        "quiet_hours": {"start": "22:00", "end": "08:00"},
        "incentive": {"kind": "discount", "percent": 10, "code_prefix": "back"},
        "whatsapp": {"phone_number_id": "1055501", "token": "secret-token"}, "secret": "s" * 32, "whatsapp_delay": "6h",
    })
    assert rules.name == "Demo Shop" and rules.credits == 1000 and rules.has_whatsapp
    assert rules.incentive == Incentive(kind="discount", percent=10.0, code_prefix="BACK")
    # a 6 h WhatsApp delay moves that step after the 4 h one, keeping its number
    assert [(a / H, n) for a, n, _ in rules.schedule] == [(1, 1), (4, 3), (6, 2), (24, 4), (40, 5)]
    assert repr(rules) == "<StoreRules demo flow=revenue_recovery tz=Europe/Madrid credits=1000>"
    assert rules.adjust_credits(-2000) == 0 and rules.spend_credit() is False and rules.adjust_credits(3) == 3


@pytest.mark.parametrize(("table", "message"), [
    ({"timezone": "Mars/Base"}, 'stores.demo.timezone: unknown time zone "Mars/Base" (expected an IANA name like "Europe/Madrid")'),
    ({"flow": "nope"}, 'stores.demo.flow: unknown flow "nope" (known: four_touch, revenue_recovery)'),
    ({"credits": -1}, "stores.demo.credits: expected an integer >= 0, got -1"),
    ({"credits": 1.5}, "stores.demo.credits: expected an integer >= 0, got 1.5"),
    ({"incentive": {"kind": "discount", "percent": 0}},
     "stores.demo.incentive.percent: expected a number above 0 and at most 100, got 0"),
    ({"incentive": {"kind": "gift"}}, 'stores.demo.incentive.kind: expected "discount" or "free_shipping", got "gift"'),
    ({"incentive": {"kind": "free_shipping", "percent": 5}},
     'stores.demo.incentive.percent: unknown key for kind "free_shipping" (allowed: kind)'),
    ({"incentive": {"kind": "discount", "percent": 5, "code_prefix": "BA CK"}},
     'stores.demo.incentive.code_prefix: expected 1 to 16 letters or digits, got "BA CK"'),
    ({"whatsapp": {"phone_number_id": "1"}}, "stores.demo.whatsapp.token: missing"),
    ({"whatsapp": {"phone_number_id": "1", "token": ""}}, 'stores.demo.whatsapp.token: expected a non-empty string, got ""'),
    ({"whatsapp_delay": "3h"}, 'stores.demo.whatsapp_delay: expected one of "90m", "2h", "6h", got "3h"'),
    ({"whatsapp_delay": "soon"}, 'stores.demo.whatsapp_delay: expected a duration like "90m", got "soon"'),
    ({"quiet_hours": {"days": "mon", "start": "22:00", "end": "08:00"}},
     "stores.demo.quiet_hours.days: unknown key (allowed: start, end)"),
    ({"quiet_hours": {"start": "00:00", "end": "24:00"}},
     "stores.demo.quiet_hours: quiet hours cover the whole day: nothing could ever be sent"),
    ({"secret": "short"}, "stores.demo.secret: too short: use at least 16 characters"),
    ({"colour": "red"}, "stores.demo.colour: unknown key (allowed: name, timezone, flow, credits, whatsapp_window, "
     "quiet_hours, incentive, whatsapp, secret, whatsapp_delay, locale, email_from, reply_to, unsubscribe_mailto, "
     "email_header, email_footer, logo_url, unsubscribe_url, sms_from, templates_dir)"),
    ({"unsubscribe_url": "mailto:x@example.com"},
     'stores.demo.unsubscribe_url: expected an http(s) URL like "https://shop.example/unsubscribe?m={message_id}", '
     'got "mailto:x@example.com"'),
])
def test_invalid_store_config_names_the_field(table: dict[str, Any], message: str) -> None:
    with pytest.raises(StoreConfigError) as info:
        parse_store("demo", table)
    assert str(info.value) == message


def test_discount_code_is_reproducible_and_unique_per_cart() -> None:
    secret = b"0123456789abcdef-secret"
    code = discount_code(secret, "demo", "cart_1", "BACK")
    assert re.fullmatch(r"BACK-[A-Z2-7]{10}", code)
    assert discount_code(secret, "demo", "cart_1", "BACK") == code  # a restart gives the same code
    codes = {discount_code(secret, "demo", f"cart_{i}", "BACK") for i in range(5000)}
    assert len(codes) == 5000  # unique per cart
    assert discount_code(b"another-secret-value", "demo", "cart_1", "BACK") != code
    assert discount_code(secret, "other", "cart_1", "BACK") != code
    # through the store rules: a store's configured secret, and the derived default
    a = parse_store("demo", {"secret": "0123456789abcdef-secret", "incentive": {"kind": "discount", "percent": 15}})
    b = parse_store("demo", {"secret": "0123456789abcdef-secret", "incentive": {"kind": "discount", "percent": 15}})
    assert a.incentive is not None and b.incentive is not None
    assert a.incentive.for_cart(a.secret, a.id, "c9") == b.incentive.for_cart(b.secret, b.id, "c9") == {
        "kind": "discount", "percent": 15.0, "code": discount_code(secret, "demo", "c9", "BACK"),
    }
    free = parse_store("s", {"incentive": {"kind": "free_shipping"}})
    assert free.incentive is not None and free.incentive.for_cart(free.secret, "s", "c") == {"kind": "free_shipping"}


def test_a_whatsapp_delay_past_the_end_of_the_flow_is_a_config_error() -> None:
    """whatsapp_delay = "6h" on a flow whose runs end at 4 h: the WhatsApp step fell due after the run's
    end, so it was never sent, and nothing said so (not even a skipped record). The config says it."""
    flows = flows_from_config({"short": {"steps": [{"after": "1h", "channels": ["email"]},
                                                   {"after": "90m", "channels": ["whatsapp"]}],
                                         "expire_after": "4h"}})
    with pytest.raises(StoreConfigError) as info:
        parse_store("demo", {"flow": "short", "whatsapp_delay": "6h"}, flows)
    assert str(info.value) == (
        'stores.demo.whatsapp_delay: "6h" puts the WhatsApp step of flow "short" at or after the end of its runs '
        "(4h): it would never be sent"
    )
    assert parse_store("demo", {"flow": "short", "whatsapp_delay": "2h"}, flows).schedule[1][0] == 7200.0
