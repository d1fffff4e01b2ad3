"""Edges of the ingest wire protocol and of event validation found in review (each test names its bug)."""
from __future__ import annotations

import asyncio
from typing import Any

import msgpack

from engine.app import Engine
from tests.engine.conftest import Client, cart_event


async def _until_eof(client: Client, timeout: float = 5) -> list[Any]:
    replies = []
    while True:
        reply = await client.reply(timeout=timeout)
        if reply is None:
            return replies
        replies.append(reply)


async def test_a_half_closed_client_gets_every_reply_then_eof_also_behind_a_sync(engine: Engine) -> None:
    # A client that writes its frames, a sync among them, then shuts down its write side and reads until
    # EOF: it must get every reply and then the end of the stream. The sync's reply was still pending
    # when the EOF came, and the connection was never closed after it: the client waited forever.
    client = await Client.tcp(engine)
    try:
        client.send(cart_event("c1"))
        client.send({"type": "sync"})
        client.send(cart_event("c2"))
        await client.writer.drain()
        client.writer.write_eof()
        replies = await _until_eof(client)
        assert [r["seq"] for r in replies] == [1, 2, 3]
        assert replies[1] == {"seq": 2, "synced": True}
    finally:
        await client.close()


async def test_odd_values_in_a_push_subscription_neither_reject_the_event_nor_kill_the_flow(engine: Engine) -> None:
    # A Web Push subscription map is stored whole and handed to the channel as JSON. An unknown field
    # in it holding what msgpack carries and JSON cannot (bin, an extension, a timestamp, a map with
    # int keys) was accepted, and then: an int-keyed map broke the profile record (the event answered
    # "internal error; not applied", yet its cart was created), and the others made the cart's first
    # step raise when the push contact was turned into JSON, so the flow stopped and not even the
    # email went out.
    odd = {"bin": b"\x00\x01", "ext": msgpack.ExtType(5, b"zz"), "ts": msgpack.Timestamp(5, 0), "intkey": {1: 2}}
    client = await Client.tcp(engine)
    try:
        for name, value in odd.items():
            event = cart_event(name, profile=f"p-{name}")
            event["profile"]["push"] = {"endpoint": "https://push.example/s/1",
                                        "keys": {"p256dh": "k", "auth": "a"}, "extra": value}
            event["profile"]["consent"] = {"email": True, "push": True}
            assert await client.frame(event) == {"seq": list(odd).index(name) + 1,
                                                 "accepted": 1, "rejected": []}
    finally:
        await client.close()
    await engine.runtime.advance_clock(2 * 3600)
    for name in odd:
        sent = {(r["channel"], r["outcome"]) for r in engine.runtime.msglog.query(cart=name)}
        assert ("email", "sent") in sent and ("push", "sent") in sent, (name, sent)


def test_a_push_subscription_keeps_its_known_fields_and_names_a_bad_expiration_time() -> None:
    from engine.config import EngineSettings
    from engine.validate import Validator

    validator = Validator(EngineSettings())
    event = cart_event("c1")
    sub = {"endpoint": "https://push.example/s/1", "keys": {"p256dh": "k", "auth": "a"}, "expirationTime": None,
           "extra": b"\x00"}
    event["profile"]["push"] = sub
    assert validator.validate(event, 0.0) is None
    assert sub == {"endpoint": "https://push.example/s/1", "keys": {"p256dh": "k", "auth": "a"}, "expirationTime": None}
    event["profile"]["push"] = {"endpoint": "https://push.example/s/1", "expirationTime": float("nan")}
    assert validator.validate(event, 0.0) == "profile.push.expirationTime: must be a number or nil"



def _bad_utf8(field: str) -> bytes:
    """One event map whose ``field`` is a msgpack str holding bytes that are not UTF-8 (not msgpack)."""
    event = msgpack.packb({"type": "session.ended", "store": "shop1", "cart": "c1", field: "@@"})
    return event.replace(b"\xa2@@", b"\xa2\xff\xfe")


async def test_invalid_utf8_in_a_known_field_gets_the_error_reply_after_the_earlier_replies(engine: Engine) -> None:
    # msgspec raises UnicodeDecodeError (not a msgspec error) for a known string field whose bytes are
    # not UTF-8; it escaped data_received, the loop aborted the connection, and the replies to the
    # frames before it (their events applied) were never written: no error reply either.
    for bad, seq in ((_bad_utf8("store"), 4), (b"\x92" + msgpack.packb(cart_event("c9")) + _bad_utf8("cart"), 4),
                     (_bad_utf8("type"), 4)):
        client = await Client.tcp(engine)
        try:
            client.send(cart_event("c1"))
            client.send([cart_event("c2"), cart_event("c3")])
            client.send([])
            client.send_raw(bad)
            client.send(cart_event("c4"))  # never read: the connection closes at the bad frame
            await client.writer.drain()
            replies = await _until_eof(client)
        finally:
            await client.close()
        assert replies[:3] == [{"seq": 1, "accepted": 1, "rejected": []}, {"seq": 2, "accepted": 2, "rejected": []},
                               {"seq": 3, "accepted": 0, "rejected": []}]
        assert len(replies) == 4 and replies[3]["seq"] == seq and replies[3]["error"].startswith("invalid msgpack")
        assert engine.registry.cart("shop1", "c3") is not None
        assert engine.registry.cart("shop1", "c9") is None and engine.registry.cart("shop1", "c4") is None


async def test_nothing_after_an_invalid_frame_is_applied_while_a_sync_reply_is_pending() -> None:
    # After a frame that is not msgpack the connection is to be closed: events of earlier frames stay
    # accepted, later ones are not. With a sync reply still pending, _fail left the transport open
    # (to write the queued replies first) and reading on: bytes arriving meanwhile were still cut into
    # frames and their events applied, though their replies were never written.
    from engine.config import EngineSettings
    from engine.ingest import FrameHandler, IngestProtocol, IngestServer
    from engine.stats import Stats
    from engine.validate import Validator
    from tests.engine.test_ingest_framing import _Transport

    applied: list[dict[str, Any]] = []
    durable = asyncio.get_running_loop().create_future()

    async def sync() -> None:
        await durable  # a store slow to confirm

    handler = FrameHandler(apply=lambda event, now: applied.append(event), now=lambda: 1.0e9,
                           validator=Validator(EngineSettings()), deduper=None, stats=Stats(), sync=sync)
    protocol = IngestProtocol(IngestServer(handler, Stats()))
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    event = {"type": "session.ended", "store": "shop1", "cart": "c1"}
    protocol.data_received(msgpack.packb(event) + msgpack.packb({"type": "sync"}) + _bad_utf8("store"))
    assert len(applied) == 1
    protocol.data_received(msgpack.packb({**event, "cart": "c2"}) + msgpack.packb({**event, "cart": "c3"}))
    assert [e["cart"] for e in applied] == ["c1"]
    durable.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(bytes(transport.data))
    replies = list(unpacker)
    assert [r["seq"] for r in replies] == [1, 2, 3] and replies[1] == {"seq": 2, "synced": True}
    assert replies[2]["error"].startswith("invalid msgpack") and transport.closed
