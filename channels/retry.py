"""Retry policy: exponential back-off with jitter, honouring the provider's ``Retry-After``.

Attempt ``n`` (1-based) that failed transiently is retried after
``min(max_s, base_s * 2**(n-1))`` seconds, shortened by a random fraction of up to ``jitter`` (so a
burst of failures does not come back as a synchronised burst of retries), but never sooner than the
provider's ``Retry-After``. With the defaults (base 1 s, max 300 s, 5 attempts, jitter 0.5) a
message is tried at about t=0, 0.5-1 s, 1-2 s, 2-4 s and 4-8 s later, then given up as failed.

``Retry-After`` is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3). A date is turned into a
delay against the response's own ``Date`` header, so no local clock is read; a date without a
``Date`` header is ignored (the back-off applies).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "parse_retry_after"]

#: never wait longer than this for one Retry-After (seconds): a provider asking for a day is broken
MAX_RETRY_AFTER_S = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a pool retries transient failures.

    Attributes:
        max_attempts: total attempts per message including the first (>= 1; 1 = never retry).
        base_s: back-off before the first retry, seconds.
        max_s: cap on the back-off, seconds.
        jitter: fraction (0..1) of the back-off that is randomised away; 0 makes delays exact (tests).
    """

    max_attempts: int = 5
    base_s: float = 1.0
    max_s: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        if self.base_s < 0 or self.max_s < 0:
            raise ValueError("back-off durations must be >= 0 s")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within 0..1, got {self.jitter!r}")

    def delay_s(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        delay = min(self.max_s, self.base_s * (2.0 ** max(0, attempt - 1)))
        if self.jitter:
            delay *= 1.0 - self.jitter * rng.random()
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
        return delay


def parse_retry_after(value: str | None, date_header: str | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header value, or None when absent or unreadable.

    Args:
        value: the header's value: ``"120"`` or ``"Wed, 21 Oct 2015 07:28:00 GMT"``.
        date_header: the response's ``Date`` header, needed to turn an HTTP-date into a delay.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None  # "inf", "nan": unreadable
    if not date_header:
        return None
    try:
        when = parsedate_to_datetime(value)
        sent = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None or sent.tzinfo is None:
        return None
    return max(0.0, (when - sent).total_seconds())
