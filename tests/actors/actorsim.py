"""A miniature runtime for actor tests: a manual clock, a heap of timers, instant channels.

It plays a :class:`~actors.registry.Registry` the way ``engine/runtime`` will:

* ``SCHEDULE`` replaces the actor's pending timer (the new token goes into ``actor.timer``; the heap entry
  of the old one becomes stale and is skipped), ``CANCEL`` removes it; a fired timer is consumed
  (``actor.timer = None``) before ``Registry.fire`` runs;
* timers fire in due order, at their due time, or late: rounded up to ``tick_s`` (the engine's 100 ms
  wheel), or all at once when the process was "down" (:meth:`Sim.advance` with ``down_until``), or a
  hair early (``early_s``: the float rounding of a wheel's tick conversion);
* every ``SEND`` is asked ``still_wanted`` and delivered at the same virtual instant with the outcome
  chosen by ``outcome_for`` (default ``"sent"``), unless ``auto_deliver`` is off (then :meth:`flush`).

Times are unix seconds. Nothing sleeps.
"""
from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from actors import (
    CANCEL,
    LOG,
    METRIC,
    SCHEDULE,
    SEND,
    LogRecord,
    Registry,
    SendIntent,
    flows_from_config,
    parse_store,
)

UTC = ZoneInfo("UTC")
MIN = 60.0
HOUR = 3600.0
DAY = 86400.0


