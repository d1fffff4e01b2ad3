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


def _sms_shopper(cart: str) -> dict[str, Any]:
    event = cart_event(cart, profile=f"p{cart}")
    event["profile"] = {"id": f"p{cart}", "phone": f"+3460011{int(cart[1:]):04d}", "consent": {"sms": True}}
    return event


async def test_a_channel_told_to_wait_by_its_provider_does_not_stop_ingest(tmp_path: Path, twilio_api: Any) -> None:
    """A 429 with `Retry-After: 3600` holds the whole SMS channel for an hour: it cannot send at all, as
    when it is paused or its breaker is open, so its full queue must not stop ingest (README, Back-pressure):
    the purchases that arrive meanwhile must be read, and they cancel its backlog."""
    import asyncio

    from tests.engine.conftest import Client

    sms = {"sms": {"kind": "sms", "base_url": twilio_api.base_url, "account_sid": twilio_api.account_sid,
                   "auth_token": twilio_api.auth_token, "from": "+15005550006", "queue": 3, "concurrency": 1}}
    engine = await start_engine(_config(tmp_path, {"flow": "four_touch"}, sms), tmp_path)
    client = await Client.tcp(engine)
    try:
        twilio_api.script(twilio_api.error(20429, status=429, retry_after="3600"))
        carts = [f"c{i}" for i in range(8)]
        assert (await client.frame([_sms_shopper(c) for c in carts]))["accepted"] == 8
        await asyncio.wait_for(engine.runtime.advance_clock(24.5 * HOUR + 60), 30)  # SMS step at +1 d 30 min
        assert len(twilio_api.requests) == 1 and engine.dispatcher.overflow  # throttled, queue full
        for _ in range(30):  # (the dispatcher looks again at a channel that cannot send once a second)
            if not engine.ingest.paused:
                break
            await asyncio.sleep(0.1)
        orders = [{"type": "order.completed", "store": "shop1", "cart": c, "order": f"o{c}"} for c in carts]
        reply = await asyncio.wait_for(client.frame(orders), 10)  # read although the SMS channel waits
        assert reply["accepted"] == 8
        await asyncio.wait_for(engine.runtime.advance_clock(2 * HOUR), 30)
        assert len(twilio_api.requests) == 1  # every queued SMS was for a cart bought since
        assert not engine.dispatcher.overflow
    finally:
        await client.close()
        await engine.stop()
