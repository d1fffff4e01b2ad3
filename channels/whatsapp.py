"""WhatsApp through the Cloud API: one approved template message per recovery step.

Request: ``POST {base_url}/{api_version}/{phone_number_id}/messages`` with ``Authorization: Bearer
{token}`` and a JSON body::

    {"messaging_product": "whatsapp", "to": "+34600111221", "type": "template",
     "template": {"name": "cart_reminder", "language": {"code": "es"},
                  "components": [{"type": "body", "parameters": [{"type": "text", "text": ...}, ...]},
                                 {"type": "button", "sub_type": "url", "index": "0",
                                  "parameters": [{"type": "text", "text": "<resume link suffix>"}]}]}}

The phone number id and token belong to the store (a store's own WhatsApp Business number):
``Message.extra["whatsapp"] = {"phone_number_id": ..., "token": ...}``, falling back to the
channel's own ``phone_number_id``/``token`` keys (single-tenant set-ups). Template names per step
come from the channel's ``template`` table (DESIGN.md's name; ``templates`` is accepted too), keyed by
step number (``"2" = "cart_reminder_2"``) or by the step's template (``reminder``, ``incentive``,
``urgency``, ``final``): a step number wins; body parameters are described in
:meth:`channels.render.Renderer.whatsapp`.

Answers. Success is ``{"messages": [{"id": "wamid..."}]}``; an error is
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``, classified by ``code``
(documented codes; HTTP status only as a fallback):

========================  ===========================================================
code                      meaning → result
========================  ===========================================================
130429, 4, 80007          throughput / app / account rate limit → transient, whole channel waits
131056                    pair rate limit (this user messaged too often) → transient, this recipient waits
131048                    spam rate limit → transient, whole channel waits
131026                    message undeliverable (not on WhatsApp, old app...) → permanent, invalidate contact
131050                    user stopped marketing messages → permanent, opt-out
131047                    re-engagement window closed (free-form only) → permanent
131049                    Meta chose not to deliver (per-user marketing limit) → permanent
1, 2, 131000, 131016,     unknown / service unavailable → transient
133004
others                    permanent (bad template, parameters, token, permissions)
========================  ===========================================================
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from channels._config import TableReader
from channels._http import HttpAnswer, HttpChannel, json_body
from channels.message import DeliveryResult, Message, Throttle
from channels.render import Renderer, RenderError

__all__ = ["WhatsAppOptions", "WhatsAppSender", "classify_whatsapp", "GRAPH_API_URL"]

GRAPH_API_URL = "https://graph.facebook.com"
DEFAULT_TEMPLATES = {
    "reminder": "cart_reminder",
    "incentive": "cart_incentive",
    "urgency": "cart_urgency",
    "final": "cart_final",
}
_THROTTLE_CHANNEL = {4, 80007, 130429, 131048}
_TRANSIENT = {1, 2, 131000, 131016, 133004}
_PHONE_ID_RE = re.compile(r"^[0-9]{1,32}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class WhatsAppOptions:
    """The ``whatsapp`` kind's keys."""

    base_url: str = GRAPH_API_URL
    api_version: str = "v21.0"
    #: step number ("2") or recovery step template ("reminder") → approved WhatsApp template name
    templates: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    #: language ("en") → WhatsApp language code ("en_US"); unlisted languages are sent as they are
    languages: Mapping[str, str] = field(default_factory=dict)
    phone_number_id: str | None = None
    token: str | None = None

    @classmethod
    def from_reader(cls, r: TableReader) -> WhatsAppOptions:
        """Read and validate the kind's keys."""
        base_url = r.str("base_url", GRAPH_API_URL, hint="an http(s) URL") or GRAPH_API_URL
        if not base_url.startswith(("http://", "https://")):
            raise r.error("base_url", "an http(s) URL", base_url)
        api_version = r.str("api_version", "v21.0") or "v21.0"
        if not re.fullmatch(r"v\d+(\.\d+)?", api_version):
            raise r.error("api_version", 'a Graph API version like "v21.0"', api_version)
        phone_number_id = r.str("phone_number_id", None)
        if phone_number_id is not None and not _PHONE_ID_RE.match(phone_number_id):
            raise r.error("phone_number_id", "the numeric WhatsApp phone number id", phone_number_id)
        return cls(
            base_url=base_url.rstrip("/"),
            api_version=api_version,
            templates={**DEFAULT_TEMPLATES, **r.str_table("templates"), **r.str_table("template")},
            languages=r.str_table("languages"),
            phone_number_id=phone_number_id,
            token=r.str("token", None, secret=True),
        )


