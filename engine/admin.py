"""The admin socket: one command per line in, one JSON document per command out.

Modelled on HAProxy's runtime API: plain words, answers an operator can read and a program can parse.
Every reply has ``"ok": true|false``; an error reply has ``"error"`` naming the command or argument at
fault, and the connection stays open. ``quit`` (or EOF) ends a session.

Listeners (:class:`AdminServer`):

* a UNIX socket (``engine.admin_unix``), created with mode 0600: file permissions are the access control;
* optionally TCP on loopback (``engine.admin_tcp``). Every TCP connection must first send
  ``auth TOKEN`` (the token of ``engine.admin_token`` / ``CARTWHEEL_ADMIN_TOKEN``, compared in constant
  time). A wrong token, any other first line, or no line within :data:`AUTH_TIMEOUT_S` gets an error
  reply and the connection is closed.

Commands are methods of :class:`AdminCommands` named ``cmd_<word>``; ``help`` lists them with their
arguments from the first line of their docstrings, so a new command documents itself. Commands that
move time or change carts (``clock``, ``cancel``) run one at a time across all connections.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import shlex
from pathlib import Path
from typing import Any

import orjson

from actors.durations import format_duration, parse_duration
from actors.cart import STOP_EVENT
from actors.effects import LogRecord
from actors.states import IN_RUN
from engine.clock import ManualClock, parse_time
from engine.stats import StatsView
from engine.unix_path import take_unix_path

__all__ = ["AUTH_TIMEOUT_S", "AdminCommands", "AdminServer", "CommandError", "encode_reply"]

log = logging.getLogger("cartwheel.admin")

_MAX_LINE = 64 * 1024
#: seconds a TCP client has to send its ``auth`` line
AUTH_TIMEOUT_S = 10.0
#: the longest ``clock advance`` (ten years): protects against a typo like ``clock advance 99999999d``
_MAX_ADVANCE_S = 3650 * 86400.0
_LIMIT_RE = re.compile(r"[0-9]{1,6}\Z")
_DELTA_RE = re.compile(r"[+-][0-9]{1,9}\Z")
_LOG_FILTERS = ("store", "cart", "profile", "channel", "outcome")
_OUTCOMES = ("sent", "failed", "skipped", "postponed", "cancelled", "uncertain")


class CommandError(ValueError):
    """A command or argument is wrong; the message is sent back to the operator."""


def encode_reply(reply: dict[str, Any]) -> bytes:
    """One reply as a JSON line (non-string keys and odd values are stringified, never an exception)."""
    return orjson.dumps(reply, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"


def _no_arguments(args: list[str]) -> None:
    if args:
        raise CommandError(f"takes no arguments, got {' '.join(args)!r}")


class AdminCommands:
    """The commands, each ``async cmd_<name>(args) -> dict``.

    Args:
        engine: an :class:`engine.app.Engine`.
        view: the engine's :class:`~engine.stats.StatsView` (built here when not given).
    """

    def __init__(self, engine: Any, view: StatsView | None = None) -> None:
        self.engine = engine
        self.view = view if view is not None else StatsView(engine)
        self._mutate = asyncio.Lock()  # clock moves and cancels do not interleave across connections

    async def run(self, line: str) -> dict[str, Any]:
        """Run one command line; never raises (errors become ``{"ok": false, "error": ...}``).

        The line is split into words as a POSIX shell would (:func:`shlex.split`, nothing expanded), so
        an id with a space or a quote is given quoted: ``cart demo "summer sale"``, ``logs cart='a b'``.
        """
        try:
            words = shlex.split(line)
        except ValueError as exc:  # "No closing quotation", "No escaped character"
            return {"ok": False, "error": f"cannot split the command into words: {exc} (quote ids with spaces)"}
        if not words:
            return {"ok": False, "error": "empty command (try: help)"}
        name, args = words[0].lower(), words[1:]
        attr = name.replace("-", "_")
        method = getattr(self, "cmd_" + attr, None) if attr.isidentifier() else None
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

    # ------------------------------------------------------------------ reading
    async def cmd_help(self, args: list[str]) -> dict[str, Any]:
        """help — this list: each command with its arguments."""
        _no_arguments(args)
        commands = {}
        for attr in sorted(dir(self)):
            if attr.startswith("cmd_"):
                doc = " ".join((getattr(self, attr).__doc__ or "").strip().split("\n\n")[0].split())
                commands[attr[4:]] = doc
        commands["quit"] = "quit — close this connection"
        return {"commands": commands}

    async def cmd_stats(self, args: list[str]) -> dict[str, Any]:
        """stats — carts by state, timers, events and rates, sends, recovery, latency, persistence, memory."""
        _no_arguments(args)
        return self.view.document()

    async def cmd_cart(self, args: list[str]) -> dict[str, Any]:
        """cart STORE CART — one cart: state, items, run, next deadline, messages so far."""
        if len(args) != 2:
            raise CommandError("usage: cart STORE CART")
        actor = self._cart(args[0], args[1])
        doc = dict(actor.describe())
        doc["next_due"] = actor.due
        doc["messages"] = self.engine.runtime.msglog.query(store=actor.store.id, cart=actor.cart, limit=1000)
        return doc

    async def cmd_logs(self, args: list[str]) -> dict[str, Any]:
        """logs [store=S] [cart=C] [profile=P] [channel=CH] [outcome=O] [since=T] [until=T] [limit=N] — message log, oldest first."""
        filters: dict[str, Any] = {}
        limit = 100
        since = until = None
        for arg in args:
            key, sep, value = arg.partition("=")
            if not sep or not key:
                raise CommandError(f"expected key=value, got {arg!r}")
            if key == "limit":
                if not _LIMIT_RE.match(value) or not 0 < int(value) <= 100_000:
                    raise CommandError(f"limit: expected a whole number 1..100000, got {value!r}")
                limit = int(value)
            elif key in ("since", "until"):
                try:
                    t = parse_time(value)
                except ValueError as exc:
                    raise CommandError(f"{key}: {exc}") from None
                if key == "since":
                    since = t
                else:
                    until = t
            elif key in _LOG_FILTERS:
                if key == "outcome" and value not in _OUTCOMES:
                    raise CommandError(f"outcome: expected one of {', '.join(_OUTCOMES)}, got {value!r}")
                filters[key] = value
            else:
                raise CommandError(f"unknown filter {key!r} (store, cart, profile, channel, outcome, since, until, limit)")
        records = self.engine.runtime.msglog.query(limit=limit, since=since, until=until, **filters)
        return {"records": records}

    async def cmd_flows(self, args: list[str]) -> dict[str, Any]:
        """flows — every flow: abandonment, expiry, attribution, frequency cap and its steps (with their
        conditions)."""
        _no_arguments(args)
        flows = {}
        for name, flow in self.engine.registry.flows.items():
            flows[name] = {
                "abandon_after": format_duration(flow.abandon_after_s), "expire_after": format_duration(flow.expire_after_s),
                "attribution_window": format_duration(flow.attribution_window_s),
                "frequency_cap": format_duration(flow.frequency_cap_s), "on_cap": flow.on_cap, "steps": flow.describe(),
            }
        return {"flows": flows}

    async def cmd_channels(self, args: list[str]) -> dict[str, Any]:
        """channels — each channel's kind, rate, queue depth, in flight, breaker state, paused."""
        _no_arguments(args)
        return {"channels": self.engine.channels_document()}

    # ------------------------------------------------------------------ changing
    async def cmd_pause(self, args: list[str]) -> dict[str, Any]:
        """pause CHANNEL — hold a channel's sends (they stay queued)."""
        return self._pause(args, True)

    async def cmd_resume(self, args: list[str]) -> dict[str, Any]:
        """resume CHANNEL — let a paused channel send again."""
        return self._pause(args, False)

    def _pause(self, args: list[str], paused: bool) -> dict[str, Any]:
        if len(args) != 1:
            raise CommandError(f"usage: {'pause' if paused else 'resume'} CHANNEL")
        try:
            self.engine.pause_channel(args[0], paused)
        except KeyError:
            known = ", ".join(self.engine.channels_document()) or "none"
            raise CommandError(f"no channel {args[0]!r} (channels: {known})") from None
        log.info("admin: channel %s %s", args[0], "paused" if paused else "resumed")
        return {"channel": args[0], "paused": paused}

    async def cmd_credits(self, args: list[str]) -> dict[str, Any]:
        """credits STORE [+N|-N] — show or adjust a store's email credits (null: unlimited). An adjustment is
        answered once it is durable (one incremental snapshot)."""
        if not 1 <= len(args) <= 2:
            raise CommandError("usage: credits STORE [+N|-N]")
        rules = self.engine.registry.stores.get(args[0])
        if rules is None:
            raise CommandError(f"no store {args[0]!r}")
        if len(args) == 2:
            text = args[1]
            if not _DELTA_RE.match(text):
                raise CommandError(f"expected +N or -N, got {text!r}")
            if rules.credits is None:
                raise CommandError(f"store {args[0]!r} has unlimited credits (set credits in its config)")
            rules.adjust_credits(int(text))
            log.info("admin: store %s credits %s -> %s", args[0], text, rules.credits)
            # Answered once durable: credits live in each cut's meta (the journal does not carry them), so
            # one incremental cut (the dirty carts only) makes the adjustment survive a crash after the reply.
            try:
                await self.engine.snapshotter.snapshot()
            except Exception as exc:  # noqa: BLE001 - the store is down: say so, keep the socket
                raise CommandError(f"credits of store {args[0]!r} now {rules.credits}, but not durable yet: {exc}") from None
        return {"store": args[0], "credits": rules.credits, "unlimited": rules.credits is None}

    async def cmd_cancel(self, args: list[str]) -> dict[str, Any]:
        """cancel STORE CART — stop a cart's recovery run (queued sends cancelled; logged as cancelled). The run
        ends as an expired one, so an order that follows is still credited to its messages; stats count it
        as ``stopped``. Answered once the stop is durable (journaled, or in a committed cut)."""
        if len(args) != 2:
            raise CommandError("usage: cancel STORE CART")
        async with self._mutate:
            actor = self._cart(args[0], args[1])
            if actor.state not in IN_RUN:
                raise CommandError(f"cart {args[1]!r} is not in a recovery run (state {actor.state.value})")
            runtime = self.engine.runtime
            now = self.engine.clock.now()
            run = actor.run
            profile = actor.profile
            # The run ends at once as an expired one (a later order is still attributed to its messages):
            # postponed sends are cancelled, and everything queued in the pools through still_wanted.
            event = {"type": STOP_EVENT, "store": actor.store.id, "cart": actor.cart, "ts": now}
            engine = self.engine
            if getattr(engine, "journaling", False):
                engine._apply_journaled(event, now)  # journaled as an ingest frame is: a restart replays it
                engine.journal.barrier()
            else:
                runtime.apply_event(event, now)
            runtime.record(LogRecord(
                id=f"{actor.store.id}:{actor.cart}:{run}:cancel", at=now, store=actor.store.id, cart=actor.cart,
                profile=profile, run=run, step=None, channel=None,
                outcome="cancelled", reason="cancelled by operator",
            ))
        log.info("admin: cancelled run %d of cart %s/%s", run, args[0], args[1])
        # Answer once the stop is durable, as a ``sync`` frame is: a crash right after the reply must not
        # bring the run back (and send its next messages).
        try:
            await self.engine.sync()
        except Exception as exc:  # noqa: BLE001 - StoreError or a timeout: named in the reply
            raise CommandError(f"run {run} of cart {args[1]!r} cancelled, but not durable yet: {exc}") from None
        return {"store": args[0], "cart": args[1], "run": run, "cancelled": True}

    async def cmd_snapshot(self, args: list[str]) -> dict[str, Any]:
        """snapshot — write a full snapshot now."""
        _no_arguments(args)
        try:
            took = await self.engine.snapshot()
        except Exception as exc:  # noqa: BLE001 - the store is down: say so, keep the socket
            raise CommandError(f"failed: {exc}") from None
        return {"snapshot": self.engine.store.describe(), "seconds": round(took, 4)}

    async def cmd_clock(self, args: list[str]) -> dict[str, Any]:
        """clock [advance DURATION | set TIME] — the engine clock; advance and set need the manual clock."""
        clock = self.engine.clock
        if not args:
            return {"now": clock.now(), "kind": clock.kind}
        sub = args[0].lower()
        if sub not in ("advance", "set"):
            raise CommandError(f"unknown sub-command {sub!r} (advance DURATION, set TIME)")
        if len(args) != 2:
            example = "DURATION (e.g. 90m, 1h30m, 2d)" if sub == "advance" else "TIME (unix seconds or ISO 8601)"
            raise CommandError(f"usage: clock {sub} {example}")
        if not isinstance(clock, ManualClock):
            raise CommandError(f"{sub} needs the manual clock; this engine runs a {clock.kind} clock")
        async with self._mutate:
            if sub == "advance":
                try:
                    seconds = parse_duration(args[1])
                except ValueError as exc:
                    raise CommandError(f"advance: {exc}") from None
                if seconds > _MAX_ADVANCE_S:
                    raise CommandError(f"advance: at most 3650d at once, got {args[1]!r}")
            else:
                try:
                    target = parse_time(args[1])
                except ValueError as exc:
                    raise CommandError(f"set: {exc}") from None
                seconds = target - clock.now()
                if seconds < 0:
                    raise CommandError("set: time never moves backwards")
                if seconds > _MAX_ADVANCE_S:
                    raise CommandError("set: at most 3650d ahead of now")
            try:
                now, fired = await self.engine.runtime.advance_clock(seconds)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        return {"now": now, "fired": fired}

    # ------------------------------------------------------------------ helpers
    def _cart(self, store: str, cart: str) -> Any:
        actor = self.engine.registry.cart(store, cart)
        if actor is None:
            raise CommandError(f"no cart {cart!r} in store {store!r}")
        return actor

    def __repr__(self) -> str:
        return f"<AdminCommands engine={self.engine!r}>"


