"""cartwheel channels: rendering, rate-limited send pools and one module per provider.

``channels`` imports nothing else of cartwheel. The engine turns a send intent into a
:class:`Message`, hands it to the :class:`Pool` of its channel (``submit``/``offer``), and receives the
final :class:`DeliveryResult` through the pool's ``on_result`` callback. Time comes from an injected
clock (``now()`` + ``async sleep_until(when)``), never from the system.

Typical wiring::

    settings = ChannelSettings.from_table("email", config["channels"].get("email"))
    pool = open_pool(settings, clock=clock, on_result=record, still_wanted=check)
    await pool.start()
    await pool.submit(message)
    ...
    await pool.stop()
"""
from channels._config import ChannelConfigError
from channels.breaker import BreakerState, CircuitBreaker
from channels.mask import mask_contact
from channels.message import DeliveryResult, Message, Outcome, Throttle
from channels.outbox import OutboxOptions, OutboxSender
from channels.pool import BeforeAttempt, Pool, PoolClock, PoolClosed, PoolStatistics, ResultCallback, StillWanted
from channels.push import PushOptions, PushSender
from channels.ratelimit import TokenBucket
from channels.render import Renderer, RenderError
from channels.retry import RetryPolicy
from channels.sender import Sender
from channels.settings import KINDS, ChannelSettings, build_sender, open_pool
from channels.sms import SmsOptions, SmsSender
from channels.smtp import SmtpOptions, SmtpSender
from channels.webhook import WebhookOptions, WebhookSender, verify_signature
from channels.whatsapp import WhatsAppOptions, WhatsAppSender

__all__ = [
    "BeforeAttempt",
    "BreakerState",
    "ChannelConfigError",
    "ChannelSettings",
    "CircuitBreaker",
    "DeliveryResult",
    "KINDS",
    "Message",
    "Outcome",
    "OutboxOptions",
    "OutboxSender",
    "Pool",
    "PoolClock",
    "PoolClosed",
    "PoolStatistics",
    "PushOptions",
    "PushSender",
    "RenderError",
    "Renderer",
    "ResultCallback",
    "RetryPolicy",
    "Sender",
    "SmsOptions",
    "SmsSender",
    "SmtpOptions",
    "SmtpSender",
    "StillWanted",
    "Throttle",
    "TokenBucket",
    "WebhookOptions",
    "WebhookSender",
    "WhatsAppOptions",
    "WhatsAppSender",
    "build_sender",
    "mask_contact",
    "open_pool",
    "verify_signature",
]
