"""`cartwheel stats | top | logs | cart` against a real engine's admin socket.

The clients are blocking, so each runs in a worker thread while the test's loop serves the engine.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from engine.app import Engine
from engine.cli_clients import (
    CLIENT_COMMANDS,
    AdminClient,
    ClientError,
    EngineNotRunning,
    add_parsers,
    follow_logs,
    run_client,
)
from tests.engine.conftest_ops import (
    HOUR,
    START,
    Ingest,
    cart_event,
    in_thread,
    ops_config,
    ops_engine,
    start_engine,
    workload,
)

__all__ = ["ops_engine"]  # the fixture, imported for pytest


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cartwheel")
    add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def consoles() -> tuple[Console, io.StringIO, Console, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return (Console(file=out, force_terminal=False, width=120, color_system=None), out,
            Console(file=err, force_terminal=False, width=120, color_system=None), err)


async def run(*argv: str, **kwargs: Any) -> tuple[int, str, str]:
    console, out, err_console, err = consoles()
    code = await in_thread(run_client, parse(*argv), console=console, err_console=err_console, **kwargs)
    return code, out.getvalue(), err.getvalue()


def _squeeze(screen: str) -> str:
    """The screen with box drawing removed and runs of blanks made one space (for phrase checks)."""
    return "\n".join(" ".join(line.replace("│", " ").split()) for line in screen.splitlines())


def _row(screen: str, *first: str) -> list[str]:
    """The words of the first line that starts with the words ``first``."""
    for line in _squeeze(screen).splitlines():
        words = line.split()
        joined = " ".join(first).split()
        if words[:len(joined)] == joined:
            return words
    raise AssertionError(f"no line starts with {first!r}")


def sock(engine: Engine) -> str:
    assert engine.ops is not None and engine.ops.admin_path is not None
    return engine.ops.admin_path


def test_parsers_cover_the_four_clients() -> None:
    assert CLIENT_COMMANDS == ("stats", "top", "logs", "cart")
    args = parse("logs", "--store", "shop1", "--outcome", "sent", "--limit", "5", "-f")
    assert (args.command, args.store, args.outcome, args.limit, args.follow) == ("logs", "shop1", "sent", 5, True)
    args = parse("cart", "shop1", "c1", "--socket", "/x.sock")
    assert (args.store, args.cart, args.socket) == ("shop1", "c1", "/x.sock")
    assert parse("top", "--once").once is True
    assert parse("stats", "--json", "--config", "a.toml").config == "a.toml"


async def test_no_engine_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CARTWHEEL_ADMIN_TOKEN", raising=False)
    code, out, err = await run("stats")
    assert code == 1 and out == ""
    assert err.strip() == "cartwheel stats: no engine at run/admin.sock: is `cartwheel run` running?"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "admin.sock").write_text("")  # a stale file where the socket was
    code, _, err = await run("top", "--once")
    assert code == 1 and "no engine at run/admin.sock" in err


async def test_stats_tables_and_json(ops_engine: Engine) -> None:
    await workload(ops_engine)
    code, out, err = await run("stats", "--socket", sock(ops_engine))
    assert code == 0, err
    for text in ("Carts", "recovering", "Recovery funnel", "Latency (ms)", "timer lag", "Channels", "email",
                 "Timers", "store file:"):
        assert text in out, text
    assert _row(out, "accepted") == ["accepted", "8"] and _row(out, "duplicate") == ["duplicate", "1"]
    assert _row(out, "recovery rate") == ["recovery", "rate", "50.0", "%"]
    assert _row(out, "revenue recovered") == ["revenue", "recovered", "10.00", "EUR"]
    assert _row(out, "converted (no credit)") == ["converted", "(no", "credit)", "1"]  # no share of abandoned
    assert _row(out, "resumed") == ["resumed", "(back,", "then", "gone", "again)", "0"]
    assert _row(out, "email", "2") == ["email", "2", "0", "0", "0", "0", "0"]  # sends by outcome
    code, out, _ = await run("stats", "--json", "--socket", sock(ops_engine))
    doc = json.loads(out)
    assert code == 0 and doc["events"]["accepted"] == 8 and doc["recovery"]["recovered"] == 1


async def test_top_once_renders_the_key_figures_without_a_tty(ops_engine: Engine) -> None:
    await workload(ops_engine)
    ops_engine.pause_channel("sms", True)
    code, out, err = await run("top", "--once", "--socket", sock(ops_engine))
    assert code == 0, err
    assert "\x1b[" not in out  # no terminal control codes without a TTY
    assert max(len(line) for line in out.splitlines()) <= 120
    for text in ("cartwheel top", "clock 2026-03-06 12:00:00Z (manual)", "Throughput", "events/s", "sends/s",
                 "Latency (ms)", "Recovery funnel", "Channels", "Timers", "rss"):
        assert text in out, text
    assert "abandoned 2 100.0 %" in _squeeze(out)
    assert "recovered 1 50.0 %" in _squeeze(out)
    assert "recovery rate 50.0 %" in _squeeze(out) and "revenue recovered 10.00" in _squeeze(out)
    assert "live 3" in _squeeze(out) and "recovering 1" in _squeeze(out)
    assert "accepted 8" in _squeeze(out) and "rejected 1" in _squeeze(out)
    assert "queue email 2 " in _squeeze(out)  # both emails' time in the dispatch queue was recorded
    assert "sms ∞ 0 0 0 0 0 closed PAUSED" in _squeeze(out)
    assert "email ∞ 0 0 2 0 0 closed no" in _squeeze(out)


async def test_logs_with_filters_and_json(ops_engine: Engine) -> None:
    await workload(ops_engine)
    code, out, err = await run("logs", "--socket", sock(ops_engine), "--cart", "c2")
    assert code == 0, err
    assert "c2" in out and "c1 " not in out and "sent" in out and "no push consent" in out
    code, out, _ = await run("logs", "--socket", sock(ops_engine), "--outcome", "sent", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["cart"], r["channel"]) for r in records] == [("c1", "email"), ("c2", "email")]
    code, out, _ = await run("logs", "--socket", sock(ops_engine), "--store", "shop2")
    assert code == 0 and "no records match" in out
    code, _, err = await run("logs", "--socket", sock(ops_engine), "--limit", "0")
    assert code == 1 and "limit: expected a whole number" in err


async def test_cart_view_and_unknown_cart(ops_engine: Engine) -> None:
    await workload(ops_engine)
    code, out, err = await run("cart", "shop1", "c2", "--socket", sock(ops_engine))
    assert code == 0, err
    for text in ("shop1/c2", "recovering", "2026-03-06 14:30:00Z", "Thing", "A1", "Messages", "whatsapp"):
        assert text in out, text
    code, out, _ = await run("cart", "shop1", "c2", "--json", "--socket", sock(ops_engine))
    assert json.loads(out)["next_due"] == START + 1800 + 4 * HOUR
    code, out, err = await run("cart", "shop1", "nope", "--socket", sock(ops_engine))
    assert code == 1 and out == "" and "no cart 'nope' in store 'shop1'" in err


async def test_the_socket_comes_from_the_config(ops_engine: Engine, tmp_path: Path) -> None:
    config = tmp_path / "cw.toml"
    config.write_text(f'[engine]\nadmin_unix = "{sock(ops_engine)}"\n')
    code, out, err = await run("stats", "--json", "--config", str(config))
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    config.write_text('[engine]\ntick = "fast"\n')
    code, _, err = await run("stats", "--config", str(config))
    assert code == 1 and "engine.tick" in err


async def test_tcp_only_config_authenticates_with_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTWHEEL_ADMIN_TOKEN", raising=False)
    engine = await start_engine(ops_config(tmp_path, admin_unix="", admin_tcp="127.0.0.1:0", admin_token="tok-1"), tmp_path)
    try:
        host, port = engine.ops.admin_tcp_address  # type: ignore[union-attr, misc]
        config = tmp_path / "cw.toml"
        config.write_text(f'[engine]\nadmin_unix = ""\nadmin_tcp = "{host}:{port}"\nadmin_token = "tok-1"\n')
        code, _, err = await run("stats", "--json", "--config", str(config))
        assert code == 0, err
        config.write_text(f'[engine]\nadmin_unix = ""\nadmin_tcp = "{host}:{port}"\nadmin_token = "tok-2"\n')
        code, _, err = await run("stats", "--config", str(config))
        assert code == 1 and "auth: wrong token" in err
    finally:
        await engine.stop()


async def test_logs_follow_prints_new_records_as_they_happen(ops_engine: Engine) -> None:
    ingest = await Ingest.open(ops_engine)
    try:
        assert (await ingest.frame(cart_event("f1")))["accepted"] == 1
    finally:
        await ingest.close()
    path = sock(ops_engine)
    printed: list[list[tuple[Any, ...]]] = []

    def follow() -> None:
        with AdminClient.unix(path) as client, AdminClient.unix(path) as driver:
            def sleep(_: float) -> None:  # instead of waiting: move the engine's clock on by 1 h
                driver.command("clock advance 1h")

            follow_logs(client, parse("logs", "--cart", "f1"), lambda rs: printed.append(
                [(r["step"], r["channel"], r["outcome"]) for r in rs]), sleep=sleep, polls=5)

    await in_thread(follow)
    # nothing at first; +1 h: abandoned at +30 min, nothing due yet; +2 h: step 1 (+1 h 30) and step 2
    # (+2 h); +3 h, +4 h: nothing new; +5 h: step 3 (+4 h 30)
    assert printed == [
        [(1, "push", "skipped"), (1, "email", "sent"), (2, "whatsapp", "skipped")],
        [(3, "push", "skipped"), (3, "email", "sent")],
    ]


async def test_client_errors_are_client_errors(ops_engine: Engine) -> None:
    def go() -> None:
        with AdminClient.unix(sock(ops_engine)) as client:
            assert client.command("bogus", check=False)["ok"] is False
            with pytest.raises(ClientError, match="unknown command 'bogus'"):
                client.command("bogus")
            assert "AdminClient" in repr(client)

    await in_thread(go)
    with pytest.raises(EngineNotRunning):
        AdminClient.unix(sock(ops_engine) + ".missing")


def _interrupt_after(n: int, then: Any = None) -> Any:
    """A ``sleep`` for the live loops: runs ``then`` n times, then raises KeyboardInterrupt (Ctrl-C)."""
    calls = {"n": 0}

    def sleep(_: float) -> None:
        calls["n"] += 1
        if calls["n"] > n:
            raise KeyboardInterrupt
        if then is not None:
            then()

    return sleep


async def test_top_refreshes_until_ctrl_c(ops_engine: Engine) -> None:
    await workload(ops_engine)
    code, out, err = await run("top", "--socket", sock(ops_engine), sleep=_interrupt_after(2))
    assert code == 0, err
    assert out.count("cartwheel top") == 3  # without a terminal: one frame per refresh, no screen tricks


async def test_top_full_screen_on_a_terminal(ops_engine: Engine) -> None:
    await workload(ops_engine)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, height=60, color_system=None)
    code = await in_thread(run_client, parse("top", "--socket", sock(ops_engine)), console=console,
                           sleep=_interrupt_after(1))
    assert code == 0
    screen = out.getvalue()
    assert "\x1b[?1049h" in screen and "\x1b[?1049l" in screen  # entered and left the alternate screen
    assert "Recovery funnel" in screen


async def test_logs_follow_until_ctrl_c(ops_engine: Engine) -> None:
    await workload(ops_engine)
    path = sock(ops_engine)

    def advance() -> None:
        with AdminClient.unix(path) as driver:
            driver.command("clock advance 3h")  # c2's step 3 falls due at +4 h 30

    code, out, err = await run("logs", "--follow", "--json", "--cart", "c2", "--socket", path,
                               sleep=_interrupt_after(1, advance))
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["step"], r["channel"], r["outcome"]) for r in records] == [
        (1, "push", "skipped"), (1, "email", "sent"), (2, "whatsapp", "skipped"),
        (3, "push", "skipped"), (3, "email", "sent")]


@pytest.mark.parametrize("argv", [("top", "--interval", "-1"), ("top", "--interval", "0"),
                                  ("logs", "--follow", "--interval", "nan"), ("logs", "--follow", "--interval", "inf")])
def test_a_bad_interval_is_refused_by_name(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """`top --interval -1` ended in a ValueError traceback from time.sleep after the first frame (NaN and
    infinity too); 0 polled the engine in a busy loop. The parser refuses them, naming the option."""
    with pytest.raises(SystemExit) as exc:
        parse(*argv, "--socket", "run/admin.sock")
    assert exc.value.code == 2
    assert "--interval: expected a positive number of seconds" in capsys.readouterr().err


async def test_a_reply_cut_short_by_a_dying_engine_is_a_client_error(tmp_path: Path) -> None:
    """An engine that dies while writing a reply (a large `logs`, a crash during `top`) leaves a partial
    JSON line: the client says the connection was lost instead of ending in a JSONDecodeError traceback."""
    import asyncio

    async def dying(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b'{"ok": true, "records": [{"id": "shop1:c1:1:1:em')
        await writer.drain()
        writer.close()

    path = str(tmp_path / "admin.sock")
    server = await asyncio.start_unix_server(dying, path)
    try:
        code, out, err = await run("logs", "--socket", path)
    finally:
        server.close()
        await server.wait_closed()
    assert code == 1 and out == ""
    assert "cartwheel logs:" in err and "connection lost" in err, err


def test_client_queries_quote_ids_as_the_admin_socket_splits_them() -> None:
    import argparse
    import shlex

    from engine.cli_clients import _log_query

    ns = argparse.Namespace(store="s", cart="summer sale", profile="it's", channel=None, outcome=None)
    assert shlex.split(_log_query(ns, limit=5)) == ["logs", "store=s", "cart=summer sale", "profile=it's", "limit=5"]


def test_the_funnel_shows_revenue_per_currency_when_there_are_several() -> None:
    import io

    from rich.console import Console

    from engine.cli_clients import _funnel_table

    doc = {"recovery": {"abandoned": 4, "recovered": 2, "converted": 9, "revenue": 20.0, "rate": 0.5,
                        "revenue_by_currency": {"USD": 10.0, "EUR": 10.0}}}
    out = io.StringIO()
    Console(file=out, width=120).print(_funnel_table(doc))
    screen = out.getvalue()
    assert _row(screen, "revenue recovered") == ["revenue", "recovered", "10.00", "EUR,", "10.00", "USD"]
    assert _row(screen, "converted (no credit)") == ["converted", "(no", "credit)", "9"]  # not "225.0 %"


def test_the_cart_view_says_when_a_run_is_paused() -> None:
    import io

    from rich.console import Console

    from engine.cli_clients import render_cart

    out = io.StringIO()
    Console(file=out, width=160).print(render_cart({"store": "shop1", "cart": "c1", "state": "active", "run": 1,
                                                    "paused": True, "items": []}))
    assert "active (a run paused: the shopper came back; the next abandonment resumes it)" in _squeeze(out.getvalue())
