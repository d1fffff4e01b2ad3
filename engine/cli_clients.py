"""``cartwheel stats | top | logs | cart``: command-line clients of a running engine's admin socket.

They find the engine the way ``cartwheel run`` configures it: ``--socket PATH`` if given, else the
``[engine]`` table of ``--config FILE`` (default: the embedded config, so ``run/admin.sock`` relative to
the working directory). A config with only ``admin_tcp`` is reached over TCP with its token
(``engine.admin_token`` or ``CARTWHEEL_ADMIN_TOKEN``). When nothing listens there the clients say so::

    no engine at run/admin.sock: is `cartwheel run` running?

* ``stats`` prints readable tables (``--json``: the raw document);
* ``top`` is a live full-terminal view refreshed every second (rates, latencies, channel queues and
  breakers, the recovery funnel); ``--once`` prints one frame and exits;
* ``logs`` prints the message log with filters; ``--follow`` keeps polling for new records;
* ``cart STORE CART`` shows one cart: state, run, next deadline, items, messages.

The client is synchronous (one blocking socket): a CLI has nothing else to do while it waits. Wiring into
``engine.cli``: :func:`add_parsers` adds the four sub-commands, :func:`run_client` runs one.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

__all__ = [
    "CLIENT_COMMANDS",
    "AdminClient",
    "ClientError",
    "EngineNotRunning",
    "add_parsers",
    "follow_logs",
    "open_client",
    "render_cart",
    "render_logs",
    "render_stats",
    "render_top",
    "run_client",
]

#: the sub-commands this module adds (``engine.cli`` routes them to :func:`run_client`)
CLIENT_COMMANDS = ("stats", "top", "logs", "cart")
_TIMEOUT_S = 60.0


class ClientError(Exception):
    """The engine could not be reached or refused the command; the message is for the operator."""


class EngineNotRunning(ClientError):
    """Nothing listens at the admin address."""


# ------------------------------------------------------------------------------------------ the client


class AdminClient:
    """A blocking admin-socket client: one command line out, one JSON document back.

    Build one with :func:`open_client`, or ``AdminClient.unix(path)`` / ``AdminClient.tcp(host, port,
    token)``; close it with :meth:`close` (or use it as a context manager).
    """

    def __init__(self, sock: socket.socket, where: str) -> None:
        self.sock = sock
        self.where = where
        self._file = sock.makefile("rb")

    @classmethod
    def unix(cls, path: str, *, display: str | None = None) -> AdminClient:
        where = display or path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(_TIMEOUT_S)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise EngineNotRunning(f"no engine at {where}: is `cartwheel run` running?") from None
        except PermissionError:
            sock.close()
            raise ClientError(f"cannot open {where}: permission denied (the socket is mode 0600: "
                              f"run this as the engine's user)") from None
        except OSError as exc:
            sock.close()
            raise ClientError(f"cannot open {where}: {exc.strerror or exc}") from None
        return cls(sock, where)

    @classmethod
    def tcp(cls, host: str, port: int, token: str) -> AdminClient:
        where = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=_TIMEOUT_S)
        except ConnectionRefusedError:
            raise EngineNotRunning(f"no engine at {where}: is `cartwheel run` running?") from None
        except OSError as exc:
            raise ClientError(f"cannot reach {where}: {exc.strerror or exc}") from None
        client = cls(sock, where)
        reply = client.command(f"auth {token}", check=False)
        if not reply.get("ok"):
            client.close()
            raise ClientError(f"{where}: {reply.get('error', 'authentication failed')}")
        return client

    def command(self, line: str, *, check: bool = True) -> dict[str, Any]:
        """Send one command; return its reply. With ``check``, an ``ok: false`` reply raises ClientError."""
        try:
            self.sock.sendall(line.encode() + b"\n")
            raw = self._file.readline()
        except TimeoutError:
            raise ClientError(f"{self.where}: no answer to {line.split()[0]!r} within {_TIMEOUT_S:g} s") from None
        except OSError as exc:
            raise ClientError(f"{self.where}: connection lost ({exc.strerror or exc})") from None
        if not raw:
            raise ClientError(f"{self.where}: the engine closed the connection")
        if not raw.endswith(b"\n"):  # every reply is one whole line: the engine went away while writing it
            raise ClientError(f"{self.where}: connection lost in the middle of the reply to {line.split()[0]!r}")
        reply: dict[str, Any] = json.loads(raw)
        if check and not reply.get("ok"):
            raise ClientError(str(reply.get("error", "command failed")))
        return reply

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AdminClient {self.where}>"


def open_client(args: argparse.Namespace) -> AdminClient:
    """Connect as ``args`` say: ``--socket``, else the ``[engine]`` table of ``--config`` (or the default).

    Raises:
        ClientError: a bad config, nothing listening, or a refused token.
    """
    if getattr(args, "socket", None):
        return AdminClient.unix(args.socket)
    from engine.config import ENV_ADMIN_TOKEN, ConfigError, load_config

    try:
        settings = load_config(getattr(args, "config", None)).engine
    except ConfigError as exc:
        raise ClientError(str(exc)) from None
    if settings.admin_unix:
        path = Path(settings.admin_unix)
        return AdminClient.unix(str(path if path.is_absolute() else Path.cwd() / path), display=settings.admin_unix)
    if settings.admin_tcp is not None:
        token = settings.admin_token or os.environ.get(ENV_ADMIN_TOKEN, "")
        return AdminClient.tcp(settings.admin_tcp[0], settings.admin_tcp[1], token)
    raise ClientError("the config disables the admin socket (engine.admin_unix and engine.admin_tcp are empty)")


# ------------------------------------------------------------------------------------------ formatting


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _ms(summary: dict[str, Any], key: str) -> str:
    return f"{summary.get(key, 0.0):.3f}" if summary.get("count") else "-"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    return f"{seconds / 60:.0f} min ago"


def _rate(r: dict[str, float], key: str) -> str:
    return f"{r.get(key, 0.0):,.1f}"


def _table(title: str, *columns: str, right_from: int = 1) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold", pad_edge=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i >= right_from else "left")
    return table


def _latency_table(doc: dict[str, Any]) -> Table:
    lat = doc.get("latency", {})
    table = _table("Latency (ms)", "", "count", "p50", "p99", "p99.9", "max")
    rows: list[tuple[str, dict[str, Any]]] = [("ingest → apply", lat.get("ingest", {})),
                                              ("timer lag", lat.get("timer_lag", {}))]
    rows += [(f"queue {ch}", s) for ch, s in lat.get("queue", {}).items()]
    rows += [(f"provider {ch}", s) for ch, s in lat.get("provider", {}).items()]
    for name, s in rows:
        table.add_row(name, f"{s.get('count', 0):,}", _ms(s, "p50_ms"), _ms(s, "p99_ms"), _ms(s, "p999_ms"),
                      _ms(s, "max_ms"))
    return table


def _throughput_table(doc: dict[str, Any]) -> RenderableType:
    rates = doc.get("rates", {})
    ev = doc.get("events", {})
    table = _table("Throughput (per second)", "", "1 s", "10 s", "60 s")
    for name, key in (("events/s", "events_per_s"), ("sends/s", "sends_per_s")):
        r = rates.get(key, {})
        table.add_row(name, _rate(r, "1s"), _rate(r, "10s"), _rate(r, "60s"))
    totals = _table("Events", "", "total")
    for key in ("accepted", "rejected", "duplicate", "frames"):
        totals.add_row(key, f"{ev.get(key, 0):,}")
    totals.title = None
    return Group(table, totals)


def _channels_table(doc: dict[str, Any]) -> Table:
    table = _table("Channels", "channel", "rate/s", "queued", "in flight", "sent", "failed", "cancelled",
                   "breaker", "paused")
    for name, c in doc.get("channels", {}).items():
        rate = c.get("rate_per_s")
        breaker = str(c.get("breaker", "-"))
        table.add_row(
            name, "∞" if rate is None else f"{rate:g}", f"{c.get('queued', 0):,}", f"{c.get('in_flight', 0):,}",
            f"{c.get('sent', 0):,}", f"{c.get('failed', 0):,}", f"{c.get('cancelled', 0):,}",
            Text(breaker, style="bold red" if breaker != "closed" else ""),
            Text("PAUSED", style="bold yellow") if c.get("paused") else "no",
        )
    return table


def _sends_table(doc: dict[str, Any]) -> Table:
    outcomes = ("sent", "failed", "skipped", "postponed", "cancelled", "uncertain")
    table = _table("Messages by channel and outcome", "channel", *outcomes)
    for ch, outs in sorted(doc.get("sends", {}).items()):
        table.add_row("(whole step)" if ch == "-" else ch, *(f"{outs.get(o, 0):,}" for o in outcomes))
    return table


def _funnel_table(doc: dict[str, Any]) -> Table:
    rec = doc.get("recovery", {})
    eng = doc.get("engagement", {})
    sent = sum(outs.get("sent", 0) for outs in doc.get("sends", {}).values())
    abandoned = rec.get("abandoned", 0)

    def share(n: float) -> str:
        return f"{100 * n / abandoned:.1f} %" if abandoned else "-"

    table = _table("Recovery funnel", "", "count", "of abandoned")
    table.add_row("abandoned", f"{abandoned:,}", share(abandoned))
    table.add_row("messages sent", f"{sent:,}", "")
    table.add_row("opened", f"{eng.get('opened', 0):,}", "")
    table.add_row("clicked", f"{eng.get('clicked', 0):,}", "")
    table.add_row("resumed (back, then gone again)", f"{rec.get('resumed', 0):,}", "")
    table.add_row("recovered", f"{rec.get('recovered', 0):,}", share(rec.get("recovered", 0)))
    # no share: converted carts include those bought before they were ever abandoned
    table.add_row("converted (no credit)", f"{rec.get('converted', 0):,}", "")
    table.add_row("expired", f"{rec.get('expired', 0):,}", share(rec.get("expired", 0)))
    table.add_row("stopped (admin cancel)", f"{rec.get('stopped', 0):,}", share(rec.get("stopped", 0)))
    table.add_row("recovery rate", f"{100 * rec.get('rate', 0.0):.1f} %", "")
    by_currency = rec.get("revenue_by_currency") or {}
    if len(by_currency) > 1:  # a sum over currencies means nothing: each on its own
        revenue = ", ".join(f"{v:,.2f} {k}" for k, v in sorted(by_currency.items()))
    else:
        revenue = f"{rec.get('revenue', 0.0):,.2f}" + "".join(f" {k}" for k in by_currency)
    table.add_row("revenue recovered", revenue, "")
    return table


def _carts_table(doc: dict[str, Any]) -> Table:
    table = _table("Carts", "state", "carts")
    for state, n in doc.get("carts", {}).items():
        table.add_row(state, f"{n:,}")
    table.add_row(Text("live", style="bold"), f"{doc.get('live_carts', 0):,}")
    return table


def _timers_table(doc: dict[str, Any]) -> Table:
    table = _table("Timers", "", "pending")
    table.add_row("total", f"{doc.get('timers', 0):,}")
    levels = doc.get("timers_per_level", [])
    for i, n in enumerate(levels):
        table.add_row("ready" if i == len(levels) - 1 else f"level {i}", f"{n:,}")
    table.add_row("fired", f"{doc.get('timers_fired', 0):,}")
    return table


def _header(doc: dict[str, Any]) -> Text:
    clock = doc.get("clock", {})
    pers = doc.get("persistence", {})
    up = pers.get("up", True)
    text = Text()
    text.append("cartwheel", style="bold")
    text.append(f"  clock {_when(clock.get('now'))} ({clock.get('kind', '?')})")
    text.append(f"  up {doc.get('uptime_s', 0):.0f} s")
    text.append(f"  rss {_bytes(doc.get('memory', {}).get('rss_bytes'))}")
    if doc.get("restoring"):
        text.append("  RESTORING", style="bold yellow")
    text.append("\nstore ")
    text.append(str(pers.get("store", "-")))
    text.append(" up" if up else " DOWN", style="green" if up else "bold red")
    text.append(f"  snapshot {_age(pers.get('snapshot_age_s'))}")
    if pers.get("error"):
        text.append(f"  ({pers['error']})", style="red")
    return text


def render_stats(doc: dict[str, Any]) -> RenderableType:
    """The ``cartwheel stats`` tables for a ``stats`` document."""
    return Group(_header(doc), _carts_table(doc), _throughput_table(doc), _sends_table(doc), _funnel_table(doc),
                 _latency_table(doc), _channels_table(doc), _timers_table(doc))


def render_top(doc: dict[str, Any]) -> RenderableType:
    """One frame of ``cartwheel top`` (about 40 lines at 120 columns)."""
    upper = Table.grid(padding=(0, 3))
    for _ in range(3):
        upper.add_column(vertical="top")
    upper.add_row(_throughput_table(doc), _funnel_table(doc), _carts_table(doc))
    lower = Table.grid(padding=(0, 3))
    lower.add_column(vertical="top")
    lower.add_column(vertical="top")
    lower.add_row(_latency_table(doc), _timers_table(doc))
    return Panel(Group(_header(doc), upper, lower, _channels_table(doc)), title="cartwheel top",
                 subtitle="Ctrl-C quits", box=box.ROUNDED)


def render_logs(records: Iterable[dict[str, Any]]) -> Table:
    """A message-log table."""
    table = _table("", "at", "store", "cart", "profile", "run", "step", "channel", "outcome", "reason", right_from=99)
    table.title = None
    styles = {"sent": "green", "failed": "red", "uncertain": "red", "cancelled": "yellow", "skipped": "dim"}
    for r in records:
        outcome = str(r.get("outcome"))
        table.add_row(_when(r.get("at")), str(r.get("store")), str(r.get("cart")), str(r.get("profile") or "-"),
                      str(r.get("run")), str(r.get("step") if r.get("step") is not None else "-"),
                      str(r.get("channel") or "-"), Text(outcome, style=styles.get(outcome, "")),
                      str(r.get("reason") or ""))
    return table


def render_cart(doc: dict[str, Any]) -> RenderableType:
    """``cartwheel cart STORE CART`` for a ``cart`` reply."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("cart", f"{doc.get('store')}/{doc.get('cart')}")
    state = str(doc.get("state"))
    if doc.get("paused"):
        state += " (a run paused: the shopper came back; the next abandonment resumes it)"
    head.add_row("state", state)
    head.add_row("run", str(doc.get("run")))
    head.add_row("next deadline", _when(doc.get("next_due")))
    head.add_row("abandoned at", _when(doc.get("abandoned_at")))
    head.add_row("profile", str(doc.get("profile") or "-"))
    head.add_row("value", f"{doc.get('value') or 0:,.2f} {doc.get('currency') or ''}".strip())
    last = doc.get("last_message")
    if last:
        head.add_row("last message", f"run {last['run']} step {last['step']} {last['channel']} at {_when(last['at'])}")
    items = _table("Items", "sku", "name", "qty", "price", right_from=2)
    for item in doc.get("items") or []:
        if isinstance(item, dict):
            items.add_row(str(item.get("sku", "")), str(item.get("name", "")), str(item.get("qty", "")),
                          str(item.get("price", "")))
    messages = render_logs(doc.get("messages") or [])
    messages.title = "Messages"
    return Group(head, items, messages)


