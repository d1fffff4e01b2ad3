"""Webhook: POST each message as JSON to the shop's own endpoint, signed with a shared secret.

Body: ``{"message": {...Message fields, without extra...}, "rendered": {...}}`` where ``rendered`` is
:meth:`channels.render.Renderer.preview` for the message's channel (subject/text/html for email,
title/body for push, text for SMS, template parameters for WhatsApp) and always holds the tracked
``url``.

Headers: ``X-Cartwheel-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with the
secret>``, ``X-Cartwheel-Message: <message id>`` and ``Idempotency-Key: <message key>`` — a receiver
that dedupes on the key makes a resent uncertain delivery harmless. A cart id may hold any characters:
in these two headers, characters other than printable ASCII are percent-encoded (UTF-8), so a header
never carries a line break or a byte a server refuses; the body holds the id and key as they are.

Verify on the receiving side with :func:`verify_signature` (constant-time comparison).

Answers: 2xx sent; 429 transient with the whole channel waiting; 408 and 5xx transient; any other
status permanent.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

from channels._config import TableReader
from channels._http import HttpAnswer, HttpChannel, json_body
from channels.message import DeliveryResult, Message, Throttle
from channels.render import Renderer, RenderError

__all__ = ["WebhookOptions", "WebhookSender", "sign", "verify_signature", "SIGNATURE_HEADER"]

SIGNATURE_HEADER = "X-Cartwheel-Signature"


def sign(body: bytes, secret: str) -> str:
    """The signature header value for ``body``: ``"sha256=<hex>"``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """Whether ``header`` is the valid signature of ``body`` under ``secret``."""
    if not header:
        return False
    return hmac.compare_digest(sign(body, secret), header.strip())


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookOptions:
    """The ``webhook`` kind's keys."""

    url: str
    secret: str

    @classmethod
    def from_reader(cls, r: TableReader) -> WebhookOptions:
        """Read and validate the kind's keys."""
        url = r.str("url", required=True, hint="the endpoint's http(s) URL")
        assert url is not None
        if not url.startswith(("http://", "https://")):
            raise r.error("url", "an http(s) URL", url)
        secret = r.str("secret", required=True, secret=True, hint="a shared secret for the HMAC signature")
        assert secret is not None
        return cls(url=url, secret=secret)


class WebhookSender(HttpChannel):
    """POSTs signed JSON; see the module docstring."""

    kind = "webhook"

    def __init__(
        self, options: WebhookOptions, *, renderer: Renderer, timeout_s: float = 10.0, concurrency: int = 8
    ) -> None:
        super().__init__(timeout_s=timeout_s, concurrency=concurrency)
        self.options = options
        self.renderer = renderer

    def body(self, message: Message) -> bytes:
        """The exact bytes that are posted and signed (raises :class:`RenderError`)."""
        return json_body({"message": message.to_dict(), "rendered": self.renderer.preview(message)})

    async def send(self, message: Message) -> DeliveryResult:
        """One signed POST."""
        try:
            body = self.body(message)
        except RenderError as exc:
            return DeliveryResult.permanent(f"render: {exc}")
        answer = await self._post(
            self.options.url,
            body=body,
            content_type="application/json",
            headers={
                SIGNATURE_HEADER: sign(body, self.options.secret),
                "X-Cartwheel-Message": header_safe(message.id),
                "Idempotency-Key": header_safe(message.key),
            },
        )
        if isinstance(answer, DeliveryResult):
            return answer
        return classify_webhook(answer, message)


#: what ``header_safe`` leaves as it is: printable ASCII but "%" (which starts an escape)
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def header_safe(value: str) -> str:
    """``value`` for an HTTP header: as it is when printable ASCII, else with the rest percent-encoded."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe=_HEADER_SAFE)


def classify_webhook(answer: HttpAnswer, message: Message) -> DeliveryResult:
    """2xx sent; 429 throttles the channel; 408/5xx transient; other statuses permanent."""
    status = answer.status
    if 200 <= status < 300:
        return DeliveryResult.sent(message.id, provider_status=str(status))
    detail = f"webhook HTTP {status}: {answer.body[:200].decode('utf-8', 'replace')}"
    if status == 429:
        return DeliveryResult.transient(
            detail, provider_status=str(status), retry_after_s=answer.retry_after_s, throttled=Throttle.CHANNEL
        )
    if status == 408 or status >= 500:
        return DeliveryResult.transient(detail, provider_status=str(status), retry_after_s=answer.retry_after_s)
    return DeliveryResult.permanent(detail, provider_status=str(status))
