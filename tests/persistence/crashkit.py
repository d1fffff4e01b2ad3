"""A scripted shop workload against ``cartwheel run`` as a subprocess, which tests kill and restart.

The workload is a list of steps on a manual clock: frames of events (each event with an ``id`` and an
explicit ``ts``), ``clock set`` to a time, and (snapshot durability) ``sync``. Hundreds of carts go
through abandonment, recovery emails (to the outbox), purchases, opt-outs and clears.

:class:`Driver` plays the steps like a careful shop backend would: when the engine dies it restarts it
and resumes from what was acknowledged as durable — in journal durability, every frame that got its
reply; in snapshot durability, everything before the last ``sync`` that succeeded — re-sending the
rest (event ids make a re-sent event that did survive harmless). Clock steps are idempotent
(``clock set`` never moves time backwards).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

EXE = str(Path(sys.executable).parent / "cartwheel")
START = 1772791200.0  # 2026-03-06T10:00:00Z
MIN = 60.0
HOUR = 3600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Step:
    kind: str  # "events" | "clock" | "sync"
    frames: list[Any] = field(default_factory=list)
    at: float = 0.0


def workload(n_carts: int = 300, seed: int = 7) -> list[Step]:
    """The scripted shop: deterministic for a seed."""
    rnd = random.Random(seed)
    steps: list[Step] = []
    eid = 0

    def event(kind: str, cart: str, t: float, **fields: Any) -> dict[str, Any]:
        nonlocal eid
        eid += 1
        # Each cart's events carry their own instant (up to 150 s before the step's time): no two carts
        # share a deadline. Timers due at the very same tick fire in wheel insertion order, which a
        # restore does not reproduce; with two carts of one shopper competing for the frequency cap that
        # would hand a message to the other cart (see the persistence notes: a stable tie-break).
        ts = t - int(cart[1:]) * 0.5
        return {"type": kind, "store": "shop1", "cart": cart, "ts": ts, "id": f"e{eid}", **fields}

    def profile_of(i: int) -> dict[str, Any]:
        pid = f"p{i // 2}" if i % 10 < 2 else f"p{i}"  # every fifth shopper has two carts
        return {"id": pid, "email": f"{pid}@example.test", "consent": {"email": True}, "locale": "en"}

    def cart_update(i: int, t: float, value: float) -> dict[str, Any]:
        return event("cart.updated", f"c{i}", t, profile=profile_of(i), value=value, currency="EUR",
                     items=[{"sku": f"S{i % 7}", "name": "Thing", "qty": 1 + i % 3, "price": value}],
                     checkout_url=f"https://shop.test/c/c{i}")

    t = START
    carts = list(range(n_carts))
    # carts arrive in batches over 20 minutes
    for b in range(0, n_carts, 50):
        steps.append(Step("events", [[cart_update(i, t, 20.0 + i % 50) for i in carts[b:b + 50]]]))
        t += 2 * MIN
        steps.append(Step("clock", at=t))
        if b % 100 == 0:
            steps.append(Step("sync"))
    # some shoppers keep shopping, some leave explicitly
    steps.append(Step("events", [[cart_update(i, t, 99.0) for i in rnd.sample(carts, 40)],
                                 [event("session.ended", f"c{i}", t) for i in rnd.sample(carts, 30)]]))
    steps.append(Step("sync"))
    for dt in (25 * MIN, 40 * MIN, 35 * MIN):  # abandonment, then the 1 h emails
        t += dt
        steps.append(Step("clock", at=t))
    buyers = rnd.sample(carts, 60)
    steps.append(Step("events", [[event("order.completed", f"c{i}", t, order=f"o{i}", value=25.0) for i in buyers[:30]]]))
    steps.append(Step("events", [[event("cart.cleared", f"c{i}", t) for i in rnd.sample(carts, 15)]]))
    optouts = [{"type": "profile.updated", "store": "shop1", "ts": t, "id": f"opt{i}",
                "profile": {"id": f"p{i}", "consent": {"email": False}}} for i in rnd.sample(carts, 25)]
    steps.append(Step("events", [optouts]))
    steps.append(Step("sync"))
    for dt in (2 * HOUR, 1 * HOUR):  # the 4 h emails
        t += dt
        steps.append(Step("clock", at=t))
    steps.append(Step("events", [[event("order.completed", f"c{i}", t, order=f"o{i}", value=25.0) for i in buyers[30:]]]))
    steps.append(Step("events", [[cart_update(i, t, 55.0) for i in rnd.sample(carts, 20)]]))
    for dt in (10 * HOUR, 10 * HOUR, 8 * HOUR, 10 * HOUR, 12 * HOUR):  # 24 h and 40 h emails, expiry
        t += dt
        steps.append(Step("clock", at=t))
        if dt == 8 * HOUR:
            steps.append(Step("sync"))
    return steps


def write_config(directory: Path, *, store: str, durability: str, port: int, snapshot_interval: str = "300ms",
                 engine: str = "", shop: str = "", channels: str | None = None) -> Path:
    """The crash tests' ``cartwheel.toml``: ingest on ``port`` (TCP only), manual clock, store ``shop1``.
    ``engine`` and ``shop`` are more lines for ``[engine]`` and ``[stores.shop1]``; ``channels`` the
    ``[channels.*]`` tables (default: email and push into ``directory/outbox``)."""
    cfg = directory / "cartwheel.toml"
    if channels is None:
        channels = "".join(f'\n[channels.{name}]\nkind = "outbox"\ndir = "{directory / "outbox"}"\n'
                           for name in ("email", "push"))
    cfg.write_text(f'''
[engine]
ingest_tcp = "127.0.0.1:{port}"
ingest_unix = ""
admin_unix = "{directory / 'admin.sock'}"
store = "{store}"
durability = "{durability}"
snapshot_interval = "{snapshot_interval}"
sync_timeout = "5s"
clock = "manual"
clock_start = {START}
{engine}
[stores.shop1]
name = "Acme"
timezone = "UTC"
{shop}{channels}''')
    return cfg


class EngineProcess:
    """``cartwheel run`` in a subprocess; start, kill -9, SIGTERM."""

    def __init__(self, directory: Path, cfg: Path, port: int) -> None:
        self.directory = directory
        self.cfg = cfg
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def admin_path(self) -> str:
        return str(self.directory / "admin.sock")

    async def start(self, deadline_s: float = 60.0) -> None:
        self.starts += 1
        log = open(self.directory / f"engine-{self.starts}.log", "wb")  # noqa: SIM115, ASYNC230 - handed to the child
        self.proc = subprocess.Popen([EXE, "run", "--config", str(self.cfg)], cwd=self.directory, stdout=log,  # noqa: ASYNC220 - the engine under test is a real process
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        end = time.monotonic() + deadline_s
        delay = 0.01
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited during start: {self.log_tail()}")
            try:
                reply = await self.admin("clock", timeout_s=2)
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                if reply.get("ok"):
                    return
            except (TimeoutError, OSError, json.JSONDecodeError):
                pass
            if time.monotonic() > end:
                raise AssertionError(f"engine did not come up: {self.log_tail()}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    def log_tail(self, n: int = 3000) -> str:
        path = self.directory / f"engine-{self.starts}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    async def admin(self, command: str, *, timeout_s: float = 60.0) -> dict[str, Any]:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.admin_path), timeout_s)
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout_s)
        finally:
            writer.close()
        return json.loads(line)  # type: ignore[no-any-return]


class Died(Exception):
    """The engine went away in the middle of a step."""


class Driver:
    """Plays a workload against an :class:`EngineProcess`, surviving kills; see the module docstring.

    Args:
        kill_at: ``{step index: replies to read before kill -9}`` (0: kill right after the step).
        on_step: optional ``async f(index)`` run after each completed step (outages, SIGTERMs...).
    """

    def __init__(self, engine: EngineProcess, steps: list[Step], *, journal: bool,
                 kill_at: dict[int, int] | None = None, on_step: Any = None) -> None:
        self.engine = engine
        self.steps = steps
        self.journal = journal
        self.kill_at = dict(kill_at or {})
        self.on_step = on_step
        self.kills = 0
        self.replayed_steps = 0  # steps played again after a restart (the client's re-sends)
        self.clock = START

    async def run(self) -> None:
        await self.engine.start()
        resume = 0
        i = 0
        acked: set[tuple[int, int]] = set()  # (step, frame) acknowledged (journal mode: durable)
        while i < len(self.steps):
            step = self.steps[i]
            try:
                await self._play(i, step, acked)
            except Died:
                self.kills += 1
                await self.engine.start()
                # Resume: journal mode from the first step with an unacknowledged frame; snapshot mode
                # from the step after the last successful sync. Clock steps before it are re-set
                # (a no-op when the restored clock is already past them).
                back = self._resume_point(i, self._first_unacked(acked) if self.journal else resume)
                self.replayed_steps += max(0, i + 1 - back)
                i = back
                await self._clock_to(self._clock_before(i))
                continue
            if step.kind in self.durable_steps:
                resume = i + 1
            if self.on_step is not None:
                await self.on_step(i)
            i += 1

    #: step kinds after which everything before is durable (snapshot mode resumes after the last one)
    durable_steps: tuple[str, ...] = ("sync",)

    def _resume_point(self, i: int, back: int) -> int:
        """The step to resume from after a death at step ``i`` (``back``: the durable point)."""
        return back

    def _first_unacked(self, acked: set[tuple[int, int]]) -> int:
        for n, step in enumerate(self.steps):
            if not self._acked(n, step, acked):
                return n
        return len(self.steps)

    def _acked(self, n: int, step: Step, acked: set[tuple[int, int]]) -> bool:
        """Whether step ``n`` is done for good (journal mode's resume point is the first that is not)."""
        if step.kind == "events":
            return all((n, f) in acked for f in range(len(step.frames)))
        return not (step.kind == "clock" and step.at > self.clock)

    def _clock_before(self, i: int) -> float:
        t = START
        for step in self.steps[:i]:
            if step.kind == "clock":
                t = step.at
        return t

    async def _clock_to(self, t: float) -> None:
        now = (await self.engine.admin("clock"))["now"]
        if t > now:
            reply = await self.engine.admin(f"clock set {t}")
            assert reply.get("ok"), reply

    async def _play(self, i: int, step: Step, acked: set[tuple[int, int]]) -> None:
        kill = self.kill_at.pop(i, None)
        if step.kind == "clock":
            await self._clock_to(step.at)
            self.clock = max(self.clock, step.at)
        elif step.kind == "sync":
            reply = await self._frames([{"type": "sync"}], i, None, acked)
            assert reply and reply[0].get("synced") is True, reply
        else:
            await self._frames(step.frames, i, kill, acked)
            kill = None
        if kill is not None:
            self.engine.kill9()
            raise Died

    async def _frames(self, frames: list[Any], i: int, kill: int | None, acked: set[tuple[int, int]]) -> list[Any]:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.engine.port)
        except OSError:
            raise Died from None
        try:
            for frame in frames:
                writer.write(msgpack.packb(frame))
            await writer.drain()
            unpacker = msgpack.Unpacker(raw=False)
            replies: list[Any] = []
            while len(replies) < len(frames):
                if kill is not None and len(replies) >= kill:
                    self.engine.kill9()
                    raise Died
                data = await asyncio.wait_for(reader.read(65536), 60)
                if not data:
                    raise Died
                unpacker.feed(data)
                for reply in unpacker:
                    assert "error" not in reply or "synced" in reply, reply
                    acked.add((i, len(replies)))
                    replies.append(reply)
            if kill is not None:
                self.engine.kill9()
                raise Died
            return replies
        except (ConnectionError, OSError):
            raise Died from None
        finally:
            writer.close()


def replayed_journal_events(directory: Path) -> int:
    """Journal events the restarted engines replayed (from their logs)."""
    import re

    total = 0
    for path in directory.glob("engine-*.log"):
        for m in re.finditer(r"replayed \d+ journal batches \((\d+) events\)", path.read_text(errors="replace")):
            total += int(m.group(1))
    return total


def delivered(directory: Path) -> Counter[str]:
    """Idempotency keys of every message in the outbox, with how many times each went out."""
    keys: Counter[str] = Counter()
    for path in sorted((directory / "outbox").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                keys[json.loads(line)["message"]["key"]] += 1
    return keys


async def final_state(engine: EngineProcess) -> dict[str, Any]:
    stats = await engine.admin("stats")
    return {"carts": stats["carts"], "recovery": stats["recovery"]}