# ------------------------------------------------------------------------------------------ commands


def _log_query(args: argparse.Namespace, *, limit: int, since: float | None = None) -> str:
    parts = ["logs"]
    for key in ("store", "cart", "profile", "channel", "outcome"):
        value = getattr(args, key, None)
        if value:
            parts.append(shlex.quote(f"{key}={value}"))  # the admin socket splits words as a shell does
    if since is not None:
        parts.append(f"since={since!r}")
    parts.append(f"limit={limit}")
    return " ".join(parts)


def follow_logs(client: AdminClient, args: argparse.Namespace, emit: Callable[[list[dict[str, Any]]], None], *,
                interval_s: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                polls: int | None = None) -> None:
    """Print the newest ``args.limit`` records, then poll for newer ones every ``interval_s``.

    Each poll asks for records since the newest time seen and drops those already shown (records at that
    same time). ``polls`` bounds the number of polls after the first query (None: until interrupted).
    """
    records = client.command(_log_query(args, limit=args.limit))["records"]
    shown: set[tuple[Any, ...]] = set()
    last_at: float | None = None

    def remember(batch: list[dict[str, Any]]) -> None:
        nonlocal last_at, shown
        for r in batch:
            if last_at is None or r["at"] > last_at:
                last_at, shown = r["at"], set()
            shown.add((r["id"], r["outcome"], r["reason"], r["channel"], r["step"]))

    if records:
        emit(records)
        remember(records)
    n = 0
    while polls is None or n < polls:
        sleep(interval_s)
        n += 1
        batch = client.command(_log_query(args, limit=100_000, since=last_at))["records"]
        fresh = [r for r in batch
                 if r["at"] != last_at or (r["id"], r["outcome"], r["reason"], r["channel"], r["step"]) not in shown]
        if fresh:
            emit(fresh)
            remember(fresh)


