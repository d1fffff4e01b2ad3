"""Message content per channel against the providers' documented rules and the shopper's conventions."""
from __future__ import annotations

import email
import email.policy
import re

import pytest

from channels import PushOptions, PushSender, Renderer, SmsOptions, SmsSender, WhatsAppOptions, WhatsAppSender
from channels._format import format_money, one_line
from channels.render import RenderError

STORE_WA = {"whatsapp": {"phone_number_id": "1055501", "token": "wa-token"}}


def wa_sender(api) -> WhatsAppSender:
    return WhatsAppSender(WhatsAppOptions(base_url=api.base_url, api_version="v21.0"), renderer=Renderer(), timeout_s=5.0)


# WhatsApp: an item whose name is "" (the schema allows it: "an item's name may be \"\"") or absent
#    becomes an empty template parameter, which the Cloud API refuses (Twilio error 63013: "an empty
#    or null string is passed into an approved WhatsApp template variable").
async def test_whatsapp_body_parameters_are_never_empty(whatsapp_api, make_message):
    sender = wa_sender(whatsapp_api)
    for items in ([{"sku": "MUG-1", "name": "", "qty": 1, "price": 9.0}],
                  [{"sku": "MUG-1", "qty": 1, "price": 9.0}]):
        result = await sender.send(make_message(channel="whatsapp", to="+34600111221", extra=dict(STORE_WA), items=items))
        assert result.ok
    await sender.close()
    for request in whatsapp_api.requests:
        body = request.parsed["template"]["components"][0]
        texts = [p["text"] for p in body["parameters"]]
        assert all(t.strip() for t in texts), texts


# WhatsApp: the URL button's suffix drops the checkout URL's fragment, so a hash-routed checkout
#    ("https://shop/#/checkout/c1") opens the shop's home page from WhatsApp while email/SMS/push
#    carry the full link.
async def test_whatsapp_button_keeps_the_resume_links_fragment(whatsapp_api, make_message):
    sender = wa_sender(whatsapp_api)
    msg = make_message(channel="whatsapp", to="+34600111221", extra=dict(STORE_WA),
                       checkout_url="https://shop.example/#/checkout/c1")
    result = await sender.send(msg)
    await sender.close()
    assert result.ok
    button = whatsapp_api.requests[0].parsed["template"]["components"][1]["parameters"][0]["text"]
    resume = Renderer().resume_url(msg)
    assert resume == "https://shop.example/?cw_mid=" + msg.id + "#/checkout/c1"
    assert "https://shop.example/" + button == resume, button


# Money in currencies with three minor digits (KWD, BHD, OMR, JOD, TND...) is rounded to two:
#    an item priced 0.125 KWD is shown as "0.13 KWD", a cart of 12.345 BHD as "12.35 BHD".
def test_three_decimal_currencies_keep_their_fils():
    assert format_money(0.125, "KWD", "en") == "0.125 KWD"
    assert format_money(12.345, "BHD", "en") == "12.345 BHD"


# A price the ingest schema accepts (any finite number >= 0) crashes rendering with
#    decimal.InvalidOperation instead of rendering or failing with a RenderError.
def test_huge_but_accepted_amounts_render(make_message):
    r = Renderer()
    msg = make_message(value=1e30, items=[{"sku": "A", "name": "Yacht", "qty": 1, "price": 1e30}])
    assert "Yacht" in r.email(msg).text


# Zero-width joiner / non-joiner and RLM are format characters that text needs: emoji ZWJ
#    sequences ("👨‍👩‍👧"), Persian words (ZWNJ) and RTL marks are altered in every channel.
def test_item_names_keep_joiners(make_message):
    name = "Family mug 👨\u200d👩\u200d👧 / می\u200cخواهم"
    assert one_line(name) == name
    msg = make_message(channel="whatsapp", items=[{"sku": "A", "name": name, "qty": 1, "price": 5}])
    assert Renderer().whatsapp(msg).body_parameters[1] == name


