"""Fixtures for the channels tests: a manual clock, a recording SMTP server (aiosmtpd on a free
port), the provider emulators, a message factory and a result collector."""
from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from emulators import FcmEmulator, TwilioEmulator, WebhookReceiver, WhatsAppEmulator

from channels import DeliveryResult, Message

START = 1_700_000_000.0


class ManualClock:
    """Time that moves only when a test calls :meth:`advance`; sleepers wake when passed."""

    def __init__(self, start: float = START) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._seq), future))
        await future

    def advance(self, seconds: float) -> float:
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        return self._now


class Results:
    """Collects ``on_result`` calls."""

    def __init__(self) -> None:
        self.items: list[tuple[Message, DeliveryResult]] = []

    def __call__(self, message: Message, result: DeliveryResult) -> None:
        self.items.append((message, result))

    def outcomes(self) -> list[str]:
        return [str(r.outcome) for _, r in self.items]

    def of(self, message_id: str) -> DeliveryResult:
        matches = [r for m, r in self.items if m.id == message_id]
        assert len(matches) == 1, f"{message_id}: {len(matches)} results"
        return matches[0]

    def ids(self, outcome: str | None = None) -> list[str]:
        return [m.id for m, r in self.items if outcome is None or r.outcome == outcome]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def results() -> Results:
    return Results()


_ids = itertools.count(1)


@pytest.fixture
def make_message() -> Callable[..., Message]:
    """``make_message(to=..., channel=..., **fields)`` with realistic defaults."""

    def make(**fields: Any) -> Message:
        n = next(_ids)
        base: dict[str, Any] = {
            "id": f"m{n}",
            "key": f"demo:c{n}:1:1:{fields.get('channel', 'email')}",
            "channel": "email",
            "store": "demo",
            "store_name": "Demo Shop",
            "cart": f"c{n}",
            "profile": f"p{n}",
            "run": 1,
            "step": 1,
            "to": f"shopper{n}@example.com",
            "locale": "en",
            "items": [
                {"sku": "MUG-1", "name": "Blue mug", "qty": 2, "price": 12.5, "url": "https://shop.example/p/mug",
                 "image": "https://cdn.example/mug.png"},
                {"sku": "TEE-9", "name": "Logo tee", "qty": 1, "price": 20},
            ],
            "value": 45.0,
            "currency": "EUR",
            "checkout_url": "https://shop.example/checkout?cart=c1&utm_source=cw",
            "template": "reminder",
            "created_at": START,
        }
        base.update(fields)
        return Message(**base)

    return make


# -- SMTP ------------------------------------------------------------------------------------------
class RecordingHandler:
    """aiosmtpd handler recording accepted messages; ``script[phase]`` holds replies to use instead.

    A scripted reply is an SMTP status line ("451 4.3.0 Try again later") or "drop" (close the
    connection without answering). Phases: "RCPT", "DATA".
    """

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.script: dict[str, collections.deque[str]] = {"RCPT": collections.deque(), "DATA": collections.deque()}
        self.sessions = 0
        self.transactions = 0
        #: transports of the sessions seen (server thread only; tests close them through the loop)
        self.transports: list[Any] = []

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        self.sessions += 1
        self.transports.append(server.transport)
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if self.script["RCPT"]:
            action = self.script["RCPT"].popleft()
            if action == "drop":
                server.transport.close()
                return "421 closing"
            return action
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.transactions += 1
        if self.script["DATA"]:
            action = self.script["DATA"].popleft()
            if action == "drop":
                server.transport.close()
                return "421 closing"
            return action
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"


class _BoundController(Controller):
    """Controller serving on a socket bound beforehand to port 0 (no port guessing, no races)."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when proto says TCP
        # (with proto 0, Nagle + delayed ACKs add ~40 ms per SMTP connection).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self._sock.getsockname()[1],
                         server_hostname="mx.test.local", **kwargs)  # no getfqdn() DNS lookup per connection

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)

    def stop(self, no_assert: bool = False) -> None:
        super().stop(no_assert)
        self.loop.close()


@pytest.fixture
def start_smtp() -> Iterator[Any]:
    """``start_smtp(handler, **controller_kwargs)``: a real SMTP server with that handler (its own
    thread), stopped at teardown."""
    started: list[_BoundController] = []

    def start(handler: Any, **kwargs: Any) -> _BoundController:
        controller = _BoundController(handler, **kwargs)
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[_BoundController]:
    """A real SMTP server on 127.0.0.1 (its own thread); ``.handler`` records and scripts."""
    controller = _BoundController(RecordingHandler())
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


# -- HTTP providers ---------------------------------------------------------------------------------
@pytest.fixture
async def whatsapp_api() -> AsyncIterator[WhatsAppEmulator]:
    emulator = WhatsAppEmulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.close()


@pytest.fixture
async def twilio_api() -> AsyncIterator[TwilioEmulator]:
    emulator = TwilioEmulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.close()


@pytest.fixture
async def fcm_api() -> AsyncIterator[FcmEmulator]:
    emulator = FcmEmulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.close()


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.close()
