"""The contract every channel implements: turn one :class:`Message` into one :class:`DeliveryResult`.

A sender does one attempt and classifies the answer; it never retries, sleeps or rate-limits —
that is the pool's job, so every channel gets the same policy. It must not raise for anything the
provider or the network can do (those are results); an exception is treated by the pool as a bug and
reported as a permanent failure, so that a message that may have gone out is not sent twice.

Classification rules shared by all channels:

* sent → ``DeliveryResult.sent(provider_message_id)``;
* the request never reached the provider (connection refused, DNS, connect timeout) →
  ``transient``;
* the provider said "later" (HTTP 429/5xx, SMTP 4xx, documented rate-limit codes) → ``transient``
  with ``retry_after_s`` and ``throttled`` when it said so;
* the provider said "never" (HTTP 4xx with a documented permanent code, SMTP 5xx) → ``permanent``,
  with ``invalidate_contact`` / ``opt_out`` where the code means the contact is dead or opted out;
* the request was handed over but the answer was lost (connection dropped or timed out after the
  body was written) → ``uncertain``.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from channels.message import DeliveryResult, Message

__all__ = ["Sender"]


@runtime_checkable
class Sender(Protocol):
    """One channel implementation (SMTP, WhatsApp, SMS, push, webhook, outbox)."""

    #: the channel kind ("smtp", "whatsapp", ...)
    kind: str

    async def send(self, message: Message) -> DeliveryResult:
        """Make one attempt to deliver ``message`` and classify the outcome."""
        ...

    async def close(self) -> None:
        """Release connections and files; the sender is not used afterwards."""
        ...
