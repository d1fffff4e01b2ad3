"""The admin socket through its real listeners: every command, its error paths, permissions, TCP auth."""
from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from engine.admin import AdminCommands
from engine.app import Engine
from engine.config import parse_config
from engine.stats import LatencyHistogram, Stats
from tests.engine.conftest_ops import (
    HOUR,
    START,
    Admin,
    Ingest,
    cart_event,
    ops_config,
    ops_engine,
    start_engine,
    workload,
)

__all__ = ["ops_engine"]  # the fixture, imported for pytest

COMMANDS = {"help", "stats", "cart", "cancel", "logs", "flows", "channels", "pause", "resume", "credits",
            "snapshot", "clock", "quit"}


async def test_unix_socket_is_0600_and_help_lists_every_command_with_its_arguments(ops_engine: Engine) -> None:
    path = ops_engine.ops.admin_path  # type: ignore[union-attr]
    assert path is not None
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    admin = await Admin.unix(ops_engine)
    try:
        reply = await admin("help")
        assert reply["ok"] is True and set(reply["commands"]) == COMMANDS
        assert reply["commands"]["cart"].startswith("cart STORE CART")
        # a docstring's whole first paragraph, not its first line cut mid-sentence
        assert reply["commands"]["flows"].endswith("its steps (with their conditions).")
        assert reply["commands"]["credits"].startswith("credits STORE [+N|-N]")
        assert "clock [advance DURATION | set TIME]" in reply["commands"]["clock"]
        assert (await admin("auth whatever"))["ok"] is True  # harmless on the UNIX socket
    finally:
        await admin.close()


async def test_close_removes_the_socket_and_ends_open_sessions(tmp_path: Path) -> None:
    engine = await start_engine(ops_config(tmp_path), tmp_path)
    admin = await Admin.unix(engine)
    assert (await admin("clock"))["ok"]
    await engine.stop()
    assert await admin.eof()
    assert not (tmp_path / "admin.sock").exists()
    await admin.close()


@pytest.mark.parametrize(("line", "error"), [
    ("bogus", "unknown command 'bogus'"),
    ("no-such-command", "unknown command 'no-such-command'"),
    ("__init__", "unknown command '__init__'"),
    ("stats now", "stats: takes no arguments"),
    ("snapshot now", "snapshot: takes no arguments, got 'now'"),  # was: a full snapshot, the word ignored
    ("flows all", "flows: takes no arguments, got 'all'"),
    ("channels email", "channels: takes no arguments, got 'email'"),
    ("help cart", "help: takes no arguments, got 'cart'"),
    ("cart shop1", "cart: usage: cart STORE CART"),
    ("cart shop1 nope", "cart: no cart 'nope' in store 'shop1'"),
    ("cancel shop1 nope", "cancel: no cart 'nope' in store 'shop1'"),
    ("cancel", "cancel: usage: cancel STORE CART"),
    ("logs limit=0", "logs: limit: expected a whole number 1..100000, got '0'"),
    ("logs limit=²", "logs: limit: expected a whole number 1..100000"),
    ("logs limit=many", "logs: limit: expected a whole number"),
    ("logs color=red", "logs: unknown filter 'color'"),
    ("logs cart", "logs: expected key=value, got 'cart'"),
    ("logs outcome=lost", "logs: outcome: expected one of sent, failed"),
    ("logs since=yesterday", "logs: since: expected unix seconds or an ISO 8601 time"),
    ("pause", "pause: usage: pause CHANNEL"),
    ("pause fax", "pause: no channel 'fax'"),
    ("resume fax", "resume: no channel 'fax'"),
    ("credits", "credits: usage: credits STORE [+N|-N]"),
    ("credits nowhere", "credits: no store 'nowhere'"),
    ("credits shop2 5", "credits: expected +N or -N, got '5'"),
    ("credits shop2 +²", "credits: expected +N or -N"),
    ("credits shop1 +5", "credits: store 'shop1' has unlimited credits"),
    ("clock warp 1h", "clock: unknown sub-command 'warp'"),
    ("clock advance", "clock: usage: clock advance DURATION"),
    ("clock advance soon", "clock: advance: expected a duration"),
    ("clock advance 99999d", "clock: advance: at most 3650d"),
    ("clock set", "clock: usage: clock set TIME"),
    ("clock set tomorrow", "clock: set: expected unix seconds or an ISO 8601 time"),
    ("clock set 2026-03-06T09:00:00Z", "clock: set: time never moves backwards"),
])
async def test_bad_commands_name_the_fault_and_keep_the_connection(ops_engine: Engine, line: str, error: str) -> None:
    admin = await Admin.unix(ops_engine)
    try:
        reply = await admin(line)
        assert reply["ok"] is False and reply["error"].startswith(error), reply
        assert (await admin("clock"))["ok"] is True  # same connection, still serving
    finally:
        await admin.close()


