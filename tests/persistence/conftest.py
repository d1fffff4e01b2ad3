"""Fixtures for the persistence tests: a private redis-server per test, engines on a manual clock.

Every Redis here is started by the fixture on a free loopback port (never the one on 6379), without
persistence (``--save "" --appendonly no``), in the test's temporary directory; ``kill -9`` and restart
are available to simulate an outage (a restarted server is empty, as a Redis without persistence is).
Readiness is polled with a deadline, never slept for.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.app import Engine
from engine.clock import ManualClock, parse_time
from engine.config import parse_config
from engine.tasks import cancel_and_wait

START = parse_time("2026-03-06T10:00:00Z")  # a Friday, 10:00 UTC
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Any, *, deadline_s: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check()`` until it returns something truthy (returned), or fail after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    delay = 0.002
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


async def async_wait_until(check: Any, *, deadline_s: float = 10.0, what: str = "condition") -> Any:
    end = time.monotonic() + deadline_s
    delay = 0.002
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


class RedisServer:
    """One redis-server process of our own; ``kill9()`` and ``start()`` again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = open(self.directory / f"redis-{self.starts}.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--daemonize", "no", "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(lambda: self.proc is not None and (self.proc.poll() is not None or self._ping()),
                   what=f"redis-server on port {self.port}")
        assert self.proc.poll() is None, (self.directory / f"redis-{self.starts}.log").read_text()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.kill9()
        self.start()

    def command(self, *args: str | bytes) -> Any:
        """One command with a synchronous client (for tests that poke at the data)."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        try:
            return client.execute_command(*args)
        finally:
            client.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill9()


def engine_config(tmp_path: Path, store: str, *, durability: str = "snapshot", channels: dict[str, Any] | None = None,
                  stores: dict[str, Any] | None = None, **engine: Any) -> Any:
    table: dict[str, Any] = {
        "ingest_tcp": "127.0.0.1:0",
        "ingest_unix": "",
        "admin_unix": str(tmp_path / "admin.sock"),
        "store": store,
        "durability": durability,
        "clock": "manual",
        "clock_start": "2026-03-06T10:00:00Z",
        "snapshot_interval": "1h",
        "sync_timeout": "3s",
    }
    table.update(engine)
    chans = {name: {"kind": "outbox", "dir": str(tmp_path / "outbox")} for name in ("email", "push", "whatsapp", "sms")}
    chans.update(channels or {})
    return parse_config({
        "engine": table,
        "stores": stores if stores is not None else {"shop1": {"name": "Acme", "timezone": "UTC"}},
        "channels": chans,
    }, source="test")


def store_spec(kind: str, tmp_path: Path, redis: RedisServer | None) -> str:
    if kind == "file":
        return f"file:{tmp_path / 'state'}"
    assert redis is not None
    return redis.url


@pytest.fixture(params=["file", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if store_kind == "file":
        return f"file:{tmp_path / 'state'}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


async def crash(engine: Engine) -> None:
    """Stop an in-process engine the way ``kill -9`` would leave its store: the journal writer and the
    snapshot loop are cancelled first, so nothing more becomes durable; then the rest is torn down
    (without a final snapshot) so that the test's event loop is clean."""
    engine._crashed = True  # type: ignore[attr-defined]
    for task in (engine.journal._task, engine.snapshotter._task):
        await cancel_and_wait(task)  # (one cancel may be swallowed by redis-py's wait_for on 3.11)
    engine.journal._task = None
    engine.snapshotter._task = None
    await engine.ingest.stop_accepting()
    if engine.dispatcher is not None and hasattr(engine.dispatcher, "stop"):
        await engine.dispatcher.stop()
    await engine.runtime.stop()
    await engine.ingest.close()
    if engine.ops is not None:
        await engine.ops.close()
    await engine.store.close()


class HoldingSender:
    """Wraps a pool's sender: the calls from the ``hold_from``-th on (1: every one) do not answer until
    :attr:`release` is set, then answer "uncertain" (the connection went with the process); the ones
    before go to the wrapped sender. :attr:`held` lists the keys of the calls under way."""

    def __init__(self, inner: Any, *, hold_from: int = 1) -> None:
        self.inner = inner
        self.hold_from = hold_from
        self.calls = 0
        self.held: list[str] = []
        self.release = asyncio.Event()

    async def send(self, message: Any) -> Any:
        from channels import DeliveryResult

        self.calls += 1
        if self.calls < self.hold_from:
            return await self.inner.send(message)
        self.held.append(message.key)
        await self.release.wait()
        return DeliveryResult.uncertain("connection lost")

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def hold_sends(engine: Engine, channel: str, *, hold_from: int = 1) -> HoldingSender:
    """Make ``channel``'s provider calls of ``engine`` hang from the ``hold_from``-th on (see HoldingSender)."""
    pool = engine.dispatcher.pools[channel]  # type: ignore[union-attr]
    holder = HoldingSender(pool.sender, hold_from=hold_from)
    pool.sender = holder
    return holder


async def crash_in_flight(engine: Engine, holder: HoldingSender, *tasks: asyncio.Task[Any]) -> None:
    """:func:`crash` with provider calls under way (``holder``'s): ``tasks`` (a ``clock advance`` waiting
    for them) are cancelled; the calls answer only once the journal's writer is gone, so that nothing about
    them becomes durable, as with ``kill -9``."""
    for task in tasks:
        await cancel_and_wait(task)
    crashing = asyncio.get_running_loop().create_task(crash(engine))
    await async_wait_until(lambda: engine.journal._task is None, what="the journal writer to stop")
    holder.release.set()
    await crashing


@pytest.fixture
async def engines() -> AsyncIterator[list[Engine]]:
    """Engines a test starts; stopped (gracefully) at the end unless the test crashed them."""
    started: list[Engine] = []
    yield started
    for engine in started:
        if not engine._stopped.is_set() and not getattr(engine, "_crashed", False):
            try:
                await asyncio.wait_for(engine.stop(), 30)
            except Exception as exc:  # noqa: BLE001 - teardown: report, do not hide the test's own result
                print(f"engine stop in teardown failed: {exc!r}")


async def start_engine(engines: list[Engine], config: Any, tmp_path: Path) -> Engine:
    engine = Engine(config, clock=ManualClock(START), base_dir=tmp_path)
    await engine.start()
    engines.append(engine)
    return engine


def outbox_lines(tmp_path: Path) -> list[dict[str, Any]]:
    import json

    out = []
    for path in sorted((tmp_path / "outbox").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line)["message"])
    return out


os.environ.setdefault("PYTHONHASHSEED", "0")
