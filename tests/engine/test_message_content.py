"""What the engine's flows put into the messages (end to end: actors, dispatcher, outbox)."""
from __future__ import annotations

import json
from pathlib import Path

from tests.engine.conftest import Client, cart_event, engine_config, start_engine


async def test_a_store_without_an_incentive_is_not_made_to_promise_one(tmp_path: Path) -> None:
    """Step 3 of revenue_recovery carries the store's incentive; a store without one gets the
    reminder texts there, not "we've added an offer for you" with no offer in it."""
    engine = await start_engine(engine_config(tmp_path), tmp_path)  # shop1: no incentive configured
    try:
        rt = engine.runtime
        event = cart_event("c1")
        event["profile"] = {"id": "p1", "email": "p1@example.test", "push": "fcm-token-1",
                            "consent": {"email": True, "push": True}}
        rt.apply_event(event, rt.now())
        await rt.advance_clock(5 * 3600.0)  # abandoned 10:30; steps at 11:30 and 14:30
        for channel, part in (("email", "text"), ("email", "subject"), ("push", "title"), ("push", "body")):
            lines = (tmp_path / "outbox" / f"{channel}.jsonl").read_text().splitlines()
            (step3,) = [m for m in map(json.loads, lines) if m["message"]["step"] == 3]
            assert step3["message"]["incentive"] is None and step3["message"]["template"] == "reminder"
            assert "offer" not in step3["rendered"][part], (channel, step3["rendered"][part])
    finally:
        await engine.stop()


async def test_an_accepted_price_never_crashes_the_channel(tmp_path: Path) -> None:
    """Ingest accepts any finite value >= 0; rendering 1e30 used to raise decimal.InvalidOperation."""
    engine = await start_engine(engine_config(tmp_path), tmp_path)
    try:
        rt = engine.runtime
        client = await Client.tcp(engine)
        reply = await client.frame(cart_event(value=1e30))
        await client.close()
        assert reply["accepted"] == 1 and reply["rejected"] == []
        await rt.advance_clock(2 * 3600.0)
        emails = [(r.outcome, r.reason) for r in rt.msglog if r.channel == "email" and r.step == 1]
        assert [o for o, _ in emails] == ["sent"], emails
    finally:
        await engine.stop()
