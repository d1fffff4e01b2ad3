"""Provider emulators for tests and benchmarks: real aiohttp servers on 127.0.0.1 that check each
request's shape and answer with the providers' documented success and error bodies.

* :class:`WhatsAppEmulator` — Cloud API ``POST /{version}/{phone_number_id}/messages``.
* :class:`TwilioEmulator` — ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form, basic auth).
* :class:`FcmEmulator` — FCM HTTP v1 ``POST /v1/projects/{project}/messages:send``.
* :class:`WebhookReceiver` — records signed webhook posts.

Scripting: by default every well-formed request succeeds. ``emu.script(reply, to=None, times=1)``
queues a canned reply for the next request(s) (to one recipient, or to anyone); the typed helpers
build the documented error bodies (``wa.error(131056)``, ``sms.error(21610)``,
``fcm.error("UNREGISTERED")``). A malformed request is answered 400 and recorded in ``problems`` —
tests assert it stays empty. ``latency_s`` (benchmarks only) delays every answer to model a remote
provider's round trip.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

__all__ = ["Reply", "Recorded", "WhatsAppEmulator", "TwilioEmulator", "FcmEmulator", "WebhookReceiver"]


@dataclass
class Reply:
    """A canned HTTP answer."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """One request as the emulator saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    to: str
    parsed: Any


