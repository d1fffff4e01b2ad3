"""Clocks: the only place in cartwheel that reads the system time.

Every other module receives ``now`` (unix seconds, float) from one of these. Three kinds, one small
interface (:class:`Clock`):

* :class:`RealClock` — wall-clock time (``time.time``); sleeping is real sleeping.
* :class:`ScaledClock` — simulated time that runs ``factor`` times faster than real time, anchored at
  the moment it was created (``scaled:3600`` makes one real second one simulated hour, for demos).
* :class:`ManualClock` — time moves only when :meth:`ManualClock.advance` or :meth:`ManualClock.set`
  is called (tests, previews, the admin command ``clock advance``). Its ``sleep`` never waits on the
  wall clock: it waits until the clock is moved past the deadline.

``monotonic()`` is offered for measuring durations (latencies, benchmark timings); it is never used as
the engine's notion of "now".
"""
from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = [
    "Clock", "RealClock", "ScaledClock", "ManualClock", "clock_from_spec", "monotonic", "wall_time", "wait_event",
]


def monotonic() -> float:
    """Seconds from an arbitrary origin, for measuring elapsed time (never for "now")."""
    return time.perf_counter()


def wall_time() -> float:
    """The real wall-clock time in unix seconds (for stamping reports, not for engine decisions)."""
    return time.time()


async def wait_event(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` seconds (real time; None: no limit) pass; True if set.

    Why not ``asyncio.wait_for(event.wait(), timeout_s)``: on Python 3.11 it swallows a cancellation
    that arrives as the event is set (it returns the result instead), and a loop that waits like that
    and is stopped by cancelling its task then waits once more, for a whole interval. The snapshot loop
    did, for its ``snapshot_interval``, when a stop came as the store recovered. ``asyncio.timeout``
    tells its own expiry from a cancellation and lets the latter through.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


@runtime_checkable
class Clock(Protocol):
    """What the engine needs from a clock. Times are unix seconds (float)."""

    #: "real", "scaled" or "manual"
    kind: str

    def now(self) -> float:
        """The current engine time in unix seconds."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once ``now() >= when`` (or earlier if woken by :meth:`wake`)."""
        ...

    def wake(self) -> None:
        """Cut short any pending :meth:`sleep_until` (new work arrived, or shutdown)."""
        ...


class _Wakeable:
    """Shared wake-up plumbing: sleepers wait on an event that :meth:`wake` sets."""

    def __init__(self) -> None:
        self._wakeup: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        return self._wakeup

    def wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _wait(self, timeout_s: float | None) -> None:
        event = self._event()
        event.clear()
        if timeout_s is not None and timeout_s <= 0:
            return
        await wait_event(event, timeout_s)


class RealClock(_Wakeable):
    """Wall-clock time."""

    kind = "real"

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        await self._wait(when - time.time())

    def __repr__(self) -> str:
        return "<RealClock>"


class ScaledClock(_Wakeable):
    """Simulated time running ``factor`` simulated seconds per real second.

    Args:
        factor: simulated seconds per real second (> 0); 3600 makes a 48-hour flow take 48 s.
        start: the simulated unix time at creation (default: the real time now).
    """

    kind = "scaled"

    def __init__(self, factor: float, start: float | None = None) -> None:
        super().__init__()
        if not factor > 0:
            raise ValueError(f"scaled clock factor must be > 0, got {factor!r}")
        self.factor = float(factor)
        self._real0 = time.perf_counter()
        self._sim0 = time.time() if start is None else float(start)

    def now(self) -> float:
        return self._sim0 + (time.perf_counter() - self._real0) * self.factor

    async def sleep_until(self, when: float) -> None:
        await self._wait((when - self.now()) / self.factor)

    def __repr__(self) -> str:
        return f"<ScaledClock x{self.factor:g} now={self.now():.3f}>"


class ManualClock(_Wakeable):
    """Time that moves only when told to: deterministic tests and flow previews.

    Args:
        start: the initial unix time (default: the real time at creation).
    """

    kind = "manual"

    def __init__(self, start: float | None = None) -> None:
        super().__init__()
        self._now = time.time() if start is None else float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"cannot advance a clock by a negative duration ({seconds!r} s)")
        self._now += seconds
        self.wake()
        return self._now

    def set(self, when: float) -> float:
        """Move time to ``when`` (unix seconds); time never moves backwards."""
        if when < self._now:
            raise ValueError(f"cannot set the clock back from {self._now!r} to {when!r}")
        self._now = float(when)
        self.wake()
        return self._now

    async def sleep_until(self, when: float) -> None:
        # A manual clock never reaches a deadline on its own: wait for advance()/set()/wake().
        if self._now < when:
            await self._wait(None)

    def __repr__(self) -> str:
        return f"<ManualClock now={self._now:.3f}>"


def parse_time(text: str | float | int) -> float:
    """Unix seconds from a number or an ISO 8601 string ("2026-03-06T10:00:00Z"); naive means UTC.

    Raises:
        ValueError: neither, or a number that is not finite (``nan``, ``inf``: no clock can be set there).
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return _finite(float(text), text)
    if not isinstance(text, str):
        raise ValueError(f"expected unix seconds or an ISO 8601 time, got {text!r}")
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return _finite(number, text)
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected unix seconds or an ISO 8601 time, got {text!r}") from None
    if dt.tzinfo is None:
        from datetime import timezone

        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _finite(value: float, given: object) -> float:
    if not math.isfinite(value):
        raise ValueError(f"expected unix seconds or an ISO 8601 time, got {given!r} (not a finite number)")
    return value


def clock_from_spec(spec: str, start: float | None = None) -> RealClock | ScaledClock | ManualClock:
    """Build a clock from the config's ``engine.clock`` value: "real", "scaled:N" or "manual"."""
    if spec == "real":
        return RealClock()
    if spec == "manual":
        return ManualClock(start)
    if spec.startswith("scaled:"):
        try:
            factor = float(spec[len("scaled:"):])
        except ValueError:
            raise ValueError(f'expected "scaled:N" with a number N, got {spec!r}') from None
        return ScaledClock(factor, start)
    raise ValueError(f'expected "real", "scaled:N" or "manual", got {spec!r}')
