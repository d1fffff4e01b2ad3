"""Edges of sending found in review: provider answers that must not be read as more than they say."""
from __future__ import annotations

from tests.channels.test_channels_smtp import smtp_pool


async def test_a_policy_refusal_at_rcpt_does_not_mark_the_address_dead(smtp_server, clock, results, make_message):
    """`550 5.7.1 Relaying denied` (a relay needing auth, a blocklisted IP) refuses *us*, not the mailbox:
    the email fails, but the address is not invalidated (which the engine keeps in the shopper's profile,
    so no email would ever go to them again) and the next message to it goes out."""
    smtp_server.handler.script["RCPT"].append("550 5.7.1 <p1@example.com>: Relaying denied")
    pool = smtp_pool(smtp_server, clock, results)
    await pool.start()
    pool.offer(make_message(id="refused", to="p1@example.com"))
    await pool.wait_idle()
    pool.offer(make_message(id="later", to="p1@example.com"))
    await pool.wait_idle()
    refused = results.of("refused")
    assert refused.outcome == "failed" and not refused.retryable and refused.provider_status == "550"
    assert "5.7.1" in refused.detail
    assert not refused.invalidate_contact
    assert results.of("later").outcome == "sent"
    await pool.stop()


async def test_an_unknown_mailbox_at_rcpt_still_marks_the_address_dead(smtp_server, clock, results, make_message):
    for reply in ("550 5.1.1 No such user", "553 Requested action not taken: mailbox name not allowed"):
        smtp_server.handler.script["RCPT"].append(reply)
    pool = smtp_pool(smtp_server, clock, results)
    await pool.start()
    pool.offer(make_message(id="enhanced", to="a@example.com"))
    pool.offer(make_message(id="plain", to="b@example.com"))
    await pool.wait_idle()
    assert results.of("enhanced").invalidate_contact and results.of("plain").invalidate_contact
    await pool.stop()


async def test_the_outbox_follows_its_file_when_a_reader_moves_it_away(tmp_path, make_message):
    """A reader of the outbox takes its messages by moving `email.jsonl` aside (logrotate without
    copytruncate, a spool consumer) or deleting it once read: the next message goes to a new
    `email.jsonl`, not on into the file that reader has already taken (where nobody would see it)."""
    import orjson

    from channels import OutboxOptions, OutboxSender, Renderer

    def ids(name: str) -> list[str]:
        return [orjson.loads(line)["message"]["id"] for line in (tmp_path / name).read_bytes().splitlines()]

    sender = OutboxSender(OutboxOptions(dir=str(tmp_path)), renderer=Renderer())
    try:
        assert (await sender.send(make_message(id="before", channel="email"))).ok
        (tmp_path / "email.jsonl").rename(tmp_path / "email.jsonl.1")
        assert (await sender.send(make_message(id="after", channel="email"))).ok
        assert ids("email.jsonl.1") == ["before"]
        assert ids("email.jsonl") == ["after"]
        (tmp_path / "email.jsonl").unlink()
        assert (await sender.send(make_message(id="after-delete", channel="email"))).ok
        assert ids("email.jsonl") == ["after-delete"]
    finally:
        await sender.close()


async def test_a_webhook_endpoint_that_redirects_is_not_counted_as_delivered(make_message):
    """An endpoint that answers the POST with a redirect (http -> https, a moved URL) did not take the
    message. Following it turned the POST into a GET without the body (aiohttp does, as browsers do for
    301/302): the page the GET found answered 200 and the message counted as sent, though no endpoint
    ever received it. The redirect is the answer: a permanent failure naming it."""
    import socket

    from aiohttp import web

    from channels import Renderer, WebhookOptions, WebhookSender

    seen: list[tuple[str, bytes]] = []

    async def moved(request: web.Request) -> web.Response:
        seen.append((request.method, await request.read()))
        raise web.HTTPMovedPermanently(location="/new")

    async def page(request: web.Request) -> web.Response:
        seen.append((request.method, await request.read()))
        return web.Response(text="<html>welcome</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/hook", moved)
    app.router.add_get("/new", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    sender = WebhookSender(WebhookOptions(url=f"http://127.0.0.1:{sock.getsockname()[1]}/hook", secret="s"),
                           renderer=Renderer())
    try:
        result = await sender.send(make_message(id="wh"))
    finally:
        await sender.close()
        await runner.cleanup()
    assert [method for method, _ in seen] == ["POST"]
    assert result.outcome == "failed" and not result.retryable and "301" in result.detail


async def test_a_store_sending_from_an_internationalised_domain_gets_its_emails_out(
        smtp_server, clock, results, make_message):
    """A store's `email_from` on an IDN domain (accepted by the config, as a shopper's IDN address is
    accepted and sent in IDNA) failed every email: the envelope sender went to MAIL FROM as it was,
    which SMTP without SMTPUTF8 cannot carry ("invalid address"). It goes in IDNA, as the recipient."""
    pool = smtp_pool(smtp_server, clock, results)
    await pool.start()
    pool.offer(make_message(id="idn", extra={"email_from": "hola@tiendá.example"}))
    await pool.wait_idle()
    await pool.stop()
    result = results.of("idn")
    assert result.outcome == "sent", result.detail
    (mail_from, _, raw), = smtp_server.handler.messages
    assert mail_from == "hola@xn--tiend-1qa.example"
    assert b"xn--tiend-1qa.example" in raw.split(b"\r\n\r\n", 1)[0]  # the From header too
