"""Shared fixtures for engine tests: an in-process engine on a manual clock, and a msgpack client."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from engine.app import Engine
from engine.clock import ManualClock, parse_time
from engine.config import parse_config

START = parse_time("2026-03-06T10:00:00Z")  # a Friday, 10:00 UTC


def engine_config(tmp_path: Path, *, stores: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                  **engine: Any) -> Any:
    """A test config: ingest on 127.0.0.1:0 and a UNIX socket, admin socket in ``tmp_path``, manual
    clock, file store, outbox channels; ``engine`` overrides ``[engine]`` keys, ``stores`` the stores."""
    table = {
        "ingest_tcp": "127.0.0.1:0",
        "ingest_unix": str(tmp_path / "ingest.sock"),
        "admin_unix": str(tmp_path / "admin.sock"),
        "store": f"file:{tmp_path / 'state'}",
        "clock": "manual",
        "clock_start": "2026-03-06T10:00:00Z",
        "snapshot_interval": "1h",
    }
    table.update(engine)
    return parse_config({
        "engine": table,
        "stores": stores if stores is not None else {"shop1": {"name": "Acme", "timezone": "UTC"}},
        "channels": {name: {"kind": "outbox", "dir": str(tmp_path / "outbox")}
                     for name in ("email", "push", "whatsapp", "sms")},
    }, source="test", env=env or {})


async def start_engine(config: Any, tmp_path: Path, *, manual: bool = True) -> Engine:
    """A started in-process engine (on a manual clock at START unless ``manual`` is False)."""
    engine = Engine(config, clock=ManualClock(START) if manual else None, base_dir=tmp_path)
    await engine.start()
    return engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    eng = await start_engine(engine_config(tmp_path), tmp_path)
    try:
        yield eng
    finally:
        await eng.stop()


class Client:
    """A msgpack ingest client that reads replies in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.unpacker = msgpack.Unpacker(raw=False)

    @classmethod
    async def tcp(cls, engine: Engine) -> Client:
        host, port = engine.ingest.tcp_address  # type: ignore[misc]
        return cls(*await asyncio.open_connection(host, port))

    @classmethod
    async def unix(cls, engine: Engine) -> Client:
        return cls(*await asyncio.open_unix_connection(engine.ingest.unix_path))

    def send(self, obj: Any) -> None:
        self.writer.write(msgpack.packb(obj))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def reply(self, timeout: float = 10) -> Any:
        while True:
            for obj in self.unpacker:
                return obj
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                return None
            self.unpacker.feed(data)

    async def frame(self, obj: Any) -> Any:
        self.send(obj)
        await self.writer.drain()
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def cart_event(cart: str = "c1", *, store: str = "shop1", profile: str = "p1", value: float = 30.0,
               **extra: Any) -> dict[str, Any]:
    event = {
        "type": "cart.updated", "store": store, "cart": cart,
        "profile": {"id": profile, "email": f"{profile}@example.test", "consent": {"email": True}},
        "items": [{"sku": "A1", "name": "Lamp", "qty": 1, "price": value}],
        "value": value, "currency": "EUR", "checkout_url": f"https://shop.test/c/{cart}",
    }
    event.update(extra)
    return event
