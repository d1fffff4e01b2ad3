"""Push notifications through FCM HTTP v1.

Request: ``POST {base_url}/v1/projects/{project_id}/messages:send`` with ``Authorization: Bearer
{access_token}`` and ``{"message": {"token": <device token>, "notification": {"title", "body"},
"data": {"url", "message_id", "store", "cart"}}}`` (FCM data values must be strings).

The access token is taken as configured: minting OAuth2 tokens from a service account needs a
signing library cartwheel does not ship; a deployment refreshes ``access_token`` from outside.

Answers. Success is ``{"name": "projects/<p>/messages/<id>"}``; an error is ``{"error": {"code",
"message", "status", "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
"errorCode": ...}]}}``. The FcmError ``errorCode`` decides when present, else ``status``:

=====================================  ==================================================
errorCode / status                     result
=====================================  ==================================================
UNREGISTERED (404), SENDER_ID_MISMATCH  token dead or not ours → permanent, invalidate contact
QUOTA_EXCEEDED (429)                   transient, whole channel waits (Retry-After)
UNAVAILABLE (503), INTERNAL (500)      transient (Retry-After)
INVALID_ARGUMENT (400)                 permanent
THIRD_PARTY_AUTH_ERROR, UNAUTHENTICATED, PERMISSION_DENIED   permanent (credentials)
other HTTP 5xx / 429                   transient
=====================================  ==================================================
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from channels._config import TableReader
from channels._http import HttpAnswer, HttpChannel, json_body
from channels.message import DeliveryResult, Message, Throttle
from channels.render import Renderer, RenderError

__all__ = ["PushOptions", "PushSender", "classify_fcm", "FCM_API_URL"]

FCM_API_URL = "https://fcm.googleapis.com"
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_INVALID_TOKEN = {"UNREGISTERED", "SENDER_ID_MISMATCH"}
_TRANSIENT = {"UNAVAILABLE", "INTERNAL"}


@dataclass(frozen=True, slots=True, kw_only=True)
class PushOptions:
    """The ``push`` kind's keys."""

    base_url: str = FCM_API_URL
    project_id: str
    access_token: str

    @classmethod
    def from_reader(cls, r: TableReader) -> PushOptions:
        """Read and validate the kind's keys."""
        base_url = r.str("base_url", FCM_API_URL) or FCM_API_URL
        if not base_url.startswith(("http://", "https://")):
            raise r.error("base_url", "an http(s) URL", base_url)
        project = r.str("project_id", required=True, hint="the Firebase project id")
        assert project is not None
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", project):
            raise r.error("project_id", "a Firebase project id (lowercase letters, digits, hyphens)", project)
        token = r.str("access_token", required=True, secret=True, hint="an OAuth2 access token")
        assert token is not None
        return cls(base_url=base_url.rstrip("/"), project_id=project, access_token=token)


class PushSender(HttpChannel):
    """Sends one FCM notification per message; see the module docstring."""

    kind = "push"

    def __init__(self, options: PushOptions, *, renderer: Renderer, timeout_s: float = 10.0, concurrency: int = 8) -> None:
        super().__init__(timeout_s=timeout_s, concurrency=concurrency)
        self.options = options
        self.renderer = renderer
        self._url = f"{options.base_url}/v1/projects/{options.project_id}/messages:send"

    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON request body for ``message`` (raises :class:`RenderError`)."""
        rendered = self.renderer.push(message)
        return {
            "message": {
                "token": message.to,
                "notification": {"title": rendered.title, "body": rendered.body},
                "data": {"url": rendered.url, "message_id": message.id, "store": message.store, "cart": message.cart},
            }
        }

    async def send(self, message: Message) -> DeliveryResult:
        """One messages:send request."""
        if message.to.startswith("{"):  # a Web Push subscription (endpoint and keys), not an FCM token
            return DeliveryResult.permanent(
                "the profile's push contact is a Web Push subscription; the FCM channel needs a registration "
                "token (a webhook channel can take subscriptions)",
                invalidate_contact=True,
            )
        try:
            body = json_body(self.payload(message))
        except RenderError as exc:
            return DeliveryResult.permanent(f"render: {exc}")
        answer = await self._post(
            self._url,
            body=body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {self.options.access_token}"},
        )
        if isinstance(answer, DeliveryResult):
            return answer
        return classify_fcm(answer)


def classify_fcm(answer: HttpAnswer) -> DeliveryResult:
    """Turn an FCM v1 response into a result (table in the module docstring)."""
    data = answer.json()
    status = answer.status
    if 200 <= status < 300:
        name = str(data.get("name") or "") if isinstance(data, dict) else ""
        return DeliveryResult.sent(name, provider_status=str(status))
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else {}
    code = ""
    details = error.get("details")
    if isinstance(details, list):
        for item in details:
            if isinstance(item, dict) and item.get("@type") == _FCM_ERROR_TYPE and item.get("errorCode"):
                code = str(item["errorCode"])
                break
    code = code or str(error.get("status") or "")
    text = str(error.get("message") or f"HTTP {status}")[:300]
    provider_status = code or str(status)
    detail = f"fcm {provider_status}: {text}"
    if code in _INVALID_TOKEN:
        return DeliveryResult.permanent(detail, provider_status=provider_status, invalidate_contact=True)
    if code == "QUOTA_EXCEEDED" or status == 429:
        return DeliveryResult.transient(
            detail, provider_status=provider_status, retry_after_s=answer.retry_after_s, throttled=Throttle.CHANNEL
        )
    if code in _TRANSIENT or status >= 500:
        return DeliveryResult.transient(detail, provider_status=provider_status, retry_after_s=answer.retry_after_s)
    return DeliveryResult.permanent(detail, provider_status=provider_status)
