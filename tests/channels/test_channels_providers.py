"""WhatsApp Cloud API, Twilio SMS and FCM v1 senders against loopback emulators: request shapes and
every documented error mapping."""
from __future__ import annotations

import base64
import random
import socket

import pytest

from channels import (
    Pool,
    PushOptions,
    PushSender,
    Renderer,
    RetryPolicy,
    SmsOptions,
    SmsSender,
    Throttle,
    WhatsAppOptions,
    WhatsAppSender,
)

STORE_WA = {"whatsapp": {"phone_number_id": "1055501", "token": "wa-token"}}


def wa_sender(api) -> WhatsAppSender:
    return WhatsAppSender(WhatsAppOptions(base_url=api.base_url, api_version="v21.0", languages={"en": "en_US"}),
                          renderer=Renderer(), timeout_s=5.0)


def sms_sender(api, **options) -> SmsSender:
    options.setdefault("from_number", "+15005550006")
    return SmsSender(SmsOptions(base_url=api.base_url, account_sid=api.account_sid, auth_token=api.auth_token, **options),
                     renderer=Renderer(), timeout_s=5.0)


def push_sender(api) -> PushSender:
    return PushSender(PushOptions(base_url=api.base_url, project_id=api.project_id, access_token=api.access_token),
                      renderer=Renderer(), timeout_s=5.0)


def wa_message(make_message, **fields):
    fields.setdefault("to", "+34600111221")
    return make_message(channel="whatsapp", extra=dict(STORE_WA), **fields)


# -- WhatsApp ---------------------------------------------------------------------------------------
async def test_whatsapp_sends_a_template_message(whatsapp_api, make_message):
    sender = wa_sender(whatsapp_api)
    result = await sender.send(wa_message(make_message, id="w1", template="incentive",
                                          incentive={"kind": "free_shipping"}))
    await sender.close()
    assert result.ok and result.detail.startswith("wamid.")
    assert whatsapp_api.problems == []
    (request,) = whatsapp_api.requests
    assert request.path == "/v21.0/1055501/messages"
    assert request.headers["Authorization"] == "Bearer wa-token"
    template = request.parsed["template"]
    assert template["name"] == "cart_incentive" and template["language"] == {"code": "en_US"}
    body, button = template["components"]
    assert [p["text"] for p in body["parameters"]] == [
        "Demo Shop", "Blue mug and 1 more item(s)", "€45.00", "Free shipping on this order."
    ]
    assert button["sub_type"] == "url" and button["index"] == "0"
    assert button["parameters"] == [{"type": "text", "text": "checkout?cart=c1&utm_source=cw&cw_mid=w1"}]


@pytest.mark.parametrize(
    ("code", "status", "retryable", "throttled", "invalidate"),
    [
        (130429, 429, True, Throttle.CHANNEL, False),  # throughput rate limit
        (131056, 400, True, Throttle.RECIPIENT, False),  # pair rate limit
        (131026, 400, False, None, True),  # message undeliverable
        (131047, 400, False, None, False),  # re-engagement window (free-form)
        (131000, 500, True, None, False),  # something went wrong
        (132001, 404, False, None, False),  # template does not exist
    ],
)
async def test_whatsapp_error_mapping(whatsapp_api, make_message, code, status, retryable, throttled, invalidate):
    whatsapp_api.script(whatsapp_api.error(code, status=status, retry_after="3" if status == 429 else None))
    sender = wa_sender(whatsapp_api)
    result = await sender.send(wa_message(make_message))
    await sender.close()
    assert result.outcome == "failed"
    assert result.provider_status == str(code)
    assert result.retryable is retryable and result.throttled == throttled
    assert result.invalidate_contact is invalidate
    assert str(code) in result.detail
    if status == 429:
        assert result.retry_after_s == 3.0


async def test_whatsapp_rate_limit_backs_off_through_the_pool(whatsapp_api, clock, results, make_message):
    whatsapp_api.script(whatsapp_api.error(130429, status=429, retry_after="4"))
    pool = Pool("whatsapp", wa_sender(whatsapp_api), clock=clock, on_result=results, concurrency=1,
                retry=RetryPolicy(jitter=0.0), rng=random.Random(0))
    await pool.start()
    pool.offer(wa_message(make_message, id="w1", to="+34600000001"))
    await pool.wait_idle()
    pool.offer(wa_message(make_message, id="w2", to="+34600000002"))
    clock.advance(3.5)
    await pool.wait_idle()
    assert len(whatsapp_api.requests) == 1  # w2 waits for the channel-wide Retry-After as well
    assert results.items == []
    clock.advance(0.5)
    await pool.wait_idle()
    assert results.ids("sent") == ["w1", "w2"] and results.of("w1").attempts == 2
    assert len(whatsapp_api.requests) == 3
    await pool.stop()