async def test_empty_lines_are_ignored_and_quit_closes(ops_engine: Engine) -> None:
    admin = await Admin.unix(ops_engine)
    admin.writer.write(b"\n   \n")
    assert (await admin("clock"))["now"] == START
    admin.writer.write(b"quit\n")
    assert await admin.eof()
    await admin.close()


async def test_an_overlong_line_is_refused(ops_engine: Engine) -> None:
    admin = await Admin.unix(ops_engine)
    admin.writer.write(b"logs " + b"x" * 70_000 + b"\n")
    line = await asyncio.wait_for(admin.reader.readline(), 30)
    assert b"line longer than" in line
    assert await admin.eof()
    await admin.close()


async def test_tcp_admin_requires_the_token(tmp_path: Path) -> None:
    config = ops_config(tmp_path, admin_tcp="127.0.0.1:0", admin_token="s3cret-token")
    engine = await start_engine(config, tmp_path)
    try:
        address = engine.ops.admin_tcp_address  # type: ignore[union-attr]
        assert address is not None and address[0] == "127.0.0.1"

        anonymous = await Admin.tcp(address)
        reply = await anonymous("stats")
        assert reply == {"ok": False, "error": "auth required: send 'auth TOKEN' first"}
        assert await anonymous.eof()
        await anonymous.close()

        wrong = await Admin.tcp(address)
        assert await wrong("auth s3cret-tokeN") == {"ok": False, "error": "auth: wrong token"}
        assert await wrong.eof()
        await wrong.close()

        right = await Admin.tcp(address)
        assert await right("auth s3cret-token") == {"ok": True, "auth": True}
        stats = await right("stats")
        assert stats["ok"] is True and "carts" in stats
        assert (await right("bogus"))["ok"] is False
        assert (await right("clock"))["ok"] is True
        await right.close()
        assert engine.ops.admin.refused == 2  # type: ignore[union-attr]
    finally:
        await engine.stop()


async def test_tcp_token_from_the_environment(tmp_path: Path) -> None:
    config = ops_config(tmp_path, env={"CARTWHEEL_ADMIN_TOKEN": "from-env"}, admin_tcp="127.0.0.1:0",
                        admin_token="from-file")
    engine = await start_engine(config, tmp_path)
    try:
        admin = await Admin.tcp(engine.ops.admin_tcp_address)  # type: ignore[union-attr, arg-type]
        assert (await admin("auth from-env"))["ok"] is True
        await admin.close()
    finally:
        await engine.stop()


async def test_clock_advance_fires_a_whole_flow_and_logs_show_it(ops_engine: Engine, tmp_path: Path) -> None:
    ingest = await Ingest.open(ops_engine)
    admin = await Admin.unix(ops_engine)
    try:
        assert (await ingest.frame(cart_event("c9")))["accepted"] == 1
        assert (await admin("cart shop1 c9"))["next_due"] == START + 1800  # the inactivity timer
        reply = await admin("clock advance 2d")
        assert reply["ok"] is True and reply["now"] == START + 48 * HOUR
        # idle at +30 min, then steps at +1 h, +1 h 30, +4 h, +24 h, +40 h, expiry at +48 h of the run
        assert reply["fired"] == 6
        reply = await admin("clock advance 1h")
        assert reply["fired"] == 1  # expiry, 48 h after the abandonment at +30 min
        records = (await admin("logs cart=c9"))["records"]
        sent = [(r["step"], r["channel"]) for r in records if r["outcome"] == "sent"]
        assert sent == [(1, "email"), (3, "email"), (4, "email"), (5, "email")]
        abandoned_at = START + 1800
        assert [r["at"] - abandoned_at for r in records if r["outcome"] == "sent"] == [HOUR, 4 * HOUR, 24 * HOUR, 40 * HOUR]
        assert {r["outcome"] for r in records} == {"sent", "skipped"}
        cart = await admin("cart shop1 c9")
        assert cart["state"] == "expired" and cart["run"] == 1
        assert [m["id"] for m in cart["messages"]] == [r["id"] for r in records]
        # the outbox really got the four emails
        outbox = [p for p in (tmp_path / "outbox").iterdir()]
        assert sum(len(p.read_text().splitlines()) for p in outbox) == 4
        stats = await admin("stats")
        assert stats["recovery"]["abandoned"] == 1 and stats["recovery"]["expired"] == 1
        assert stats["sends"]["email"] == {"sent": 4}
        assert stats["latency"]["timer_lag"]["count"] == 7
    finally:
        await admin.close()
        await ingest.close()


