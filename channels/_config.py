"""Reading one ``[channels.NAME]`` TOML table with errors that name the key and what was expected.

``TableReader("channels.email", table).int("concurrency", 8, minimum=1)`` returns the value or raises
:class:`ChannelConfigError` (``"channels.email.concurrency: expected an integer >= 1, got 'many'"``).
Every read marks the key as known; :meth:`TableReader.finish` rejects the keys nobody read, so a typo
(``concurency``) fails loudly instead of silently using the default.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ChannelConfigError", "TableReader", "parse_duration_s", "parse_rate_per_s"]


class ChannelConfigError(ValueError):
    """A channel setting is missing or malformed; the message names ``channels.NAME.key``."""


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.ASCII)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$", re.ASCII)
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_duration_s(value: Any) -> float:
    """``"100ms"``, ``"6s"``, ``"5m"``, ``"1h"``, ``"2d"`` or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError("a duration")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError("a duration")


def parse_rate_per_s(value: Any) -> float | None:
    """``"50/s"``, ``"3000/m"``, ``"100/h"``, a number (per second), or ``"unlimited"``/0 → None."""
    if isinstance(value, bool):
        raise ValueError("a rate")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError("a rate")
        return float(value) or None
    if isinstance(value, str):
        if value.strip().lower() in ("unlimited", "none", ""):
            return None
        match = _RATE_RE.match(value)
        if match:
            rate = float(match.group(1)) / _RATE_UNITS[match.group(2)]
            return rate or None
    raise ValueError("a rate")


class TableReader:
    """Typed access to one config table; see the module docstring."""

    def __init__(self, prefix: str, table: Mapping[str, Any]) -> None:
        if not isinstance(table, Mapping):
            raise ChannelConfigError(f"{prefix}: expected a table, got {type(table).__name__}")
        self.prefix = prefix
        self.table = table
        self._read: set[str] = set()

    def error(self, key: str, expected: str, value: Any = None, *, show: bool = True) -> ChannelConfigError:
        """An error for ``key`` saying what was expected (and what was found, unless secret)."""
        got = f", got {value!r}" if show else ""
        return ChannelConfigError(f"{self.prefix}.{key}: expected {expected}{got}")

    def has(self, key: str) -> bool:
        """Whether ``key`` is set (counts as reading it)."""
        self._read.add(key)
        return key in self.table

    def str(self, key: str, default: str | None = None, *, required: bool = False, secret: bool = False,
            choices: Iterable[str] | None = None, hint: str = "a string") -> str | None:
        """A string value; ``required`` rejects a missing or empty one."""
        self._read.add(key)
        value = self.table.get(key, default)
        if value is None or value == "":
            if required:
                raise ChannelConfigError(f"{self.prefix}.{key}: required ({hint})")
            return default
        if not isinstance(value, str):
            raise self.error(key, hint, value, show=not secret)
        if choices is not None:
            options = tuple(choices)
            if value not in options:
                raise self.error(key, "one of " + ", ".join(repr(c) for c in options), value)
        return value

    def int(self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        """An integer within ``minimum..maximum``."""
        self._read.add(key)
        value = self.table.get(key, default)
        bounds = _bounds(minimum, maximum)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "an integer" + bounds, value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self.error(key, "an integer" + bounds, value)
        return value

    def float(self, key: str, default: float | None, *, minimum: float | None = None) -> float | None:
        """A number (int or float) >= ``minimum``."""
        self._read.add(key)
        value = self.table.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(key, "a number" + _bounds(minimum, None), value)
        if minimum is not None and value < minimum:
            raise self.error(key, "a number" + _bounds(minimum, None), value)
        return float(value)

    def bool(self, key: str, default: bool) -> bool:
        """true or false."""
        self._read.add(key)
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "true or false", value)
        return value

    def duration_s(self, key: str, default: float) -> float:
        """A duration ("100ms", "6s", "5m", "1h") or a number of seconds, in seconds."""
        self._read.add(key)
        value = self.table.get(key, default)
        try:
            return parse_duration_s(value)
        except ValueError:
            raise self.error(key, 'a duration like "500ms", "6s", "5m" or a number of seconds', value) from None

    def rate_per_s(self, key: str, default: float | None) -> float | None:
        """A rate ("50/s", "3000/m") in messages per second; None when unlimited."""
        self._read.add(key)
        if key not in self.table:
            return default
        try:
            return parse_rate_per_s(self.table[key])
        except ValueError:
            raise self.error(key, 'a rate like "50/s", "3000/m" or "100/h" (or "unlimited")', self.table[key]) from None

    def str_table(self, key: str, default: Mapping[str, str] | None = None) -> dict[str, str]:
        """A table of string values (``templates = {reminder = "cart_reminder"}``)."""
        self._read.add(key)
        value = self.table.get(key, default if default is not None else {})
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
        ):
            raise self.error(key, "a table of non-empty strings", value)
        return dict(value)

    def finish(self) -> None:
        """Reject keys that no reader asked for (typos)."""
        unknown = sorted(set(self.table) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read))
            raise ChannelConfigError(f"{self.prefix}.{unknown[0]}: unknown key; expected one of {known}")


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" within {minimum}..{maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
