"""Channels on odd provider answers and odd data (found by a review against the contract):

* a channel-wide ``Retry-After`` is capped like a message's retry (a day, or ``inf``, held it that long);
* SMTP ``454`` (temporary authentication failure) is retryable;
* an internationalised checkout URL (IDN) does not make every email fail (its List-Unsubscribe header
  is written in ASCII);
* ``still_wanted`` answering an ``int`` time defers the message as a ``float`` does;
* a webhook's headers never carry a cart id's line breaks or non-ASCII characters;
* a rate limit whose next token is short by float rounding does not spin at a frozen clock.
"""
from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult

from channels import (
    DeliveryResult,
    Message,
    Pool,
    Renderer,
    RetryPolicy,
    SmsOptions,
    SmsSender,
    SmtpOptions,
    SmtpSender,
)
from channels.retry import MAX_RETRY_AFTER_S, parse_retry_after

NO_JITTER = RetryPolicy(max_attempts=5, base_s=1.0, max_s=60.0, jitter=0.0)


def sms_sender(api) -> SmsSender:
    return SmsSender(SmsOptions(base_url=api.base_url, account_sid=api.account_sid, auth_token=api.auth_token,
                                from_number="+15005550006"), renderer=Renderer(), timeout_s=5.0)


# -- 1. channel-wide Retry-After is not capped ----------------------------------------------------
async def _throttled_once(twilio_api, clock, results, make_message, retry_after: str) -> Pool:  # type: ignore[no-untyped-def]
    """A pool whose first SMS got a channel-wide 429 with ``Retry-After: retry_after``."""
    twilio_api.script(twilio_api.error(20429, status=429, retry_after=retry_after))
    pool = Pool("sms", sms_sender(twilio_api), clock=clock, on_result=results, retry=NO_JITTER,
                rng=random.Random(1))
    await pool.start()
    pool.offer(make_message(id="a", channel="sms", to="+34600111221"))
    await pool.wait_idle()
    return pool


async def test_channel_throttle_retry_after_is_capped(twilio_api, clock, results, make_message):
    pool = await _throttled_once(twilio_api, clock, results, make_message, "86400")
    assert len(twilio_api.requests) == 1
    clock.advance(3601.0)  # MAX_RETRY_AFTER_S is 3600: "a provider asking for a day is broken"
    await pool.wait_idle()
    await asyncio.sleep(0.05)
    await pool.wait_idle()
    await pool.stop(drain=False)
    assert len(twilio_api.requests) == 2, "the channel is still held for the full day"


async def test_retry_after_inf_stalls_the_channel_forever(twilio_api, clock, results, make_message):
    pool = await _throttled_once(twilio_api, clock, results, make_message, "inf")
    clock.advance(30 * 86400.0)  # a month later
    await pool.wait_idle()
    pool.offer(make_message(id="b", channel="sms", to="+34600111222"))
    await pool.wait_idle()
    await pool.stop(drain=False)
    assert len(twilio_api.requests) == 3, (len(twilio_api.requests), results.outcomes())


