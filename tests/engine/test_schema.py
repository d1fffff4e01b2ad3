"""engine.schema: the msgspec fast path agrees with the validator, event by event and frame by frame.

The contract (engine/schema.py): an event the fast path accepts is one ``Validator.validate`` accepts,
normalised the same way; an event it refuses gets exactly the validator's reason. ``paths_agree`` checks
that for one event through the real ``FrameHandler`` (``handle_bytes`` against ``handle``);
tests/engine/test_validate.py runs it on every event its rule tests and fuzzers build, so each rule is
checked on both paths.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import EngineSettings
from engine.ingest import FrameHandler, NotMsgpack
from engine.schema import frame_kind, split_batch
from engine.stats import Stats
from engine.validate import Validator

NOW = 1_772_791_200.0
#: the fields the schema names, at the top level and in an item (the fast path drops the others)
TOP = {"type", "store", "ts", "id", "cart", "profile", "items", "value", "currency", "checkout_url", "reason",
       "order", "message"}
ITEM = {"sku", "qty", "price", "name", "url", "image"}


def _handler(validator: Validator) -> tuple[FrameHandler, list[dict[str, Any]]]:
    applied: list[dict[str, Any]] = []

    async def sync() -> None:
        return None

    handler = FrameHandler(apply=lambda event, now: applied.append(event), now=lambda: NOW, validator=validator,
                           deduper=None, stats=Stats(), sync=sync)
    return handler, applied


def _canon(value: Any) -> Any:
    """A comparable form: numbers as floats (the fast path makes ints floats where the validator does not
    look), NaN as a marker, known fields only (the fast path drops the others)."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (int, float)):
        try:
            f = float(value)
        except OverflowError:
            return ("int", value)
        return "NaN" if math.isnan(f) else f
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return repr(value)


def _known(event: dict[str, Any]) -> Any:
    out = {k: v for k, v in event.items() if k in TOP}
    items = out.get("items")
    if type(items) is list:
        out["items"] = [{k: v for k, v in it.items() if k in ITEM} if type(it) is dict else it for it in items]
    return _canon(out)


def paths_agree(frame: Any, validator: Validator) -> None:
    """``frame`` (an event or a batch) gets the same reply and applies the same events on both paths."""
    try:
        data = msgpack.packb(frame)
    except (TypeError, ValueError, OverflowError):
        return  # not something a client can send
    decoded = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if type(decoded) is dict and decoded.get("type") == "sync":
        return  # the control frame: the protocol's business, tested in test_ingest
    slow, slow_applied = _handler(validator)
    fast, fast_applied = _handler(validator)
    try:
        expected = slow.handle(1, decoded)
    except Exception as exc:  # pragma: no cover - the validator never raises (test_validate's fuzzers)
        pytest.fail(f"handle raised {exc!r}")
    got = fast.handle_bytes(1, bytearray(data))
    assert got == expected, (frame, got, expected)
    assert [_known(e) for e in fast_applied] == [_known(e) for e in slow_applied], frame


def test_frame_kind_reads_the_first_byte() -> None:
    assert frame_kind(msgpack.packb({"a": 1})[0]) == 1
    assert frame_kind(msgpack.packb({str(i): i for i in range(20)})[0]) == 1  # map16
    assert frame_kind(msgpack.packb([1])[0]) == 2
    assert frame_kind(msgpack.packb(list(range(20)))[0]) == 2  # array16
    for other in (1, "x", None, 2.5, b"b"):
        assert frame_kind(msgpack.packb(other)[0]) == 0


def test_split_batch_keeps_each_event_as_its_bytes() -> None:
    events = [{"type": "cart.updated", "i": i} for i in range(3)]
    raws = split_batch(msgpack.packb(events))
    assert [msgpack.unpackb(bytes(r)) for r in raws] == events


def test_a_valid_event_decodes_to_the_same_dict_without_unknown_fields() -> None:
    v = Validator(EngineSettings())
    event = {"type": "cart.updated", "store": "s", "cart": "c", "ts": 5, "shiny": [1, 2],
             "items": [{"sku": "a", "qty": 1, "price": 2, "colour": "red"}], "currency": "eur"}
    handler, applied = _handler(v)
    assert handler.handle_bytes(1, msgpack.packb(event)) == {"seq": 1, "accepted": 1, "rejected": []}
    assert applied == [{"type": "cart.updated", "store": "s", "cart": "c", "ts": 5.0,
                        "items": [{"sku": "a", "qty": 1, "price": 2.0}], "currency": "EUR"}]
    assert type(applied[0]["ts"]) is float and type(applied[0]["items"][0]["price"]) is float