def _print_json(console: Console, doc: Any) -> None:
    console.file.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    console.file.flush()


def _cmd_stats(client: AdminClient, args: argparse.Namespace, console: Console) -> int:
    doc = client.command("stats")
    if args.json:
        _print_json(console, doc)
    else:
        console.print(render_stats(doc))
    return 0


def _cmd_top(client: AdminClient, args: argparse.Namespace, console: Console,
             sleep: Callable[[float], None]) -> int:
    if args.once:
        console.print(render_top(client.command("stats")))
        return 0
    if not console.is_terminal:  # piped or logged: no full-screen mode, one frame after the other
        try:
            while True:
                console.print(render_top(client.command("stats")))
                sleep(args.interval)
        except KeyboardInterrupt:
            pass
        return 0
    with Live(render_top(client.command("stats")), console=console, screen=True, auto_refresh=False) as live:
        try:
            while True:
                sleep(args.interval)
                live.update(render_top(client.command("stats")), refresh=True)
        except KeyboardInterrupt:
            pass
    return 0


def _cmd_logs(client: AdminClient, args: argparse.Namespace, console: Console,
              sleep: Callable[[float], None]) -> int:
    def emit(records: list[dict[str, Any]]) -> None:
        if args.json:
            for r in records:
                console.file.write(json.dumps(r, default=str) + "\n")
            console.file.flush()
        else:
            console.print(render_logs(records))

    if args.follow:
        try:
            follow_logs(client, args, emit, interval_s=args.interval, sleep=sleep)
        except KeyboardInterrupt:
            pass
        return 0
    records = client.command(_log_query(args, limit=args.limit))["records"]
    if records or args.json:
        emit(records)
    else:
        console.print("no records match")
    return 0