# -- 2. SMTP: a temporary AUTH failure (454) is classified permanent --------------------------------
class _AuthHandler:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.auth_attempts = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 2.0.0 Ok: queued"

    def authenticator(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        self.auth_attempts += 1
        return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")


@pytest.fixture
def auth_454_server(start_smtp):  # type: ignore[no-untyped-def]
    handler = _AuthHandler()
    return start_smtp(handler, authenticator=handler.authenticator, auth_required=True, auth_require_tls=False)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_454_temporary_auth_failure_is_transient(auth_454_server, make_message):
    smtp = SmtpSender(SmtpOptions(host="127.0.0.1", port=auth_454_server.port, from_addr="shop@demo.example",
                                  username="u", password="p"), renderer=Renderer(), timeout_s=5.0, pool_size=1)
    result = await smtp.send(make_message())
    await smtp.close()
    assert auth_454_server.handler.auth_attempts >= 1
    assert result.outcome == "failed"
    assert result.retryable, f"454 (4xx, 'try later') classified permanent: {result!r}"


# -- 3. an IDN checkout URL makes every email fail -------------------------------------------------
async def test_idn_checkout_url_email_is_sent(smtp_server, make_message):
    smtp = SmtpSender(SmtpOptions(host="127.0.0.1", port=smtp_server.port, from_addr="shop@demo.example"),
                      renderer=Renderer(), timeout_s=5.0, pool_size=1)
    msg = make_message(to="jane@example.com", checkout_url="https://tienda.españa.es/checkout?cart=c1")
    result = await smtp.send(msg)
    await smtp.close()
    assert result.outcome == "sent", f"{result.outcome}: {result.detail}"


# -- 4. still_wanted returning an int time (a valid ``float`` per PEP 484) cancels the message -------
class _Sink:
    kind = "sink"

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Message) -> DeliveryResult:
        self.sent.append(message)
        return DeliveryResult.sent("ok")

    async def close(self) -> None:
        pass


async def test_still_wanted_int_time_defers_not_cancels(clock, results, make_message):
    later = int(clock.now()) + 60  # e.g. the end of the store's quiet hours, a whole second

    def still_wanted(message: Message):
        return later if clock.now() < later else None

    sink = _Sink()
    pool = Pool("t", sink, clock=clock, on_result=results, still_wanted=still_wanted, retry=NO_JITTER)
    await pool.start()
    pool.offer(make_message(id="q"))
    await pool.wait_idle()
    clock.advance(61.0)
    await pool.wait_idle()
    await pool.stop()
    assert results.of("q").outcome == "sent", f"{results.of('q').outcome}: {results.of('q').detail!r}"


# -- 5. webhook: a valid cart id that is not header-safe -------------------------------------------
from channels import WebhookOptions, WebhookSender  # noqa: E402


@pytest.mark.parametrize("cart", ["c1\r\nX-Injected: 1", "カート-1"])
async def test_webhook_cart_id_in_idempotency_key(webhook_receiver, make_message, cart):
    sender = WebhookSender(WebhookOptions(url=webhook_receiver.url, secret="s3cret"), renderer=Renderer(), timeout_s=5.0)
    msg = make_message(channel="webhook", cart=cart, key=f"demo:{cart}:1:1:webhook")
    try:
        result = await sender.send(msg)
    finally:
        await sender.close()
    assert result.outcome == "sent", result
    rec = webhook_receiver.requests[0]
    assert "X-Injected" not in rec.headers


# -- 6. rate limit: a token short by float rounding makes the dispatcher spin at a frozen clock -----
async def test_rate_limited_pool_goes_idle_after_a_tenth_of_a_second(clock, results, make_message):
    sink = _Sink()
    pool = Pool("t", sink, clock=clock, on_result=results, rate_per_s=10, burst=1, retry=NO_JITTER)
    await pool.start()
    pool.offer(make_message(id="a"))
    pool.offer(make_message(id="b"))
    await pool.wait_idle()
    assert [m.id for m in sink.sent] == ["a"]
    clock.advance(0.1)  # exactly the time one token takes at 10/s
    try:
        await asyncio.wait_for(pool.wait_idle(), 2.0)
        hung = False
    except asyncio.TimeoutError:
        hung = True
    sent = [m.id for m in sink.sent]
    await pool.stop(drain=False)
    assert not hung, f"wait_idle() never returned (dispatcher spinning at a frozen clock); sent={sent}"
    assert sent == ["a", "b"]


def test_a_retry_after_that_is_not_a_finite_number_is_unreadable() -> None:
    assert parse_retry_after("inf") is None and parse_retry_after("nan") is None and parse_retry_after("-inf") is None
    assert parse_retry_after("120") == 120.0 and MAX_RETRY_AFTER_S == 3600.0
