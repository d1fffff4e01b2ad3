"""A token bucket: the rate limit of a channel (and, optionally, of each store on it).

Definitions: the bucket holds up to ``burst`` tokens and gains ``rate_per_s`` tokens per second of
clock time; sending one message takes one token. Over any window of ``T`` seconds at most
``burst + rate_per_s * T`` messages go out, and a bucket that stays busy delivers exactly
``rate_per_s`` per second in the long run.

Worked example (rate 10/s, burst 10, a manual clock at t=0 and 35 queued messages): 10 go at t=0
(the full bucket), then at t=0.5 five more (0.5 s × 10/s), at t=1.0 five more; after an idle gap of
ten seconds the bucket holds only ``burst`` = 10, not 100.

The bucket never reads a clock: every call passes ``now`` (unix seconds from the injected clock), so
tests drive it exactly. Refilling is lazy (computed from the time since the last update), which
makes a late wake-up harmless as long as ``burst`` covers the lateness: a dispatcher that wakes 5 ms
late at 1 000/s finds 5 tokens, not 1, provided ``burst >= 5``.

Floating point: refills are sums of products of float durations, so a bucket that should hold
exactly one token may hold 0.9999999999; :data:`EPSILON` absorbs that so a wake-up computed from
:meth:`TokenBucket.delay_s` always finds its token. So does a few ulps of ``now``: unix seconds around
1.7e9 are only exact to ~2.4e-7 s, which at 10 tokens/s is ~2.4e-6 tokens, more than EPSILON; a shortfall
smaller than the clock can express would ask for a wake-up at the same instant, forever.
"""
from __future__ import annotations

import math

__all__ = ["TokenBucket", "EPSILON"]

#: tolerance (in tokens) for floating-point error in refills
EPSILON = 1e-9


class TokenBucket:
    """``rate_per_s`` tokens per second, at most ``burst`` banked; starts full.

    Args:
        rate_per_s: refill rate (> 0), tokens per second.
        burst: capacity (>= 1), tokens.
        now: the current clock time (unix seconds), the bucket's starting point.
    """

    __slots__ = ("rate_per_s", "burst", "_tokens", "_updated_at")

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate must be > 0 tokens/s, got {rate_per_s!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1 token, got {burst!r}")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self._tokens = self.burst
        self._updated_at = now

    def _refill(self, now: float) -> None:
        # A clock that steps backwards (it should not) must not mint negative time.
        if now > self._updated_at:
            self._tokens = min(self.burst, self._tokens + (now - self._updated_at) * self.rate_per_s)
            self._updated_at = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (may be fractional)."""
        self._refill(now)
        return self._tokens

    def _slack(self, now: float) -> float:
        """Tokens that float rounding may leave short: EPSILON, or what a few ulps of ``now`` refill."""
        return EPSILON + 4.0 * math.ulp(now) * self.rate_per_s

    def try_take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if available at ``now``; return whether it did."""
        self._refill(now)
        if self._tokens + self._slack(now) >= n:
            self._tokens -= n
            return True
        return False

    def delay_s(self, now: float, n: float = 1.0) -> float:
        """Seconds from ``now`` until ``n`` tokens are available (0.0 when they already are)."""
        self._refill(now)
        missing = n - self._tokens
        if missing <= self._slack(now):
            return 0.0
        return missing / self.rate_per_s

    def is_full(self, now: float) -> bool:
        """True when the bucket holds ``burst`` tokens (an idle bucket that can be forgotten)."""
        return self.tokens(now) + EPSILON >= self.burst

    def __repr__(self) -> str:
        return f"<TokenBucket rate={self.rate_per_s:g}/s burst={self.burst:g} tokens={self._tokens:.3f}>"
