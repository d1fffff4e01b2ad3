"""A store's own channel settings reach the providers: end to end, from ``[stores.X]`` through the
engine's dispatcher to the emulated provider (manual clock, real HTTP)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import parse_config
from tests.channels.emulators import WhatsAppEmulator
from tests.engine.conftest import cart_event, start_engine

HOUR = 3600.0


def _config(tmp_path: Path, store: dict[str, Any], channels: dict[str, Any]) -> Any:
    outbox = {name: {"kind": "outbox", "dir": str(tmp_path / "outbox")} for name in ("email", "push", "whatsapp", "sms")}
    return parse_config({
        "engine": {"ingest_tcp": "127.0.0.1:0", "ingest_unix": str(tmp_path / "ingest.sock"),
                   "admin_unix": str(tmp_path / "admin.sock"), "store": f"file:{tmp_path / 'state'}",
                   "clock": "manual", "clock_start": "2026-03-06T10:00:00Z", "snapshot_interval": "1h"},
        "stores": {"shop1": {"name": "Acme", "timezone": "UTC", **store}},
        "channels": {**outbox, **channels},
    }, source="test", env={})


def _shopper(cart: str = "c1") -> dict[str, Any]:
    event = cart_event(cart)
    event["profile"] = {"id": "p1", "phone": "+34600111222", "email": "p1@example.test",
                        "consent": {"whatsapp": True, "email": True}}
    return event


async def test_a_stores_whatsapp_number_and_token_are_the_ones_used(tmp_path: Path, whatsapp_api: WhatsAppEmulator) -> None:
    """DESIGN.md: WhatsApp's phone number id and token are per store; the channel table has none."""
    whatsapp_api.numbers = {"1055509": "store-token"}
    config = _config(tmp_path, {"whatsapp": {"phone_number_id": "1055509", "token": "store-token"}},
                     {"whatsapp": {"kind": "whatsapp", "base_url": whatsapp_api.base_url}})
    engine = await start_engine(config, tmp_path)
    try:
        rt = engine.runtime
        rt.apply_event(_shopper(), rt.now())
        await rt.advance_clock(2.5 * HOUR)  # abandoned at 10:30; WhatsApp at 12:00, inside the window
        records = [(r.outcome, r.reason) for r in rt.msglog if r.channel == "whatsapp"]
        assert records == [("sent", "")] or [o for o, _ in records] == ["sent"], records
        (request,) = whatsapp_api.requests
        assert request.path.split("/")[2] == "1055509"
    finally:
        await engine.stop()


async def test_a_stores_email_settings_shape_its_emails(tmp_path: Path, smtp_server: Any) -> None:
    """From, Reply-To, header, footer, logo, default language and the unsubscribe target are the
    store's (channels/render.py reads them from Message.extra; ``[stores.X]`` sets them)."""
    import email
    import email.policy

    store = {"email_from": "hola@tienda.example", "reply_to": "ayuda@tienda.example", "locale": "es",
             "email_header": "Rebajas de marzo", "email_footer": "Tienda Acme, Calle Mayor 1, Madrid",
             "logo_url": "https://tienda.example/logo.png",
             "unsubscribe_url": "https://tienda.example/baja?m={message_id}",
             "unsubscribe_mailto": "baja@tienda.example"}
    config = _config(tmp_path, store, {"email": {"kind": "smtp", "host": "127.0.0.1", "port": smtp_server.port,
                                                  "from": "engine@cartwheel.example"}})
    engine = await start_engine(config, tmp_path)
    try:
        rt = engine.runtime
        rt.apply_event(_shopper(), rt.now())
        await rt.advance_clock(1.6 * HOUR)
        assert [r.outcome for r in rt.msglog if r.channel == "email"] == ["sent"]
    finally:
        await engine.stop()
    (mail_from, rcpt_tos, raw), = smtp_server.handler.messages
    assert mail_from == "hola@tienda.example" and rcpt_tos == ["p1@example.test"]
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["From"].addresses[0].addr_spec == "hola@tienda.example"
    assert mail["Reply-To"].addresses[0].addr_spec == "ayuda@tienda.example"
    unsubscribe = str(mail["List-Unsubscribe"])
    assert "<https://tienda.example/baja?m=shop1%3Ac1%3A1%3A1%3Aemail>" in unsubscribe, unsubscribe
    assert "mailto:baja@tienda.example" in unsubscribe
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    assert "https://tienda.example/baja?m=shop1%3Ac1%3A1%3A1%3Aemail" in html
    assert "https://tienda.example/logo.png" in html
    assert "Rebajas de marzo" in text and "Tienda Acme, Calle Mayor 1, Madrid" in text
    assert "carrito" in str(mail["Subject"])  # Spanish: the store's language, the shopper named none