async def test_clock_reports_and_set_moves_to_a_time(ops_engine: Engine) -> None:
    admin = await Admin.unix(ops_engine)
    try:
        assert await admin("clock") == {"ok": True, "now": START, "kind": "manual"}
        reply = await admin("clock set 2026-03-06T12:30:00Z")
        assert reply == {"ok": True, "now": START + 2.5 * HOUR, "fired": 0}
        reply = await admin(f"clock set {START + 3 * HOUR:.0f}")
        assert reply["now"] == START + 3 * HOUR
        assert (await admin("clock advance 0s"))["now"] == START + 3 * HOUR
    finally:
        await admin.close()


async def test_clock_set_to_a_number_that_is_not_finite_is_refused_and_changes_nothing(ops_engine: Engine) -> None:
    admin = await Admin.unix(ops_engine)
    ingest = await Ingest.open(ops_engine)
    try:
        for bad in ("nan", "inf", "-inf", "NaN"):
            reply = await admin(f"clock set {bad}")
            assert reply["ok"] is False and "not a finite number" in reply["error"], reply
        assert await admin("clock") == {"ok": True, "now": START, "kind": "manual"}
        assert (await ingest.frame(cart_event("c1")))["accepted"] == 1
        assert (await admin("clock advance 1h"))["now"] == START + HOUR
    finally:
        await ingest.close()
        await admin.close()


async def test_clock_moves_are_refused_on_a_real_clock(tmp_path: Path) -> None:
    config = parse_config({"engine": {
        "ingest_tcp": "127.0.0.1:0", "ingest_unix": "", "admin_unix": str(tmp_path / "admin.sock"),
        "store": f"file:{tmp_path / 'state'}", "snapshot_interval": "1h"}}, source="test", env={})
    engine = await start_engine(config, tmp_path, manual=False)
    admin = await Admin.unix(engine)
    try:
        assert (await admin("clock"))["kind"] == "real"
        for line in ("clock advance 1h", "clock set 2099-01-01T00:00:00Z"):
            reply = await admin(line)
            assert reply["ok"] is False and "needs the manual clock; this engine runs a real clock" in reply["error"]
    finally:
        await admin.close()
        await engine.stop()


async def test_cart_shows_state_items_run_deadline_and_messages(ops_engine: Engine) -> None:
    await workload(ops_engine)
    admin = await Admin.unix(ops_engine)
    try:
        cart = await admin("cart shop1 c2")
        assert cart["ok"] is True and cart["state"] == "recovering" and cart["run"] == 1
        assert cart["items"] == [{"sku": "A1", "name": "Thing", "qty": 1, "price": 10.0}]
        assert cart["next_due"] == START + 1800 + 4 * HOUR  # step 3 of the run abandoned at +30 min
        assert [(m["step"], m["channel"], m["outcome"]) for m in cart["messages"]] == [
            (1, "push", "skipped"), (1, "email", "sent"), (2, "whatsapp", "skipped")]
        recovered = await admin("cart shop1 c1")
        assert recovered["state"] == "recovered"
        assert recovered["last_message"]["channel"] == "email"
    finally:
        await admin.close()


async def test_cancel_stops_a_run_and_logs_it(ops_engine: Engine) -> None:
    await workload(ops_engine)
    admin = await Admin.unix(ops_engine)
    try:
        reply = await admin("cancel shop1 c2")
        assert reply == {"ok": True, "store": "shop1", "cart": "c2", "run": 1, "cancelled": True}
        assert (await admin("cart shop1 c2"))["state"] == "expired"  # keeps its last message for an order
        assert (await admin("stats"))["recovery"]["stopped"] == 1
        last = (await admin("logs cart=c2"))["records"][-1]
        assert (last["outcome"], last["reason"], last["run"], last["at"]) == ("cancelled", "cancelled by operator", 1, START + 2 * HOUR)
        assert (await admin("clock advance 2d"))["ok"]
        assert [r["outcome"] for r in (await admin("logs cart=c2"))["records"]][-1] == "cancelled"  # nothing after
        again = await admin("cancel shop1 c2")
        assert again["ok"] is False and "not in a recovery run (state expired)" in again["error"]
    finally:
        await admin.close()


