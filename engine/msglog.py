"""The message log: every orchestrated message's outcome, kept for ``log_retention`` and then dropped.

Records arrive in engine-time order, so the live log is a deque: expiry pops from the left while the
oldest record is older than the retention (O(expired), never a full scan). Queries (admin ``logs``,
``cartwheel logs``) filter a linear pass from the newest end; they are rare and bounded by ``limit``.

On disk (the embedded ``file:`` store) the log is one JSON-lines file per UTC day of engine time,
``DIR/messages-YYYY-MM-DD.jsonl``: appending is one buffered write per record (flushed by
:meth:`MessageLog.flush`, which the engine calls with every snapshot and on stop), expiry deletes whole
day files once every record in them is past the retention, and a restart reloads the days still
within it. A torn last line (a crash mid-write) is skipped with a warning, never fatal.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import orjson

from actors.effects import LogRecord

__all__ = ["MessageLog"]

log = logging.getLogger("cartwheel.msglog")

FIELDS = ("store", "cart", "profile", "channel", "outcome")
_DAY_S = 86400.0


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d")


class MessageLog:
    """A time-ordered message log with retention (seconds), in memory and optionally on disk.

    Args:
        retention_s: how long records are kept (config ``log_retention``).
        directory: where the day files live; None keeps the log in memory only.
    """

    def __init__(self, retention_s: float, directory: Path | None = None) -> None:
        self.retention_s = retention_s
        self.directory = directory
        self._records: deque[LogRecord] = deque()
        self._seq = 0
        self._file: IO[bytes] | None = None
        self._file_day: str | None = None

    def __len__(self) -> int:
        return len(self._records)

    # ------------------------------------------------------------------ writing
    def append(self, record: LogRecord) -> None:
        if not record.id:
            self._seq += 1
            record.id = f"log-{self._seq}"
        self._records.append(record)
        if self.directory is not None:
            day = _day(record.at)
            if day != self._file_day:
                self._open(day)
            assert self._file is not None
            self._file.write(orjson.dumps(record.as_dict()) + b"\n")

    def _open(self, day: str) -> None:
        if self._file is not None:
            self._file.close()
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file = open(self.directory / f"messages-{day}.jsonl", "ab")
        self._file_day = day

    def flush(self) -> None:
        """Push buffered records to the OS (called with every snapshot and on stop)."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._file_day = None

    def expire(self, now: float) -> int:
        """Drop records older than the retention (and day files wholly past it); returns how many."""
        records = self._records
        cutoff = now - self.retention_s
        n = 0
        while records and records[0].at < cutoff:
            records.popleft()
            n += 1
        if n and self.directory is not None:
            self._delete_days_before(cutoff)
        return n

    def _delete_days_before(self, cutoff: float) -> None:
        assert self.directory is not None
        last_whole_day = _day(cutoff - _DAY_S)  # a day file may go once its whole day is past cutoff
        for path in self.directory.glob("messages-*.jsonl"):
            day = path.stem[len("messages-"):]
            if day <= last_whole_day and day != self._file_day:
                try:
                    path.unlink()
                except OSError as exc:
                    log.warning("could not delete expired message log %s: %s", path, exc)

    # ------------------------------------------------------------------ reading
    def load(self, now: float) -> int:
        """Read back the day files still within the retention; returns the records loaded."""
        if self.directory is None or not self.directory.is_dir():
            return 0
        cutoff = now - self.retention_s
        loaded: list[LogRecord] = []
        for path in sorted(self.directory.glob("messages-*.jsonl")):
            with open(path, "rb") as f:
                for number, line in enumerate(f, 1):
                    try:
                        doc = orjson.loads(line)
                        record = LogRecord(**{k: doc[k] for k in LogRecord.__slots__})
                    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                        log.warning("%s:%d: skipped an unreadable message-log line (%s)", path, number, exc)
                        continue
                    if record.at >= cutoff:
                        loaded.append(record)
        loaded.sort(key=lambda r: r.at)
        self._records.extend(loaded)
        return len(loaded)

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
            if all(str(getattr(record, k)) == str(v) for k, v in wanted):
                out.append(record.as_dict())
                if len(out) >= limit:
                    break
        out.reverse()
        return out

    def __iter__(self) -> Iterator[LogRecord]:
        return iter(self._records)
