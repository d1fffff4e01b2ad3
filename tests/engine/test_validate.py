"""engine.validate: one test per rule (good and bad), exact reasons, fuzzing, the deduplicator."""
from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import EngineSettings
from engine.validate import EVENT_TYPES, Deduper, Validator, is_control
from tests.engine.test_schema import paths_agree

NOW = 1_772_791_200.0
TS_RANGE = "ts: must be a finite number >= 0 (unix seconds)"
V = Validator(EngineSettings())


def cart_event(**fields: Any) -> dict[str, Any]:
    """A valid, fully populated ``cart.updated``; ``fields`` override (``None`` deletes)."""
    event: dict[str, Any] = {
        "type": "cart.updated", "store": "demo", "cart": "c1", "ts": NOW - 5, "id": "e-1",
        "profile": {
            "id": "p1", "email": "ana@example.com", "phone": "+34600123456", "push": "fcm-token",
            "locale": "es-ES", "timezone": "Europe/Madrid",
            "consent": {"email": True, "sms": False, "whatsapp": True, "push": True},
        },
        "items": [
            {"sku": "A1", "name": "Mug", "qty": 2, "price": 9.5, "url": "https://shop.example/a1",
             "image": "https://cdn.example/a1.jpg"},
            {"sku": "B2", "qty": 1, "price": 20.0},
        ],
        "value": 39.0, "currency": "EUR", "checkout_url": "https://shop.example/checkout?c=c1",
    }
    for key, value in fields.items():
        if value is None:
            del event[key]
        else:
            event[key] = value
    return event


def with_profile(**fields: Any) -> dict[str, Any]:
    event = cart_event()
    event["profile"].update(fields)
    return event


def with_item(index: int = 0, **fields: Any) -> dict[str, Any]:
    event = cart_event()
    event["items"][index].update(fields)
    return event


def check(event: Any) -> str | None:
    """The validator's answer; first, the same event over the ingest's msgspec fast path must agree."""
    paths_agree(copy.deepcopy(event), V)
    return V.validate(event, NOW)


# ------------------------------------------------------------------------------------ every type


MINIMAL: dict[str, dict[str, Any]] = {
    "cart.updated": {"cart": "c1"},
    "checkout.started": {"cart": "c1"},
    "session.ended": {"cart": "c1"},
    "payment.failed": {"cart": "c1", "reason": "card_declined"},
    "order.completed": {"cart": "c1", "order": "o-9", "value": 39},
    "cart.cleared": {"cart": "c1"},
    "profile.updated": {"profile": {"id": "p1", "consent": {"sms": False}}},
    "message.opened": {"message": "m-1"},
    "message.clicked": {"message": "m-1"},
}


def test_minimal_table_covers_every_type() -> None:
    assert set(MINIMAL) == set(EVENT_TYPES)


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_each_type_accepts_its_fields(kind: str) -> None:
    assert check({"type": kind, "store": "demo", **MINIMAL[kind]}) is None


@pytest.mark.parametrize("kind", ["checkout.started", "cart.updated"])
def test_full_cart_event_is_valid(kind: str) -> None:
    assert check(cart_event(type=kind)) is None


@pytest.mark.parametrize(
    "kind, missing",
    [("cart.updated", "cart"), ("checkout.started", "cart"), ("session.ended", "cart"),
     ("payment.failed", "cart"), ("order.completed", "cart"), ("cart.cleared", "cart"),
     ("profile.updated", "profile"), ("message.opened", "message"), ("message.clicked", "message")],
)
def test_each_type_requires_its_key_field(kind: str, missing: str) -> None:
    event = {"type": kind, "store": "demo", **MINIMAL[kind]}
    del event[missing]
    assert check(event) == f"{missing}: required"


def test_typed_optional_fields_of_other_types() -> None:
    assert check({"type": "payment.failed", "store": "s", "cart": "c", "reason": 5}) == "reason: must be a string"
    assert check({"type": "order.completed", "store": "s", "cart": "c", "order": 7}) == "order: must be a string"
    assert check({"type": "order.completed", "store": "s", "cart": "c", "value": -1}) == (
        "value: must be a non-negative finite number"
    )
    assert check({"type": "profile.updated", "store": "s", "profile": "p1"}) == "profile: must be a map"
    assert check({"type": "message.opened", "store": "s", "message": ""}) == "message: must not be empty"


# ------------------------------------------------------------------------------------ common fields


