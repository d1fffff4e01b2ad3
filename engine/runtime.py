"""The runtime: one loop that turns events and fired timers into applied effects.

Actors (``actors/``) decide; the runtime does. It owns the timing wheel, the message log and the
counters, and hands send intents to a dispatcher (the channel pools). Every input reaches actors
through two doors:

* :meth:`Runtime.apply_event` — a validated ingest event (hot path: no logging, no awaits, no
  per-event allocation beyond what the actor returns);
* :meth:`Runtime.fire_due` — the wheel's due timers, in due order, each handed to its actor.

The tick driver (:meth:`Runtime.run`) sleeps until the wheel's next event (``next_event``), never
busy-looping, and fires at most ``fire_batch`` timers per loop turn before yielding to the event loop,
so that ingest and firing share the core fairly. With a manual clock nothing fires by itself:
:meth:`Runtime.advance_clock` (the admin command ``clock advance``) moves time and fires everything due
up to the new time, in order, and waits until every send it produced has an outcome.

Ticks: a time ``t`` (unix seconds) is due at tick ``ceil(t / tick_s)``, so a timer never fires early.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import math
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from actors.effects import CANCEL, LOG, METRIC, SCHEDULE, SEND, LogRecord, SendIntent
from engine.clock import Clock, ManualClock
from engine.msglog import MessageLog
from engine.stats import Stats
from timing_wheel import TimingWheel

__all__ = ["Runtime", "Dispatcher"]

log = logging.getLogger("cartwheel.runtime")


#: how often the tick driver moves long-lived objects out of the garbage collector's reach (seconds)
GC_FREEZE_INTERVAL_S = 10.0
#: allocations between two young-generation collections while the engine runs (CPython's default: 700).
#: Ingest allocates ~7 containers per event (the event, its items, the profile map...), so the default
#: collects every ~100 events, and in journal durability, where events live until their group commit,
#: promotes them into older generations that are costlier to walk. Measured with the snapshot
#: benchmark's ingest (frames of 100, Redis): 700 -> 10 000 took snapshot durability from 79 k to 99 k
#: events/s and journal durability from 48 k to 71 k (the same as with the collector off); a young
#: collection of 10 000 objects takes well under a millisecond.
GC_GEN0_THRESHOLD = 10_000


#: runtimes started and not stopped: the hook below stays installed while any runs
_RUNNING: weakref.WeakSet[Runtime] = weakref.WeakSet()


def _freeze_before_full_collection(phase: str, info: dict[str, int]) -> None:
    """A ``gc.callbacks`` hook: when a young collection leaves the oldest generation due for a full
    collection, freeze instead, so that the full collection finds (almost) nothing to walk.

    The periodic freeze (:meth:`Runtime._freeze`) bounds by *time* what a full collection walks; under a
    flood of new carts 10 s is a lot of objects. Measured in-process, 94 k new carts/s with the engine's
    collector settings: three full collections in 30 s, 121-128 ms each; with this hook none, the longest
    pause 10 ms. At the end of a generation-1 collection the young generations are empty and everything
    in the oldest one is reachable, so nothing that is garbage then gets frozen; what would leak is a
    reference cycle that dies later, and the engine's own paths make none
    (``tests/engine/test_reference_cycles.py``). One process-wide hook, installed while a runtime runs.
    """
    if phase == "stop" and info.get("generation") == 1 and gc.get_count()[2] > gc.get_threshold()[2]:
        gc.freeze()


class Dispatcher(Protocol):
    """Where send intents go (the channel pools). ``submit`` must not block the caller."""

    def submit(self, intent: SendIntent) -> None: ...

    async def idle(self) -> None:
        """Return once every submitted intent has reached an outcome."""
        ...


def _in_due_order(batch: list[Any]) -> list[Any]:
    """A fired batch ``[actor, tag, ...]`` in exact due order, ties broken by ``(store, cart)``.

    The wheel fires a tick's timers in the order they were armed. A restore re-arms carts in the
    store's order, not the original one, and carts that share state (a shopper's frequency cap, a
    store's credits) must still fire in the same order as before the restart: so the order is made a
    function of the timers alone. One pass when the batch is already in order (the common case).
    """
    prev = None
    for j in range(0, len(batch), 2):
        due = getattr(batch[j], "due", None)
        if due is None or (prev is not None and due <= prev):
            break
        prev = due
    else:
        return batch
    order = sorted(range(0, len(batch), 2), key=lambda j: (
        getattr(batch[j], "due", None) or 0.0, batch[j].store.id, batch[j].cart))
    out: list[Any] = []
    for j in order:
        out.append(batch[j])
        out.append(batch[j + 1])
    return out


class Runtime:
    """The engine's core loop state.

    Args:
        registry: the actors' registry (``actors.registry.Registry``).
        clock: the engine clock.
        tick_s: wheel tick length in seconds (config ``engine.tick``).
        log_retention_s: how long message-log records are kept.
        log_max_records: most message-log records kept (the oldest go first).
        fire_batch: timers fired per loop turn before yielding to ingest.
    """

    def __init__(
        self, registry: Any, clock: Clock, *, tick_s: float = 0.1, log_retention_s: float = 5 * 86400,
        fire_batch: int = 5000, dispatcher: Dispatcher | None = None, log_max_records: int = 1_000_000,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.tick_s = tick_s
        now = clock.now()
        self.wheel = TimingWheel(self._tick_of(now), tick_s=tick_s)
        self.stats = Stats()
        self.msglog = MessageLog(log_retention_s, log_max_records)
        self.fire_batch = fire_batch
        self.dispatcher = dispatcher
        #: ``(store, cart)`` of every cart an event, timer or delivery result reached since the last
        #: snapshot cut (None: nobody snapshots); engine.snapshot swaps it at each cut
        self.dirty: set[tuple[str, str]] | None = None
        #: called with an applied event that names no cart (profile updates; snapshots hook here)
        self.on_dirty: Callable[[Any], None] | None = None
        #: copy-on-write hooks, set only while a snapshot cut is being encoded: called *before* a change
        self.before_event: Callable[[dict[str, Any]], None] | None = None
        self.before_fire: Callable[[Any], None] | None = None
        self.before_delivered: Callable[[SendIntent], None] | None = None
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._freezer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ time
    def _tick_of(self, t: float) -> int:
        """The first tick at or after ``t`` (seconds): a timer due at ``t`` never fires early."""
        return math.ceil(t / self.tick_s - 1e-9)

    def now(self) -> float:
        return self.clock.now()

    # ------------------------------------------------------------------ effects
    def apply_effects(self, effects: list[Any], now: float) -> None:
        """Carry out an actor's effects, in order."""
        wheel = self.wheel
        for effect in effects:
            op = effect[0]
            if op == SCHEDULE:
                actor = effect[1]
                tick = self._tick_of(effect[2])
                # Move the pending timer in place when there is one (no free/allocate, same handle).
                if actor.timer is None or not wheel.reschedule(actor.timer, tick, effect[3], actor):
                    actor.timer = wheel.schedule(tick, actor, effect[3])
            elif op == CANCEL:
                actor = effect[1]
                if actor.timer is not None:
                    wheel.cancel(actor.timer, actor)
                    actor.timer = None
            elif op == SEND:
                self._send(effect[1], now)
            elif op == LOG:
                self.record(effect[1])
            elif op == METRIC:
                self.stats.metric(effect[1], effect[2])

    def _send(self, intent: SendIntent, now: float) -> None:
        if self.dispatcher is None:
            # No channels wired (simulate, tests of the domain): the intent counts as sent at once.
            self.delivered(intent, "sent", now)
            return
        self.stats.queued += 1
        self.dispatcher.submit(intent)

    def record(self, record: LogRecord) -> None:
        """Add a record to the message log and count it."""
        self.msglog.append(record)
        self.stats.outcome(record.channel, record.outcome)

    def delivered(self, intent: SendIntent, outcome: str, now: float, *, detail: str = "",
                  invalidate_contact: bool = False) -> None:
        """A delivery result came back from a channel: tell the actors (they return its log record)."""
        if self.before_delivered is not None:
            self.before_delivered(intent)
        if self.dirty is not None:
            self.dirty.add((intent.store, intent.cart))
        effects = self.registry.delivered(intent, outcome, now, detail=detail, invalidate_contact=invalidate_contact)
        if effects:
            self.apply_effects(effects, now)

    def still_wanted(self, intent: SendIntent) -> str | float | None:
        """Asked by a pool right before a send: None to send, why it is cancelled, or when to ask again
        (engine time: the store's quiet hours or the step's window forbid sending now)."""
        return self.registry.still_wanted(intent, self.clock.now())

    # ------------------------------------------------------------------ the two doors
    def apply_event(self, event: dict[str, Any], now: float) -> None:
        """Apply one validated event (hot path)."""
        if self.before_event is not None:  # a snapshot is encoding: it may need this cart as it is now
            self.before_event(event)
        dirty = self.dirty
        unseen = None
        if dirty is not None:
            cart = event.get("cart")
            if cart is not None:
                # Only a cart the registry holds before or after the event can differ from the store's copy
                # (one held before: also when the event deletes it). An event for a cart never held (a
                # cart.cleared for an unknown id) left a mark, and during an outage they piled up.
                if self.registry.cart(event["store"], cart) is not None:
                    dirty.add((event["store"], cart))
                else:
                    unseen = cart  # marked below if the event created it
            elif self.on_dirty is not None:
                self.on_dirty(event)
        effects = self.registry.apply(event, now)
        if unseen is not None and dirty is not None and self.registry.cart(event["store"], unseen) is not None:
            dirty.add((event["store"], unseen))
        if effects:
            self.apply_effects(effects, now)

    def fire_due(self, now: float, limit: int | None = None) -> int:
        """Fire timers due at or before ``now`` (at most about ``limit``); returns how many fired."""
        to_tick = int(now / self.tick_s + 1e-9)
        if (to_tick + 1) * self.tick_s <= now:  # n * tick_s / tick_s may come out just below n (tick 30ms)
            to_tick += 1
        batch = self.wheel.expire(to_tick, self.fire_batch if limit is None else limit)
        if not batch:
            return 0
        if len(batch) > 2:
            batch = _in_due_order(batch)
        fire = self.registry.fire
        apply = self.apply_effects
        lag = self.stats.timer_lag
        dirty = self.dirty
        before = self.before_fire
        for j in range(0, len(batch), 2):
            actor = batch[j]
            actor.timer = None
            if before is not None:
                before(actor)
            if dirty is not None:
                dirty.add((actor.store.id, actor.cart))
            due = getattr(actor, "due", None)
            if due is not None:
                lag.record(now - due)
            try:
                effects = fire(actor, batch[j + 1], now)
                if effects:
                    apply(effects, now)
            except Exception:  # a bug in one cart's rules must not lose the other carts' timers of the batch
                self.stats.timer_errors += 1
                log.exception("timer of cart %s/%s failed; its flow stops here", actor.store.id, actor.cart)
        n = len(batch) // 2
        self.stats.timers_fired += n
        return n

    def timers_pending(self) -> int:
        return len(self.wheel)

    # ------------------------------------------------------------------ the tick driver
    async def run(self) -> None:
        """Fire timers as the clock reaches them, until :meth:`stop`."""
        self._running = True
        clock = self.clock
        while self._running:
            now = clock.now()
            fired = self.fire_due(now)
            self.msglog.expire(now)
            if fired:
                # More may be due: let ingest run one turn, then continue.
                await asyncio.sleep(0)
                continue
            nxt = self.wheel.next_event()
            if isinstance(clock, ManualClock):
                await clock.sleep_until(math.inf)
                continue
            wake_at = now + 1.0 if nxt is None else min(nxt * self.tick_s, now + 1.0)
            await clock.sleep_until(wake_at)

    def start(self) -> None:
        gen0, gen1, gen2 = gc.get_threshold()
        if 0 < gen0 < GC_GEN0_THRESHOLD:  # (0: the collector is off; leave it so)
            gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self.run(), name="cartwheel-ticks")
        self._freezer = loop.call_later(GC_FREEZE_INTERVAL_S, self._freeze)
        _RUNNING.add(self)
        if _freeze_before_full_collection not in gc.callbacks:
            gc.callbacks.append(_freeze_before_full_collection)

    def _freeze(self) -> None:
        """Every ``GC_FREEZE_INTERVAL_S`` of real time, whatever the engine's clock (a manual clock's tick
        driver sleeps until it is advanced, and the loads of a test or a benchmark still arrive):
        long-lived objects (carts, profiles) leave the cyclic collector's reach, so a full collection
        walks only what is newer. At a million carts one would otherwise pause the loop for a large
        fraction of a second (DESIGN.md principle 4; measured: p99 reply latency 142 ms instead of
        2.5 ms at 50 k events/s). Actors form no reference cycles (a cart points at shared store rules,
        nothing points back), so nothing collectable is lost; nor do ingest, firing and sending
        (``tests/engine/test_reference_cycles.py`` keeps it so: a cycle made there would be freed late,
        and never once frozen)."""
        gc.freeze()
        self._freezer = asyncio.get_running_loop().call_later(GC_FREEZE_INTERVAL_S, self._freeze)

    async def stop(self) -> None:
        if self._freezer is not None:
            self._freezer.cancel()
            self._freezer = None
        _RUNNING.discard(self)
        if not _RUNNING and _freeze_before_full_collection in gc.callbacks:
            gc.callbacks.remove(_freeze_before_full_collection)
        self._running = False
        self.clock.wake()
        if self._task is not None:
            await self._task
            self._task = None

    async def advance_clock(self, seconds: float) -> tuple[float, int]:
        """Move a manual clock forward and fire everything due on the way, in order.

        Returns ``(now, fired)`` after every send produced has reached an outcome.

        Raises:
            ValueError: the clock is not manual, or ``seconds`` is negative.
        """
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise ValueError(f"clock advance needs the manual clock; this engine runs a {clock.kind} clock")
        if not seconds >= 0 or seconds == math.inf:  # NaN fails ">= 0"
            raise ValueError(f"clock advance: the duration must be a finite number of seconds >= 0, got {seconds!r}")
        target = clock.now() + seconds
        fired = 0
        # Step from event to event so that every actor sees the time its timer was due at, and every
        # channel sends (a retry, a rate-limited backlog) at the time its pool is due to.
        dispatcher = self.dispatcher
        if dispatcher is not None:
            await dispatcher.idle()  # (a busy pool has no next wake-up to step to yet)
        while True:
            nxt = self.wheel.next_due()
            due = math.inf if nxt is None else nxt * self.tick_s
            if dispatcher is not None:
                pool_due = dispatcher.next_due()
                if pool_due is not None and pool_due < due:
                    due = pool_due
            if due > target + 1e-9:
                break
            step_to = max(clock.now(), due)
            clock.set(step_to)
            fired += self.fire_due(step_to, limit=1 << 30)
            self.msglog.expire(step_to)
            if dispatcher is not None:
                await dispatcher.idle()  # sends happen at their own virtual time
        clock.set(target)
        fired += self.fire_due(target, limit=1 << 30)
        self.msglog.expire(target)
        if self.dispatcher is not None:
            await self.dispatcher.idle()
        return clock.now(), fired

    def __repr__(self) -> str:
        return f"<Runtime carts={len(self.registry)} timers={len(self.wheel)} clock={self.clock!r}>"