async def test_whatsapp_pair_rate_limit_waits_for_the_recipient_only(whatsapp_api, clock, results, make_message):
    whatsapp_api.script(whatsapp_api.error(131056), to="+34600000001")
    pool = Pool("whatsapp", wa_sender(whatsapp_api), clock=clock, on_result=results, pair_interval_s=6.0,
                retry=RetryPolicy(jitter=0.0), rng=random.Random(0))
    await pool.start()
    pool.offer(wa_message(make_message, id="p1", to="+34600000001"))
    await pool.wait_idle()
    pool.offer(wa_message(make_message, id="p2", to="+34600000002"))
    pool.offer(wa_message(make_message, id="p3", to="+34600000001"))
    await pool.wait_idle()
    assert results.ids("sent") == ["p2"]
    clock.advance(6.0)
    await pool.wait_idle()
    assert results.ids("sent") == ["p2", "p1"]  # p1 retried; p3 waits another pair interval
    clock.advance(6.0)
    await pool.wait_idle()
    assert results.ids("sent") == ["p2", "p1", "p3"]
    await pool.stop()


async def test_whatsapp_undeliverable_user_is_never_messaged_again(whatsapp_api, clock, results, make_message):
    whatsapp_api.script(whatsapp_api.error(131026), to="+34600999999")
    pool = Pool("whatsapp", wa_sender(whatsapp_api), clock=clock, on_result=results)
    await pool.start()
    pool.offer(wa_message(make_message, id="u1", to="+34600999999"))
    await pool.wait_idle()
    clock.advance(3600.0)
    pool.offer(wa_message(make_message, id="u2", to="+34600999999", template="final"))
    await pool.wait_idle()
    assert results.of("u1").invalidate_contact and results.of("u2").outcome == "cancelled"
    assert whatsapp_api.sent_to("+34600999999") == 1  # the first request only
    await pool.stop()


async def test_whatsapp_without_store_credentials_is_permanent(whatsapp_api, make_message):
    sender = wa_sender(whatsapp_api)
    result = await sender.send(make_message(channel="whatsapp", to="+34600111221"))
    await sender.close()
    assert result.outcome == "failed" and not result.retryable and "phone_number_id" in result.detail
    assert whatsapp_api.requests == []


