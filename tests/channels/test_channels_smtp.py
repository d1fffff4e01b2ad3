"""SMTP against a real server (aiosmtpd on loopback): content, pooling, and failure classification."""
from __future__ import annotations

import asyncio
import email
import email.policy
import random
import socket
import threading

from channels import Pool, Renderer, RetryPolicy, SmtpOptions, SmtpSender


def smtp_sender(server, *, pool_size: int = 2, timeout_s: float = 5.0) -> SmtpSender:
    options = SmtpOptions(host="127.0.0.1", port=server.port, from_addr="shop@demo.example")
    return SmtpSender(options, renderer=Renderer(), timeout_s=timeout_s, pool_size=pool_size)


def smtp_pool(server, clock, results, **options) -> Pool:
    return Pool(
        "email",
        smtp_sender(server, pool_size=options.pop("pool_size", 2)),
        clock=clock,
        on_result=results,
        retry=RetryPolicy(max_attempts=3, base_s=1.0, jitter=0.0),
        rng=random.Random(1),
        **options,
    )


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


async def test_email_has_both_parts_headers_items_and_incentive(smtp_server, clock, results, make_message):
    pool = smtp_pool(smtp_server, clock, results)
    await pool.start()
    message = make_message(
        id="msg-42",
        to="jane@example.com",
        store_name="Demo <Shop> & Co",
        template="incentive",
        incentive={"kind": "discount", "percent": 10, "code": "BACK-7KQ2"},
        extra={"email_header": "Spring sale", "email_footer": "Demo Shop, Calle Mayor 1, Madrid"},
    )
    pool.offer(message)
    await pool.wait_idle()
    await pool.stop()
    assert results.of("msg-42").ok
    assert results.of("msg-42").detail.startswith("2.0.0 Ok: queued as")
    (mail_from, rcpt_tos, raw), = smtp_server.handler.messages
    assert mail_from == "shop@demo.example" and rcpt_tos == ["jane@example.com"]
    mail = parse(raw)
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["To"] == "jane@example.com"
    assert mail["From"].addresses[0].addr_spec == "shop@demo.example"
    assert mail["From"].addresses[0].display_name == "Demo <Shop> & Co"
    assert "Demo <Shop> & Co" in mail["Subject"]
    assert mail["List-Unsubscribe"] == "<https://shop.example/cartwheel/unsubscribe?cw_mid=msg-42>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["Message-ID"] == "<msg-42@demo.example>"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for body in (text, html):
        assert "Blue mug" in body and "Logo tee" in body
        assert "€12.50" in body and "€45.00" in body
        assert "BACK-7KQ2" in body and "10% off" in body
        assert "Spring sale" in body and "Calle Mayor 1" in body
    assert "× 2" in text
    assert "https://shop.example/checkout?cart=c1&utm_source=cw&cw_mid=msg-42" in text
    assert 'href="https://shop.example/checkout?cart=c1&amp;utm_source=cw&amp;cw_mid=msg-42"' in html
    assert '<img src="https://cdn.example/mug.png"' in html
    assert "Demo &lt;Shop&gt; &amp; Co" in html and "<Shop>" not in html


async def test_connections_are_reused_across_messages(smtp_server, clock, results, make_message):
    pool = smtp_pool(smtp_server, clock, results, pool_size=1, concurrency=1)
    await pool.start()
    for _ in range(5):
        pool.offer(make_message())
    await pool.wait_idle()
    assert results.outcomes() == ["sent"] * 5
    assert smtp_server.handler.sessions == 1
    assert pool.sender.connections_opened == 1
    await pool.stop()


async def test_a_session_the_server_closed_while_idle_is_replaced_without_a_retry(
    smtp_server, clock, results, make_message
):
    pool = smtp_pool(smtp_server, clock, results, pool_size=1, concurrency=1)
    await pool.start()
    pool.offer(make_message(id="one"))
    await pool.wait_idle()
    closed = threading.Event()

    def close_all() -> None:
        for transport in list(smtp_server.handler.transports):
            transport.close()
        closed.set()

    smtp_server.loop.call_soon_threadsafe(close_all)  # the server drops the idle session
    await asyncio.to_thread(closed.wait)
    pool.offer(make_message(id="two"))
    await pool.wait_idle()
    assert results.of("two").ok and results.of("two").attempts == 1
    assert smtp_server.handler.sessions == 2 and len(smtp_server.handler.messages) == 2
    await pool.stop()


