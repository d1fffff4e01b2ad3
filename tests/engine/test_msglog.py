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
    anonymous = rec(T0 + 30, "c")
    anonymous.profile = None
    log.append(anonymous)
    assert log.query(profile="None") == []  # a record without a profile matches no profile filter
    assert [r["cart"] for r in log.query(profile="p1")] == ["a", "b", "a"]


def test_a_full_log_drops_its_oldest_records_and_counts_them() -> None:
    log = MessageLog(5 * DAY, max_records=1000)
    for i in range(2500):
        log.append(rec(T0 + i, cart=f"c{i}"))
    assert len(log) == 1000 and log.full()
    assert log.dropped == 1500
    assert [r.cart for r in log] == [f"c{i}" for i in range(1500, 2500)]
    assert [r["cart"] for r in log.query(limit=3)] == ["c2497", "c2498", "c2499"]  # oldest first
    assert [r["cart"] for r in log.query(since=T0, limit=5000)][0] == "c1500"
    assert log.query(cart="c10") == []
    assert log.expire(T0 + 5 * DAY + 2000) == 500  # +1500 .. +1999 are older than 5 days
    assert len(log) == 500 and not log.full() and log.dropped == 1500
    log.append(rec(T0 + 5 * DAY + 2000))
    assert len(log) == 501 and log.dropped == 1500
