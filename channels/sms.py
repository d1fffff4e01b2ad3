"""SMS through a Twilio-style Messages API.

Request: ``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json``, HTTP basic auth
``account_sid:auth_token``, form-encoded ``To``, ``Body`` and either ``From`` (a number) or
``MessagingServiceSid``. A store may send from its own number with ``Message.extra["sms_from"]``.

Answers. Success (201) is the message resource ``{"sid": "SM...", "status": "queued", ...}``; an
error is ``{"code": 21211, "message": "...", "more_info": "https://...", "status": 400}``:

=============================  =======================================================
code / HTTP status             result
=============================  =======================================================
HTTP 429, 20429                too many requests → transient, whole channel waits (Retry-After)
21610                          recipient unsubscribed (replied STOP) → permanent, opt-out
21211, 21614                   invalid 'To' / not a mobile number → permanent, invalidate contact
HTTP 5xx                       transient
others (21408, 21612, 20003)   permanent (region not enabled, unroutable, bad credentials...)
=============================  =======================================================
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from urllib.parse import urlencode

from channels._config import TableReader
from channels._http import HttpAnswer, HttpChannel
from channels.message import DeliveryResult, Message, Throttle
from channels.render import Renderer, RenderError

__all__ = ["SmsOptions", "SmsSender", "classify_twilio", "TWILIO_API_URL"]

TWILIO_API_URL = "https://api.twilio.com"
_SID_RE = re.compile(r"^[A-Za-z0-9]{2,64}$")
_INVALID_NUMBER = {21211, 21614}


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsOptions:
    """The ``sms`` kind's keys."""

    base_url: str = TWILIO_API_URL
    account_sid: str
    auth_token: str
    from_number: str | None = None
    messaging_service_sid: str | None = None

    @classmethod
    def from_reader(cls, r: TableReader) -> SmsOptions:
        """Read and validate the kind's keys."""
        base_url = r.str("base_url", TWILIO_API_URL) or TWILIO_API_URL
        if not base_url.startswith(("http://", "https://")):
            raise r.error("base_url", "an http(s) URL", base_url)
        sid = r.str("account_sid", required=True, hint='the account SID, e.g. "AC..."')
        assert sid is not None
        if not _SID_RE.match(sid):
            raise r.error("account_sid", "letters and digits only", sid)
        token = r.str("auth_token", required=True, secret=True, hint="the account's auth token")
        assert token is not None
        from_number = r.str("from", None)
        service = r.str("messaging_service_sid", None)
        if not from_number and not service:
            raise r.error("from", 'a sender number (or set "messaging_service_sid" instead)', None, show=False)
        return cls(
            base_url=base_url.rstrip("/"),
            account_sid=sid,
            auth_token=token,
            from_number=from_number,
            messaging_service_sid=service,
        )


class SmsSender(HttpChannel):
    """Sends one SMS per message; see the module docstring."""

    kind = "sms"

    def __init__(self, options: SmsOptions, *, renderer: Renderer, timeout_s: float = 10.0, concurrency: int = 8) -> None:
        super().__init__(timeout_s=timeout_s, concurrency=concurrency)
        self.options = options
        self.renderer = renderer
        # Built by hand: aiohttp.BasicAuth is deprecated in recent aiohttp releases.
        credentials = f"{options.account_sid}:{options.auth_token}".encode()
        self._auth = {"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}
        self._url = f"{options.base_url}/2010-04-01/Accounts/{options.account_sid}/Messages.json"

    def form(self, message: Message) -> dict[str, str]:
        """The form fields for ``message`` (raises :class:`RenderError`)."""
        fields = {"To": message.to, "Body": self.renderer.sms(message)}
        store_from = message.extra.get("sms_from")
        if isinstance(store_from, str) and store_from:
            fields["From"] = store_from
        elif self.options.messaging_service_sid:
            fields["MessagingServiceSid"] = self.options.messaging_service_sid
        else:
            fields["From"] = self.options.from_number or ""
        return fields

    async def send(self, message: Message) -> DeliveryResult:
        """One Messages API request."""
        try:
            body = urlencode(self.form(message)).encode()
        except RenderError as exc:
            return DeliveryResult.permanent(f"render: {exc}")
        answer = await self._post(
            self._url, body=body, content_type="application/x-www-form-urlencoded", headers=self._auth
        )
        if isinstance(answer, DeliveryResult):
            return answer
        return classify_twilio(answer)


def classify_twilio(answer: HttpAnswer) -> DeliveryResult:
    """Turn a Messages API response into a result (table in the module docstring)."""
    data = answer.json()
    status = answer.status
    if 200 <= status < 300:
        sid = str(data.get("sid") or "") if isinstance(data, dict) else ""
        return DeliveryResult.sent(sid, provider_status=str(status))
    code = None
    text = f"HTTP {status}"
    if isinstance(data, dict):
        try:
            code = int(data.get("code"))
        except (TypeError, ValueError):
            code = None
        text = str(data.get("message") or text)[:300]
    provider_status = str(code if code is not None else status)
    detail = f"twilio {provider_status}: {text}"
    if status == 429 or code == 20429:
        return DeliveryResult.transient(
            detail, provider_status=provider_status, retry_after_s=answer.retry_after_s, throttled=Throttle.CHANNEL
        )
    if code == 21610:
        return DeliveryResult.permanent(detail, provider_status=provider_status, opt_out=True)
    if code in _INVALID_NUMBER:
        return DeliveryResult.permanent(detail, provider_status=provider_status, invalidate_contact=True)
    if status >= 500:
        return DeliveryResult.transient(detail, provider_status=provider_status, retry_after_s=answer.retry_after_s)
    return DeliveryResult.permanent(detail, provider_status=provider_status)
