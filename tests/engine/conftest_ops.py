"""Shared helpers of the ops tests (admin socket, /metrics, CLI clients): an in-process engine on a
manual clock with real sockets, an async admin client and a msgpack ingest client.

Imported explicitly by ``test_admin.py``, ``test_metrics_http.py`` and ``test_cli_clients.py`` (not a
``conftest.py``: the fixture is named ``ops_engine`` so it never shadows another suite's ``engine``).
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from engine.app import Engine
from engine.clock import parse_time
from engine.config import Config
from tests.engine.conftest import engine_config, start_engine

START = parse_time("2026-03-06T10:00:00Z")  # a Friday, 10:00 UTC
HOUR = 3600.0


def ops_config(tmp_path: Path, *, env: dict[str, str] | None = None, **engine: Any) -> Config:
    """A test config: ingest on 127.0.0.1:0, admin socket in ``tmp_path``, manual clock, outbox channels.

    ``shop1`` has unlimited credits, ``shop2`` five.
    """
    return engine_config(
        tmp_path, ingest_unix="", env=env,
        stores={"shop1": {"name": "Acme", "timezone": "UTC"}, "shop2": {"name": "Bolt", "timezone": "UTC", "credits": 5}},
        **engine,
    )


@pytest.fixture
async def ops_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    engine = await start_engine(ops_config(tmp_path), tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()


class Admin:
    """An async admin-socket client (UNIX or TCP): ``await admin("stats")`` → the reply dict."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def unix(cls, engine: Engine) -> Admin:
        assert engine.ops is not None and engine.ops.admin_path is not None
        return cls(*await asyncio.open_unix_connection(engine.ops.admin_path))

    @classmethod
    async def tcp(cls, address: tuple[str, int]) -> Admin:
        return cls(*await asyncio.open_connection(*address))

    async def __call__(self, line: str) -> dict[str, Any]:
        self.writer.write(line.encode() + b"\n")
        await self.writer.drain()
        raw = await asyncio.wait_for(self.reader.readline(), 30)
        assert raw, f"connection closed instead of answering {line!r}"
        reply: dict[str, Any] = json.loads(raw)
        return reply

    async def eof(self) -> bool:
        """True when the server has closed the connection (after any pending reply)."""
        return await asyncio.wait_for(self.reader.read(), 30) == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


class Ingest:
    """A msgpack ingest client over TCP: ``await ingest.frame(obj)`` → the reply map."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.unpacker = msgpack.Unpacker(raw=False)

    @classmethod
    async def open(cls, engine: Engine) -> Ingest:
        host, port = engine.ingest.tcp_address  # type: ignore[misc]
        return cls(*await asyncio.open_connection(host, port))

    async def frame(self, obj: Any) -> Any:
        self.writer.write(msgpack.packb(obj))
        await self.writer.drain()
        while True:
            for reply in self.unpacker:
                return reply
            data = await asyncio.wait_for(self.reader.read(65536), 30)
            assert data, "ingest connection closed"
            self.unpacker.feed(data)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def cart_event(cart: str, store: str = "shop1", *, value: float = 10.0, etype: str = "cart.updated",
               **extra: Any) -> dict[str, Any]:
    """A cart update whose shopper has an email address and email consent (no push, no phone)."""
    event: dict[str, Any] = {
        "type": etype, "store": store, "cart": cart,
        "profile": {"id": f"p-{cart}", "email": f"{cart}@example.test", "consent": {"email": True}},
        "items": [{"sku": "A1", "name": "Thing", "qty": 1, "price": value}], "value": value, "currency": "EUR",
        "checkout_url": f"https://shop.test/c/{cart}",
    }
    event.update(extra)
    return event


async def workload(engine: Engine) -> dict[str, Any]:
    """A known workload, through the real sockets. Afterwards (engine clock START + 2 h):

    * events: 8 accepted (one of them a duplicate id), 1 rejected, in 6 frames;
    * c1: exit at START → abandoned, email of step 1 sent at +1 h, whatsapp step skipped at +1 h 30,
      then ordered (value 10) → recovered, credited to step 1 / email; its email opened once;
    * c2: idle → abandoned at +30 min, email sent at +1 h 30 → recovering;
    * c3: ordered before abandonment → converted (never ran a flow, forgotten at once).

    Returns the ids of what happened, for assertions.
    """
    ingest = await Ingest.open(engine)
    admin = await Admin.unix(engine)
    try:
        r = await ingest.frame([cart_event("c1"), cart_event("c2"), cart_event("c3"), {"type": "cart.updated", "store": "shop1"}])
        assert r["accepted"] == 3 and r["rejected"][0][0] == 3
        for _ in range(2):  # the second is a duplicate id: accepted and ignored
            assert (await ingest.frame({"type": "session.ended", "store": "shop1", "cart": "c1", "id": "exit-1"}))["accepted"] == 1
        assert (await ingest.frame({"type": "order.completed", "store": "shop1", "cart": "c3", "order": "o3", "value": 10.0}))["accepted"] == 1
        adv = await admin("clock advance 2h")
        assert adv["ok"] and adv["fired"] == 5, adv
        sent = (await admin("logs cart=c1 outcome=sent"))["records"]
        assert [r["id"] for r in sent] == ["shop1:c1:1:1:email"]
        assert (await ingest.frame({"type": "order.completed", "store": "shop1", "cart": "c1", "order": "o1", "value": 10.0}))["accepted"] == 1
        assert (await ingest.frame({"type": "message.opened", "store": "shop1", "message": sent[0]["id"]}))["accepted"] == 1
    finally:
        await admin.close()
        await ingest.close()
    return {"c1_email": sent[0]["id"]}


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client call in a worker thread while this loop keeps serving the engine."""
    return await asyncio.to_thread(fn, *args, **kwargs)
