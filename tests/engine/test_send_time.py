"""A message that waited in its channel's queue still respects the store's quiet hours when it goes.

The actor checks quiet hours and send windows when it issues a message; the pool asks
``still_wanted`` right before sending, and that check now also says "not yet, ask again at T"
(``Registry.still_wanted`` returns a float), so a message held up by a paused or rate-limited channel
past the start of the quiet hours waits for their end instead of going out inside them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.engine.conftest import START, cart_event, engine_config, start_engine

HOUR = 3600.0
# quiet from 12:00 to 08:00 UTC: START is 10:00 UTC, the first step (abandoned at 10:30, +1 h) is at 11:30
QUIET = {"shop1": {"name": "Acme", "timezone": "UTC", "quiet_hours": {"start": "12:00", "end": "08:00"}}}


def _emails(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "outbox" / "email.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_message_queued_past_the_start_of_quiet_hours_waits_for_their_end(tmp_path: Path) -> None:
    engine = await start_engine(engine_config(tmp_path, stores=QUIET), tmp_path)
    try:
        rt = engine.runtime
        rt.apply_event(cart_event(), rt.now())
        engine.pause_channel("email", True)
        await rt.advance_clock(1.5 * HOUR)  # 11:30: step 1 issued, queued in the paused channel
        assert engine.dispatcher.pools["email"].statistics().queued == 1
        await rt.advance_clock(HOUR)  # 12:30: inside the quiet hours
        engine.pause_channel("email", False)
        await rt.advance_clock(60)
        assert _emails(tmp_path) == []
        assert engine.dispatcher.pools["email"].statistics().queued == 1  # held, not cancelled
        await rt.advance_clock(20 * HOUR)  # past 08:00 the next day
        sent = [r for r in rt.msglog if r.channel == "email" and r.outcome == "sent"]
        # step 1 waited in the queue until 08:00 UTC the next day (not 12:30); step 3 (14:30) was
        # postponed to 08:00 by the actor when it fell due, as before
        assert [(r.step, r.at) for r in sent] == [(1, START + 22 * HOUR), (3, START + 22 * HOUR)]
        assert len(_emails(tmp_path)) == 2
    finally:
        await engine.stop()


async def test_a_rate_limited_backlog_does_not_go_out_inside_quiet_hours(tmp_path: Path) -> None:
    config = engine_config(tmp_path, stores=QUIET)
    config.channels["email"].update({"rate": "1/h", "burst": 1})
    engine = await start_engine(config, tmp_path)
    try:
        rt = engine.runtime
        for i in range(3):
            rt.apply_event(cart_event(f"c{i}", profile=f"p{i}"), rt.now())
        for _ in range(8):
            await rt.advance_clock(1800)
        sent = [(r.at - START) / HOUR for r in rt.msglog if r.channel == "email" and r.outcome == "sent"]
        assert sent == [1.5]  # one at 11:30; the other two wait for 08:00 (their step-3 emails are later)
        await rt.advance_clock(20 * HOUR)
        sent = sorted((r.at - START) / HOUR for r in rt.msglog if r.channel == "email" and r.outcome == "sent")
        assert all(h < 2 or h >= 22 for h in sent), sent
        assert sent.count(22.0) >= 1
    finally:
        await engine.stop()