def _cmd_cart(client: AdminClient, args: argparse.Namespace, console: Console) -> int:
    doc = client.command(f"cart {shlex.quote(args.store)} {shlex.quote(args.cart)}")
    if args.json:
        _print_json(console, doc)
    else:
        console.print(render_cart(doc))
    return 0


def run_client(args: argparse.Namespace, *, console: Console | None = None, err_console: Console | None = None,
               sleep: Callable[[float], None] = time.sleep) -> int:
    """Run the client sub-command ``args.command``; returns the exit status (0 ok, 1 error).

    Args:
        args: parsed by a parser that :func:`add_parsers` extended.
        console: where output goes (default: stdout).
        err_console: where errors go (default: stderr).
        sleep: how ``top`` and ``logs --follow`` wait between polls.
    """
    console = console or Console()
    err_console = err_console or Console(stderr=True)
    for name in ("store", "cart", "profile", "channel", "outcome"):
        value = getattr(args, name, None)
        if value is not None and (not value or any(c.isspace() for c in value)):
            err_console.print(f"cartwheel {args.command}: --{name} must be one word, got {value!r}")
            return 2
    try:
        with open_client(args) as client:
            if args.command == "stats":
                return _cmd_stats(client, args, console)
            if args.command == "top":
                return _cmd_top(client, args, console, sleep)
            if args.command == "logs":
                return _cmd_logs(client, args, console, sleep)
            if args.command == "cart":
                return _cmd_cart(client, args, console)
    except ClientError as exc:
        err_console.print(f"cartwheel {args.command}: {exc}", markup=False, highlight=False)
        return 1
    err_console.print(f"cartwheel: {args.command!r} is not a client command")
    return 2