async def test_logs_filters_and_limit(ops_engine: Engine) -> None:
    await workload(ops_engine)
    admin = await Admin.unix(ops_engine)
    try:
        every = (await admin("logs"))["records"]
        assert len(every) == 6
        assert [r["at"] for r in every] == sorted(r["at"] for r in every)
        assert {"id", "at", "store", "cart", "profile", "run", "step", "channel", "outcome", "reason"} <= set(every[0])
        assert len((await admin("logs channel=email"))["records"]) == 2
        assert [r["cart"] for r in (await admin("logs profile=p-c2 outcome=sent"))["records"]] == ["c2"]
        newest = (await admin("logs limit=2"))["records"]
        assert newest == every[-2:]
        late = (await admin(f"logs since={START + 1.5 * HOUR} until={START + 1.5 * HOUR}"))["records"]
        assert {r["cart"] for r in late} == {"c1", "c2"} and len(late) == 3
        assert (await admin("logs store=shop2"))["records"] == []
    finally:
        await admin.close()


async def test_flows_and_channels(ops_engine: Engine) -> None:
    admin = await Admin.unix(ops_engine)
    try:
        flows = (await admin("flows"))["flows"]
        rr = flows["revenue_recovery"]
        assert rr["abandon_after"] == "30m"
        assert [s["channels"] for s in rr["steps"]][:2] == [["email", "push"], ["whatsapp"]]
        assert "four_touch" in flows
        assert (rr["frequency_cap"], rr["on_cap"]) == ("12h", "postpone")
        assert rr["steps"][0] == {"step": 1, "after": "1h", "channels": ["email", "push"], "incentive": False,
                                  "window": None, "template": "reminder", "send_in": "store", "min_value": None,
                                  "max_value": None, "high_intent": None, "currency": None}
        channels = (await admin("channels"))["channels"]
        assert {"email", "push", "whatsapp", "sms"} <= set(channels)
        assert channels["email"]["kind"] == "outbox"  # the configured kind, not a class name
        email = channels["email"]
        assert email["breaker"] == "closed" and email["paused"] is False and email["queued"] == 0
        assert "rate_per_s" in email
    finally:
        await admin.close()


async def test_pause_holds_sends_and_resume_releases_them(ops_engine: Engine) -> None:
    ingest = await Ingest.open(ops_engine)
    admin = await Admin.unix(ops_engine)
    try:
        assert await admin("pause email") == {"ok": True, "channel": "email", "paused": True}
        assert (await admin("channels"))["channels"]["email"]["paused"] is True
        assert (await ingest.frame(cart_event("c5")))["accepted"] == 1
        assert (await ingest.frame({"type": "session.ended", "store": "shop1", "cart": "c5"}))["accepted"] == 1
        assert (await admin("clock advance 1h"))["fired"] == 1  # returns: a paused pool counts as idle
        assert (await admin("channels"))["channels"]["email"]["queued"] == 1
        assert (await admin("logs cart=c5 channel=email"))["records"] == []
        assert await admin("resume email") == {"ok": True, "channel": "email", "paused": False}
        await ops_engine.dispatcher.idle()  # type: ignore[union-attr]
        assert [r["outcome"] for r in (await admin("logs cart=c5 channel=email"))["records"]] == ["sent"]
    finally:
        await admin.close()
        await ingest.close()


async def test_credits_show_and_adjust(ops_engine: Engine) -> None:
    admin = await Admin.unix(ops_engine)
    try:
        assert await admin("credits shop2") == {"ok": True, "store": "shop2", "credits": 5, "unlimited": False}
        assert (await admin("credits shop2 +3"))["credits"] == 8
        assert (await admin("credits shop2 -100"))["credits"] == 0
        assert await admin("credits shop1") == {"ok": True, "store": "shop1", "credits": None, "unlimited": True}
    finally:
        await admin.close()


async def test_snapshot_writes_and_reports(ops_engine: Engine, tmp_path: Path) -> None:
    await workload(ops_engine)
    admin = await Admin.unix(ops_engine)
    try:
        reply = await admin("snapshot")
        assert reply["ok"] is True and reply["seconds"] >= 0 and reply["snapshot"].startswith("file:")
        assert (tmp_path / "state" / "snapshot.msgpack").stat().st_size > 0
        persistence = (await admin("stats"))["persistence"]
        assert persistence["up"] is True and persistence["snapshot_age_s"] is not None
        assert persistence["snapshot_duration_s"] is not None
    finally:
        await admin.close()


