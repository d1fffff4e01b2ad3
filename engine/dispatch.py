"""From send intents to channel pools and back: the runtime's :class:`~engine.runtime.Dispatcher`.

One :class:`channels.Pool` per channel name a flow can use (``email``, ``push``, ``whatsapp``, ``sms``,
``webhook``) plus every configured ``[channels.*]`` table; a channel without a table writes to the
outbox (the embedded default). An intent becomes a :class:`channels.Message` (items unpacked from the
cart's msgpack bytes only now, for rendering); the pool's result comes back through
:meth:`ChannelDispatcher._on_result` to the runtime, which tells the actors and logs it.

Back-pressure: ``submit`` never blocks the runtime. When a pool's bounded queue is full the message
waits in that channel's overflow deque, drained by a task of its own (one stuck channel holds up no
other), and the ingest server is told to pause reading until the overflows of the channels that are
sending are empty again. A channel that cannot send at all — paused by the operator, its circuit
breaker open, or held by its provider's channel-wide ``Retry-After`` — does not pause ingest: reading on is what lets purchases and opt-outs cancel its
backlog. Its overflow is swept whenever it has doubled (amortised O(1) per message; also once a
minute while it waits): a message whose cart was bought, cleared or finished is reported cancelled
and dropped, so the overflow holds only messages that are still wanted.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from pathlib import Path
from typing import Any

import msgpack

from actors.effects import SendIntent
from channels import ChannelSettings, DeliveryResult, Message, Pool, Renderer, open_pool
from engine.clock import ManualClock, monotonic
from engine.config import Config

__all__ = ["ChannelDispatcher", "FLOW_CHANNELS"]

log = logging.getLogger("cartwheel.dispatch")

#: channel names the built-in and config flows may use
FLOW_CHANNELS = ("email", "push", "whatsapp", "sms", "webhook")
#: how often a drainer waiting for room looks again whether its channel can send at all (real seconds)
_RECHECK_S = 1.0
#: how often, at most, a drainer waiting for room sweeps its overflow of unwanted messages (real seconds)
_SWEEP_EVERY_S = 60.0


class ChannelDispatcher:
    """Routes intents to their channel's pool and results back to the runtime."""

    def __init__(self, pools: dict[str, Pool], runtime: Any) -> None:
        self.pools = pools
        self.runtime = runtime
        self.inflight: dict[str, SendIntent] = {}
        self._overflow: dict[str, deque[Message]] = {}  # per channel: waiting for room in its pool
        self._drainers: dict[str, asyncio.Task[None]] = {}
        self._swept_len: dict[str, int] = {}  # the overflow's length after its last sweep
        self._in_hand: dict[str, Message] = {}  # per channel: the overflow's head, being submitted
        self._pressing = False
        self.on_pressure: Any = None  # callable(bool): True = pause ingest, False = resume
        self._submitted_at: dict[str, float] = {}  # monotonic s, for the time-in-queue histogram
        self._dispatched_at: dict[str, float] = {}  # monotonic s, for the provider-latency histogram
        self.ledger: Any = None  # engine.intents.IntentLedger: records intents before their provider call
        self._stopping = False

    @classmethod
    def from_config(cls, config: Config, runtime: Any, *, base_dir: Path | None = None) -> ChannelDispatcher:
        dispatcher = cls({}, runtime)
        renderer = Renderer()
        names = list(dict.fromkeys([*FLOW_CHANNELS, *config.channels]))
        for name in names:
            settings = ChannelSettings.from_table(name, config.channels.get(name))
            dispatcher.pools[name] = open_pool(
                settings, clock=runtime.clock, on_result=dispatcher._on_result,
                still_wanted=dispatcher._still_wanted, renderer=renderer,
                before_attempt=dispatcher._before_attempt,
            )
        dispatcher._resolve_templates_dirs(base_dir or Path.cwd())
        return dispatcher

    def _resolve_templates_dirs(self, base_dir: Path) -> None:
        """A store's relative ``templates_dir`` is the config's: relative to the engine's base dir."""
        for rules in self.runtime.registry.stores.values():
            directory = rules.messages.get("templates_dir")
            if directory:  # (the stores made later for unknown store ids copy ``messages``)
                rules.messages["templates_dir"] = rules.message_extra["templates_dir"] = str(base_dir / directory)

    # -- lifecycle
    async def start(self) -> None:
        for pool in self.pools.values():
            await pool.start()

    def attach_ledger(self, ledger: Any) -> None:
        """Record every intent in ``ledger`` before it reaches a pool, and its outcome after."""
        self.ledger = ledger
        ledger.offer = self._offer

    async def stop(self) -> None:
        self._stopping = True  # messages still queued are reported "not sent": the ledger keeps them
        drainers = [task for task in self._drainers.values() if not task.done()]
        for task in drainers:
            task.cancel()
        await asyncio.gather(*drainers, return_exceptions=True)
        # An overflow never reached its pool: reported as a pool reports what it still holds, so the
        # ledger keeps the intents as unsent (sent after the restart, not taken for uncertain).
        for queue in self._overflow.values():
            waiting = list(queue)
            queue.clear()
            for message in waiting:
                self._on_result(message, DeliveryResult.transient("not sent: engine stopped"))
        # A pool drains within its rate limit, in its clock's time; a manual clock does not move while the
        # engine stops (it moves only on `clock advance`), so waiting for it would wait forever: what is
        # still queued then is reported "not sent" at once, and kept by the ledger for the next start.
        manual = isinstance(getattr(self.runtime, "clock", None), ManualClock)
        for pool in self.pools.values():
            await pool.stop(drain=True, timeout_s=0.0 if manual else 30.0)

    # -- the runtime's side
    def submit(self, intent: SendIntent) -> None:
        ledger = self.ledger
        if ledger is not None and not ledger.admit(intent):
            return  # held until its record is durable (then _offer), or a key that must not go again
        self._offer(intent)

    def _offer(self, intent: SendIntent) -> None:
        if self._stopping and self.ledger is not None:
            # recorded after the pools stopped (the tick driver fired it during the drain): it did not go
            # out; the ledger keeps it as unsent and it is sent after the restart
            self.ledger.done(intent, "failed", unsent=True)
            return
        pool = self.pools.get(intent.channel)
        if pool is None:
            self.runtime.delivered(intent, "failed", self.runtime.now(), detail=f"no channel {intent.channel!r} configured")
            return
        message = self._message(intent)
        self.inflight[message.key] = intent
        self._submitted_at[message.key] = monotonic()
        channel = intent.channel
        queue = self._overflow.get(channel)
        if not queue and pool.offer(message):
            return
        if queue is None:
            queue = self._overflow[channel] = deque()
        queue.append(message)
        if len(queue) >= 2 * max(self._swept_len.get(channel, 0), pool.max_queue):
            self._sweep(channel)
        self._update_pressure()
        drainer = self._drainers.get(channel)
        if drainer is None or drainer.done():
            self._drainers[channel] = asyncio.get_running_loop().create_task(self._drain(channel))

    @property
    def overflow(self) -> list[tuple[Pool, Message]]:
        """Every message waiting for room in its pool, with the pool (for tests and the e2e bench)."""
        waiting = []
        for name, queue in self._overflow.items():
            head = self._in_hand.get(name)
            waiting += [(self.pools[name], m) for m in ([head] if head is not None else []) + list(queue)]
        return waiting

    async def _drain(self, channel: str) -> None:
        pool = self.pools[channel]
        queue = self._overflow[channel]
        swept_at = monotonic()
        while queue:
            message = self._in_hand[channel] = queue.popleft()  # out of the deque: a sweep cannot move it
            try:
                await asyncio.wait_for(pool.submit(message), _RECHECK_S)
            except TimeoutError:
                queue.appendleft(message)
                self._update_pressure()  # paused or its breaker opened meanwhile: let ingest go on
                if monotonic() - swept_at >= _SWEEP_EVERY_S:
                    self._sweep(channel)
                    swept_at = monotonic()
                continue
            except BaseException:
                queue.appendleft(message)
                raise
            finally:
                del self._in_hand[channel]
        self._update_pressure()

    def _sweep(self, channel: str) -> None:
        """Report cancelled, and drop, the overflow's messages that are no longer wanted."""
        queue = self._overflow[channel]
        kept: list[Message] = []
        unwanted: list[tuple[Message, str]] = []
        for message in queue:
            reason = self._wanted(message)
            if isinstance(reason, str):
                unwanted.append((message, reason))
            else:
                kept.append(message)
        if unwanted:
            queue.clear()
            queue.extend(kept)
        self._swept_len[channel] = len(queue)
        for message, reason in unwanted:  # after the deque is whole again: an outcome may issue new sends
            self._on_result(message, DeliveryResult.cancelled(reason))

    def _update_pressure(self) -> None:
        """Pause ingest while a channel that can send has messages waiting for room; resume when none has."""
        pressing = any(queue and not self.pools[name].stalled for name, queue in self._overflow.items())
        if pressing != self._pressing:
            self._pressing = pressing
            if self.on_pressure is not None:
                self.on_pressure(pressing)

    async def idle(self) -> None:
        ledger = self.ledger
        while True:
            if ledger is not None and ledger.waiting() and ledger.journal.health.up:
                await self._ledger_flushed()
            for pool in self.pools.values():
                await pool.wait_idle()
            if any(queue and self.pools[name].admitting() and not self._drainers[name].done()
                   for name, queue in self._overflow.items()):
                await asyncio.sleep(0)  # a drainer has room to move messages into: let it
                continue
            # What is left in an overflow waits for room that only the clock or a `resume` can make.
            if all(p.statistics().in_flight == 0 for p in self.pools.values()):
                if ledger is None:
                    return
                if ledger.waiting():
                    await asyncio.sleep(0.001)
                    continue
                await self._ledger_flushed()  # outcomes recorded too: a crash now repeats nothing
                if not ledger.waiting():
                    return

    def next_due(self) -> float | None:
        """The earliest time (engine clock) an idle pool has something to do: a retry, a rate-limit token..."""
        due = None
        for pool in self.pools.values():
            at = pool.next_wake()
            if at is not None and (due is None or at < due):
                due = at
        return due

    async def _ledger_flushed(self) -> None:
        try:
            await self.ledger.journal.flush()
        except Exception as exc:  # noqa: BLE001 - the store is down: intents go out from memory meanwhile
            log.warning("intent ledger not durable: %s", exc)
            await asyncio.sleep(0)

    def _message(self, intent: SendIntent) -> Message:
        rules = self.runtime.registry.rules(intent.store)
        items = msgpack.unpackb(intent.items, raw=False) if intent.items else []
        extra = rules.message_extra  # the store's settings for its messages (shared, read-only)
        return Message(
            id=intent.message_id, key=intent.key, channel=intent.channel, store=intent.store, to=intent.contact,
            store_name=rules.name, cart=intent.cart, profile=intent.profile or "", run=intent.run, step=intent.step,
            priority=intent.priority, locale=intent.locale or "", items=items if isinstance(items, list) else [],
            value=intent.value, currency=intent.currency or "", checkout_url=intent.checkout_url or "",
            incentive=intent.incentive, template=intent.template or "reminder", extra=extra,
            created_at=intent.created_at,
        )

    # -- the pools' side
    def _wanted(self, message: Message) -> str | float | None:
        """The runtime's answer for ``message``: None to send, why not, or when to ask again."""
        intent = self.inflight.get(message.key)
        return "unknown message" if intent is None else self.runtime.still_wanted(intent)

    def _still_wanted(self, message: Message) -> str | float | None:
        reason = self._wanted(message)
        if reason is None:
            t = monotonic()
            self._dispatched_at[message.key] = t
            t0 = self._submitted_at.pop(message.key, None)
            if t0 is not None:
                self.runtime.stats.record_queue_time(message.channel, t - t0)
        return reason

    def _before_attempt(self, message: Message) -> asyncio.Future[bool] | None:
        """The pool's first attempt at ``message``: the ledger marks it attempted (the provider is called
        once that mark is durable); see :meth:`engine.intents.IntentLedger.attempt`."""
        ledger = self.ledger
        return None if ledger is None else ledger.attempt(message.key)  # type: ignore[no-any-return]

    def _on_result(self, message: Message, result: DeliveryResult) -> None:
        intent = self.inflight.pop(message.key, None)
        if intent is None:
            return
        self._submitted_at.pop(message.key, None)
        t0 = self._dispatched_at.pop(message.key, None)
        if t0 is not None:
            self.runtime.stats.record_provider_latency(message.channel, monotonic() - t0)
        ledger = self.ledger
        if ledger is not None:
            if self._stopping and result.outcome == "failed" and result.retryable:
                # Queued or waiting for a retry when the engine stopped: it did not go out. The ledger
                # keeps it as unsent and it is sent after the restart; the actors hear nothing now.
                ledger.done(intent, "failed", unsent=True)
                return
            ledger.done(intent, str(result.outcome), detail=result.detail,
                        invalidate=bool(result.invalidate_contact or result.opt_out))
        self.runtime.delivered(
            intent, str(result.outcome), self.runtime.now(), detail=result.detail,
            invalidate_contact=bool(result.invalidate_contact or result.opt_out),
        )

    # -- the admin's side
    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, pool in self.pools.items():
            stats = pool.statistics()
            doc = {k: getattr(stats, k) for k in stats.__dataclass_fields__}
            sender = getattr(pool, "sender", None)
            doc["kind"] = getattr(sender, "kind", None) or (type(sender).__name__ if sender is not None else None)
            out[name] = doc
        return out

    def pause(self, name: str, paused: bool) -> None:
        pool = self.pools[name]
        if paused:
            pool.pause()
        else:
            pool.resume()
        self._update_pressure()