def test_a_batch_with_bad_events_names_them_and_applies_the_rest() -> None:
    v = Validator(EngineSettings())
    good = {"type": "session.ended", "store": "s", "cart": "c"}
    frame = [good, {"type": "cart.updated", "store": "s", "cart": "c", "items": [{"sku": "a", "qty": 0, "price": 1}]},
             7, good, {"type": "sync"}, {"type": "order.completed", "store": "s", "cart": "c", "items": "junk"}]
    handler, applied = _handler(v)
    reply = handler.handle_bytes(3, msgpack.packb(frame))
    assert reply == {"seq": 3, "accepted": 3, "rejected": [
        [1, "items[0].qty: must be a positive integer"], [2, "event: must be a map"],
        [4, "type: unknown event type 'sync'"]]}
    # order.completed does not look at items: the schema refuses it, the validator accepts it as sent
    assert applied[-1]["items"] == "junk"
    paths_agree(frame, v)


def test_bytes_that_are_not_msgpack_raise_before_anything_is_applied() -> None:
    v = Validator(EngineSettings())
    good = msgpack.packb({"type": "session.ended", "store": "s", "cart": "c"})
    bad_utf8 = b"\x82\xa4type\xacsession.ended\xa5store\xa2\xff\xfe"
    handler, applied = _handler(v)
    with pytest.raises(NotMsgpack):
        handler.handle_bytes(1, b"\x92" + good + bad_utf8)
    assert applied == []


def test_nesting_deeper_than_msgspec_goes_to_the_validator() -> None:
    deep: list[Any] = []
    for _ in range(1000):  # msgspec stops near 1 000 levels with a RecursionError; msgpack allows 1 024
        deep = [deep]
    event = {"type": "cart.updated", "store": "s", "cart": "c", "profile": {"id": "p", "deep": deep}}
    handler, applied = _handler(Validator(EngineSettings()))
    assert handler.handle_bytes(1, msgpack.packb(event)) == {"seq": 1, "accepted": 1, "rejected": []}
    assert applied[0]["profile"]["id"] == "p"
    levels, node = 0, applied[0]["profile"]["deep"]
    while node:
        levels, node = levels + 1, node[0]
    assert levels == 1000  # decoded whole, by msgpack


def test_a_single_sync_frame_is_the_control_frame() -> None:
    handler, applied = _handler(Validator(EngineSettings()))
    assert handler.handle_bytes(1, msgpack.packb({"type": "sync"})) is None
    assert applied == []


# ---------------------------------------------------------------------------------- random events

SMALL = EngineSettings(max_items=3, max_string=12)
texts = st.sampled_from(["", "a", "shop1", "x" * 12, "x" * 13, "é" * 12, "é" * 13]) | st.text(max_size=14)
numbers = (st.integers(min_value=-3, max_value=3) | st.integers(min_value=-(2**64), max_value=2**64 - 1)
           | st.floats(allow_nan=True, allow_infinity=True) | st.booleans())
urls = st.sampled_from(["https://a.example/p", "http://b.example", "ftp://a.example/", "https://", "nope",
                        "https://a.example/" + "x" * 20])
anything = st.none() | texts | numbers | urls | st.lists(st.integers(), max_size=2) | st.binary(max_size=2)
items = st.fixed_dictionaries({}, optional={
    "sku": texts | anything, "qty": st.integers(min_value=-1, max_value=1_000_001) | numbers,
    "price": numbers | anything, "name": texts | anything, "url": urls | anything,
    "image": urls | anything, "colour": anything,
})
profiles = st.fixed_dictionaries({}, optional={
    "id": texts | anything, "email": st.sampled_from(["a@b.co", "nope"]) | anything,
    "phone": st.sampled_from(["+34600123456", "123"]) | anything,
    "locale": st.sampled_from(["es_ES", "en", "x"]) | anything,
    "timezone": st.sampled_from(["Europe/Madrid", "Mars/Base"]) | anything,
    "consent": st.dictionaries(st.sampled_from(["email", "sms"]), st.booleans() | anything, max_size=2),
    "push": st.sampled_from(["tok"]) | st.fixed_dictionaries({"endpoint": urls}) | anything,
})
events = st.fixed_dictionaries(
    {"type": st.sampled_from(["cart.updated", "checkout.started", "session.ended", "payment.failed",
                              "order.completed", "cart.cleared", "profile.updated", "message.opened",
                              "message.clicked", "bogus"]),
     "store": st.just("shop1") | texts | anything},
    optional={
        "ts": numbers | anything, "id": texts | anything, "cart": texts | anything,
        "profile": texts | profiles | anything,
        "items": st.lists(items | anything, max_size=4) | anything, "value": numbers | anything,
        "currency": st.sampled_from(["EUR", "eur", "EU", "E1R", "ÉUR"]) | anything,
        "checkout_url": urls | anything, "reason": texts | anything, "order": texts | anything,
        "message": texts | anything, "extra": anything,
    },
)


@settings(max_examples=600, deadline=None)
@given(event=events)
def test_random_events_agree_on_both_paths(event: dict[str, Any]) -> None:
    paths_agree(event, Validator(SMALL))


@settings(max_examples=150, deadline=None)
@given(batch=st.lists(events | anything, max_size=6))
def test_random_batches_agree_on_both_paths(batch: list[Any]) -> None:
    paths_agree(copy.deepcopy(batch), Validator(SMALL))