class WhatsAppSender(HttpChannel):
    """Sends template messages through the WhatsApp Cloud API; see the module docstring."""

    kind = "whatsapp"

    def __init__(
        self, options: WhatsAppOptions, *, renderer: Renderer, timeout_s: float = 10.0, concurrency: int = 8
    ) -> None:
        super().__init__(timeout_s=timeout_s, concurrency=concurrency)
        self.options = options
        self.renderer = renderer

    def _credentials(self, message: Message) -> tuple[str, str] | str:
        store = message.extra.get("whatsapp")
        store = store if isinstance(store, Mapping) else {}
        phone_id = store.get("phone_number_id") or message.extra.get("whatsapp_phone_number_id") or self.options.phone_number_id
        token = store.get("token") or message.extra.get("whatsapp_token") or self.options.token
        if not phone_id or not token:
            return f"store {message.store} has no WhatsApp phone_number_id/token configured"
        phone_id = str(phone_id)
        if not _PHONE_ID_RE.match(phone_id):
            return f"store {message.store}: WhatsApp phone_number_id must be numeric"
        return phone_id, str(token)

    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON request body for ``message`` (raises :class:`RenderError`)."""
        rendered = self.renderer.whatsapp(message)
        templates = self.options.templates
        name = templates.get(str(message.step)) or templates.get(message.template)
        if not name:
            raise RenderError(f"no WhatsApp template configured for step template {message.template!r}")
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.to,
            "type": "template",
            "template": {
                "name": name,
                "language": {"code": self.options.languages.get(rendered.language, rendered.language)},
                "components": [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": text} for text in rendered.body_parameters],
                    },
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": "0",
                        "parameters": [{"type": "text", "text": rendered.button_suffix}],
                    },
                ],
            },
        }

    async def send(self, message: Message) -> DeliveryResult:
        """One Cloud API request; see the module docstring for the classification."""
        credentials = self._credentials(message)
        if isinstance(credentials, str):
            return DeliveryResult.permanent(credentials)
        phone_id, token = credentials
        try:
            body = json_body(self.payload(message))
        except RenderError as exc:
            return DeliveryResult.permanent(f"render: {exc}")
        url = f"{self.options.base_url}/{self.options.api_version}/{phone_id}/messages"
        answer = await self._post(
            url, body=body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
        )
        if isinstance(answer, DeliveryResult):
            return answer
        return classify_whatsapp(answer)


def classify_whatsapp(answer: HttpAnswer) -> DeliveryResult:
    """Turn a Cloud API response into a result (table in the module docstring)."""
    data = answer.json()
    status = answer.status
    if 200 <= status < 300:
        message_id = ""
        if isinstance(data, dict):
            messages = data.get("messages")
            if isinstance(messages, list) and messages and isinstance(messages[0], dict):
                message_id = str(messages[0].get("id") or "")
        return DeliveryResult.sent(message_id, provider_status=str(status))
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else {}
    try:
        code = int(error.get("code"))
    except (TypeError, ValueError):
        code = None
    text = str(error.get("message") or f"HTTP {status}")[:300]
    provider_status = str(code if code is not None else status)
    detail = f"whatsapp {provider_status}: {text}"
    if code in _THROTTLE_CHANNEL:
        return DeliveryResult.transient(
            detail, provider_status=provider_status, retry_after_s=answer.retry_after_s, throttled=Throttle.CHANNEL
        )
    if code == 131056:
        return DeliveryResult.transient(
            detail, provider_status=provider_status, retry_after_s=answer.retry_after_s, throttled=Throttle.RECIPIENT
        )
    if code == 131026:
        return DeliveryResult.permanent(detail, provider_status=provider_status, invalidate_contact=True)
    if code == 131050:
        return DeliveryResult.permanent(detail, provider_status=provider_status, opt_out=True)
    if code in _TRANSIENT:
        return DeliveryResult.transient(detail, provider_status=provider_status, retry_after_s=answer.retry_after_s)
    if code is None and (status >= 500 or status == 429):
        return DeliveryResult.transient(
            detail,
            provider_status=provider_status,
            retry_after_s=answer.retry_after_s,
            throttled=Throttle.CHANNEL if status == 429 else None,
        )
    return DeliveryResult.permanent(detail, provider_status=provider_status)
