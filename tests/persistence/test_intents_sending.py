"""The send-intent ledger and the channels' queues at a graceful stop."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.persistence.conftest import engine_config, outbox_lines, start_engine
from tests.persistence.helpers import HOUR, cart_event, feed


def _keys(tmp_path: Path) -> Counter[str]:
    return Counter(m["key"] for m in outbox_lines(tmp_path))


async def test_graceful_stop_with_sends_waiting_for_room_sends_them_after_restart(
        store_url: str, tmp_path: Path, engines: list) -> None:
    """As with the sends queued in a pool, those still waiting for room in its queue (the dispatcher's
    overflow) never went out: a graceful stop keeps them as unsent, and the next start sends them. They
    were left pending, so the restart reported them `uncertain` and skipped them: lost."""
    config = engine_config(tmp_path, store_url, channels={
        "email": {"kind": "outbox", "dir": str(tmp_path / "outbox"), "queue": 5}})
    a = await start_engine(engines, config, tmp_path)
    for i in range(15):
        await feed(a, cart_event(f"c{i}"))
    await a.sync()
    a.pause_channel("email", True)
    await a.runtime.advance_clock(1.5 * HOUR)
    assert len(a.dispatcher.overflow) == 10  # 5 in the pool's queue, 10 waiting for room
    await a.stop()
    assert _keys(tmp_path) == Counter()
    b = await start_engine(engines, config, tmp_path)
    await b.dispatcher.idle()
    await b.runtime.advance_clock(1)
    assert b.ledger.uncertain == 0
    assert not [r for r in b.runtime.msglog if r.outcome == "uncertain"]
    keys = _keys(tmp_path)
    assert len(keys) == 15 and max(keys.values()) == 1