@pytest.mark.parametrize(
    "event, reason",
    [
        ([], "event: must be a map"),
        ("cart.updated", "event: must be a map"),
        ({1: "x", "type": "cart.updated"}, "event: keys must be strings"),
        ({b"type": "cart.updated"}, "event: keys must be strings"),
        ({"store": "s"}, "type: required"),
        ({"type": 3, "store": "s"}, "type: must be a string"),
        ({"type": "cart.exploded", "store": "s"}, "type: unknown event type 'cart.exploded'"),
        ({"type": "x" * 100, "store": "s"}, f"type: unknown event type '{'x' * 40}...'"),
        ({"type": "cart.cleared", "cart": "c"}, "store: required"),
        ({"type": "cart.cleared", "store": 5, "cart": "c"}, "store: must be a string"),
        ({"type": "cart.cleared", "store": "", "cart": "c"}, "store: must not be empty"),
        ({"type": "cart.cleared", "store": "s", "cart": "c", "ts": "now"}, "ts: must be a number (unix seconds)"),
        ({"type": "cart.cleared", "store": "s", "cart": "c", "ts": True}, "ts: must be a number (unix seconds)"),
        ({"type": "cart.cleared", "store": "s", "cart": "c", "ts": math.nan}, TS_RANGE),
        ({"type": "cart.cleared", "store": "s", "cart": "c", "ts": -1}, TS_RANGE),
        ({"type": "cart.cleared", "store": "s", "cart": "c", "id": 5}, "id: must be a string"),
        ({"type": "cart.cleared", "store": "s", "cart": "c", "id": ""}, "id: must not be empty"),
        ({"type": "cart.cleared", "store": "s", "cart": ["c"]}, "cart: must be a string"),
        ({"type": "cart.cleared", "store": "s", "cart": "c" * 2049}, "cart: longer than 2048 characters"),
    ],
)
def test_common_field_rejections(event: Any, reason: str) -> None:
    assert check(event) == reason


def test_missing_ts_is_filled_with_now_and_int_ts_becomes_float() -> None:
    event: dict[str, Any] = {"type": "cart.cleared", "store": "s", "cart": "c"}
    assert check(event) is None and event["ts"] == NOW
    event = {"type": "cart.cleared", "store": "s", "cart": "c", "ts": 1700000000}
    assert check(event) is None and type(event["ts"]) is float and event["ts"] == 1700000000.0


def test_rejected_event_gets_no_ts() -> None:
    event = {"type": "cart.cleared", "store": "s"}
    assert check(event) == "cart: required"
    assert "ts" not in event


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    event = cart_event(loyalty_tier="gold", future={"x": [1, 2]})
    event["profile"]["birthday"] = "01-01"
    event["items"][0]["color"] = "red"
    assert check(event) is None
    assert event["loyalty_tier"] == "gold"  # left in place, not checked


def test_nil_optional_fields_count_as_absent() -> None:
    event = {"type": "cart.updated", "store": "s", "cart": "c", "id": None, "profile": None, "items": None,
             "value": None, "currency": None, "checkout_url": None}
    assert check(event) is None


def test_limits_come_from_the_settings() -> None:
    small = Validator(EngineSettings(max_items=2, max_string=16))
    assert small.validate({"type": "cart.cleared", "store": "s", "cart": "c" * 17}, NOW) == (
        "cart: longer than 16 characters"
    )
    assert small.validate(cart_event(items=[{"sku": "a", "qty": 1, "price": 1.0}] * 3), NOW) == (
        "items: more than 2 items"
    )
    assert repr(small) == "<Validator max_items=2 max_string=16>"


# ------------------------------------------------------------------------------------ cart fields


