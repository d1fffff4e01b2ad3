"""The message log: retention on the engine clock and queries (its durability is tested with the stores)."""
from __future__ import annotations

import pytest

from actors.effects import LogRecord
from engine.msglog import MessageLog

T0 = 1772791200.0  # 2026-03-06 10:00 UTC
DAY = 86400.0


def rec(at: float, cart: str = "c1", outcome: str = "sent", channel: str = "email") -> LogRecord:
    return LogRecord(id="", at=at, store="shop1", cart=cart, profile="p1", run=1, step=1, channel=channel,
                     outcome=outcome, reason="")


def test_records_expire_after_the_retention_without_a_scan() -> None:
    log = MessageLog(5 * DAY)
    for h in range(48):
        log.append(rec(T0 + h * 3600, cart=f"c{h}"))
    assert log.expire(T0 + 5 * DAY) == 0
    assert log.expire(T0 + 5 * DAY + 10 * 3600 + 1) == 11  # records at +0h .. +10h are older than 5 days
    assert len(log) == 37
    assert log.expire(T0 + 8 * DAY) == 37 and len(log) == 0


def test_query_filters_time_range_and_limit() -> None:
    log = MessageLog(5 * DAY)
    log.append(rec(T0, "a"))
    log.append(rec(T0 + 10, "b", outcome="skipped", channel="push"))
    log.append(rec(T0 + 20, "a", outcome="failed"))
    assert [r["cart"] for r in log.query(cart="a")] == ["a", "a"]
    assert [r["outcome"] for r in log.query(channel="push")] == ["skipped"]
    assert [r["at"] for r in log.query(since=T0 + 5)] == [T0 + 10, T0 + 20]
    assert [r["at"] for r in log.query(until=T0 + 15)] == [T0, T0 + 10]
    assert [r["at"] for r in log.query(limit=1)] == [T0 + 20]  # the newest, oldest first
    with pytest.raises(ValueError, match="unknown log filter 'colour'"):
        log.query(colour="red")
