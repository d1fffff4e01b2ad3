"""Channel config parsing, the sender factory, and the package's import discipline."""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import channels
from channels import (
    ChannelConfigError,
    ChannelSettings,
    OutboxSender,
    PushSender,
    SmsSender,
    SmtpSender,
    WebhookSender,
    WhatsAppSender,
    build_sender,
    open_pool,
)

PACKAGE = pathlib.Path(channels.__file__).parent


def test_defaults_are_an_outbox():
    settings = ChannelSettings.from_table("email")
    assert settings.kind == "outbox" and settings.options.dir == "outbox"
    assert settings.rate_per_s is None and settings.on_uncertain == "skip"
    assert isinstance(build_sender("outbox", {}), OutboxSender)


def test_concurrency_defaults_by_kind_and_can_be_set():
    """An outbox's sends are lines for its writer's next grouped write: 256 may be in flight (8 capped a
    saturated engine at ~60 sends/s, bench e2e); a provider gets a polite 8."""
    assert ChannelSettings.from_table("email").concurrency == 256
    assert ChannelSettings.from_table("email", {"kind": "smtp", "host": "h"}).concurrency == 8
    assert ChannelSettings.from_table("push", {"kind": "webhook", "url": "https://h.example/x", "secret": "s"}).concurrency == 8
    assert ChannelSettings.from_table("email", {"concurrency": 4}).concurrency == 4


def test_full_table_is_parsed():
    settings = ChannelSettings.from_table(
        "email",
        {"kind": "smtp", "host": "mx.example", "port": 2525, "from": "shop@example.com", "rate": "3000/m",
         "burst": 20, "concurrency": 4, "timeout": "15s", "on_uncertain": "resend", "attempts": 3,
         "backoff": "500ms", "breaker_cooldown": "1m", "starttls": True, "username": "u", "password": "p"},
    )
    assert settings.rate_per_s == 50.0 and settings.burst == 20 and settings.timeout_s == 15.0
    assert settings.retry.max_attempts == 3 and settings.retry.base_s == 0.5 and settings.breaker_cooldown_s == 60
    assert settings.options.host == "mx.example" and settings.options.starttls
    whatsapp = ChannelSettings.from_table("whatsapp", {"kind": "whatsapp", "templates": {"final": "last_call"}})
    assert whatsapp.pair_interval_s == 6.0 and whatsapp.options.templates["final"] == "last_call"
    assert whatsapp.options.templates["reminder"] == "cart_reminder"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"rate": "lots"}, 'channels.ch.rate: expected a rate like "50/s"'),
        ({"kind": "fax"}, "channels.ch.kind: expected one of 'smtp'"),
        ({"concurrency": 0}, "channels.ch.concurrency: expected an integer within 1..1024, got 0"),
        ({"timeout": "soon"}, "channels.ch.timeout: expected a duration"),
        ({"on_uncertain": "maybe"}, "channels.ch.on_uncertain: expected one of 'skip', 'resend'"),
        ({"burst": 5}, "channels.ch.burst: expected to be set together with rate"),
        ({"concurency": 4}, "channels.ch.concurency: unknown key"),
        ({"kind": "smtp", "port": 70000}, "channels.ch.port: expected an integer within 1..65535"),
        ({"kind": "smtp", "tls": True, "starttls": True}, "channels.ch.starttls: expected false when tls = true"),
        ({"kind": "sms", "account_sid": "AC1"}, "channels.ch.auth_token: required"),
        ({"kind": "sms", "account_sid": "AC1", "auth_token": "t"}, "channels.ch.from: expected a sender number"),
        ({"kind": "push", "project_id": "p"}, "channels.ch.access_token: required"),
        ({"kind": "webhook", "url": "ftp://x", "secret": "s"}, "channels.ch.url: expected an http(s) URL"),
        ({"kind": "whatsapp", "templates": {"reminder": 3}}, "channels.ch.templates: expected a table"),
    ],
)
def test_errors_name_the_key_and_what_was_expected(table, message):
    with pytest.raises(ChannelConfigError) as error:
        ChannelSettings.from_table("ch", table)
    assert str(error.value).startswith(message)


def test_secrets_are_not_echoed():
    with pytest.raises(ChannelConfigError) as error:
        ChannelSettings.from_table("sms", {"kind": "sms", "account_sid": "AC1", "auth_token": 12345})
    assert "12345" not in str(error.value)


def test_build_sender_for_every_kind():
    cases = {
        "smtp": ({}, SmtpSender),
        "whatsapp": ({}, WhatsAppSender),
        "sms": ({"account_sid": "AC1", "auth_token": "t", "from": "+1500"}, SmsSender),
        "push": ({"project_id": "demo", "access_token": "t"}, PushSender),
        "webhook": ({"url": "https://shop.example/hook", "secret": "s"}, WebhookSender),
        "outbox": ({"dir": "out"}, OutboxSender),
    }
    for kind, (table, cls) in cases.items():
        sender = build_sender(kind, table)
        assert isinstance(sender, cls) and sender.kind == kind and isinstance(sender, channels.Sender)
    with pytest.raises(ChannelConfigError, match="channels.sms.kind"):
        build_sender("sms", {"kind": "smtp"})


async def test_open_pool_uses_the_settings(clock):
    settings = ChannelSettings.from_table("sms", {"rate": "2/s", "concurrency": 3, "queue": 50})
    pool = open_pool(settings, clock=clock, on_result=lambda m, r: None)
    stats = pool.statistics()
    assert (stats.rate_per_s, stats.concurrency, stats.max_queue) == (2.0, 3, 50)
    await pool.stop()


def test_channels_imports_nothing_else_of_cartwheel():
    ours = {"engine", "actors", "timing_wheel", "bench", "tests"}
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ours, f"{path.name} imports {name}"


def test_every_module_imports_on_its_own():
    """Each module imported first, with nothing of the package loaded yet, catches import cycles."""
    modules = sorted(f"channels.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'channels' or m.startswith('channels.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=PACKAGE.parent)
    assert len(channels.__all__) == len(set(channels.__all__))
    assert all(hasattr(channels, name) for name in channels.__all__)
