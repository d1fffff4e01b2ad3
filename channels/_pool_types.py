"""The pool's contracts with the outside: the clock and callbacks it is given, the statistics it
reports, and the exception for a stopped pool (kept apart so ``pool.py`` holds only the machinery)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from channels.message import DeliveryResult, Message

__all__ = ["BeforeAttempt", "PoolClock", "PoolClosed", "PoolStatistics", "ResultCallback", "StillWanted",
           "default_burst"]


class PoolClock(Protocol):
    """What the pool needs from a clock (``engine.clock.Clock`` satisfies it)."""

    def now(self) -> float:
        """Current time, unix seconds."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return at or after ``when`` (unix seconds); returning early is allowed."""
        ...


class ResultCallback(Protocol):
    """Receives each message's final outcome, once."""

    def __call__(self, message: Message, result: DeliveryResult, /) -> None: ...


class StillWanted(Protocol):
    """Asked right before a send: None to send, the reason not to (a str: the message is cancelled), or
    a time on the pool's clock (a float) to ask again at: the message waits in the queue until then,
    keeping its place among the queued (quiet hours, a send window)."""

    def __call__(self, message: Message, /) -> str | float | None: ...


class BeforeAttempt(Protocol):
    """Called right before the provider is called for a message the first time (not for its retries),
    after ``still_wanted`` said yes: None to call it at once, or an awaitable the attempt waits for:
    True to call the provider then, False not to call it (the message is reported failed, retryable,
    "not sent"). The engine records the attempt durably meanwhile: after a crash, what was never
    attempted can be sent again safely."""

    def __call__(self, message: Message, /) -> Awaitable[bool] | None: ...


class PoolClosed(RuntimeError):
    """Raised by :meth:`Pool.submit` once the pool is stopping."""


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of one pool (served by the admin socket's ``channels`` command)."""

    name: str
    #: messages held: waiting for a token, a retry or a recipient's pair interval
    queued: int
    #: of ``queued``, those waiting for a time (back-off, pair spacing)
    delayed: int
    #: sends under way
    in_flight: int
    #: final outcomes so far
    sent: int
    failed: int
    uncertain: int
    cancelled: int
    #: attempts that were retried
    retried: int
    breaker: str
    #: times the breaker opened
    breaker_opened: int
    paused: bool
    closed: bool
    #: the channel's rate limit, messages per second (None: unlimited)
    rate_per_s: float | None
    concurrency: int
    max_queue: int
    #: coroutines waiting in :meth:`Pool.submit` for room
    blocked_submitters: int
    #: contacts the pool will not send to (dead or opted out)
    blocked_contacts: int


def default_burst(rate_per_s: float) -> float:
    """The bucket capacity used when none is configured: a tenth of a second's worth, at least 1."""
    return max(1.0, float(int(rate_per_s // 10)))