def test_items_rules() -> None:
    assert check(cart_event(items=[])) is None
    assert check(cart_event(items="A1")) == "items: must be a list"
    assert check(cart_event(items=[{"sku": "a", "qty": 1, "price": 1.0}] * 201)) == "items: more than 200 items"
    assert check(cart_event(items=[{"sku": "a", "qty": 1, "price": 1.0}] * 200)) is None
    assert check(cart_event(items=[{"sku": "a", "qty": 1, "price": 1.0}, 5])) == "items[1]: must be a map"
    assert check(cart_event(items=[{"sku": "a", "qty": 1, "price": 1.0, 7: 1}])) == "items[0]: keys must be strings"


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"sku": None}, "items[1].sku: required"),
        ({"sku": 12}, "items[1].sku: must be a string"),
        ({"sku": ""}, "items[1].sku: must not be empty"),
        ({"qty": None}, "items[1].qty: required"),
        ({"qty": 0}, "items[1].qty: must be a positive integer"),
        ({"qty": -2}, "items[1].qty: must be a positive integer"),
        ({"qty": 1.5}, "items[1].qty: must be a positive integer"),
        ({"qty": True}, "items[1].qty: must be a positive integer"),
        ({"qty": "2"}, "items[1].qty: must be a positive integer"),
        ({"qty": 10**7}, "items[1].qty: must be at most 1000000"),
        ({"price": None}, "items[1].price: required"),
        ({"price": -0.01}, "items[1].price: must be a non-negative finite number"),
        ({"price": math.inf}, "items[1].price: must be a non-negative finite number"),
        ({"price": math.nan}, "items[1].price: must be a non-negative finite number"),
        ({"price": "9.50"}, "items[1].price: must be a non-negative finite number"),
        ({"price": 10**400}, "items[1].price: must be a non-negative finite number"),
        ({"name": 5}, "items[1].name: must be a string"),
        ({"name": "n" * 2049}, "items[1].name: longer than 2048 characters"),
        ({"url": "ftp://shop.example/a"}, "items[1].url: must be an http(s) URL"),
        ({"url": "javascript:alert(1)"}, "items[1].url: must be an http(s) URL"),
        ({"image": "https://"}, "items[1].image: must be an http(s) URL"),
        ({"image": "https://cdn.example/a b.jpg"}, "items[1].image: must be an http(s) URL"),
    ],
)
def test_item_field_rejections(fields: dict[str, Any], reason: str) -> None:
    event = cart_event()
    item = event["items"][1]
    for key, value in fields.items():
        if value is None:
            del item[key]
        else:
            item[key] = value
    assert check(event) == reason


def test_int_prices_and_value_become_floats() -> None:
    event = with_item(1, price=20)
    event["value"] = 39
    assert check(event) is None
    assert type(event["items"][1]["price"]) is float and type(event["value"]) is float


@pytest.mark.parametrize(
    "value, reason",
    [(0, None), (12.5, None), (-1, "value: must be a non-negative finite number"),
     (math.inf, "value: must be a non-negative finite number"), ("39", "value: must be a non-negative finite number"),
     (False, "value: must be a non-negative finite number")],
)
def test_value_rule(value: Any, reason: str | None) -> None:
    assert check(cart_event(value=value)) == reason


@pytest.mark.parametrize(
    "currency, reason",
    [("EUR", None), ("usd", None), ("EURO", 'currency: must be a 3-letter code like "EUR"'),
     ("E1R", 'currency: must be a 3-letter code like "EUR"'), ("ÉUR", 'currency: must be a 3-letter code like "EUR"'),
     (978, 'currency: must be a 3-letter code like "EUR"')],
)
def test_currency_rule(currency: Any, reason: str | None) -> None:
    event = cart_event(currency=currency)
    assert check(event) == reason
    if reason is None:
        assert event["currency"] == currency.upper()


@pytest.mark.parametrize(
    "url, reason",
    [("https://shop.example/checkout", None), ("HTTP://shop.example:8080", None), ("http://127.0.0.1/x?y=1#z", None),
     ("shop.example/checkout", "checkout_url: must be an http(s) URL"),
     ("https://user@evil.example", "checkout_url: must be an http(s) URL"),
     ("https://shop.example/\nSet-Cookie", "checkout_url: must be an http(s) URL"),
     (5, "checkout_url: must be an http(s) URL"),
     ("https://x/" + "a" * 2048, "checkout_url: longer than 2048 characters")],
)
def test_checkout_url_rule(url: Any, reason: str | None) -> None:
    assert check(cart_event(checkout_url=url)) == reason


# ------------------------------------------------------------------------------------ profile


