"""A circuit breaker per channel: stop hammering a provider that is down, probe it now and then.

::

             N consecutive transient failures
    CLOSED ───────────────────────────────────▶ OPEN
       ▲                                          │ cool-down elapsed (clock time)
       │ probe succeeds                           ▼
       └──────────────────────────────────── HALF_OPEN ── probe fails ──▶ OPEN (cool-down restarts)

* CLOSED: everything goes through; transient failures (network errors, HTTP 5xx/429, SMTP 4xx,
  uncertain outcomes) are counted, any answer that proves the provider is alive resets the count.
* OPEN: nothing is dispatched; messages wait in the queue (they are not failed) until
  ``cooldown_s`` seconds of clock time have passed.
* HALF_OPEN: exactly one message (the probe) is let through; its result decides.

"Alive" includes permanent failures: an HTTP 400 "invalid phone number" proves the provider answers,
so it closes the breaker as a success would. The breaker reads no clock; callers pass ``now``.
"""
from __future__ import annotations

import enum
import logging

__all__ = ["BreakerState", "CircuitBreaker"]

log = logging.getLogger("cartwheel.channels.breaker")


class BreakerState(enum.StrEnum):
    """The breaker's position."""

    #: sends flow normally
    CLOSED = "closed"
    #: sends are held until the cool-down ends
    OPEN = "open"
    #: one probe is allowed through
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive transient failures and gates dispatch.

    Args:
        name: the channel's name (for log lines).
        threshold: consecutive transient failures that open the breaker (>= 1).
        cooldown_s: seconds the breaker stays open before letting a probe through.
    """

    __slots__ = ("name", "threshold", "cooldown_s", "_state", "_failures", "_opened_at", "_probing", "opened")

    def __init__(self, name: str, *, threshold: int = 5, cooldown_s: float = 30.0) -> None:
        if threshold < 1:
            raise ValueError(f"breaker threshold must be >= 1, got {threshold!r}")
        if cooldown_s < 0:
            raise ValueError(f"breaker cool-down must be >= 0 s, got {cooldown_s!r}")
        self.name = name
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        #: how many times the breaker has opened (for statistics)
        self.opened = 0

    def state(self, now: float) -> BreakerState:
        """The state at ``now``; an OPEN breaker whose cool-down has elapsed reads HALF_OPEN."""
        if self._state is BreakerState.OPEN and now >= self._opened_at + self.cooldown_s:
            self._state = BreakerState.HALF_OPEN
            self._probing = False
            log.info("channel %s: breaker half-open, letting one probe through", self.name)
        return self._state

    def reopen_at(self) -> float:
        """When an OPEN breaker turns HALF_OPEN (unix seconds)."""
        return self._opened_at + self.cooldown_s

    def allow(self, now: float) -> bool:
        """Whether a message may be dispatched at ``now`` (call :meth:`on_dispatch` if it is)."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN:
            return not self._probing
        return False

    def on_dispatch(self) -> None:
        """A message was dispatched; in HALF_OPEN it is the probe."""
        if self._state is BreakerState.HALF_OPEN:
            self._probing = True

    def abandon_probe(self) -> None:
        """The dispatched message ended without a provider answer (cancelled): it proved nothing."""
        self._probing = False

    def record_success(self) -> None:
        """The provider answered (accepted, or refused for a permanent reason): it is alive."""
        self._failures = 0
        if self._state is not BreakerState.CLOSED:
            log.info("channel %s: breaker closed", self.name)
        self._state = BreakerState.CLOSED
        self._probing = False

    def record_failure(self, now: float) -> None:
        """A transient failure (or an uncertain outcome) at ``now``."""
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._failures >= self.threshold
        ):
            self._state = BreakerState.OPEN
            self._opened_at = now
            self._probing = False
            self.opened += 1
            log.warning(
                "channel %s: breaker open after %d consecutive transient failures; next probe in %.1f s",
                self.name,
                self._failures,
                self.cooldown_s,
            )

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name} {self._state} failures={self._failures}>"
