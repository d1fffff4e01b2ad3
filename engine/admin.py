"""The admin socket: one command per line in, one JSON document per command out.

Modelled on HAProxy's runtime API: plain words, answers an operator can read and a program can parse.
Every reply has ``"ok": true|false``; an error reply has ``"error"`` naming the command or argument at
fault, and the connection stays open. The UNIX socket is created with mode 0600.

Commands are methods of :class:`AdminCommands` named ``cmd_<word>``; ``help`` lists them from their
docstrings, so a new command documents itself.
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import orjson

from actors.durations import parse_duration
from engine.clock import ManualClock, parse_time

__all__ = ["AdminCommands", "AdminServer"]

log = logging.getLogger("cartwheel.admin")

_MAX_LINE = 64 * 1024


class CommandError(ValueError):
    """A command or argument is wrong; the message is sent back to the operator."""


class AdminCommands:
    """The commands, each ``async cmd_<name>(args) -> dict``. ``engine`` is an :class:`engine.app.Engine`."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def run(self, line: str) -> dict[str, Any]:
        words = line.split()
        if not words:
            return {"ok": False, "error": "empty command (try: help)"}
        name, args = words[0].lower(), words[1:]
        method = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if method is None:
            return {"ok": False, "error": f"unknown command {name!r} (try: help)"}
        try:
            reply = await method(args)
        except CommandError as exc:
            return {"ok": False, "error": f"{name}: {exc}"}
        except Exception as exc:  # a bug in one command must not close the socket
            log.exception("admin command %r failed", name)
            return {"ok": False, "error": f"{name}: internal error ({type(exc).__name__}: {exc})"}
        return {"ok": True, **reply}

    async def cmd_help(self, args: list[str]) -> dict[str, Any]:
        """help — this list."""
        commands = {}
        for attr in sorted(dir(self)):
            if attr.startswith("cmd_"):
                doc = (getattr(self, attr).__doc__ or "").strip().splitlines()[0]
                commands[attr[4:]] = doc
        return {"commands": commands}

    async def cmd_stats(self, args: list[str]) -> dict[str, Any]:
        """stats — carts by state, timers, events, sends, recovery, latency, persistence."""
        return self.engine.stats_document()

    async def cmd_cart(self, args: list[str]) -> dict[str, Any]:
        """cart STORE CART — one cart: state, run, next deadline, items, messages so far."""
        if len(args) != 2:
            raise CommandError("usage: cart STORE CART")
        actor = self.engine.registry.cart(args[0], args[1])
        if actor is None:
            raise CommandError(f"no cart {args[1]!r} in store {args[0]!r}")
        doc = dict(actor.describe())
        doc["next_due"] = actor.due
        doc["messages"] = self.engine.runtime.msglog.query(store=args[0], cart=args[1], limit=1000)
        return doc

    async def cmd_logs(self, args: list[str]) -> dict[str, Any]:
        """logs [store=S] [cart=C] [profile=P] [channel=CH] [outcome=O] [since=T] [until=T] [limit=N] — message log, oldest first."""
        filters: dict[str, Any] = {}
        limit = 100
        since = until = None
        for arg in args:
            key, sep, value = arg.partition("=")
            if not sep:
                raise CommandError(f"expected key=value, got {arg!r}")
            if key == "limit":
                if not value.isdigit() or not 0 < int(value) <= 100_000:
                    raise CommandError(f"limit: expected a whole number 1..100000, got {value!r}")
                limit = int(value)
            elif key in ("since", "until"):
                try:
                    t = parse_time(value)
                except ValueError as exc:
                    raise CommandError(f"{key}: {exc}") from None
                since, until = (t, until) if key == "since" else (since, t)
            elif key in ("store", "cart", "profile", "channel", "outcome"):
                filters[key] = value
            else:
                raise CommandError(f"unknown filter {key!r} (store, cart, profile, channel, outcome, since, until, limit)")
        records = self.engine.runtime.msglog.query(limit=limit, since=since, until=until, **filters)
        return {"records": records}

    async def cmd_flows(self, args: list[str]) -> dict[str, Any]:
        """flows — every flow and its steps."""
        return {"flows": {name: flow.describe() for name, flow in self.engine.registry.flows.items()}}

    async def cmd_channels(self, args: list[str]) -> dict[str, Any]:
        """channels — each channel's kind, rate, queue depth, breaker state, paused."""
        return {"channels": self.engine.channels_document()}

    async def cmd_pause(self, args: list[str]) -> dict[str, Any]:
        """pause CHANNEL — hold a channel's sends (they queue)."""
        if len(args) != 1:
            raise CommandError("usage: pause CHANNEL")
        try:
            self.engine.pause_channel(args[0], True)
        except KeyError:
            raise CommandError(f"no channel {args[0]!r}") from None
        return {"channel": args[0], "paused": True}

    async def cmd_resume(self, args: list[str]) -> dict[str, Any]:
        """resume CHANNEL — let a paused channel send again."""
        if len(args) != 1:
            raise CommandError("usage: resume CHANNEL")
        try:
            self.engine.pause_channel(args[0], False)
        except KeyError:
            raise CommandError(f"no channel {args[0]!r}") from None
        return {"channel": args[0], "paused": False}

    async def cmd_credits(self, args: list[str]) -> dict[str, Any]:
        """credits STORE [+N|-N] — show or adjust a store's email credits."""
        if not 1 <= len(args) <= 2:
            raise CommandError("usage: credits STORE [+N|-N]")
        rules = self.engine.registry.stores.get(args[0])
        if rules is None:
            raise CommandError(f"no store {args[0]!r}")
        if len(args) == 2:
            text = args[1]
            if text[:1] not in "+-" or not text[1:].isdigit():
                raise CommandError(f"expected +N or -N, got {text!r}")
            rules.adjust_credits(int(text))
        return {"store": args[0], "credits": rules.credits}

    async def cmd_cancel(self, args: list[str]) -> dict[str, Any]:
        """cancel STORE CART — stop a cart's recovery run (logged as cancelled)."""
        if len(args) != 2:
            raise CommandError("usage: cancel STORE CART")
        if self.engine.registry.cart(args[0], args[1]) is None:
            raise CommandError(f"no cart {args[1]!r} in store {args[0]!r}")
        now = self.engine.clock.now()
        self.engine.runtime.apply_event({"type": "cart.cleared", "store": args[0], "cart": args[1], "ts": now}, now)
        return {"store": args[0], "cart": args[1], "cancelled": True}

    async def cmd_snapshot(self, args: list[str]) -> dict[str, Any]:
        """snapshot — write a full snapshot now."""
        took = await self.engine.snapshot()
        return {"snapshot": self.engine.store.describe(), "seconds": round(took, 4)}

    async def cmd_clock(self, args: list[str]) -> dict[str, Any]:
        """clock [advance DURATION | set TIME] — the engine clock; advance/set need the manual clock."""
        clock = self.engine.clock
        if not args:
            return {"now": clock.now(), "kind": clock.kind}
        sub = args[0].lower()
        if sub == "advance":
            if len(args) != 2:
                raise CommandError("usage: clock advance DURATION (e.g. 90m, 1h30m, 2d)")
            try:
                seconds = parse_duration(args[1])
            except ValueError as exc:
                raise CommandError(f"advance: {exc}") from None
            try:
                now, fired = await self.engine.runtime.advance_clock(seconds)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            return {"now": now, "fired": fired}
        if sub == "set":
            if len(args) != 2:
                raise CommandError("usage: clock set TIME (unix seconds or ISO 8601)")
            if not isinstance(clock, ManualClock):
                raise CommandError(f"set needs the manual clock; this engine runs a {clock.kind} clock")
            try:
                target = parse_time(args[1])
            except ValueError as exc:
                raise CommandError(f"set: {exc}") from None
            if target < clock.now():
                raise CommandError("set: time never moves backwards")
            now, fired = await self.engine.runtime.advance_clock(target - clock.now())
            return {"now": now, "fired": fired}
        raise CommandError(f"unknown sub-command {sub!r} (advance, set)")


class AdminServer:
    """Serves :class:`AdminCommands` on a UNIX socket (mode 0600)."""

    def __init__(self, commands: AdminCommands) -> None:
        self.commands = commands
        self.server: asyncio.AbstractServer | None = None
        self.path: str | None = None
        self.clients: set[asyncio.StreamWriter] = set()

    async def start(self, unix: str) -> None:
        path = Path(unix)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._serve, str(path), limit=_MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.path = str(path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.add(writer)
        try:
            while True:
                try:
                    raw = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(orjson.dumps({"ok": False, "error": f"line longer than {_MAX_LINE} bytes"}) + b"\n")
                    break
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                if line in ("quit", "exit"):
                    break
                reply = await self.commands.run(line)
                writer.write(orjson.dumps(reply, default=str) + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.clients.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.clients):
            writer.close()  # their readers see EOF and the serving tasks end on their own
        if self.path and os.path.exists(self.path):
            try:
                os.unlink(self.path)
            except OSError:
                pass