async def test_snapshot_failure_is_an_error_reply(ops_engine: Engine) -> None:
    async def broken() -> float:
        raise OSError("disk full")

    ops_engine.snapshot = broken  # type: ignore[method-assign]
    admin = await Admin.unix(ops_engine)
    try:
        assert await admin("snapshot") == {"ok": False, "error": "snapshot: failed: disk full"}
    finally:
        await admin.close()
        del ops_engine.snapshot  # the real one again, for the final snapshot at stop


async def test_stats_agree_with_a_known_workload(ops_engine: Engine) -> None:
    await workload(ops_engine)
    admin = await Admin.unix(ops_engine)
    try:
        stats = await admin("stats")
    finally:
        await admin.close()
    assert stats["ok"] is True
    assert stats["events"] == {"accepted": 8, "rejected": 1, "duplicate": 1, "frames": 6, "connections": 1}
    # the converted cart (bought before it was abandoned) is a tombstone, as the recovered one is, until
    # its attribution window has passed: a late update stamped before the order must find it
    assert stats["carts"] == {"active": 0, "abandoned": 0, "recovering": 1, "recovered": 1, "converted": 1,
                              "expired": 0, "cleared": 0}
    assert stats["timers"] == 3 and sum(stats["timers_per_level"]) == 3
    assert stats["sends"] == {"email": {"sent": 2}, "push": {"skipped": 2}, "whatsapp": {"skipped": 2}}
    rec = stats["recovery"]
    assert {k: rec[k] for k in ("abandoned", "recovered", "converted", "expired", "rate", "revenue")} == {
        "abandoned": 2, "recovered": 1, "converted": 1, "expired": 0, "rate": 0.5, "revenue": 10.0}
    assert rec["by_step"] == {"1": {"recovered": 1, "revenue": 10.0}}
    assert rec["by_channel"] == {"email": {"recovered": 1, "revenue": 10.0}}
    assert stats["engagement"]["opened"] == 1 and stats["engagement"]["by_channel"]["email"]["opened"] == 1
    assert stats["latency"]["timer_lag"]["count"] == 5
    assert stats["timers_fired"] == 5
    assert stats["memory"]["rss_bytes"] > 10 * 1024 * 1024
    assert stats["persistence"]["up"] is True and stats["persistence"]["store"].startswith("file:")
    assert set(stats["rates"]) == {"events_per_s", "sends_per_s"}
    assert stats["clock"] == {"now": START + 2 * HOUR, "kind": "manual"}


async def test_concurrent_clock_advances_do_not_interleave(ops_engine: Engine) -> None:
    ingest = await Ingest.open(ops_engine)
    a, b = await Admin.unix(ops_engine), await Admin.unix(ops_engine)
    try:
        assert (await ingest.frame([cart_event(f"k{i}") for i in range(20)]))["accepted"] == 20
        ra, rb = await asyncio.gather(a("clock advance 1h"), b("clock advance 1h"))
        assert sorted([ra["now"], rb["now"]]) == [START + HOUR, START + 2 * HOUR]
        assert ra["fired"] + rb["fired"] == 60  # 20 abandonments at +30 min, 20 first steps, 20 second steps
        assert ops_engine.stats.sends["email"]["sent"] == 20
    finally:
        await a.close()
        await b.close()
        await ingest.close()


async def test_a_failing_command_is_an_internal_error_not_a_closed_socket(ops_engine: Engine) -> None:
    def boom() -> dict[str, object]:
        raise RuntimeError("kaput")

    ops_engine.channels_document = boom  # type: ignore[method-assign]
    admin = await Admin.unix(ops_engine)
    try:
        reply = await admin("channels")
        assert reply == {"ok": False, "error": "channels: internal error (RuntimeError: kaput)"}
        assert (await admin("clock"))["ok"] is True
    finally:
        await admin.close()
        del ops_engine.channels_document


# ---------------------------------------------------------------------------------------- stats units