async def test_4xx_is_retried_until_accepted(smtp_server, clock, results, make_message):
    smtp_server.handler.script["RCPT"].append("451 4.7.1 Greylisted, try again later")
    pool = smtp_pool(smtp_server, clock, results)
    await pool.start()
    pool.offer(make_message(id="grey"))
    await pool.wait_idle()
    assert results.items == [] and smtp_server.handler.messages == []
    clock.advance(1.0)
    await pool.wait_idle()
    result = results.of("grey")
    assert result.ok and result.attempts == 2
    assert len(smtp_server.handler.messages) == 1
    assert smtp_server.handler.sessions == 1  # RSET kept the session usable
    await pool.stop()


async def test_5xx_at_rcpt_is_permanent_and_invalidates(smtp_server, clock, results, make_message):
    smtp_server.handler.script["RCPT"].append("550 5.1.1 No such user here")
    pool = smtp_pool(smtp_server, clock, results)
    await pool.start()
    pool.offer(make_message(id="gone", to="nobody@example.com"))
    await pool.wait_idle()
    clock.advance(60.0)
    pool.offer(make_message(id="again", to="nobody@example.com"))
    await pool.wait_idle()
    gone = results.of("gone")
    assert gone.outcome == "failed" and not gone.retryable and gone.invalidate_contact
    assert gone.provider_status == "550" and gone.attempts == 1
    assert results.of("again").outcome == "cancelled"
    assert smtp_server.handler.messages == [] and smtp_server.handler.transactions == 0
    await pool.stop()


async def test_5xx_at_data_is_permanent_without_invalidating(smtp_server, clock, results, make_message):
    smtp_server.handler.script["DATA"].append("554 5.7.1 Message rejected as spam")
    pool = smtp_pool(smtp_server, clock, results)
    await pool.start()
    pool.offer(make_message(id="spam"))
    await pool.wait_idle()
    clock.advance(60.0)
    await pool.wait_idle()
    spam = results.of("spam")
    assert spam.outcome == "failed" and not spam.retryable and not spam.invalidate_contact
    assert smtp_server.handler.transactions == 1
    await pool.stop()


async def test_connection_dropped_during_data_is_uncertain_and_not_resent(smtp_server, clock, results, make_message):
    smtp_server.handler.script["DATA"].append("drop")
    pool = smtp_pool(smtp_server, clock, results, concurrency=1, pool_size=1)
    await pool.start()
    pool.offer(make_message(id="lost"))
    await pool.wait_idle()
    clock.advance(60.0)
    pool.offer(make_message(id="next"))
    await pool.wait_idle()
    lost = results.of("lost")
    assert lost.outcome == "uncertain" and lost.attempts == 1
    assert results.of("next").ok
    assert smtp_server.handler.transactions == 2  # "lost" was never re-sent
    assert smtp_server.handler.sessions == 2  # the broken session was replaced
    await pool.stop()


async def test_connection_dropped_before_data_is_retried_on_a_new_connection(smtp_server, clock, results, make_message):
    smtp_server.handler.script["RCPT"].append("drop")
    pool = smtp_pool(smtp_server, clock, results)
    await pool.start()
    pool.offer(make_message(id="retry-me"))
    await pool.wait_idle()
    assert results.items == []
    clock.advance(1.0)
    await pool.wait_idle()
    assert results.of("retry-me").ok and results.of("retry-me").attempts == 2
    assert len(smtp_server.handler.messages) == 1
    await pool.stop()


async def test_unreachable_server_is_transient(clock, results, make_message):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = SmtpSender(SmtpOptions(host="127.0.0.1", port=port), renderer=Renderer(), timeout_s=2.0)
    result = await sender.send(make_message())
    await sender.close()
    assert result.outcome == "failed" and result.retryable
    assert "connect" in result.detail
