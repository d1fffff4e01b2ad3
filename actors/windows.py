"""Send windows and quiet hours, evaluated in a store's (or a shopper's) own time zone.

A :class:`Window` is a set of weekdays plus a daily local time range, e.g. WhatsApp allowed
``days = "mon-sat", start = "09:00", end = "21:00"``. An *occurrence* of the window starts on each listed
day at ``start`` local time and ends at ``end``; when ``end <= start`` the occurrence runs past midnight
and ends the next day (``22:00``-``08:00`` quiet hours: Monday's occurrence is Mon 22:00 to Tue 08:00, and
it belongs to Monday's weekday even after midnight). ``end = "24:00"`` means midnight at the end of the day.

All arithmetic is done on local wall-clock dates and converted to unix seconds with :mod:`zoneinfo`, so a
window opening at 09:00 opens at 09:00 local time on both sides of a DST change (07:00 UTC on the last
Sunday of March in Madrid, 08:00 UTC the day before). Two admitted simplifications:

* a wall time inside a DST gap (02:30 on spring-forward night) is read with the offset in force before the
  gap, i.e. it opens an hour later by the clock (03:30); no sensible window starts there;
* a wall time that occurs twice (fall-back night) means its first occurrence.

Costs: a lookup converts at most ~9 candidate days; it only runs when a step with a window fires, never
on the cart-update hot path.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from actors.errors import StoreConfigError, describe

__all__ = ["Window", "parse_window", "parse_days", "next_send_time", "ALL_DAYS"]

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_MAX_STEPS = 16  # window/quiet alternations tried before giving up (only reached by disjoint rules)


@dataclass(frozen=True, slots=True)
class Window:
    """Weekdays (0 = Monday) and a local time range in minutes from midnight (``end_min`` may be 1440).

    ``end_min <= start_min`` means the range ends on the next day.
    """

    days: frozenset[int]
    start_min: int
    end_min: int

    @property
    def spans_midnight(self) -> bool:
        return self.end_min <= self.start_min

    def _occurrence(self, day: date, tz: ZoneInfo) -> tuple[float, float]:
        """Unix seconds of the start and end of the occurrence that starts on local date ``day``."""
        start = datetime.combine(day, time(self.start_min // 60, self.start_min % 60), tz)
        end_day = day + timedelta(days=1) if self.spans_midnight or self.end_min == 1440 else day
        end_min = self.end_min % 1440
        end = datetime.combine(end_day, time(end_min // 60, end_min % 60), tz)
        return start.timestamp(), end.timestamp()

    def next_open(self, t: float, tz: ZoneInfo) -> float:
        """The earliest instant ``>= t`` (unix seconds) inside the window: ``t`` itself when inside."""
        today = datetime.fromtimestamp(t, tz).date()
        # Start one day back: yesterday's occurrence may still be running past midnight.
        for offset in range(-1, 9):
            day = today + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            start_s, end_s = self._occurrence(day, tz)
            if end_s > t:
                return start_s if start_s > t else t
        raise AssertionError("a window with at least one day always opens within 8 days")

    def next_outside(self, t: float, tz: ZoneInfo) -> float:
        """The earliest instant ``>= t`` outside the window (for quiet hours): ``t`` itself when outside."""
        today = datetime.fromtimestamp(t, tz).date()
        for offset in (-1, 0):
            day = today + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            start_s, end_s = self._occurrence(day, tz)
            if start_s <= t < end_s:
                t = end_s
        return t

    def spec(self) -> dict[str, str]:
        """The window as config text (for admin replies and log reasons)."""
        def hhmm(m: int) -> str:
            return f"{m // 60:02d}:{m % 60:02d}"
        days = ",".join(_DAY_NAMES[d] for d in sorted(self.days))
        return {"days": days, "start": hhmm(self.start_min), "end": hhmm(self.end_min)}


def parse_days(path: str, value: object) -> frozenset[int]:
    """``"mon-sat"``, ``"mon,wed,fri"``, ``"fri-mon"`` (wraps), ``["sat", "sun"]`` -> weekday numbers.

    Raises:
        StoreConfigError: naming ``path``.
    """
    parts: list[object]
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    elif isinstance(value, list):
        parts = list(value)
    else:
        raise StoreConfigError(path, f'expected days like "mon-sat", got {describe(value)}')
    days: set[int] = set()
    for part in parts:
        if not isinstance(part, str) or not part:
            raise StoreConfigError(path, f'expected days like "mon-sat", got {describe(value)}')
        first, _, last = part.lower().partition("-")
        if first not in _DAY_NAMES or (last and last not in _DAY_NAMES):
            raise StoreConfigError(path, f'unknown day in {describe(part)} (use mon, tue, wed, thu, fri, sat, sun)')
        a = _DAY_NAMES.index(first)
        b = _DAY_NAMES.index(last) if last else a
        d = a
        while True:
            days.add(d)
            if d == b:
                break
            d = (d + 1) % 7
    if not days:  # a window that never opens would hold its messages forever
        raise StoreConfigError(path, 'expected at least one day, like "mon-sat" or ["sat", "sun"]')
    return frozenset(days)


def _minutes(path: str, value: object, *, allow_24: bool) -> int:
    if isinstance(value, str):
        if allow_24 and value == "24:00":
            return 1440
        match = _HHMM.match(value)
        if match:
            return int(match.group(1)) * 60 + int(match.group(2))
    raise StoreConfigError(path, f'expected a local time like "09:00", got {describe(value)}')


def parse_window(path: str, table: object, *, with_days: bool = True) -> Window:
    """Parse ``{days = "mon-sat", start = "09:00", end = "21:00"}`` (``days`` optional: every day).

    Args:
        path: the config path of the table, for error messages (``stores.demo.whatsapp_window``).
        table: the TOML table.
        with_days: whether ``days`` is an accepted key (quiet hours apply every day and take none).

    Raises:
        StoreConfigError: naming the offending key.
    """
    if not isinstance(table, Mapping):
        raise StoreConfigError(path, f'expected a table like {{start = "09:00", end = "21:00"}}, got {describe(table)}')
    allowed = ("days", "start", "end") if with_days else ("start", "end")
    for key in table:
        if key not in allowed:
            raise StoreConfigError(f"{path}.{key}", f"unknown key (allowed: {', '.join(allowed)})")
    for key in ("start", "end"):
        if key not in table:
            raise StoreConfigError(f"{path}.{key}", 'missing (a local time like "09:00")')
    start = _minutes(f"{path}.start", table["start"], allow_24=False)
    end = _minutes(f"{path}.end", table["end"], allow_24=True)
    if start == end % 1440 and end != 1440:
        reason = f"must differ from start ({describe(table['start'])}): a window needs a length"
        raise StoreConfigError(f"{path}.end", reason)
    days = parse_days(f"{path}.days", table["days"]) if "days" in table else ALL_DAYS
    return Window(days=days, start_min=start, end_min=end)


def next_send_time(t: float, tz: ZoneInfo, window: Window | None, quiet: Window | None) -> float | None:
    """The earliest instant ``>= t`` inside ``window`` (if any) and outside ``quiet`` (if any).

    Returns None when the two never agree (a window that lies entirely inside the quiet hours).
    """
    for _ in range(_MAX_STEPS):
        opened = window.next_open(t, tz) if window is not None else t
        allowed = quiet.next_outside(opened, tz) if quiet is not None else opened
        if allowed == opened:
            return allowed
        t = allowed
    return None