# -- SMS ----------------------------------------------------------------------------------------------
async def test_sms_posts_the_form_with_basic_auth(twilio_api, make_message):
    sender = sms_sender(twilio_api)
    result = await sender.send(make_message(channel="sms", to="+34600111221", locale="es"))
    await sender.close()
    assert result.ok and result.detail.startswith("SM")
    assert twilio_api.problems == []
    (request,) = twilio_api.requests
    assert request.path == f"/2010-04-01/Accounts/{twilio_api.account_sid}/Messages.json"
    expected = base64.b64encode(f"{twilio_api.account_sid}:{twilio_api.auth_token}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    form = request.parsed
    assert form["To"] == "+34600111221" and form["From"] == "+15005550006"
    assert "Demo Shop" in form["Body"] and "cw_mid=" in form["Body"] and "carrito" in form["Body"]


async def test_sms_messaging_service(twilio_api, make_message):
    sender = sms_sender(twilio_api, from_number=None, messaging_service_sid="MG123")
    result = await sender.send(make_message(channel="sms", to="+34600111221"))
    await sender.close()
    assert result.ok and twilio_api.requests[0].parsed["MessagingServiceSid"] == "MG123"
    assert "From" not in twilio_api.requests[0].parsed


@pytest.mark.parametrize(
    ("code", "status", "retryable", "opt_out", "invalidate"),
    [
        (20429, 429, True, False, False),  # too many requests
        (21610, 400, False, True, False),  # unsubscribed recipient
        (21211, 400, False, False, True),  # invalid 'To' number
        (21408, 400, False, False, False),  # region not enabled
        (20500, 500, True, False, False),  # internal server error
    ],
)
async def test_sms_error_mapping(twilio_api, make_message, code, status, retryable, opt_out, invalidate):
    twilio_api.script(twilio_api.error(code, status=status, retry_after="2" if status == 429 else None))
    sender = sms_sender(twilio_api)
    result = await sender.send(make_message(channel="sms", to="+34600111221"))
    await sender.close()
    assert result.outcome == "failed" and result.provider_status == str(code)
    assert result.retryable is retryable and result.opt_out is opt_out and result.invalidate_contact is invalidate
    if status == 429:
        assert result.throttled == Throttle.CHANNEL and result.retry_after_s == 2.0


async def test_sms_429_with_retry_after_through_the_pool(twilio_api, clock, results, make_message):
    twilio_api.script(twilio_api.error(20429, status=429, retry_after="10"))
    pool = Pool("sms", sms_sender(twilio_api), clock=clock, on_result=results,
                retry=RetryPolicy(jitter=0.0), rng=random.Random(0))
    await pool.start()
    pool.offer(make_message(id="s1", channel="sms", to="+34600111221"))
    await pool.wait_idle()
    clock.advance(9.0)
    await pool.wait_idle()
    assert results.items == []
    clock.advance(1.0)
    await pool.wait_idle()
    assert results.of("s1").ok and results.of("s1").attempts == 2
    await pool.stop()


async def test_sms_opt_out_blocks_the_number(twilio_api, clock, results, make_message):
    twilio_api.script(twilio_api.error(21610), to="+34600111221")
    pool = Pool("sms", sms_sender(twilio_api), clock=clock, on_result=results)
    await pool.start()
    pool.offer(make_message(id="o1", channel="sms", to="+34600111221"))
    await pool.wait_idle()
    pool.offer(make_message(id="o2", channel="sms", to="+34600111221"))
    await pool.wait_idle()
    assert results.of("o1").opt_out and results.of("o2").outcome == "cancelled"
    assert len(twilio_api.requests) == 1
    await pool.stop()


# -- Push (FCM v1) ----------------------------------------------------------------------------------
async def test_push_sends_notification_and_string_data(fcm_api, make_message):
    sender = push_sender(fcm_api)
    result = await sender.send(make_message(id="n1", channel="push", to="device-token-1"))
    await sender.close()
    assert result.ok and result.detail.startswith(f"projects/{fcm_api.project_id}/messages/")
    assert fcm_api.problems == []
    (request,) = fcm_api.requests
    assert request.headers["Authorization"] == f"Bearer {fcm_api.access_token}"
    message = request.parsed["message"]
    assert message["token"] == "device-token-1"
    assert message["notification"]["title"] == "Demo Shop: your cart is waiting"
    assert message["data"]["url"].endswith("cw_mid=n1") and message["data"]["message_id"] == "n1"


@pytest.mark.parametrize(
    ("code", "retryable", "invalidate", "throttled"),
    [
        ("UNREGISTERED", False, True, None),
        ("SENDER_ID_MISMATCH", False, True, None),
        ("QUOTA_EXCEEDED", True, False, Throttle.CHANNEL),
        ("UNAVAILABLE", True, False, None),
        ("INTERNAL", True, False, None),
        ("INVALID_ARGUMENT", False, False, None),
    ],
)
async def test_push_error_mapping(fcm_api, make_message, code, retryable, invalidate, throttled):
    fcm_api.script(fcm_api.error(code, retry_after="30" if retryable else None))
    sender = push_sender(fcm_api)
    result = await sender.send(make_message(channel="push", to="device-token-1"))
    await sender.close()
    assert result.outcome == "failed" and result.provider_status == code
    assert result.retryable is retryable and result.invalidate_contact is invalidate
    assert result.throttled == throttled
    if retryable:
        assert result.retry_after_s == 30.0


async def test_push_unregistered_token_is_never_used_again(fcm_api, clock, results, make_message):
    fcm_api.script(fcm_api.error("UNREGISTERED"), to="stale-token")
    pool = Pool("push", push_sender(fcm_api), clock=clock, on_result=results)
    await pool.start()
    pool.offer(make_message(id="t1", channel="push", to="stale-token"))
    pool.offer(make_message(id="t2", channel="push", to="fresh-token"))
    await pool.wait_idle()
    pool.offer(make_message(id="t3", channel="push", to="stale-token"))
    await pool.wait_idle()
    assert results.of("t1").invalidate_contact and results.of("t2").ok
    assert results.of("t3").outcome == "cancelled"
    assert [r.to for r in fcm_api.requests] == ["stale-token", "fresh-token"]
    await pool.stop()


async def test_unreachable_provider_is_transient(make_message):
    sender = push_sender_unreachable()
    result = await sender.send(make_message(channel="push", to="device"))
    await sender.close()
    assert result.outcome == "failed" and result.retryable and "connect" in result.detail


def push_sender_unreachable() -> PushSender:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return PushSender(PushOptions(base_url=f"http://127.0.0.1:{port}", project_id="p", access_token="t"),
                      renderer=Renderer(), timeout_s=2.0)
