"""Channel configuration: one ``[channels.NAME]`` table → :class:`ChannelSettings` → a sender and a pool.

Keys every kind takes (all optional):

==================  =======================  =================================================
key                 default                  meaning
==================  =======================  =================================================
kind                "outbox"                 smtp, whatsapp, sms, push, webhook, outbox
rate                unlimited                "50/s", "3000/m", "100/h" — the channel's token bucket
burst               rate / 10 (>= 1)         bucket capacity, messages
store_rate          none                     the same limit again per store
store_burst         store_rate / 10 (>= 1)
concurrency         8                        sends in flight at once (and pooled connections)
timeout             "10s" ("30s" for smtp)   one request / one SMTP command
pair_interval       "6s" whatsapp, else 0    minimum spacing of messages to one recipient
on_uncertain        "skip"                   "resend" retries outcomes that may have been delivered
queue               10000                    messages held before ``submit`` waits
attempts            5                        attempts per message, including the first
backoff             "1s"                     first retry delay (doubles per attempt, jittered)
backoff_max         "5m"                     cap on the retry delay
breaker_threshold   5                        consecutive transient failures that open the breaker
breaker_cooldown    "30s"                    how long it stays open before one probe
==================  =======================  =================================================

plus the kind's own keys (see each channel module). An error names the key (``channels.sms.rate:
expected a rate like "50/s" ...``). With no table at all a channel is an ``outbox`` writing to
``outbox/NAME.jsonl``.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channels._config import ChannelConfigError, TableReader
from channels.outbox import OutboxOptions, OutboxSender
from channels.pool import BeforeAttempt, Pool, PoolClock, ResultCallback, StillWanted, default_burst
from channels.push import PushOptions, PushSender
from channels.render import Renderer
from channels.retry import RetryPolicy
from channels.sender import Sender
from channels.sms import SmsOptions, SmsSender
from channels.smtp import SmtpOptions, SmtpSender
from channels.webhook import WebhookOptions, WebhookSender
from channels.whatsapp import WhatsAppOptions, WhatsAppSender

__all__ = ["ChannelSettings", "KindOptions", "KINDS", "OUTBOX_CONCURRENCY", "build_sender", "open_pool", "ChannelConfigError"]

KindOptions = SmtpOptions | WhatsAppOptions | SmsOptions | PushOptions | WebhookOptions | OutboxOptions

#: default ``concurrency`` of an ``outbox`` channel (every other kind: 8, a provider's polite default)
OUTBOX_CONCURRENCY = 256

KINDS: dict[str, Any] = {
    "smtp": SmtpOptions,
    "whatsapp": WhatsAppOptions,
    "sms": SmsOptions,
    "push": PushOptions,
    "webhook": WebhookOptions,
    "outbox": OutboxOptions,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSettings:
    """One channel's validated settings (see the module docstring for keys and defaults)."""

    name: str
    kind: str = "outbox"
    rate_per_s: float | None = None
    burst: float | None = None
    store_rate_per_s: float | None = None
    store_burst: float | None = None
    concurrency: int = 8
    timeout_s: float = 10.0
    pair_interval_s: float = 0.0
    on_uncertain: str = "skip"
    max_queue: int = 10_000
    retry: RetryPolicy = RetryPolicy()
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    options: KindOptions = OutboxOptions()

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any] | None = None) -> ChannelSettings:
        """Parse and validate ``[channels.NAME]``; a missing table gives the outbox defaults.

        Raises:
            ChannelConfigError: naming ``channels.NAME.key`` and what was expected.
        """
        r = TableReader(f"channels.{name}", table or {})
        kind = r.str("kind", "outbox", choices=KINDS) or "outbox"
        rate = r.rate_per_s("rate", None)
        burst = r.float("burst", None, minimum=1)
        store_rate = r.rate_per_s("store_rate", None)
        store_burst = r.float("store_burst", None, minimum=1)
        if burst is not None and rate is None:
            raise r.error("burst", "to be set together with rate", burst)
        if store_burst is not None and store_rate is None:
            raise r.error("store_burst", "to be set together with store_rate", store_burst)
        # The outbox's sends are lines waiting for its writer's next grouped write: 8 in flight would cap
        # that group at 8 lines, and the rate under a busy loop at 8 per few loop turns (~50 msg/s while
        # ingest is saturated, measured by bench e2e), far below the rate timers fire.
        concurrency = r.int("concurrency", OUTBOX_CONCURRENCY if kind == "outbox" else 8, minimum=1, maximum=1024)
        timeout_s = r.duration_s("timeout", 30.0 if kind == "smtp" else 10.0)
        if timeout_s <= 0:
            raise r.error("timeout", "a duration > 0", r.table.get("timeout"))
        pair_interval_s = r.duration_s("pair_interval", 6.0 if kind == "whatsapp" else 0.0)
        on_uncertain = r.str("on_uncertain", "skip", choices=("skip", "resend")) or "skip"
        max_queue = r.int("queue", 10_000, minimum=1)
        attempts = r.int("attempts", 5, minimum=1, maximum=100)
        backoff_s = r.duration_s("backoff", 1.0)
        backoff_max_s = r.duration_s("backoff_max", 300.0)
        if backoff_max_s < backoff_s:
            raise r.error("backoff_max", f"a duration >= backoff ({backoff_s:g} s)", r.table.get("backoff_max"))
        breaker_threshold = r.int("breaker_threshold", 5, minimum=1)
        breaker_cooldown_s = r.duration_s("breaker_cooldown", 30.0)
        options = KINDS[kind].from_reader(r)
        r.finish()
        return cls(
            name=name,
            kind=kind,
            rate_per_s=rate,
            burst=burst if burst is not None else (default_burst(rate) if rate else None),
            store_rate_per_s=store_rate,
            store_burst=store_burst if store_burst is not None else (default_burst(store_rate) if store_rate else None),
            concurrency=concurrency,
            timeout_s=timeout_s,
            pair_interval_s=pair_interval_s,
            on_uncertain=on_uncertain,
            max_queue=max_queue,
            retry=RetryPolicy(max_attempts=attempts, base_s=backoff_s, max_s=backoff_max_s),
            breaker_threshold=breaker_threshold,
            breaker_cooldown_s=breaker_cooldown_s,
            options=options,
        )


