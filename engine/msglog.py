"""The message log: every orchestrated message's outcome, kept for ``log_retention`` and then dropped.

Records arrive in engine-time order, so the log is a deque: expiry pops from the left while the oldest
record is older than the retention (O(expired), never a full scan). It holds at most ``log_max_records``
(``max_records``): the deque's ``maxlen`` drops the oldest record when a new one arrives on a full log,
and :attr:`MessageLog.dropped` counts those (``stats`` ``message_log_dropped``). At 1 000 messages/s
and ~15 records per abandoned cart, five days of records would not fit in memory, nor in the store. Queries (admin ``logs``,
``cartwheel logs``) filter a linear pass from the newest end; they are rare and bounded by ``limit``.
Durability is the store's: each snapshot cut carries the records appended since the previous one, in
Redis (``cw:{g}:log``) or in the file store, trimmed past the retention (``engine/stores/``), and a
restore appends them back here.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from actors.effects import LogRecord

__all__ = ["MessageLog"]

FIELDS = ("store", "cart", "profile", "channel", "outcome")


def _matches(value: Any, wanted: Any) -> bool:
    """A record's field against a filter value (the admin's are strings: ``step=2``); a field without a
    value (a record with no profile) matches no filter, not even the string ``"None"``."""
    return value is not None and str(value) == str(wanted)


class MessageLog:
    """An in-memory, time-ordered message log with retention (seconds) and a bound on its length."""

    def __init__(self, retention_s: float, max_records: int = 1_000_000) -> None:
        self.retention_s = retention_s
        self.max_records = max_records
        self._records: deque[LogRecord] = deque(maxlen=max_records)
        self._seq = 0
        #: records pushed out by newer ones because the log held ``max_records`` (not the expired ones)
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._records)

    def append(self, record: LogRecord) -> None:
        if not record.id:
            self._seq += 1
            record.id = f"log-{self._seq}"
        records = self._records
        if len(records) == self.max_records:
            self.dropped += 1  # the append below pushes out the oldest
        records.append(record)

    def full(self) -> bool:
        """The log holds ``max_records``: the next record pushes out the oldest."""
        return len(self._records) >= self.max_records

    def expire(self, now: float) -> int:
        """Drop records older than the retention; returns how many went."""
        records = self._records
        cutoff = now - self.retention_s
        n = 0
        while records and records[0].at < cutoff:
            records.popleft()
            n += 1
        return n

    def query(self, *, limit: int = 100, since: float | None = None, until: float | None = None,
              **filters: Any) -> list[dict[str, Any]]:
        """The newest ``limit`` records matching every given field (store, cart, profile, channel,
        outcome) and time range, oldest first."""
        unknown = set(filters) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown log filter {sorted(unknown)[0]!r} (known: {', '.join(FIELDS)}, since, until, limit)")
        wanted = [(k, v) for k, v in filters.items() if v is not None]
        out: list[dict[str, Any]] = []
        for record in reversed(self._records):
            if until is not None and record.at > until:
                continue
            if since is not None and record.at < since:
                break
            if all(_matches(getattr(record, k), v) for k, v in wanted):
                out.append(record.as_dict())
                if len(out) >= limit:
                    break
        out.reverse()
        return out

    def __iter__(self) -> Iterator[LogRecord]:
        return iter(self._records)

    def __reversed__(self) -> Iterator[LogRecord]:
        return reversed(self._records)