class AdminServer:
    """Serves :class:`AdminCommands` on a UNIX socket (mode 0600) and optionally on loopback TCP (token)."""

    def __init__(self, commands: AdminCommands) -> None:
        self.commands = commands
        self.path: str | None = None
        self.tcp_address: tuple[str, int] | None = None
        self._token: bytes | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._sessions: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._closing = False  #: close() is under way: sessions end without an error
        self.served = 0  #: commands answered so far
        self.refused = 0  #: TCP connections refused for authentication

    async def start(self, unix: str) -> None:
        """Listen on the UNIX socket ``unix`` (its directory is created; a stale socket is replaced).

        Raises:
            OSError: another process answers on that socket (a second engine must not steal it).
        """
        path = Path(unix)
        take_unix_path(path)
        old = os.umask(0o177)  # the socket is born 0600: no window in which others may connect
        try:
            server = await asyncio.start_unix_server(
                lambda r, w: self._serve(r, w, auth=False), str(path), limit=_MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._servers.append(server)
        self.path = str(path)

    async def start_tcp(self, host: str, port: int, token: str) -> None:
        """Listen on ``host:port`` (loopback; port 0 picks one); every connection must ``auth`` first."""
        if not token:
            raise ValueError("admin_tcp needs a token (engine.admin_token or CARTWHEEL_ADMIN_TOKEN)")
        self._token = token.encode()
        server = await asyncio.start_server(lambda r, w: self._serve(r, w, auth=True), host, port, limit=_MAX_LINE)
        self._servers.append(server)
        sock = server.sockets[0].getsockname()
        self.tcp_address = (sock[0], sock[1])

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            raw = await asyncio.wait_for(reader.readline(), AUTH_TIMEOUT_S)
        except TimeoutError:
            error = f"auth: no 'auth TOKEN' line within {AUTH_TIMEOUT_S:g} s"
        except (ValueError, asyncio.LimitOverrunError):
            error = "auth: line too long"
        else:
            words = raw.decode("utf-8", "replace").split()
            if len(words) == 2 and words[0].lower() == "auth":
                assert self._token is not None
                if hmac.compare_digest(words[1].encode(), self._token):
                    writer.write(encode_reply({"ok": True, "auth": True}))
                    await writer.drain()
                    return True
                error = "auth: wrong token"
            else:
                error = "auth required: send 'auth TOKEN' first"
        self.refused += 1
        peer = writer.get_extra_info("peername")
        log.warning("admin: refused TCP connection from %s (%s)", peer, error)
        writer.write(encode_reply({"ok": False, "error": error}))
        await writer.drain()
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, auth: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions[task] = writer
        try:
            if auth and not await self._authenticate(reader, writer):
                return
            while True:
                try:
                    raw = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(encode_reply({"ok": False, "error": f"line longer than {_MAX_LINE} bytes"}))
                    break
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                if line.lower() in ("quit", "exit"):
                    break
                if line.split()[0].lower() == "auth":
                    reply: dict[str, Any] = {"ok": True, "auth": "not needed" if not auth else True}
                else:
                    reply = await self.commands.run(line)
                self.served += 1
                writer.write(encode_reply(reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() ends the sessions: end quietly (on 3.11 the stream protocol's done-callback asks a
            # cancelled session task for its exception, and logs that CancelledError as an error)
            if not self._closing:
                raise
        finally:
            self._sessions.pop(task, None)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    async def close(self) -> None:
        """Stop listening, end every session (a command under way is cancelled), remove the socket file."""
        self._closing = True
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        sessions = list(self._sessions)
        for task in sessions:
            task.cancel()
        if sessions:
            await asyncio.gather(*sessions, return_exceptions=True)
        if self.path and os.path.exists(self.path):
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __repr__(self) -> str:
        return (f"<AdminServer unix={self.path} tcp={self.tcp_address} sessions={len(self._sessions)} "
                f"served={self.served} refused={self.refused}>")