def build_sender(
    kind: str,
    settings: Mapping[str, Any] | ChannelSettings,
    *,
    name: str | None = None,
    renderer: Renderer | None = None,
) -> Sender:
    """Build the sender for one channel.

    Args:
        kind: the channel kind ("smtp", "whatsapp", "sms", "push", "webhook", "outbox").
        settings: the raw ``[channels.NAME]`` table (its ``kind`` may be omitted) or parsed settings.
        name: the channel's name, for error messages (default: ``kind``).
        renderer: shared renderer (default: a new English-default one).

    Raises:
        ChannelConfigError: bad settings, or ``kind`` disagreeing with ``settings``.
    """
    if isinstance(settings, ChannelSettings):
        parsed = settings
    else:
        table = dict(settings)
        if table.setdefault("kind", kind) != kind:
            raise ChannelConfigError(
                f"channels.{name or kind}.kind: expected {kind!r} (as asked for), got {table['kind']!r}"
            )
        parsed = ChannelSettings.from_table(name or kind, table)
    if parsed.kind != kind:
        raise ChannelConfigError(f"channels.{parsed.name}.kind: expected {kind!r}, got {parsed.kind!r}")
    renderer = renderer or Renderer()
    o = parsed.options
    common = {"renderer": renderer, "timeout_s": parsed.timeout_s, "concurrency": parsed.concurrency}
    if isinstance(o, SmtpOptions):
        return SmtpSender(o, renderer=renderer, timeout_s=parsed.timeout_s, pool_size=parsed.concurrency)
    if isinstance(o, WhatsAppOptions):
        return WhatsAppSender(o, **common)
    if isinstance(o, SmsOptions):
        return SmsSender(o, **common)
    if isinstance(o, PushOptions):
        return PushSender(o, **common)
    if isinstance(o, WebhookOptions):
        return WebhookSender(o, **common)
    return OutboxSender(o, renderer=renderer)


def open_pool(
    settings: ChannelSettings,
    *,
    clock: PoolClock,
    on_result: ResultCallback,
    still_wanted: StillWanted | None = None,
    sender: Sender | None = None,
    renderer: Renderer | None = None,
    rng: random.Random | None = None,
    before_attempt: BeforeAttempt | None = None,
) -> Pool:
    """A :class:`Pool` configured from ``settings`` around ``sender`` (built from settings if None).

    The pool is not started: ``await pool.start()``.
    """
    return Pool(
        settings.name,
        sender or build_sender(settings.kind, settings, renderer=renderer),
        clock=clock,
        on_result=on_result,
        still_wanted=still_wanted,
        rate_per_s=settings.rate_per_s,
        burst=settings.burst,
        store_rate_per_s=settings.store_rate_per_s,
        store_burst=settings.store_burst,
        concurrency=settings.concurrency,
        max_queue=settings.max_queue,
        pair_interval_s=settings.pair_interval_s,
        retry=settings.retry,
        breaker_threshold=settings.breaker_threshold,
        breaker_cooldown_s=settings.breaker_cooldown_s,
        on_uncertain=settings.on_uncertain,
        rng=rng,
        before_attempt=before_attempt,
    )
