"""The send pool: one per configured channel, between the engine's send intents and a :class:`Sender`.

What it does, in the order a message meets it:

1. **Admission** — :meth:`Pool.submit` waits while the pool holds ``max_queue`` messages
   (back-pressure reaches the engine instead of memory growing without bound); :meth:`Pool.offer`
   is the non-blocking variant and returns False when full.
2. **Waiting** — held messages sit in a priority queue (higher ``priority`` first, FIFO among equals),
   behind optional per-store rate limits and the per-recipient spacing (``pair_interval_s``); see
   :mod:`channels._scheduler`.
3. **Dispatch** — one dispatcher task takes the head message when all of these allow it: the pool is
   not paused, the channel's token bucket has a token, fewer than ``concurrency`` sends are in flight,
   the circuit breaker is not open, and no channel-wide ``Retry-After`` is pending. Right before
   sending it asks ``still_wanted(message)``: a returned string cancels the message with that reason
   (the shopper bought, opted out...); a returned float holds it back until that time (the store's
   quiet hours have begun) and it keeps its place. A message to a contact the provider declared dead
   or opted out is cancelled without being sent.
4. **Send** — each attempt runs as its own task calling ``sender.send(message)``. Before a message's
   first attempt (not its retries) the pool calls ``before_attempt(message)``; when that returns an
   awaitable, the attempt (holding its concurrency slot) waits for it before calling the sender: the
   engine makes its "attempted" mark durable meanwhile, all the marks of one dispatch round together.
5. **Outcome** — sent: reported. Transient failure: retried after exponential back-off with jitter,
   never sooner than the provider's ``Retry-After``, up to ``retry.max_attempts``; a channel-wide
   throttle holds every send meanwhile. Permanent failure: reported at once, and a dead contact or an
   opt-out is remembered so nothing more is sent to it. Uncertain (may have been delivered): reported,
   not retried, unless ``on_uncertain="resend"``. Every final outcome goes to ``on_result(message,
   result)`` exactly once.

Time. The pool never reads the system clock: it takes a ``clock`` with ``now() -> float`` (unix
seconds) and ``async sleep_until(when)`` — the engine's clocks (``engine.clock``) fit as they are,
and tests pass a manual clock, advance it, and ``await pool.wait_idle()`` to see exactly what the
rate limit let through. ``sleep_until`` may return early (a manual clock wakes every sleeper on
every advance); the dispatcher simply re-checks.

Concurrency contract: all methods must be called from the event loop thread that runs the pool;
``on_result`` and ``still_wanted`` are called synchronously from it and must not block.

Shutdown: :meth:`Pool.stop` refuses new messages, keeps dispatching for up to ``timeout_s`` seconds of
clock time (drain), waits for sends in flight, reports anything still held as failed/retryable
("not sent: pool stopped") so the engine can send it after a restart, and closes the sender.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Awaitable

from channels._pool_types import (
    BeforeAttempt,
    PoolClock,
    PoolClosed,
    PoolStatistics,
    ResultCallback,
    StillWanted,
    default_burst,
)
from channels._scheduler import Entry, Scheduler
from channels.breaker import BreakerState, CircuitBreaker
from channels.mask import mask_contact, mask_text
from channels.message import DeliveryResult, Message, Outcome, Throttle
from channels.ratelimit import TokenBucket
from channels.retry import MAX_RETRY_AFTER_S, RetryPolicy
from channels.sender import Sender

__all__ = ["BeforeAttempt", "Pool", "PoolClock", "PoolClosed", "PoolStatistics", "ResultCallback", "StillWanted",
           "default_burst"]

log = logging.getLogger("cartwheel.channels.pool")

#: remember at most this many dead/opted-out contacts per pool (oldest forgotten first)
_MAX_BLOCKED = 100_000


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a < b else b


class Pool:
    """Rate-limited, retrying, circuit-broken delivery of :class:`Message` through one sender.

    Args:
        name: the channel's name (``email``, ``whatsapp``...), used in logs and statistics.
        sender: the channel implementation; the pool owns it and closes it in :meth:`stop`.
        clock: see :class:`PoolClock`.
        on_result: called once per message with its final :class:`DeliveryResult`.
        still_wanted: called right before each attempt; a string return cancels the message, a float
            holds it back until that time of the pool's clock (then it is asked again).
        rate_per_s: channel rate limit in messages per second; None for no limit.
        burst: token bucket capacity (messages); default :func:`default_burst` of the rate.
        store_rate_per_s: optional rate limit per store (messages/s), on top of the channel's.
        store_burst: capacity of each store's bucket; default :func:`default_burst`.
        concurrency: maximum sends in flight at once.
        max_queue: maximum messages held (not counting those in flight) before submit() waits.
        pair_interval_s: minimum seconds between two messages to the same recipient of a store.
        retry: the back-off policy for transient failures.
        breaker_threshold: consecutive transient failures that open the circuit breaker.
        breaker_cooldown_s: seconds the breaker stays open before one probe is let through.
        on_uncertain: "skip" (report uncertain outcomes as final) or "resend" (retry them).
        before_attempt: called before a message's first attempt; see :class:`BeforeAttempt`.
        rng: randomness for back-off jitter (pass a seeded ``random.Random`` for reproducible runs).
    """

    def __init__(
        self,
        name: str,
        sender: Sender,
        *,
        clock: PoolClock,
        on_result: ResultCallback,
        still_wanted: StillWanted | None = None,
        rate_per_s: float | None = None,
        burst: float | None = None,
        store_rate_per_s: float | None = None,
        store_burst: float | None = None,
        concurrency: int = 8,
        max_queue: int = 10_000,
        pair_interval_s: float = 0.0,
        retry: RetryPolicy | None = None,
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 30.0,
        on_uncertain: str = "skip",
        rng: random.Random | None = None,
        before_attempt: BeforeAttempt | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue!r}")
        if on_uncertain not in ("skip", "resend"):
            raise ValueError(f'on_uncertain must be "skip" or "resend", got {on_uncertain!r}')
        if pair_interval_s < 0:
            raise ValueError(f"pair_interval_s must be >= 0, got {pair_interval_s!r}")
        self.name = name
        self.sender = sender
        self._clock = clock
        self._on_result = on_result
        self._still_wanted = still_wanted
        self._before_attempt = before_attempt
        self.rate_per_s = rate_per_s
        self.concurrency = concurrency
        self.max_queue = max_queue
        self._retry = retry or RetryPolicy()
        self._resend_uncertain = on_uncertain == "resend"
        self._rng = rng or random.Random()
        now = clock.now()
        self._bucket = (
            TokenBucket(rate_per_s, burst if burst is not None else default_burst(rate_per_s), now)
            if rate_per_s is not None
            else None
        )
        self._sched = Scheduler(
            pair_interval_s=pair_interval_s,
            store_rate_per_s=store_rate_per_s,
            store_burst=(
                store_burst if store_burst is not None else default_burst(store_rate_per_s or 1.0)
            ),
        )
        self._breaker = CircuitBreaker(name, threshold=breaker_threshold, cooldown_s=breaker_cooldown_s)
        self._blocked: dict[tuple[str, str], str] = {}
        self._seq = 0
        self._held = 0
        self._in_flight = 0
        self._hold_until = 0.0
        self._paused = False
        self._closing = False
        self._stopped = False
        self._stopped_event = asyncio.Event()
        self._drain = True
        self._drain_deadline = 0.0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sleeper: asyncio.Future[None] | None = None
        self._sleeper_deadline: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._parked = False
        self._park_deadline: float | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._space_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._reserved = 0
        self._sent = self._failed = self._uncertain = self._cancelled = self._retried = 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the dispatcher task (idempotent). Messages may be queued before this."""
        if self._closing:
            raise PoolClosed(f"pool {self.name} is stopped")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"cartwheel-pool-{self.name}")

    async def stop(self, *, drain: bool = True, timeout_s: float = 30.0) -> None:
        """Stop accepting messages, drain, report what is left, close the sender.

        Args:
            drain: keep dispatching held messages (within the rate limit) before stopping.
            timeout_s: how long draining may take, in seconds of the pool's clock. Sends already in
                flight are always awaited (they end within the sender's own I/O timeout).
        """
        if self._closing:  # stopped, or another stop() is under way: wait for it
            await self._stopped_event.wait()
            return
        self._closing = True
        self._drain = drain
        self._drain_deadline = self._clock.now() + (timeout_s if drain else 0.0)
        while self._space_waiters:
            waiter = self._space_waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed(f"pool {self.name} is stopping"))
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        leftovers = self._sched.drain_all()
        leftovers.sort(key=lambda entry: entry.seq)
        for entry in leftovers:
            self._held -= 1
            self._final(entry, DeliveryResult.transient("not sent: pool stopped"))
        self._stopped = True
        self._notify_idle()
        try:
            await self.sender.close()
        except Exception:  # a failing close must not hide the drain's results
            log.exception("channel %s: closing the sender failed", self.name)
        finally:
            self._stopped_event.set()

    def pause(self) -> None:
        """Stop dispatching (sends in flight finish; submissions are still queued)."""
        if not self._paused:
            self._paused = True
            log.info("channel %s: paused", self.name)
            self._wakeup.set()

    def resume(self) -> None:
        """Dispatch again after :meth:`pause`."""
        if self._paused:
            self._paused = False
            log.info("channel %s: resumed", self.name)
            self._wakeup.set()

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._paused

    @property
    def stalled(self) -> bool:
        """True while the pool cannot send at all: paused, its circuit breaker open (until its
        cooldown ends), or the provider's channel-wide ``Retry-After`` not over yet. A backlog waiting
        for a stalled pool is not the engine falling behind."""
        now = self._clock.now()
        return self._paused or now < self._hold_until or self._breaker.state(now) is BreakerState.OPEN

    def admitting(self) -> bool:
        """Whether a submitter can go on now: the queue has room, or room was handed to a waiting one."""
        return self._reserved > 0 or self._held + self._reserved < self.max_queue

    # -- admission ------------------------------------------------------------------------------
    def offer(self, message: Message) -> bool:
        """Queue ``message`` if there is room; False when the pool is full or stopping."""
        if self._closing or self._space_waiters or self._held + self._reserved >= self.max_queue:
            return False
        self._admit(message)
        return True

    async def submit(self, message: Message) -> None:
        """Queue ``message``, waiting (FIFO with other submitters) while the pool is full.

        Raises:
            PoolClosed: the pool is stopping.
        """
        if self._closing:
            raise PoolClosed(f"pool {self.name} is stopped")
        if self._space_waiters or self._held + self._reserved >= self.max_queue:
            waiter = asyncio.get_running_loop().create_future()
            self._space_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._reserved -= 1  # room was handed to us: pass it on
                    self._wake_submitters()
                elif waiter in self._space_waiters:
                    self._space_waiters.remove(waiter)
                raise
            self._reserved -= 1
        self._admit(message)

    def block_contact(self, store: str, to: str, reason: str) -> None:
        """Never send to ``to`` for ``store`` again through this pool (held messages are cancelled)."""
        blocked = self._blocked
        if (store, to) not in blocked:
            if len(blocked) >= _MAX_BLOCKED:
                del blocked[next(iter(blocked))]
            blocked[(store, to)] = reason
            log.info("channel %s: store %s: no more sends to %s (%s)", self.name, store, mask_contact(to), reason)

    def _admit(self, message: Message) -> None:
        self._seq += 1
        self._held += 1
        self._sched.push(Entry(message, self._seq), self._clock.now())
        self._wakeup.set()

    def _wake_submitters(self) -> None:
        free = self.max_queue - self._held - self._reserved
        waiters = self._space_waiters
        while free > 0 and waiters:
            waiter = waiters.popleft()
            if waiter.done():
                continue
            waiter.set_result(None)
            self._reserved += 1
            free -= 1

    # -- observation ----------------------------------------------------------------------------
    def statistics(self) -> PoolStatistics:
        """A consistent snapshot of the pool's counters."""
        return PoolStatistics(
            name=self.name,
            queued=self._held,
            delayed=self._sched.delayed_count,
            in_flight=self._in_flight,
            sent=self._sent,
            failed=self._failed,
            uncertain=self._uncertain,
            cancelled=self._cancelled,
            retried=self._retried,
            breaker=str(self._breaker.state(self._clock.now())),
            breaker_opened=self._breaker.opened,
            paused=self._paused,
            closed=self._closing,
            rate_per_s=self.rate_per_s,
            concurrency=self.concurrency,
            max_queue=self.max_queue,
            blocked_submitters=sum(1 for w in self._space_waiters if not w.done()),
            blocked_contacts=len(self._blocked),
        )

    def __repr__(self) -> str:
        return (
            f"<Pool {self.name} queued={self._held} in_flight={self._in_flight} sent={self._sent} "
            f"failed={self._failed} uncertain={self._uncertain} cancelled={self._cancelled} "
            f"retried={self._retried} breaker={self._breaker.state(self._clock.now())} paused={self._paused}>"
        )

    async def wait_idle(self) -> None:
        """Return once nothing can happen until the clock moves or new work arrives.

        That is: no send in flight, and the dispatcher parked with nothing dispatchable (queue empty,
        paused, or waiting for a time that has not come). With a manual clock this is how tests and
        ``clock advance`` know every send a time step allowed has reached its outcome.
        """
        loop = asyncio.get_running_loop()
        while not self._is_idle():
            waiter = loop.create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def next_wake(self) -> float | None:
        """When an idle pool will look at its queue again (clock time): the next retry, rate-limit token,
        recipient spacing, breaker probe or ``Retry-After`` end; None when busy or nothing is waiting.
        A manual clock that is moved past this time without stopping there sends late (``clock advance``
        steps to it)."""
        return self._park_deadline if self._is_idle() else None

    def _is_idle(self) -> bool:
        if self._task is None or self._task.done():
            return not self._tasks
        return (
            self._parked
            and self._in_flight == 0
            and not self._wakeup.is_set()
            and (self._park_deadline is None or self._clock.now() < self._park_deadline)
        )

    def _notify_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- the dispatcher -------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while True:
                self._wakeup.clear()
                now = self._clock.now()
                if self._closing and (not self._drain or now >= self._drain_deadline):
                    break
                deadline = self._dispatch(now)
                if self._closing:
                    if self._in_flight == 0 and (self._held == 0 or self._paused):
                        break
                    deadline = _min(deadline, self._drain_deadline)
                if self._wakeup.is_set():
                    continue
                await self._park(deadline)
        except Exception:
            log.exception("channel %s: the dispatcher crashed; the pool no longer sends", self.name)
            raise
        finally:
            self._parked = False
            sleeper, self._sleeper = self._sleeper, None
            if sleeper is not None and not sleeper.done():
                sleeper.cancel()
                await asyncio.gather(sleeper, return_exceptions=True)
            self._notify_idle()

    async def _park(self, deadline: float | None) -> None:
        """Wait for a wake-up (new work, a finished send, resume, stop) or for ``deadline``."""
        self._parked = True
        self._park_deadline = deadline
        self._notify_idle()
        sleeper = self._sleeper
        if sleeper is not None and not sleeper.done() and deadline != self._sleeper_deadline:
            # Woken before the old deadline and now waiting for another one: a fresh sleeper.
            sleeper.cancel()
            sleeper = None
        if deadline is not None and (sleeper is None or sleeper.done()):
            self._sleeper_deadline = deadline
            sleeper = self._sleeper = asyncio.ensure_future(self._clock.sleep_until(deadline))
            sleeper.add_done_callback(self._on_sleeper_done)
        try:
            await self._wakeup.wait()
        finally:
            self._parked = False

    def _on_sleeper_done(self, sleeper: asyncio.Future[None]) -> None:
        if sleeper.cancelled():
            return
        exc = sleeper.exception()
        if exc is not None:
            log.error("channel %s: clock sleep failed: %r", self.name, exc)
        self._wakeup.set()

    def _dispatch(self, now: float) -> float | None:
        """Send everything that may go at ``now``; return when to look again (None: on a wake-up)."""
        sched = self._sched
        sched.promote(now)
        deadline = sched.next_due()
        if self._paused:
            return deadline
        if now < self._hold_until:
            return _min(deadline, self._hold_until)
        breaker = self._breaker
        bucket = self._bucket
        while True:
            entry = sched.peek()
            if entry is None or self._in_flight >= self.concurrency:
                return deadline
            if not breaker.allow(now):
                if breaker.state(now) is BreakerState.OPEN:
                    return _min(deadline, breaker.reopen_at())
                return deadline  # half-open with the probe in flight: its outcome wakes us
            message = entry.message
            blocked = self._blocked.get((message.store, message.to)) if self._blocked else None
            if blocked is not None:
                sched.pop()
                sched.on_dropped(entry, now)
                self._release_held()
                self._final(entry, DeliveryResult.cancelled(f"contact invalidated: {blocked}"))
                continue
            if bucket is not None:
                wait_s = bucket.delay_s(now)
                if wait_s > 0.0:
                    return _min(deadline, now + wait_s)
            pair_at = sched.pair_free_at(message, now)
            if pair_at is not None:
                sched.pop()
                sched.on_dropped(entry, now)
                sched.defer(entry, pair_at)
                deadline = _min(deadline, pair_at)
                continue
            sched.pop()
            if self._still_wanted is not None:
                try:
                    reason = self._still_wanted(message)
                except Exception as exc:  # a broken check must not send what may be unwanted
                    log.exception("channel %s: still_wanted raised", self.name)
                    reason = f"still_wanted raised {type(exc).__name__}"
                if isinstance(reason, (int, float)) and not isinstance(reason, bool):  # not yet: held until then
                    until = max(float(reason), now)
                    sched.on_dropped(entry, now)
                    sched.defer(entry, until)
                    deadline = _min(deadline, until)
                    continue
                if reason is not None:
                    sched.on_dropped(entry, now)
                    self._release_held()
                    self._final(entry, DeliveryResult.cancelled(str(reason)))
                    continue
            gate = None
            if entry.attempts == 0 and self._before_attempt is not None:
                try:
                    gate = self._before_attempt(message)
                except Exception as exc:  # an attempt that cannot be recorded must not go out unrecorded
                    log.exception("channel %s: before_attempt raised", self.name)
                    sched.on_dropped(entry, now)
                    self._release_held()
                    self._final(entry, DeliveryResult.cancelled(f"before_attempt raised {type(exc).__name__}"))
                    continue
            if bucket is not None:
                bucket.try_take(now)
            sched.on_dispatched(entry, now)
            breaker.on_dispatch()
            self._release_held()
            self._launch(entry, gate)

    def _release_held(self) -> None:
        self._held -= 1
        if self._space_waiters:
            self._wake_submitters()

    def _launch(self, entry: Entry, gate: Awaitable[bool] | None = None) -> None:
        entry.attempts += 1
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._attempt(entry, gate))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, entry: Entry, gate: Awaitable[bool] | None = None) -> None:
        if gate is not None:
            try:
                go = await gate
            except asyncio.CancelledError:
                self._unsent(entry, "not sent: cancelled before its attempt")
                raise
            except Exception as exc:  # noqa: BLE001 - the gate's failure: the provider was not called
                go = False
                log.error("channel %s: %s: before_attempt failed: %r", self.name, entry.message.id, exc)
            if not go:
                self._unsent(entry, "not sent: its attempt could not be recorded")
                return
        try:
            result = await self.sender.send(entry.message)
        except asyncio.CancelledError:
            self._in_flight -= 1
            self._breaker.abandon_probe()
            self._final(entry, DeliveryResult.uncertain("cancelled while in flight"))
            self._wakeup.set()
            raise
        except Exception as exc:  # a sender bug: do not retry what might have gone out
            log.exception("channel %s: sender raised", self.name)
            result = DeliveryResult.permanent(f"sender raised {type(exc).__name__}: {exc}")
        self._in_flight -= 1
        self._settle(entry, result)
        self._wakeup.set()

    def _unsent(self, entry: Entry, detail: str) -> None:
        """A launched attempt that never called the sender: reported failed, retryable."""
        self._in_flight -= 1
        self._breaker.abandon_probe()
        self._final(entry, DeliveryResult.transient(detail))
        self._wakeup.set()

    def _settle(self, entry: Entry, result: DeliveryResult) -> None:
        """Decide what one attempt's result means: final, or retry later."""
        outcome = result.outcome
        if outcome is Outcome.SENT:
            self._breaker.record_success()
            self._final(entry, result)
            return
        if outcome is Outcome.CANCELLED:
            self._breaker.abandon_probe()
            self._final(entry, result)
            return
        now = self._clock.now()
        message = entry.message
        if result.detail:
            # Providers echo the recipient in their errors; the reason travels to logs and reports.
            result.detail = mask_text(result.detail, message.to)
        if outcome is Outcome.FAILED and not result.retryable:
            self._breaker.record_success()  # the provider answered: it is alive
            if result.invalidate_contact or result.opt_out:
                self.block_contact(
                    message.store,
                    message.to,
                    ("opted out" if result.opt_out else "invalid contact") + f" ({result.provider_status or result.detail})",
                )
            self._final(entry, result)
            return
        # Transient failure or uncertain outcome.
        self._breaker.record_failure(now)
        if result.throttled is Throttle.CHANNEL:
            # (capped as a message's retry is: a provider asking for a day, or forever, is broken)
            pause_s = (min(result.retry_after_s, MAX_RETRY_AFTER_S) if result.retry_after_s is not None
                       else self._retry.delay_s(1, self._rng))
            self._hold_until = max(self._hold_until, now + pause_s)
        retry = outcome is Outcome.FAILED or self._resend_uncertain
        if retry and entry.attempts < self._retry.max_attempts:
            delay_s = self._retry.delay_s(entry.attempts, self._rng, result.retry_after_s)
            if result.throttled is Throttle.RECIPIENT:
                self._sched.hold_recipient(message.store, message.to, now + delay_s, now)
            self._retried += 1
            self._held += 1
            self._sched.defer(entry, now + delay_s)
            log.debug(
                "channel %s: %s to %s: attempt %d failed (%s), retry in %.2f s",
                self.name,
                message.id,
                mask_contact(message.to),
                entry.attempts,
                result.detail,
                delay_s,
            )
            return
        if outcome is Outcome.FAILED:
            result.detail = f"gave up after {entry.attempts} attempts: {result.detail}"
        self._final(entry, result)

    def _final(self, entry: Entry, result: DeliveryResult) -> None:
        result.attempts = entry.attempts
        outcome = result.outcome
        if outcome is not Outcome.SENT and result.detail:
            # Providers echo the recipient in their errors; the reason travels to logs and reports.
            result.detail = mask_text(result.detail, entry.message.to)
        if outcome is Outcome.SENT:
            self._sent += 1
        elif outcome is Outcome.FAILED:
            self._failed += 1
        elif outcome is Outcome.UNCERTAIN:
            self._uncertain += 1
        else:
            self._cancelled += 1
        if outcome is not Outcome.SENT and log.isEnabledFor(logging.INFO):
            log.info(
                "channel %s: %s to %s: %s (%s) after %d attempt(s)",
                self.name,
                entry.message.id,
                mask_contact(entry.message.to),
                outcome,
                result.detail,
                entry.attempts,
            )
        try:
            self._on_result(entry.message, result)
        except Exception:  # one bad callback must not stall the channel
            log.exception("channel %s: on_result raised", self.name)