def test_rates_come_from_the_per_second_samples() -> None:
    stats = Stats()
    assert stats.rates() == ({"1s": 0.0, "10s": 0.0, "60s": 0.0}, {"1s": 0.0, "10s": 0.0, "60s": 0.0})
    stats.sample(100.0)
    stats.events_accepted = 60
    stats.outcome("email", "sent")
    stats.sample(101.0)
    stats.events_accepted = 300
    stats.outcome("email", "sent")
    stats.outcome("push", "sent")
    stats.outcome("push", "skipped")
    stats.sample(102.0)
    events, sends = stats.rates()
    assert events == {"1s": 240.0, "10s": 150.0, "60s": 150.0}
    assert sends == {"1s": 2.0, "10s": 1.5, "60s": 1.5}
    for t in range(103, 200):  # wrap the ring buffer: 10 events per second from now on
        stats.events_accepted += 10
        stats.sample(float(t))
    events, _ = stats.rates()
    assert events == {"1s": 10.0, "10s": 10.0, "60s": 10.0}


def test_stats_statistics_and_repr() -> None:
    stats = Stats()
    stats.events_accepted = 3
    stats.events_rejected = 1
    stats.timers_fired = 2
    stats.outcome("email", "sent")
    stats.metric("abandoned", 1)
    snap = stats.statistics()
    assert snap.events_accepted == 3 and snap.sends == {"email": {"sent": 1}} and snap.metrics == {"abandoned": 1}
    with pytest.raises(AttributeError):
        snap.events_accepted = 4  # type: ignore[misc]
    assert repr(stats) == "<Stats accepted=3 rejected=1 duplicate=0 fired=2 queued=0 sent=1>"


def test_per_channel_latencies_and_histogram_buckets() -> None:
    stats = Stats()
    stats.record_queue_time("email", 0.002)
    stats.record_queue_time("email", 0.2)
    stats.record_provider_latency("sms", 1.5)
    doc = stats.latency()
    assert doc["queue"]["email"]["count"] == 2 and doc["provider"]["sms"]["count"] == 1
    assert 1490 <= doc["provider"]["sms"]["p50_ms"] <= 1510
    h = LatencyHistogram()
    for s in (0.0005, 0.003, 0.003, 0.7, 5000.0):
        h.record(s)
    assert h.cumulative((0.001, 0.01, 1.0, 10.0)) == [1, 3, 4, 4]
    assert h.count == 5 and h.sum_s == pytest.approx(5000.7065)


async def test_admin_commands_repr_and_unknown_attribute_names(ops_engine: Engine) -> None:
    commands = AdminCommands(ops_engine)
    assert (await commands.run("view"))["ok"] is False  # attributes that are not cmd_* are not commands
    assert (await commands.run(""))["error"].startswith("empty command")
    assert "AdminCommands" in repr(commands)
    assert "served=" in repr(ops_engine.ops.admin)  # type: ignore[union-attr]


async def test_a_second_engine_does_not_steal_a_live_socket(ops_engine: Engine, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    config = ops_config(other, admin_unix=ops_engine.ops.admin_path)  # type: ignore[union-attr]
    second = Engine(config, base_dir=other)
    with pytest.raises(OSError, match="another process is listening"):
        await second.start()
    await second.stop()
    admin = await Admin.unix(ops_engine)  # the first engine still answers on its socket
    assert (await admin("clock"))["ok"] is True
    await admin.close()


async def test_stopping_with_an_admin_session_open_logs_no_error(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    engine = await start_engine(ops_config(tmp_path), tmp_path)
    admin = await Admin.unix(engine)
    assert (await admin("clock"))["ok"] is True
    with caplog.at_level(logging.ERROR):
        await engine.stop()
        await asyncio.sleep(0.05)  # the stream protocol's done-callbacks run
    await admin.close()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_cart_whose_id_has_a_space_can_be_shown(ops_engine: Engine) -> None:
    """Admin lines are split into words as a POSIX shell does: ids with spaces or quotes are quoted."""
    ingest = await Ingest.open(ops_engine)
    admin = await Admin.unix(ops_engine)
    try:
        shopper = {"id": "p-s", "email": "s@example.test", "consent": {"email": True}}
        reply = await ingest.frame([cart_event(c, profile=shopper, checkout_url="https://shop.test/c/1")
                                    for c in ("summer sale", "it's")])
        assert reply["accepted"] == 2, reply
        reply = await admin('cart shop1 "summer sale"')
        assert reply["ok"] is True and reply["cart"] == "summer sale"
        assert (await admin('cart shop1 "it\'s"'))["cart"] == "it's"
        assert (await admin("logs 'cart=summer sale'"))["ok"] is True
        bad = await admin("cart shop1 it's")
        assert bad["ok"] is False and "No closing quotation" in bad["error"], bad
        assert (await admin("stats"))["ok"] is True  # the connection goes on
    finally:
        await admin.close()
        await ingest.close()
