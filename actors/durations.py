"""Durations in config: ``"30m"``, ``"1h30m"``, ``"2d"``, ``"45s"``, ``"100ms"`` or a number of seconds.

Every duration in cartwheel's config (flow delays, attribution windows, the engine's tick and snapshot
interval) goes through :func:`parse_duration`, so the accepted syntax is the same everywhere:

* a number (``int`` or ``float``, not ``bool``): seconds, e.g. ``5400``;
* a string of one or more ``<number><unit>`` parts, units in decreasing order, each at most once:
  ``d`` (86 400 s), ``h`` (3 600 s), ``m`` (60 s), ``s``, ``ms``. Numbers may carry a decimal part
  (``"1.5h"``). Spaces between parts are allowed (``"1h 30m"``).

A bare numeric string such as ``"90"`` is rejected on purpose: in a config file it is impossible to tell
whether the author meant seconds or minutes. Negative, NaN and infinite values are rejected too.

The error message is meant to be prefixed with the config path by the caller, e.g.
``flows.vip.steps[2].after: expected a duration like "90m", got -5``.
"""
from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "format_duration"]

_UNIT_S: dict[str, float] = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_ORDER = ("d", "h", "m", "s", "ms")
# "ms" must be tried before "m" and "s"; the lookahead keeps "1m5" from matching as "1m".
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)(ms|d|h|m|s)(?![a-z])\s*", re.ASCII)  # ASCII: "١h" is not an hour


def _describe(value: object) -> str:
    """Render a rejected value the way it was written in TOML (strings in double quotes)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def parse_duration(value: object) -> float:
    """Parse a config duration into seconds.

    Args:
        value: ``"1h30m"``-style text or a non-negative number of seconds.

    Returns:
        The duration in seconds (float, >= 0).

    Raises:
        ValueError: the value is not a duration; the message says what was expected and what was got,
            without the config path (the caller adds it).
    """
    expected = f'expected a duration like "90m", got {_describe(value)}'
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, (int, float)):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(expected)
        return seconds
    if not isinstance(value, str):
        raise ValueError(expected)
    text = value.strip().lower()
    if not text:
        raise ValueError(expected)
    total = 0.0
    pos = 0
    last_rank = -1
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            if text[pos:].strip().replace(".", "", 1).isdigit():
                raise ValueError(f'{expected} (missing unit: d, h, m, s or ms)')
            raise ValueError(expected)
        number, unit = match.group(1), match.group(2)
        rank = _ORDER.index(unit)
        if rank <= last_rank:
            raise ValueError(f"{expected} (units must appear once each, largest first)")
        last_rank = rank
        total += float(number) * _UNIT_S[unit]
        pos = match.end()
    return total


def format_duration(seconds: float) -> str:
    """Render seconds compactly for log reasons and reprs: ``5400`` -> ``"1h30m"``, ``0.25`` -> ``"250ms"``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    whole = int(seconds)
    if whole != seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            count, whole = divmod(whole, size)
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