# ------------------------------------------------------------------------------------------ argparse


def _interval(text: str) -> float:
    """``--interval``: seconds between two polls, a positive finite number (0 would poll the engine's
    admin socket in a busy loop; a negative, NaN or infinite value made ``time.sleep`` raise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _endpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="the engine's TOML config (default: the embedded default)")
    parser.add_argument("--socket", metavar="PATH", help="admin UNIX socket (default: engine.admin_unix of the config)")


def add_parsers(subparsers: Any) -> None:
    """Add ``stats``, ``top``, ``logs`` and ``cart`` to ``subparsers`` (from ``add_subparsers()``)."""
    p = subparsers.add_parser("stats", help="a running engine's statistics as tables")
    _endpoint_options(p)
    p.add_argument("--json", action="store_true", help="print the raw JSON document")

    p = subparsers.add_parser("top", help="live view of a running engine (rates, latencies, queues, recovery)")
    _endpoint_options(p)
    p.add_argument("--once", action="store_true", help="print one frame and exit (no full-screen mode)")
    p.add_argument("--interval", type=_interval, default=1.0, metavar="SECONDS", help="refresh interval (default 1)")

    p = subparsers.add_parser("logs", help="a running engine's message log")
    _endpoint_options(p)
    for name in ("store", "cart", "profile", "channel"):
        p.add_argument(f"--{name}", metavar=name.upper(), help=f"only records of this {name}")
    p.add_argument("--outcome", choices=("sent", "failed", "skipped", "postponed", "cancelled", "uncertain"),
                   help="only records with this outcome")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="newest N records (default 50)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new records (Ctrl-C stops)")
    p.add_argument("--interval", type=_interval, default=1.0, metavar="SECONDS",
                   help="--follow poll interval (default 1)")
    p.add_argument("--json", action="store_true", help="one JSON document per record")

    p = subparsers.add_parser("cart", help="one cart of a running engine")
    _endpoint_options(p)
    p.add_argument("store", help="store id")
    p.add_argument("cart", help="cart id")
    p.add_argument("--json", action="store_true", help="print the raw JSON document")


if __name__ == "__main__":  # pragma: no cover - `python -m engine.cli_clients stats` while cli.py is not wired
    _parser = argparse.ArgumentParser(prog="cartwheel")
    add_parsers(_parser.add_subparsers(dest="command", required=True))
    sys.exit(run_client(_parser.parse_args()))