def test_profile_as_id_string() -> None:
    assert check(cart_event(profile="p1")) is None
    assert check(cart_event(profile="")) == "profile: must not be empty"
    assert check(cart_event(profile=42)) == "profile: must be a map or a profile id string"


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"id": None}, "profile.id: required"),
        ({"id": 7}, "profile.id: must be a string"),
        ({"email": "ana"}, "profile.email: must look like an email address"),
        ({"email": "ana@localhost"}, "profile.email: must look like an email address"),
        ({"email": "a b@example.com"}, "profile.email: must look like an email address"),
        ({"email": "a@b@example.com"}, "profile.email: must look like an email address"),
        ({"email": ["ana@example.com"]}, "profile.email: must look like an email address"),
        ({"phone": "600123456"}, 'profile.phone: must be "+" and 8 to 15 digits (E.164, like "+34600123456")'),
        ({"phone": "+34 600 123 456"}, 'profile.phone: must be "+" and 8 to 15 digits (E.164, like "+34600123456")'),
        ({"phone": "+1234567"}, 'profile.phone: must be "+" and 8 to 15 digits (E.164, like "+34600123456")'),
        ({"phone": "+1234567890123456"}, 'profile.phone: must be "+" and 8 to 15 digits (E.164, like "+34600123456")'),
        ({"push": 5}, "profile.push: must be a token string or a subscription map"),
        ({"push": ""}, "profile.push: must not be empty"),
        ({"push": {"keys": {}}}, "profile.push.endpoint: required"),
        ({"push": {"endpoint": "wss://push.example"}}, "profile.push.endpoint: must be an http(s) URL"),
        ({"push": {"endpoint": "https://push.example/x", "keys": {"auth": 1}}},
         "profile.push.keys: must be a map of strings"),
        ({"locale": "english"}, 'profile.locale: must be a language tag like "en" or "es-ES"'),
        ({"locale": "e"}, 'profile.locale: must be a language tag like "en" or "es-ES"'),
        ({"locale": 1}, 'profile.locale: must be a language tag like "en" or "es-ES"'),
        ({"timezone": "Mars/Olympus"}, "profile.timezone: unknown time zone 'Mars/Olympus'"),
        ({"timezone": "../../etc/passwd"}, "profile.timezone: unknown time zone '../../etc/passwd'"),
        ({"timezone": "Europe"}, "profile.timezone: unknown time zone 'Europe'"),
        ({"timezone": 1}, 'profile.timezone: must be a time zone name like "Europe/Madrid"'),
        ({"consent": True}, "profile.consent: must be a map"),
        ({"consent": {"email": "yes"}}, "profile.consent.email: must be a boolean"),
        ({"consent": {"sms": 1}}, "profile.consent.sms: must be a boolean"),
        ({"consent": {1: True}}, "profile.consent: keys must be strings"),
    ],
)
def test_profile_field_rejections(fields: dict[str, Any], reason: str) -> None:
    event = cart_event()
    for key, value in fields.items():
        if value is None:
            del event["profile"][key]
        else:
            event["profile"][key] = value
    assert check(event) == reason


def test_profile_keys_must_be_strings() -> None:
    assert check(with_profile(**{})) is None
    event = cart_event()
    event["profile"][3] = "x"
    assert check(event) == "profile: keys must be strings"


@pytest.mark.parametrize(
    "fields",
    [{"email": "a.b+tag@mail.example.co"}, {"phone": "+12025550123"}, {"locale": "en"}, {"locale": "pt-BR"},
     {"timezone": "UTC"}, {"timezone": "America/Argentina/Buenos_Aires"}, {"consent": {}},
     {"push": {"endpoint": "https://fcm.googleapis.com/fcm/send/abc", "keys": {"p256dh": "k", "auth": "a"}}}],
)
def test_profile_good_values(fields: dict[str, Any]) -> None:
    assert check(with_profile(**fields)) is None


def test_locale_underscore_is_normalised() -> None:
    event = with_profile(locale="es_ES")
    assert check(event) is None and event["profile"]["locale"] == "es-ES"


def test_profile_updated_checks_the_whole_map() -> None:
    event = {"type": "profile.updated", "store": "s", "profile": {"id": "p1", "consent": {"whatsapp": "no"}}}
    assert check(event) == "profile.consent.whatsapp: must be a boolean"


# ------------------------------------------------------------------------------------ control


def test_is_control() -> None:
    assert is_control({"type": "sync"})
    assert not is_control({"type": "cart.updated"})
    assert not is_control([{"type": "sync"}])
    assert not is_control("sync")


# ------------------------------------------------------------------------------------ fuzzing

KNOWN_KEYS = ["type", "store", "cart", "ts", "id", "profile", "items", "value", "currency", "checkout_url",
              "sku", "qty", "price", "name", "url", "image", "email", "phone", "push", "locale", "timezone",
              "consent", "reason", "order", "message", "endpoint", "keys", "sms"]
scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30) | st.binary(max_size=8)
    | st.sampled_from(list(EVENT_TYPES) + ["Europe/Madrid", "https://x.example/", "+34600123456", "a@b.co"])
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=5) | st.integers() | st.binary(max_size=3)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(obj=values | st.dictionaries(keys, values, max_size=8))
def test_random_values_never_raise(obj: Any) -> None:
    paths_agree(copy.deepcopy(obj), Validator(EngineSettings(max_items=3, max_string=20)))
    result = Validator(EngineSettings(max_items=3, max_string=20)).validate(obj, NOW)
    assert result is None or (isinstance(result, str) and ": " in result)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(EVENT_TYPES), path=st.sampled_from(
    ["store", "cart", "ts", "id", "profile", "items", "value", "currency", "checkout_url", "message",
     "profile.id", "profile.email", "profile.consent", "profile.timezone", "items.0", "items.0.qty",
     "items.0.price", "items.0.url", "reason", "order"]), value=values)
