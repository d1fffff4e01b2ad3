"""Sending through the engine on a manual clock: what the pools do between two timers happens at its own
virtual time (real SMTP server, emulated providers)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.channels.test_channels_store_settings import _config, _shopper
from tests.engine.conftest import START, cart_event, start_engine

HOUR = 3600.0


def _smtp(smtp_server: Any, **keys: Any) -> dict[str, Any]:
    return {"email": {"kind": "smtp", "host": "127.0.0.1", "port": smtp_server.port, **keys}}


async def test_clock_advance_lets_a_rate_limited_backlog_go_at_its_rate(tmp_path: Path, smtp_server: Any) -> None:
    """Three emails due at 11:30 on a 1/min channel go at 11:30, 11:31 and 11:32, and `clock advance 2h`
    returns with all three sent (it used to step only from wheel timer to wheel timer: the second went at
    12:00, the next timer, and the third was still queued when the advance returned)."""
    engine = await start_engine(_config(tmp_path, {}, _smtp(smtp_server, rate="1/m")), tmp_path)
    try:
        rt = engine.runtime
        for i in range(3):
            rt.apply_event(cart_event(f"c{i}", profile=f"p{i}"), rt.now())
        await rt.advance_clock(2 * HOUR)
        sent = [(r.at - START) / 60 for r in rt.msglog if r.channel == "email" and r.outcome == "sent"]
        assert sent == [90.0, 91.0, 92.0]
        assert len(smtp_server.handler.messages) == 3
    finally:
        await engine.stop()


async def test_clock_advance_retries_a_transient_failure_at_its_back_off_time(tmp_path: Path, smtp_server: Any) -> None:
    """A 451 at 11:30 with a 10 s back-off is retried 5-10 s later, not at the next timer (12:00)."""
    engine = await start_engine(_config(tmp_path, {}, _smtp(smtp_server, backoff="10s")), tmp_path)
    try:
        rt = engine.runtime
        rt.apply_event(_shopper(), rt.now())
        smtp_server.handler.script["DATA"].append("451 4.3.0 Try again later")
        await rt.advance_clock(2 * HOUR)
        (record,) = [r for r in rt.msglog if r.channel == "email"]
        assert record.outcome == "sent"
        assert START + 1.5 * HOUR + 5 <= record.at <= START + 1.5 * HOUR + 10, (record.at - START) / HOUR
        assert smtp_server.handler.transactions == 2
    finally:
        await engine.stop()