async def test_a_stores_sms_sender_is_used(tmp_path: Path, twilio_api: Any) -> None:
    config = _config(tmp_path, {"sms_from": "ACME"}, {"sms": {
        "kind": "sms", "base_url": twilio_api.base_url, "account_sid": twilio_api.account_sid,
        "auth_token": twilio_api.auth_token, "from": "+15005550006"}})
    config.stores["shop1"]["flow"] = "four_touch"  # SMS at one day
    engine = await start_engine(config, tmp_path)
    try:
        rt = engine.runtime
        event = _shopper()
        event["profile"]["consent"]["sms"] = True
        rt.apply_event(event, rt.now())
        await rt.advance_clock(25 * HOUR)
        assert [r.outcome for r in rt.msglog if r.channel == "sms"] == ["sent"]
    finally:
        await engine.stop()
    (request,) = twilio_api.requests
    assert request.parsed["From"] == "ACME"


async def test_a_stores_templates_dir_is_read_relative_to_the_engine(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths in a config are the working directory's, as `run` has them
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "push_reminder.en.title").write_text("$store_name misses you", encoding="utf-8")
    config = _config(tmp_path, {"templates_dir": "tpl"}, {})
    engine = await start_engine(config, tmp_path)  # base_dir = tmp_path
    try:
        rt = engine.runtime
        event = _shopper()
        event["profile"].update(push="fcm-token-1", consent={"push": True})
        rt.apply_event(event, rt.now())
        await rt.advance_clock(1.6 * HOUR)
    finally:
        await engine.stop()
    import json
    (line,) = (tmp_path / "outbox" / "push.jsonl").read_text().splitlines()
    assert json.loads(line)["rendered"]["title"] == "Acme misses you"


def test_store_message_settings_are_checked_by_name(tmp_path: Path) -> None:
    from engine.config import ConfigError, check_sections

    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "email_reminder.en.subject").write_text("Hi $shopper_name", encoding="utf-8")
    stores = {"email_from": "not an address", "logo_url": "javascript:alert(1)", "sms_from": "TOO LONG SENDER",
              "locale": "español", "email_footer": "two\nlines", "templates_dir": str(tmp_path / "tpl")}
    config = _config(tmp_path, {}, {})
    config.stores["shop1"].update(stores)
    errors = check_sections(config)
    for key in ("email_from", "logo_url", "sms_from", "locale", "email_footer"):
        assert any(e.startswith(f"stores.shop1.{key}: expected") for e in errors), (key, errors)
    assert any(e.startswith("stores.shop1.templates_dir: ") and "shopper_name" in e for e in errors), errors
    config.stores["shop1"] = {"templates_dir": str(tmp_path / "missing")}
    (problem,) = check_sections(config)
    assert problem.startswith("stores.shop1.templates_dir: template directory") and "No such file" in problem
    assert ConfigError  # the class run --check reports through


def test_template_files_that_would_never_be_used_are_named_by_the_check(tmp_path: Path) -> None:
    """A misspelled template (``remindr``), one the store's flow has no step for (``urgency`` is
    four_touch's), or a file name the renderer does not read would silently never be used."""
    from engine.config import check_sections

    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "README.md").write_text("notes for the team", encoding="utf-8")  # not a template: allowed
    (tpl / "email_resend.en.subject").write_text("Still there?", encoding="utf-8")
    config = _config(tmp_path, {"templates_dir": str(tpl)}, {})
    assert check_sections(config) == []
    for name, expected in (
        ("email_remindr.en.subject", "uses template 'remindr', so it is never used (did you mean 'reminder'?)"),
        ("sms_urgency.en.txt", "uses template 'urgency'"),
        ("email-reminder.en.subject", "not a template file name, so never used"),
    ):
        (tpl / name).write_text("x", encoding="utf-8")
        (problem,) = check_sections(config)
        assert problem.startswith("stores.shop1.templates_dir: template ") and expected in problem, problem
        (tpl / name).unlink()
    config.stores["shop1"]["flow"] = "four_touch"
    (tpl / "sms_urgency.en.txt").write_text("x", encoding="utf-8")
    (tpl / "email_resend.en.subject").unlink()
    assert check_sections(config) == []  # four_touch's third step uses "urgency"