def test_mutated_valid_events_never_raise(kind: str, path: str, value: Any) -> None:
    event = copy.deepcopy(cart_event(type=kind))
    event.update(MINIMAL[kind])
    target: Any = event
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    paths_agree(copy.deepcopy(event), V)
    result = V.validate(event, NOW)
    assert result is None or (isinstance(result, str) and ": " in result)


# ------------------------------------------------------------------------------------ deduper


def test_duplicate_ignored_within_window_and_accepted_after() -> None:
    d = Deduper(window_s=86400.0, capacity=100)
    assert d.seen("demo", "e1", NOW) is False
    assert d.seen("demo", "e1", NOW + 86399.9) is True
    assert d.seen("demo", "e1", NOW + 86400.0) is False  # the window runs from the first sighting
    assert d.seen("demo", "e1", NOW + 86401.0) is True
    assert d.statistics().duplicates == 2


def test_ids_are_per_store() -> None:
    d = Deduper(window_s=60.0, capacity=100)
    assert d.seen("a", "e1", NOW) is False
    assert d.seen("b", "e1", NOW) is False
    assert d.seen("a:b", "c", NOW) is False
    assert d.seen("a", "b:c", NOW) is False  # no collision through the separator


def test_expired_entries_are_dropped() -> None:
    d = Deduper(window_s=10.0, capacity=100)
    for i in range(50):
        d.seen("s", f"e{i}", NOW + i * 0.1)
    assert len(d) == 50
    d.seen("s", "late", NOW + 100.0)
    assert len(d) == 1


def test_capacity_bound_evicts_oldest_first() -> None:
    d = Deduper(window_s=3600.0, capacity=3)
    for i in range(5):
        assert d.seen("s", f"e{i}", NOW + i) is False
    assert len(d) == 3
    stats = d.statistics()
    assert (stats.size, stats.capacity, stats.evicted) == (3, 3, 2)
    assert d.seen("s", "e4", NOW + 5) is True  # newest kept
    assert d.seen("s", "e2", NOW + 5) is True
    assert d.seen("s", "e0", NOW + 5) is False  # oldest forgotten early: the documented trade-off
    assert len(d) == 3


def test_clock_going_back_never_expires_early() -> None:
    d = Deduper(window_s=10.0, capacity=100)
    d.seen("s", "a", NOW)
    d.seen("s", "b", NOW - 5)
    assert d.seen("s", "b", NOW + 4.9) is True
    assert d.seen("s", "a", NOW + 10) is False


def test_deduper_repr_and_arguments() -> None:
    d = Deduper(window_s=60.0, capacity=10)
    d.seen("s", "x", NOW)
    d.seen("s", "x", NOW)
    assert repr(d) == "<Deduper size=1/10 window_s=60 duplicates=1 evicted=0>"
    with pytest.raises(ValueError):
        Deduper(window_s=0, capacity=10)
    with pytest.raises(ValueError):
        Deduper(window_s=1, capacity=0)


def test_long_ids_cost_a_digest_not_their_length() -> None:
    """A key embedded the whole store and id: with valid 2 048-character ids, ~4 KB per id remembered
    (the default capacity could mean ~4 GB, not the documented ~165 MB)."""
    import tracemalloc

    n = 2000
    ids = [f"{i:06d}" + "x" * 2042 for i in range(n)]  # max_string characters each
    store = "s" * 2048
    tracemalloc.start()
    try:
        d = Deduper(window_s=3600.0, capacity=n)
        for event_id in ids:
            assert d.seen(store, event_id, NOW) is False
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert used / n < 400, f"{used / n:.0f} bytes per id remembered"
    assert all(d.seen(store, event_id, NOW + 1) for event_id in ids)  # still recognised
    assert d.seen(store, "z" + ids[0][1:], NOW + 1) is False  # a digest per id: no collision
    assert d.seen("t" + store[1:], ids[0], NOW + 1) is False  # nor across stores
    assert d.seen("a" * 31, "b" * 30, NOW) is False  # around the digest threshold (64 characters)
    assert d.seen("a" * 31, "b" * 30, NOW) is True
    assert d.seen("a" * 31, "b" * 31, NOW) is False
    assert d.seen("a" * 31, "b" * 31, NOW) is True