def at(text: str, tz: str = "UTC") -> float:
    """Unix seconds of a local ISO time: ``at("2024-05-15 10:00", "Europe/Madrid")``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def local(ts: float, tz: str = "UTC") -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def make_registry(stores: dict[str, dict[str, Any]], flows: dict[str, Any] | None = None) -> Registry:
    all_flows = flows_from_config(flows or {})
    return Registry({sid: parse_store(sid, table, all_flows) for sid, table in stores.items()}, all_flows)


def profile(pid: str = "p1", *, email: str | None = "ann@example.com", phone: str | None = None,
            push: str | None = None, timezone: str | None = None, consent: dict[str, bool] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": pid, "email": email, "locale": "es-ES"}
    if phone is not None:
        data["phone"] = phone
    if push is not None:
        data["push"] = push
    if timezone is not None:
        data["timezone"] = timezone
    data["consent"] = consent if consent is not None else {"email": True, "push": True, "whatsapp": True, "sms": True}
    return data


ITEMS = [
    {"sku": "TEE-1", "name": "T-shirt", "qty": 2, "price": 19.5},
    {"sku": "CAP-9", "name": "Cap", "qty": 1, "price": 25.0},
]


def cart_event(cart: str = "c1", *, store: str = "demo", type: str = "cart.updated", prof: Any = None,
               items: list[dict[str, Any]] | None = None, value: float = 64.0, currency: str = "EUR",
               ts: float | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": type, "store": store, "cart": cart, "items": ITEMS if items is None else items, "value": value,
        "currency": currency, "checkout_url": f"https://demo.example/checkout/{cart}",
    }
    if prof is not None:
        event["profile"] = prof
    if ts is not None:
        event["ts"] = ts
    return event


@dataclass
class Sent:
    at: float
    intent: SendIntent
    outcome: str

    @property
    def what(self) -> tuple[float, int, int, str]:
        return (self.at, self.intent.run, self.intent.step, self.intent.channel)


class Sim:
    """Drive a registry on a manual clock. See the module docstring."""

    def __init__(self, registry: Registry, start: float, *, tick_s: float = 0.0, early_s: float = 0.0,
                 outcome_for: Callable[[SendIntent], str] | None = None, auto_deliver: bool = True) -> None:
        self.reg = registry
        self.now = start
        self.tick_s = tick_s
        self.early_s = early_s  # fire every timer this much before its due time (float rounding in a wheel)
        self.outcome_for = outcome_for or (lambda intent: "sent")
        self.auto_deliver = auto_deliver
        self._heap: list[tuple[float, int, object, Any, int]] = []
        self._seq = 0
        self.queue: list[SendIntent] = []
        self.deferred: list[tuple[float, int, SendIntent]] = []  # held back by still_wanted until then
        self.sends: list[Sent] = []  # every delivery result, including cancelled ones
        self.logs: list[LogRecord] = []
        self.metrics: Counter[str] = Counter()
        self.timer_effects = 0  # SCHEDULE + CANCEL effects seen
        self.fired = 0

    # ------------------------------------------------------------------ effects
    def _fire_time(self, due: float) -> float:
        if self.tick_s:
            return math.ceil(round(due / self.tick_s, 6)) * self.tick_s
        return due - self.early_s

    def run(self, effects: list[Any] | None) -> list[Any] | None:
        for effect in effects or ():
            op = effect[0]
            if op is SCHEDULE:
                _, actor, due, tag = effect
                token = object()
                actor.timer = token
                self._seq += 1
                heapq.heappush(self._heap, (self._fire_time(due), self._seq, token, actor, tag))
                self.timer_effects += 1
            elif op is CANCEL:
                effect[1].timer = None
                self.timer_effects += 1
            elif op is SEND:
                self.queue.append(effect[1])
            elif op is LOG:
                self.logs.append(effect[1])
            elif op is METRIC:
                self.metrics[effect[1]] += effect[2]
            else:  # pragma: no cover - a contract violation
                raise AssertionError(f"unknown effect {effect!r}")
        if self.auto_deliver and self.queue:
            self.flush()
        return effects

    def flush(self) -> None:
        """Deliver every queued intent now (asking ``still_wanted`` first)."""
        while self.queue:
            intent = self.queue.pop(0)
            reason = self.reg.still_wanted(intent, self.now)
            if type(reason) is float:  # not yet (quiet hours, a window): asked again then, as a pool does
                self._seq += 1
                heapq.heappush(self.deferred, (reason, self._seq, intent))
                continue
            outcome = "cancelled" if reason is not None else self.outcome_for(intent)
            self.sends.append(Sent(self.now, intent, outcome))
            self.run(self.reg.delivered(intent, outcome, self.now, detail=reason or "",
                                        invalidate_contact=outcome == "failed"))

    # ------------------------------------------------------------------ clock
    def advance(self, to: float, *, down_until: float | None = None) -> None:
        """Fire every timer due up to ``to`` in order, then set the clock to ``to``.

        With ``down_until``, timers due before it fire at ``down_until`` instead (a process restart).
        """
        heap = self._heap
        while heap and heap[0][0] <= to:
            self._redeliver(heap[0][0])
            when, _, token, actor, tag = heapq.heappop(heap)
            if actor.timer is not token:
                continue  # replaced or cancelled
            if down_until is not None and when < down_until:
                when = down_until
            self.now = max(self.now, when)
            actor.timer = None
            self.fired += 1
            self.run(self.reg.fire(actor, tag, self.now))
        self._redeliver(to)
        self.now = max(self.now, to)

    def _redeliver(self, upto: float) -> None:
        """Ask again about the messages held back until a time up to ``upto``, at that time."""
        while self.deferred and self.deferred[0][0] <= upto:
            when, _, intent = heapq.heappop(self.deferred)
            self.now = max(self.now, when)
            self.queue.append(intent)
            if self.auto_deliver:
                self.flush()

    def apply(self, event: dict[str, Any], when: float | None = None) -> list[Any] | None:
        """Advance to ``when`` (if given) and apply ``event`` at that time."""
        if when is not None:
            self.advance(when)
        return self.run(self.reg.apply(event, self.now))

    def pending(self) -> int:
        return sum(1 for _, _, token, actor, _ in self._heap if actor.timer is token)

    # ------------------------------------------------------------------ views
    def sent(self) -> list[tuple[float, int, int, str]]:
        """``(at, run, step, channel)`` of every message that went out."""
        return [s.what for s in self.sends if s.outcome == "sent"]

    def logged(self, outcome: str) -> list[tuple[float, int | None, str | None, str]]:
        return [(r.at, r.step, r.channel, r.reason) for r in self.logs if r.outcome == outcome]