# RFC 2047 §2: "An 'encoded-word' may not be more than 75 characters long"; a From display name
#    that is not ASCII is written as one encoded word of any length on one line (574 characters for
#    a 100-character emoji store name; 176 for a 118-character Spanish one).
def test_from_display_name_encoded_words_are_at_most_75_characters(make_message):
    r = Renderer()
    for name in ("Librería y Papelería Ñandú — Artículos de Oficina, Regalos y Más", "😀" * 100):
        raw = r.email_bytes(make_message(store_name=name), from_addr="shop@demo.example")
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        unfolded = re.sub(r"\r\n[ \t]", " ", head)
        from_line = next(line for line in unfolded.split("\r\n") if line.startswith("From:"))
        words = re.findall(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=", from_line)
        assert words and max(len(w) for w in words) <= 75, [len(w) for w in words]
        assert all(len(line) <= 998 for line in head.split("\r\n"))
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        assert mail["From"].addresses[0].addr_spec == "shop@demo.example"


# Push: a profile may hold a Web Push subscription map (DESIGN.md: "push token or subscription";
#    validated by engine/validate.py); the actor hands it to the channel as JSON
#    (actors/profiles.py:237) and the FCM channel posts that JSON as the device `token`. FCM v1
#    answers INVALID_ARGUMENT ("not a valid FCM registration token"): every push step of that shopper
#    fails, and the subscription's endpoint and keys are sent to FCM as a "token".
async def test_push_never_posts_a_web_push_subscription_as_an_fcm_token(fcm_api, make_message):
    import json
    sub = json.dumps({"endpoint": "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
                      "keys": {"auth": "k1", "p256dh": "k2"}}, sort_keys=True, separators=(",", ":"))
    sender = PushSender(PushOptions(base_url=fcm_api.base_url, project_id=fcm_api.project_id,
                                    access_token=fcm_api.access_token), renderer=Renderer(), timeout_s=5.0)
    await sender.send(make_message(channel="push", to=sub))
    await sender.close()
    tokens = [r.parsed["message"]["token"] for r in fcm_api.requests]
    assert not any(t.startswith("{") for t in tokens), tokens


# SMS: the body is cut to 1 600 characters with "…" at the end, which is where the resume link is:
#    the shopper gets a truncated, broken link (the checkout_url is accepted up to max_string=2048).
async def test_sms_never_truncates_the_resume_link(twilio_api, make_message):
    sender = SmsSender(SmsOptions(base_url=twilio_api.base_url, account_sid=twilio_api.account_sid,
                                  auth_token=twilio_api.auth_token, from_number="+15005550006"),
                       renderer=Renderer(), timeout_s=5.0)
    msg = make_message(channel="sms", to="+34600111221",
                       checkout_url="https://shop.example/checkout?token=" + "x" * 1560)
    result = await sender.send(msg)
    await sender.close()
    if result.ok:
        body = twilio_api.requests[0].parsed["Body"]
        assert Renderer().resume_url(msg) in body, body[-40:]


# Spanish shoppers see a decimal point in a percentage ("12.5 % de descuento") while every
#    amount in the same message uses the decimal comma ("12,50 €").
def test_spanish_percent_uses_the_decimal_comma(make_message):
    msg = make_message(locale="es", template="incentive",
                       incentive={"kind": "discount", "percent": 12.5, "code": "BACK-ABCDEFGHIJ"})
    assert "12,5 % de descuento" in Renderer().email(msg).text


# A shopper whose address has an internationalised domain ("kunde@müller.de") passes ingest
#     validation, but the SMTP channel refuses every email to it (smtp.py:268 "recipient address is
#     not ASCII"), although the domain has an ASCII form (IDNA "xn--mller-kva.de") that needs no
#     SMTPUTF8 in RCPT TO or in the To header.
async def test_an_idn_domain_address_accepted_at_ingest_gets_its_email(smtp_server, make_message):
    from channels import SmtpOptions, SmtpSender
    from engine.config import EngineSettings
    from engine.validate import Validator

    event = {"type": "profile.updated", "store": "demo",
             "profile": {"id": "p1", "email": "kunde@müller.de", "consent": {"email": True}}}
    assert Validator(EngineSettings()).validate(event, 1_772_791_200.0) is None  # accepted
    sender = SmtpSender(SmtpOptions(host="127.0.0.1", port=smtp_server.port, from_addr="shop@demo.example"),
                        renderer=Renderer(), timeout_s=5.0, pool_size=1)
    result = await sender.send(make_message(to="kunde@müller.de"))
    await sender.close()
    assert result.ok, result.detail
    (_, rcpt_tos, _), = smtp_server.handler.messages
    assert rcpt_tos == ["kunde@xn--mller-kva.de"]


# Locale: es-MX readers write 1,234.50 (decimal point) like en; the renderer writes every es-*
#     amount as "1.234,50 $" (language_of drops the region before formatting).
def test_mexican_pesos_for_a_mexican_shopper(make_message):
    msg = make_message(channel="sms", locale="es-MX", currency="MXN", value=1234.5)
    assert "$1,234.50" in Renderer().sms(msg), Renderer().sms(msg)


def test_an_sms_link_too_long_for_an_sms_is_refused_by_name(make_message):
    msg = make_message(channel="sms", to="+34600111221", checkout_url="https://shop.example/c?t=" + "x" * 1700)
    with pytest.raises(RenderError, match="checkout_url is too long for an SMS"):
        Renderer().sms(msg)


def test_spanish_readers_keep_the_decimal_comma(make_message):
    assert format_money(1234.5, "EUR", "es") == "1.234,50 €"
    assert format_money(1234.5, "EUR", "es-ES") == "1.234,50 €"
    assert format_money(1234.5, "MXN", "es-MX") == "$1,234.50"
