"""The outbox (JSON lines files) and the signed webhook."""
from __future__ import annotations

import json

import orjson

from channels import (
    OutboxOptions,
    OutboxSender,
    Pool,
    Renderer,
    WebhookOptions,
    WebhookSender,
    build_sender,
    verify_signature,
)


async def test_outbox_writes_valid_json_lines_one_file_per_channel(tmp_path, clock, results, make_message):
    sender = build_sender("outbox", {"dir": str(tmp_path / "out")})
    pool = Pool("all", sender, clock=clock, on_result=results, concurrency=16)
    await pool.start()
    for i in range(40):
        pool.offer(make_message(id=f"e{i}", channel="email"))
    for i in range(5):
        pool.offer(make_message(id=f"s{i}", channel="sms", to=f"+3460000000{i}"))
    await pool.wait_idle()
    await pool.stop()
    assert results.outcomes() == ["sent"] * 45
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["email.jsonl", "sms.jsonl"]
    email_lines = (tmp_path / "out" / "email.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in email_lines]
    assert [r["message"]["id"] for r in records] == [f"e{i}" for i in range(40)]
    first = records[0]
    assert first["message"]["to"] == "shopper" + first["message"]["to"][7:]
    assert "extra" not in first["message"]
    assert first["rendered"]["subject"].startswith("You left something")
    assert first["rendered"]["url"].endswith("cw_mid=e0")
    sms = [json.loads(line) for line in (tmp_path / "out" / "sms.jsonl").read_text().splitlines()]
    assert len(sms) == 5 and "Resume: https://" in sms[0]["rendered"]["text"]


async def test_outbox_appends_across_senders(tmp_path, make_message):
    for n in range(2):
        sender = OutboxSender(OutboxOptions(dir=str(tmp_path)), renderer=Renderer())
        assert (await sender.send(make_message(id=f"x{n}", channel="push", to="tok"))).ok
        await sender.close()
    lines = (tmp_path / "push.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["message"]["id"] for line in lines] == ["x0", "x1"]


async def test_webhook_signature_verifies(webhook_receiver, make_message):
    secret = "s3cr3t"
    sender = WebhookSender(WebhookOptions(url=webhook_receiver.url, secret=secret), renderer=Renderer())
    message = make_message(id="wh1", extra={"whatsapp": {"token": "must-not-leak"}})
    result = await sender.send(message)
    await sender.close()
    assert result.ok
    record = await webhook_receiver.arrived.get()
    assert verify_signature(record.body, secret, record.headers["X-Cartwheel-Signature"])
    assert not verify_signature(record.body + b" ", secret, record.headers["X-Cartwheel-Signature"])
    assert not verify_signature(record.body, "wrong", record.headers["X-Cartwheel-Signature"])
    assert record.headers["X-Cartwheel-Signature"].startswith("sha256=")
    assert record.headers["Idempotency-Key"] == message.key
    assert record.parsed["message"]["id"] == "wh1"
    assert record.parsed["rendered"]["url"].endswith("cw_mid=wh1")
    assert b"must-not-leak" not in record.body


async def test_webhook_server_errors_are_transient(webhook_receiver, make_message):
    from emulators import Reply

    webhook_receiver.script(Reply(503, {"error": "down"}, {"Retry-After": "12"}))
    webhook_receiver.script(Reply(404, {"error": "gone"}))
    sender = build_sender("webhook", {"url": webhook_receiver.url, "secret": "k"})
    first = await sender.send(make_message())
    second = await sender.send(make_message())
    await sender.close()
    assert first.retryable and first.retry_after_s == 12.0 and first.provider_status == "503"
    assert second.outcome == "failed" and not second.retryable
