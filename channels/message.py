"""The two values that cross the channels boundary: a :class:`Message` to send, a :class:`DeliveryResult` back.

``channels`` imports nothing else of cartwheel, so these are its own types: the engine builds a
``Message`` from a send intent and receives a ``DeliveryResult`` through the pool's ``on_result``
callback. Both are slotted (millions may sit in queues during an outage) and carry only plain data
(str, float, dict, list), so they can be logged into the outbox or a webhook as JSON as they are.

Outcomes (:class:`Outcome`):

* ``sent``      — the provider accepted the message (``detail`` holds its message id).
* ``failed``    — it was not sent; ``retryable`` tells whether trying later could help.
* ``uncertain`` — it may or may not have gone out (e.g. the SMTP connection dropped after the
  message body was written); never retried blindly (see the channel setting ``on_uncertain``).
* ``cancelled`` — the pool decided not to send it (``still_wanted`` said no, or the contact is known
  to be invalid or opted out).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Message", "DeliveryResult", "Outcome", "Throttle"]


class Outcome(enum.StrEnum):
    """What became of one message (a ``str``, so ``result.outcome == "sent"`` works)."""

    #: the provider accepted it
    SENT = "sent"
    #: not sent; see ``DeliveryResult.retryable``
    FAILED = "failed"
    #: may or may not have been sent: the answer was lost after the message was handed over
    UNCERTAIN = "uncertain"
    #: deliberately not sent (no longer wanted, invalidated contact, pool stopped before a retry)
    CANCELLED = "cancelled"


class Throttle(enum.StrEnum):
    """How far a provider's "slow down" reaches, so the pool backs off the right thing."""

    #: only this message is retried later
    MESSAGE = "message"
    #: this sender→recipient pair is saturated (WhatsApp 131056): space messages to this contact
    RECIPIENT = "recipient"
    #: the whole account / channel is throttled (HTTP 429, WhatsApp 130429): hold every send
    CHANNEL = "channel"


@dataclass(slots=True, eq=False, kw_only=True)
class Message:
    """One message to one contact over one channel, fully described (nothing is looked up later).

    ``key`` is the engine's idempotency key ``store:cart:run:step:channel``; ``id`` is the public
    message id that tracking links and ``message.opened``/``message.clicked`` events refer to.
    ``priority`` orders the pool's queue when the rate limit bites: higher first, FIFO among equals.
    ``extra`` carries per-store settings the channel needs (WhatsApp ``phone_number_id``/``token``,
    email header/footer text, a template override directory, an unsubscribe URL; see
    :mod:`channels.render`). ``created_at`` is unix seconds on the engine clock.
    """

    id: str
    key: str
    channel: str
    store: str
    to: str
    store_name: str = ""
    cart: str = ""
    profile: str = ""
    run: int = 0
    step: int = 0
    priority: float = 0.0
    locale: str = ""
    items: list[dict[str, Any]] = field(default_factory=list)
    value: float = 0.0
    currency: str = ""
    checkout_url: str = ""
    incentive: dict[str, Any] | None = None
    template: str = "reminder"
    extra: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    def to_dict(self, *, with_extra: bool = False) -> dict[str, Any]:
        """A JSON-ready dict of the message.

        ``extra`` is left out unless asked for: it may hold provider credentials (a WhatsApp token)
        that must not end up in an outbox file or a webhook body.
        """
        data = {
            "id": self.id,
            "key": self.key,
            "channel": self.channel,
            "store": self.store,
            "store_name": self.store_name,
            "cart": self.cart,
            "profile": self.profile,
            "run": self.run,
            "step": self.step,
            "priority": self.priority,
            "to": self.to,
            "locale": self.locale,
            "items": self.items,
            "value": self.value,
            "currency": self.currency,
            "checkout_url": self.checkout_url,
            "incentive": self.incentive,
            "template": self.template,
            "created_at": self.created_at,
        }
        if with_extra:
            data["extra"] = self.extra
        return data


@dataclass(slots=True, kw_only=True)
class DeliveryResult:
    """The provider's answer to one attempt, classified; the pool fills in ``attempts``.

    Build one with the class methods (:meth:`sent`, :meth:`transient`, :meth:`permanent`,
    :meth:`uncertain`, :meth:`cancelled`) so the flags stay consistent.

    Attributes:
        outcome: see :class:`Outcome`.
        detail: the provider's message id when sent, else a short human reason.
        retryable: a failure that may succeed later (network error, 4xx SMTP, HTTP 429/5xx).
        invalidate_contact: the address/number/token is dead (FCM UNREGISTERED, Twilio 21211,
            WhatsApp 131026, SMTP 550 at RCPT): the engine should drop it from the profile.
        opt_out: the recipient opted out at the provider (Twilio 21610): record a consent withdrawal.
        attempts: how many times the pool handed the message to the sender (0 when never tried).
        provider_status: the provider's own code as text ("250", "131056", "UNREGISTERED", "429").
        retry_after_s: the provider asked to wait this many seconds before trying again.
        throttled: for a rate-limit answer, how far the back-off should reach (see :class:`Throttle`).
    """

    outcome: Outcome
    detail: str = ""
    retryable: bool = False
    invalidate_contact: bool = False
    opt_out: bool = False
    attempts: int = 0
    provider_status: str = ""
    retry_after_s: float | None = None
    throttled: Throttle | None = None

    @classmethod
    def sent(cls, detail: str = "", *, provider_status: str = "") -> DeliveryResult:
        """Accepted by the provider; ``detail`` is its message id."""
        return cls(outcome=Outcome.SENT, detail=detail, provider_status=provider_status)

    @classmethod
    def transient(
        cls,
        detail: str,
        *,
        provider_status: str = "",
        retry_after_s: float | None = None,
        throttled: Throttle | None = None,
    ) -> DeliveryResult:
        """Not sent, but trying again later may work (the pool retries with back-off)."""
        return cls(
            outcome=Outcome.FAILED,
            detail=detail,
            retryable=True,
            provider_status=provider_status,
            retry_after_s=retry_after_s,
            throttled=throttled,
        )

    @classmethod
    def permanent(
        cls,
        detail: str,
        *,
        provider_status: str = "",
        invalidate_contact: bool = False,
        opt_out: bool = False,
    ) -> DeliveryResult:
        """Not sent, and sending the same message again would fail the same way."""
        return cls(
            outcome=Outcome.FAILED,
            detail=detail,
            provider_status=provider_status,
            invalidate_contact=invalidate_contact,
            opt_out=opt_out,
        )

    @classmethod
    def uncertain(cls, detail: str, *, provider_status: str = "") -> DeliveryResult:
        """The message was handed over but the answer was lost: it may have been delivered."""
        return cls(outcome=Outcome.UNCERTAIN, detail=detail, provider_status=provider_status)

    @classmethod
    def cancelled(cls, reason: str) -> DeliveryResult:
        """Deliberately not sent; ``reason`` says why."""
        return cls(outcome=Outcome.CANCELLED, detail=reason)

    @property
    def ok(self) -> bool:
        """True when the provider accepted the message."""
        return self.outcome is Outcome.SENT
