"""The message log: retention on the engine clock, queries, and day files that survive a restart."""
from __future__ import annotations

from pathlib import Path

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


def test_day_files_reload_within_retention_and_expire_whole_days(tmp_path: Path) -> None:
    log = MessageLog(2 * DAY, tmp_path)
    for d in range(4):
        log.append(rec(T0 + d * DAY, cart=f"day{d}"))
    log.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "messages-2026-03-06.jsonl", "messages-2026-03-07.jsonl", "messages-2026-03-08.jsonl", "messages-2026-03-09.jsonl"]
    log.close()
    again = MessageLog(2 * DAY, tmp_path)
    assert again.load(T0 + 3 * DAY) == 3  # day 0 is past the retention
    assert [r["cart"] for r in again.query()] == ["day1", "day2", "day3"]
    again.expire(T0 + 5 * DAY + 1)
    assert len(again) == 0
    # a day file goes once its whole day is past the cutoff (03-09 10:00:01): 03-09 itself stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["messages-2026-03-09.jsonl"]


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    log = MessageLog(5 * DAY, tmp_path)
    log.append(rec(T0))
    log.close()
    with open(tmp_path / "messages-2026-03-06.jsonl", "ab") as f:
        f.write(b'{"id": "x", "at": 17727')
    again = MessageLog(5 * DAY, tmp_path)
    assert again.load(T0 + 60) == 1
