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
