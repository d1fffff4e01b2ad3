"""The event schema as msgspec types: the fast path of ingest validation.

Why two validators
------------------
:class:`engine.validate.Validator` is the authority: it names the bad field precisely
(``"items[2].qty: must be a positive integer"``) and is the rule book of DESIGN.md "Events". It works on
dicts that msgpack has already built, in Python: decoding a frame and checking its events that way was
about 4.5 us of the ~11 us an event cost (measured in-process, ``python -m bench.ingest --profile``).

Here the same structural rules are declared as ``TypedDict`` types, so that ``msgspec`` decodes an
event's msgpack bytes *and* checks types, lengths and ranges in one pass in C, producing the same plain
dicts the actors read (about 1.2 us per event). What a type cannot say (which field a given event type
requires, URLs, the contents of a profile map, currency letters) :meth:`Validator.check_decoded` checks
afterwards in Python.

The contract between the two: the fast path may be *stricter* than the validator, never looser. Every
event msgspec refuses goes to the validator as msgpack decoded it (so its reason, or its acceptance, is
exactly what it would have been without this module); every event msgspec accepts is one the validator
accepts, normalised the same way. ``tests/engine/test_schema.py`` checks this with random events.

One difference is intended: the decoded dicts hold only the fields the schema names. Unknown fields are
still accepted (DESIGN.md: a newer backend may send fields this engine does not know), but they are
dropped on the fast path instead of being carried, unread, into the actors' stored items.
"""
from __future__ import annotations

import sys
from typing import Annotated, Any, Literal, Required, TypedDict, Union

import msgspec
from msgspec import Meta

__all__ = ["EventDecoder", "EventType", "event_decoder", "frame_kind", "split_batch", "MAX_QTY"]

#: the largest quantity of one item (the validator's rule too)
MAX_QTY = 1_000_000
_MAX_FLOAT = sys.float_info.max  # ``le`` keeps +inf out; ``ge`` keeps NaN out (NaN >= 0 is false)

EventType = Literal[
    "cart.updated", "checkout.started", "session.ended", "payment.failed", "order.completed",
    "cart.cleared", "profile.updated", "message.opened", "message.clicked",
]

#: decodes one msgpack value; ``decode(bytes) -> dict`` raising ``msgspec.ValidationError`` or
#: ``msgspec.DecodeError``
EventDecoder = msgspec.msgpack.Decoder


def event_decoder(max_string: int, max_items: int) -> EventDecoder:
    """A decoder of one event map under these limits (characters per string, items per cart).

    Types are built per call because the limits are configuration; an engine builds one.
    """
    name = Annotated[str, Meta(min_length=1, max_length=max_string)]  # ids, names: non-empty
    text = Annotated[str, Meta(max_length=max_string)]  # optional text (an item's name may be "")
    money = Annotated[float, Meta(ge=0.0, le=_MAX_FLOAT)]  # msgspec turns ints into floats, as we do
    qty = Annotated[int, Meta(ge=1, le=MAX_QTY)]  # msgpack booleans are not ints here either
    item = TypedDict(  # type: ignore[misc]  # built at run time: the lengths are configuration
        "Item",
        {"sku": Required[name], "qty": Required[qty], "price": Required[money],
         "name": Union[text, None], "url": Union[text, None], "image": Union[text, None]},
        total=False,
    )
    event = TypedDict(  # type: ignore[misc]
        "Event",
        {
            "type": Required[EventType],
            "store": Required[name],
            "ts": Union[money, None],
            "id": Union[name, None],
            "cart": Union[name, None],
            # A profile map's contents are the validator's (emails, phones, zones: not type rules).
            "profile": Union[name, dict[str, Any], None],
            "items": Union[Annotated[list[item], Meta(max_length=max_items)], None],  # type: ignore[valid-type]
            "value": Union[money, None],
            "currency": Union[Annotated[str, Meta(min_length=3, max_length=3)], None],
            "checkout_url": Union[text, None],
            "reason": Union[name, None],
            "order": Union[name, None],
            "message": Union[name, None],
        },
        total=False,
    )
    return msgspec.msgpack.Decoder(event)


#: a batch frame cut into its events' undecoded bytes (``msgspec.Raw``, views of the frame)
_BATCH = msgspec.msgpack.Decoder(list[msgspec.Raw])


def split_batch(frame: bytes | bytearray) -> list[msgspec.Raw]:
    """The elements of an array frame as raw msgpack values, without decoding them (C, ~0.2 us each).

    Raises:
        msgspec.DecodeError: the bytes are not one msgpack array.
    """
    return _BATCH.decode(frame)


def frame_kind(first: int) -> int:
    """What a frame is from its first byte: 1 a map (an event), 2 an array (a batch), 0 anything else."""
    if 0x80 <= first <= 0x8F or first == 0xDE or first == 0xDF:
        return 1
    if 0x90 <= first <= 0x9F or first == 0xDC or first == 0xDD:
        return 2
    return 0