class _Emulator:
    """Server plumbing shared by the emulators."""

    def __init__(self, *, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.requests: list[Recorded] = []
        self.problems: list[str] = []
        self._script: collections.deque[Reply] = collections.deque()
        self._script_to: dict[str, collections.deque[Reply]] = {}
        self._ids = itertools.count(1)
        self.app = web.Application()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> _Emulator:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY on accept
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> _Emulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def script(self, reply: Reply, *, to: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests (to ``to``, or to anyone) with ``reply``."""
        queue = self._script if to is None else self._script_to.setdefault(to, collections.deque())
        queue.extend([reply] * times)

    def _scripted(self, to: str) -> Reply | None:
        queue = self._script_to.get(to)
        if queue:
            return queue.popleft()
        if self._script:
            return self._script.popleft()
        return None

    def _problem(self, text: str, status: int = 400) -> web.Response:
        self.problems.append(text)
        return web.json_response({"emulator": f"bad request: {text}"}, status=status)

    async def _answer(self, reply: Reply) -> web.Response:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)  # models the provider's round trip (benchmarks)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    def sent_to(self, to: str) -> int:
        """How many requests addressed ``to`` arrived."""
        return sum(1 for r in self.requests if r.to == to)


class WhatsAppEmulator(_Emulator):
    """WhatsApp Cloud API. ``numbers`` maps each phone number id to its access token."""

    def __init__(self, numbers: dict[str, str] | None = None, *, latency_s: float = 0.0) -> None:
        super().__init__(latency_s=latency_s)
        self.numbers = numbers or {"1055501": "wa-token"}
        self.app.router.add_post("/{version}/{phone_number_id}/messages", self._messages)

    def error(
        self,
        code: int,
        *,
        status: int = 400,
        message: str | None = None,
        subcode: int | None = None,
        retry_after: str | None = None,
    ) -> Reply:
        """The Graph API error body for ``code``."""
        titles = {
            130429: "Rate limit hit",
            131056: "(Business Account, Consumer Account) pair rate limit hit",
            131026: "Message undeliverable",
            131047: "Re-engagement message",
            131000: "Something went wrong",
            132001: "Template name does not exist in the translation",
        }
        error: dict[str, Any] = {
            "message": message or f"(#{code}) {titles.get(code, 'Error')}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": titles.get(code, "Error")},
            "fbtrace_id": "AbCdEfGhIjK",
        }
        if subcode is not None:
            error["error_subcode"] = subcode
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return Reply(status, {"error": error}, headers)

    async def _messages(self, request: web.Request) -> web.Response:
        phone_id = request.match_info["phone_number_id"]
        if not request.match_info["version"].startswith("v"):
            return self._problem("version must look like v21.0", 404)
        token = self.numbers.get(phone_id)
        if token is None:
            return self._problem(f"unknown phone number id {phone_id}", 404)
        if request.headers.get("Authorization") != f"Bearer {token}":
            reply = self.error(190, status=401, message="Invalid OAuth access token.")
            self.problems.append("bad token")
            return await self._answer(reply)
        if request.content_type != "application/json":
            return self._problem(f"content type {request.content_type}")
        raw = await request.read()
        try:
            body = await request.json()
        except ValueError:
            return self._problem("body is not JSON")
        problem = _check_whatsapp(body)
        if problem:
            return self._problem(problem)
        to = body["to"]
        self.requests.append(Recorded(request.path, dict(request.headers), raw, to, body))
        reply = self._scripted(to) or Reply(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                "messages": [{"id": f"wamid.HBgLMzQ2MDAxMTEy{next(self._ids):08d}"}],
            },
        )
        return await self._answer(reply)


def _check_whatsapp(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be an object"
    if body.get("messaging_product") != "whatsapp":
        return "messaging_product must be whatsapp"
    if not isinstance(body.get("to"), str) or not body["to"]:
        return "to must be a non-empty string"
    if body.get("type") != "template":
        return "type must be template"
    template = body.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("name"), str):
        return "template.name missing"
    language = template.get("language")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str):
        return "template.language.code missing"
    for component in template.get("components", []):
        if component.get("type") == "button":
            if component.get("sub_type") != "url" or component.get("index") != "0":
                return "url button needs sub_type url and index '0'"
        for parameter in component.get("parameters", []):
            if parameter.get("type") != "text" or not isinstance(parameter.get("text"), str):
                return "parameters must be text"
            if "\n" in parameter["text"] or "\t" in parameter["text"]:
                return "text parameters cannot contain newlines or tabs"
    return None


class TwilioEmulator(_Emulator):
    """Twilio Programmable Messaging (the Messages resource)."""

    def __init__(self, account_sid: str = "AC0123456789abcdef", auth_token: str = "tw-secret", *, latency_s: float = 0.0) -> None:
        super().__init__(latency_s=latency_s)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._messages)

    def error(self, code: int, *, status: int = 400, message: str | None = None, retry_after: str | None = None) -> Reply:
        """The REST API error body for ``code``."""
        messages = {
            21211: "The 'To' number +1555 is not a valid phone number.",
            21610: "Attempt to send to unsubscribed recipient",
            20429: "Too Many Requests",
        }
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return Reply(
            status,
            {
                "code": code,
                "message": message or messages.get(code, "Error"),
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            headers,
        )

    async def _messages(self, request: web.Request) -> web.Response:
        if request.match_info["sid"] != self.account_sid:
            return await self._answer(self.error(20404, status=404, message="The requested resource was not found"))
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            self.problems.append("bad credentials")
            return await self._answer(self.error(20003, status=401, message="Authenticate"))
        if request.content_type != "application/x-www-form-urlencoded":
            return self._problem(f"content type {request.content_type}")
        raw = await request.read()
        form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        if not form.get("To") or not form.get("Body"):
            return self._problem("To and Body are required")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return self._problem("From or MessagingServiceSid is required")
        to = form["To"]
        self.requests.append(Recorded(request.path, dict(request.headers), raw, to, form))
        n = next(self._ids)
        reply = self._scripted(to) or Reply(
            201,
            {
                "sid": f"SM{n:032x}",
                "account_sid": self.account_sid,
                "to": to,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "body": form["Body"],
                "status": "queued",
                "num_segments": "1",
                "api_version": "2010-04-01",
                "error_code": None,
                "error_message": None,
            },
        )
        return await self._answer(reply)


class FcmEmulator(_Emulator):
    """Firebase Cloud Messaging HTTP v1."""

    def __init__(self, project_id: str = "cartwheel-demo", access_token: str = "fcm-token", *, latency_s: float = 0.0) -> None:
        super().__init__(latency_s=latency_s)
        self.project_id = project_id
        self.access_token = access_token
        self.app.router.add_post("/v1/projects/{project}/messages:send", self._send)

    def error(self, error_code: str, *, retry_after: str | None = None) -> Reply:
        """The documented error body for an FcmError ``error_code``."""
        table = {
            "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
            "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"),
            "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded."),
            "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
            "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
            "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
        }
        http, status, message = table[error_code]
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return Reply(
            http,
            {
                "error": {
                    "code": http,
                    "message": message,
                    "status": status,
                    "details": [
                        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
                    ],
                }
            },
            headers,
        )

    async def _send(self, request: web.Request) -> web.Response:
        if request.match_info["project"] != self.project_id:
            return self._problem("unknown project", 404)
        if request.headers.get("Authorization") != f"Bearer {self.access_token}":
            self.problems.append("bad token")
            return web.json_response(
                {"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}},
                status=401,
            )
        raw = await request.read()
        try:
            body = await request.json()
        except ValueError:
            return self._problem("body is not JSON")
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("token"), str):
            return self._problem("message.token is required")
        notification = message.get("notification", {})
        if not isinstance(notification.get("title"), str) or not isinstance(notification.get("body"), str):
            return self._problem("notification title and body must be strings")
        data = message.get("data", {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            return self._problem("data values must be strings")
        to = message["token"]
        self.requests.append(Recorded(request.path, dict(request.headers), raw, to, body))
        reply = self._scripted(to) or Reply(200, {"name": f"projects/{self.project_id}/messages/0:{next(self._ids)}"})
        return await self._answer(reply)


class WebhookReceiver(_Emulator):
    """A shop endpoint recording what cartwheel posts to ``/hook``."""

    def __init__(self) -> None:
        super().__init__()
        self.app.router.add_post("/hook", self._hook)
        self.arrived: asyncio.Queue[Recorded] = asyncio.Queue()

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            parsed = await request.json()
        except ValueError:
            return self._problem("body is not JSON")
        record = Recorded(request.path, dict(request.headers), raw, str(parsed.get("message", {}).get("to", "")), parsed)
        self.requests.append(record)
        self.arrived.put_nowait(record)
        reply = self._scripted(record.to) or Reply(200, {"ok": True})
        return await self._answer(reply)
