"""Effects: what an actor asks the runtime to do, as plain data.

Actors never perform I/O and never touch the wheel. `handle(event, now)` and `on_timer(tag, now)` return
either ``None`` (nothing to do: the common case for a cart update, so the hot path allocates nothing) or
a list of effect tuples whose first element is one of the opcodes below. The runtime (``engine/``)
applies them in list order.

| effect | meaning |
|---|---|
| ``(SCHEDULE, actor, due_s, tag)`` | the actor's one pending timer now fires at ``due_s`` (unix seconds, engine clock) with ``tag`` (small int); any earlier pending timer of that actor is replaced |
| ``(CANCEL, actor)`` | the actor has no pending timer any more |
| ``(SEND, intent)`` | a :class:`SendIntent` for the channel pools |
| ``(LOG, record)`` | a :class:`LogRecord` for the message log |
| ``(METRIC, name, amount)`` | add ``amount`` to counter ``name`` (e.g. ``"recovered"``, ``"revenue"``) |

The runtime stores the wheel handle of an actor's pending timer in the actor's ``timer`` slot; actors
never read it.
"""
from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any

__all__ = ["Op", "SCHEDULE", "CANCEL", "SEND", "LOG", "METRIC", "Outcome", "SendIntent", "LogRecord"]


class Op(IntEnum):
    SCHEDULE = 1  #: (SCHEDULE, actor, due_s, tag)
    CANCEL = 2  #: (CANCEL, actor)
    SEND = 3  #: (SEND, SendIntent)
    LOG = 4  #: (LOG, LogRecord)
    METRIC = 5  #: (METRIC, name, amount)


SCHEDULE = Op.SCHEDULE
CANCEL = Op.CANCEL
SEND = Op.SEND
LOG = Op.LOG
METRIC = Op.METRIC


class Outcome(StrEnum):
    """The outcome of one orchestrated message, as the message log and ``stats`` name it."""

    SENT = "sent"  #: the provider accepted it
    FAILED = "failed"  #: permanently refused, or retries exhausted
    SKIPPED = "skipped"  #: not sent on purpose (no consent, no contact, no credits, cap, ...)
    POSTPONED = "postponed"  #: moved to a later time (send window, quiet hours, frequency cap)
    CANCELLED = "cancelled"  #: dropped while queued (purchase, cart back to active, opt-out)
    UNCERTAIN = "uncertain"  #: the outcome is unknown (crash or ambiguous provider failure)


class SendIntent:
    """One message that a flow step wants sent on one channel.

    ``key`` is the idempotency key ``store:cart:run:step:channel``; ``message_id`` is the id that
    ``message.opened`` / ``message.clicked`` events refer to. ``priority`` is higher-first (urgency
    score). ``items`` is the cart's packed msgpack item list; ``contact`` the address on that channel
    (email address, phone number, push token).
    """

    __slots__ = (
        "key", "message_id", "store", "cart", "profile", "run", "step", "channel", "priority",
        "contact", "locale", "items", "value", "currency", "checkout_url", "incentive", "template",
        "created_at",
    )

    def __init__(
        self, *, key: str, message_id: str, store: str, cart: str, profile: str | None, run: int,
        step: int, channel: str, priority: float, contact: str, locale: str | None, items: bytes,
        value: float, currency: str | None, checkout_url: str | None, incentive: dict[str, Any] | None,
        template: str | None = None, created_at: float = 0.0,
    ) -> None:
        self.key = key
        self.message_id = message_id
        self.store = store
        self.cart = cart
        self.profile = profile
        self.run = run
        self.step = step
        self.channel = channel
        self.priority = priority
        self.contact = contact
        self.locale = locale
        self.items = items
        self.value = value
        self.currency = currency
        self.checkout_url = checkout_url
        self.incentive = incentive
        self.template = template
        self.created_at = created_at

    def __repr__(self) -> str:
        return f"<SendIntent {self.key} prio={self.priority:.2f}>"


class LogRecord:
    """One line of the message log; field names are DESIGN.md's `logs` reply keys."""

    __slots__ = ("id", "at", "store", "cart", "profile", "run", "step", "channel", "outcome", "reason")

    def __init__(
        self, *, id: str, at: float, store: str, cart: str, profile: str | None, run: int,
        step: int | None, channel: str | None, outcome: str, reason: str = "",
    ) -> None:
        self.id = id
        self.at = at
        self.store = store
        self.cart = cart
        self.profile = profile
        self.run = run
        self.step = step
        self.channel = channel
        self.outcome = outcome
        self.reason = reason

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"<LogRecord {self.store}/{self.cart} run={self.run} step={self.step} {self.channel} {self.outcome} {self.reason!r}>"
