"""Per-store rules: time zone, flow, email credits, send windows, quiet hours, incentive, WhatsApp.

One :class:`StoreRules` per ``[stores.NAME]`` table, shared by every cart of the store (a cart holds a
reference, never a copy). Everything is read-only after construction except ``credits``, the store's
remaining email budget, which the carts spend when they issue an email intent (and get back when that
intent is cancelled before it went out), and ``profiles``, the store's shoppers.

Config keys (``[stores.NAME]``; every key optional)::

    name             display name (default: the table key)
    timezone         IANA zone, e.g. "Europe/Madrid" (default "UTC")
    flow             flow name (default "revenue_recovery")
    credits          email credits, an int >= 0 (default: unlimited)
    whatsapp_window  {days = "mon-sat", start = "09:00", end = "21:00"} (that is also the default)
    quiet_hours      {start = "22:00", end = "08:00"}: no channel sends inside (default: none)
    incentive        {kind = "discount", percent = 10, code_prefix = "BACK"} or {kind = "free_shipping"}
    whatsapp         {phone_number_id = "...", token = "..."}: without it the store gets no WhatsApp step
    secret           HMAC secret for discount codes (default: derived from the store id; set it!)
    whatsapp_delay   "90m", "2h" or "6h": replaces the ``after`` of the flow's (first) WhatsApp step
                     (before the end of the flow's runs: a later step would never be sent)

What the store's messages say and where replies go (handed to the channels as ``Message.extra``;
every key optional)::

    locale             language when the shopper's is unknown, e.g. "es" (default "en")
    email_from         the From address of its emails (default: the smtp channel's ``from``)
    reply_to           a Reply-To address
    email_header       a line of text above the email's headline
    email_footer       replaces the footer line ("You are receiving this email because ...")
    logo_url           an http(s) image URL shown at the top of the email
    unsubscribe_url    the email's unsubscribe link and List-Unsubscribe target: an http(s) URL where
                       "{message_id}" is replaced, else ``cw_mid=<message id>`` is added (default:
                       "<checkout origin>/cartwheel/unsubscribe?cw_mid=<message id>", which the shop serves)
    unsubscribe_mailto an address for mail-based List-Unsubscribe
    sms_from           the store's own SMS sender: "+<E.164 number>" or an alphanumeric id of 1-11 characters
    templates_dir      a directory of message template overrides (``channels/render.py`` names the files)

Errors name the key: ``stores.demo.whatsapp_window.start: expected a local time like "09:00", got "9am"``.
"""
from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from actors.durations import format_duration, parse_duration
from actors.errors import StoreConfigError, describe
from actors.flows import BUILTIN_FLOWS, DEFAULT_FLOW, Flow, Step
from actors.incentives import Incentive, default_secret
from actors.profiles import ProfileBook
from actors.windows import Window, parse_window

__all__ = ["StoreRules", "parse_store", "DEFAULT_WHATSAPP_WINDOW", "WHATSAPP_DELAYS_S"]

_ADDRESS = re.compile(r"[^@\s<>\"(),;:\\\[\]]+@[^@\s<>\"(),;:\\\[\]]+\.[^@\s<>\"(),;:\\\[\]]+")
_HTTP_URL = re.compile(r"https?://[^\s/?#]+[^\s]*", re.IGNORECASE)

#: WhatsApp allowed Monday to Saturday, 09:00 to 21:00 store time, unless configured.
DEFAULT_WHATSAPP_WINDOW = Window(days=frozenset(range(6)), start_min=9 * 60, end_min=21 * 60)
#: The WhatsApp step delays a store may choose (DESIGN.md: 1h30m by default, or 2h, or 6h).
WHATSAPP_DELAYS_S = {"90m": 5400.0, "2h": 7200.0, "6h": 21600.0}
#: keys of what the store's messages say, and their checks: (pattern, what is expected, longest)
_MESSAGE_KEYS: dict[str, tuple[re.Pattern[str] | None, str, int]] = {
    "locale": (re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*"), 'a language or locale like "es" or "es-MX"', 35),
    "email_from": (_ADDRESS, 'an email address like "shop@example.com"', 254),
    "reply_to": (_ADDRESS, 'an email address like "help@example.com"', 254),
    "unsubscribe_mailto": (_ADDRESS, 'an email address like "unsubscribe@example.com"', 254),
    "email_header": (None, "a line of text", 300),
    "email_footer": (None, "a line of text", 500),
    "logo_url": (_HTTP_URL, 'an http(s) URL like "https://shop.example/logo.png"', 2048),
    "unsubscribe_url": (_HTTP_URL, 'an http(s) URL like "https://shop.example/unsubscribe?m={message_id}"', 2048),
    "sms_from": (re.compile(r"\+[1-9][0-9]{6,14}|[A-Za-z0-9 ]{1,11}"), 'a number like "+34600111222" or a sender id of 1-11 letters and digits', 16),
    "templates_dir": (None, "a directory", 4096),
}
_KEYS = (
    "name", "timezone", "flow", "credits", "whatsapp_window", "quiet_hours", "incentive", "whatsapp", "secret",
    "whatsapp_delay", *_MESSAGE_KEYS,
)


class StoreRules:
    """The rules of one store (tenant). See the module docstring for the config keys.

    Attributes:
        id: the store id (the ``[stores.ID]`` key and the ``store`` field of events), interned.
        tz: the store's :class:`zoneinfo.ZoneInfo`.
        flow: the store's :class:`~actors.flows.Flow`.
        schedule: the flow's steps as ``(after_s, step_no, step)`` in firing order, with the store's
            ``whatsapp_delay`` applied (step numbers stay the flow's: 1-based, config order).
        credits: email credits left, or None for unlimited. Mutable.
        profiles: the store's shoppers (:class:`~actors.profiles.ProfileBook`). Mutable: with
            ``credits``, the only per-store state, kept here because every cart already points at its
            store (a cart holds its profile's id, not the profile).
    """

    __slots__ = (
        "id", "name", "timezone", "tz", "flow", "schedule", "credits", "windows", "quiet_hours", "incentive",
        "whatsapp", "secret", "whatsapp_delay_s", "profiles", "messages", "message_extra",
    )

    def __init__(
        self, id: str, *, name: str | None = None, timezone: str = "UTC", flow: Flow = BUILTIN_FLOWS[DEFAULT_FLOW],
        credits: int | None = None, whatsapp_window: Window = DEFAULT_WHATSAPP_WINDOW,
        quiet_hours: Window | None = None, incentive: Incentive | None = None,
        whatsapp: Mapping[str, str] | None = None, secret: bytes | None = None, whatsapp_delay_s: float | None = None,
        messages: Mapping[str, str] | None = None,
    ) -> None:
        self.id = sys.intern(id)
        self.name = name if name is not None else id
        self.timezone = timezone
        self.tz = ZoneInfo(timezone)
        self.flow = flow
        self.credits = credits
        self.windows: dict[str, Window] = {"whatsapp": whatsapp_window}
        self.quiet_hours = quiet_hours
        self.incentive = incentive
        self.whatsapp = dict(whatsapp) if whatsapp else None
        self.secret = secret if secret is not None else default_secret(id)
        self.whatsapp_delay_s = whatsapp_delay_s
        self.schedule = self._schedule(flow, whatsapp_delay_s)
        self.profiles = ProfileBook()
        self.messages = dict(messages or {})
        # What the channels read of the store (``Message.extra``): built once, shared by its messages.
        self.message_extra: dict[str, Any] = dict(self.messages)
        if self.whatsapp is not None:
            self.message_extra["whatsapp"] = self.whatsapp

    @staticmethod
    def _schedule(flow: Flow, whatsapp_delay_s: float | None) -> tuple[tuple[float, int, Step], ...]:
        entries = []
        delay_s = whatsapp_delay_s
        for number, step in enumerate(flow.steps, 1):
            after_s = step.after_s
            if delay_s is not None and "whatsapp" in step.channels:
                after_s = delay_s
                delay_s = None  # the WhatsApp step is the first one: a later one keeps its own time
            entries.append((after_s, number, step))
        # Stable sort: a 6h WhatsApp delay moves that step after the 4h one without renumbering.
        entries.sort(key=lambda e: e[0])
        return tuple(entries)

    @property
    def has_whatsapp(self) -> bool:
        """Whether the store configured WhatsApp (phone number id and token)."""
        return self.whatsapp is not None

    def spend_credit(self) -> bool:
        """Take one email credit; False (and nothing taken) when none are left."""
        credits = self.credits
        if credits is None:
            return True
        if credits <= 0:
            return False
        self.credits = credits - 1
        return True

    def refund_credit(self) -> None:
        """Give back a credit taken for an email that never went out (its intent was cancelled)."""
        if self.credits is not None:
            self.credits += 1

    def adjust_credits(self, delta: int) -> int | None:
        """Add (or with a negative delta, remove) credits, never below 0; returns the new balance.

        An unlimited store stays unlimited.
        """
        if self.credits is not None:
            self.credits = max(0, self.credits + delta)
        return self.credits

    def for_store(self, store_id: str) -> StoreRules:
        """A copy of these rules for another store id (how unknown stores get the default rules).

        The copy has its own credit balance (starting from this one's) and a secret derived from its own id
        unless this one had an explicit secret.
        """
        return StoreRules(
            store_id, name=store_id, timezone=self.timezone, flow=self.flow, credits=self.credits,
            whatsapp_window=self.windows["whatsapp"], quiet_hours=self.quiet_hours, incentive=self.incentive,
            whatsapp=self.whatsapp, secret=None if self.secret == default_secret(self.id) else self.secret,
            whatsapp_delay_s=self.whatsapp_delay_s, messages=self.messages,
        )

    def __repr__(self) -> str:
        credits = "unlimited" if self.credits is None else self.credits
        return f"<StoreRules {self.id} flow={self.flow.name} tz={self.timezone} credits={credits}>"


def _string(path: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StoreConfigError(path, f"expected a non-empty string, got {describe(value)}")
    return value


def _incentive(path: str, table: object) -> Incentive:
    if not isinstance(table, Mapping):
        raise StoreConfigError(path, f'expected a table like {{kind = "free_shipping"}}, got {describe(table)}')
    kind = table.get("kind")
    if kind == "free_shipping":
        allowed: tuple[str, ...] = ("kind",)
    elif kind == "discount":
        allowed = ("kind", "percent", "code_prefix")
    else:
        raise StoreConfigError(f"{path}.kind", f'expected "discount" or "free_shipping", got {describe(kind)}')
    for key in table:
        if key not in allowed:
            raise StoreConfigError(
                f"{path}.{key}", f"unknown key for kind {describe(kind)} (allowed: {', '.join(allowed)})"
            )
    if kind == "free_shipping":
        return Incentive(kind="free_shipping")
    percent = table.get("percent")
    if (
        isinstance(percent, bool) or not isinstance(percent, (int, float)) or not math.isfinite(percent)
        or not 0 < percent <= 100
    ):
        raise StoreConfigError(f"{path}.percent", f"expected a number above 0 and at most 100, got {describe(percent)}")
    prefix = table.get("code_prefix", "BACK")
    if not isinstance(prefix, str) or not prefix.isalnum() or not prefix.isascii() or len(prefix) > 16:
        raise StoreConfigError(f"{path}.code_prefix", f"expected 1 to 16 letters or digits, got {describe(prefix)}")
    return Incentive(kind="discount", percent=float(percent), code_prefix=prefix.upper())


def parse_store(store_id: str, table: object, flows: Mapping[str, Flow] = BUILTIN_FLOWS) -> StoreRules:
    """Build a store's rules from its ``[stores.NAME]`` table.

    Args:
        store_id: the table key (the ``store`` field of events).
        table: the TOML table.
        flows: the flows a store may name (built-in plus config flows).

    Raises:
        StoreConfigError: naming ``stores.NAME.field`` and the reason.
    """
    path = f"stores.{store_id}"
    if not isinstance(table, Mapping):
        raise StoreConfigError(path, f"expected a table, got {describe(table)}")
    for key in table:
        if key not in _KEYS:
            raise StoreConfigError(f"{path}.{key}", f"unknown key (allowed: {', '.join(_KEYS)})")
    kwargs: dict[str, Any] = {}
    if "name" in table:
        kwargs["name"] = _string(f"{path}.name", table["name"])
    timezone = table.get("timezone", "UTC")
    try:
        if not isinstance(timezone, str):
            raise ValueError
        ZoneInfo(timezone)
    except (ValueError, ZoneInfoNotFoundError, OSError):  # OSError: "Europe" is a directory of the tz database
        reason = f'unknown time zone {describe(timezone)} (expected an IANA name like "Europe/Madrid")'
        raise StoreConfigError(f"{path}.timezone", reason) from None
    kwargs["timezone"] = timezone
    flow_name = table.get("flow", DEFAULT_FLOW)
    if not isinstance(flow_name, str) or flow_name not in flows:
        known = ", ".join(sorted(flows))
        raise StoreConfigError(f"{path}.flow", f"unknown flow {describe(flow_name)} (known: {known})")
    kwargs["flow"] = flows[flow_name]
    if "credits" in table:
        credits = table["credits"]
        if isinstance(credits, bool) or not isinstance(credits, int) or credits < 0:
            raise StoreConfigError(f"{path}.credits", f"expected an integer >= 0, got {describe(credits)}")
        kwargs["credits"] = credits
    if "whatsapp_window" in table:
        kwargs["whatsapp_window"] = parse_window(f"{path}.whatsapp_window", table["whatsapp_window"])
    if "quiet_hours" in table:
        quiet = parse_window(f"{path}.quiet_hours", table["quiet_hours"], with_days=False)
        if quiet.start_min == 0 and quiet.end_min == 1440:
            raise StoreConfigError(f"{path}.quiet_hours", "quiet hours cover the whole day: nothing could ever be sent")
        kwargs["quiet_hours"] = quiet
    if "incentive" in table:
        kwargs["incentive"] = _incentive(f"{path}.incentive", table["incentive"])
    if "whatsapp" in table:
        wa = table["whatsapp"]
        if not isinstance(wa, Mapping):
            reason = f"expected a table with phone_number_id and token, got {describe(wa)}"
            raise StoreConfigError(f"{path}.whatsapp", reason)
        for key in wa:
            if key not in ("phone_number_id", "token"):
                raise StoreConfigError(f"{path}.whatsapp.{key}", "unknown key (allowed: phone_number_id, token)")
        for key in ("phone_number_id", "token"):
            if key not in wa:
                raise StoreConfigError(f"{path}.whatsapp.{key}", "missing")
            _string(f"{path}.whatsapp.{key}", wa[key])
        kwargs["whatsapp"] = {"phone_number_id": wa["phone_number_id"], "token": wa["token"]}
    if "secret" in table:
        secret = _string(f"{path}.secret", table["secret"])
        if len(secret) < 16:
            raise StoreConfigError(f"{path}.secret", "too short: use at least 16 characters")
        kwargs["secret"] = secret.encode()
    if "whatsapp_delay" in table:
        raw = table["whatsapp_delay"]
        try:
            delay_s = parse_duration(raw)
        except ValueError as exc:
            raise StoreConfigError(f"{path}.whatsapp_delay", str(exc)) from None
        if delay_s not in WHATSAPP_DELAYS_S.values():
            raise StoreConfigError(f"{path}.whatsapp_delay", f'expected one of "90m", "2h", "6h", got {describe(raw)}')
        flow = kwargs["flow"]
        if delay_s >= flow.expire_after_s and any("whatsapp" in step.channels for step in flow.steps):
            raise StoreConfigError(
                f"{path}.whatsapp_delay",
                f"{describe(raw)} puts the WhatsApp step of flow {describe(flow.name)} at or after the end of its "
                f"runs ({format_duration(flow.expire_after_s)}): it would never be sent",
            )
        kwargs["whatsapp_delay_s"] = delay_s
    messages = {key: _message_setting(f"{path}.{key}", key, table[key]) for key in _MESSAGE_KEYS if key in table}
    if messages:
        kwargs["messages"] = messages
    return StoreRules(store_id, **kwargs)


def _message_setting(path: str, key: str, value: object) -> str:
    pattern, expected, longest = _MESSAGE_KEYS[key]
    if not isinstance(value, str) or not value.strip():
        raise StoreConfigError(path, f"expected {expected}, got {describe(value)}")
    if len(value) > longest:
        raise StoreConfigError(path, f"expected {expected} of at most {longest} characters, got {len(value)}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise StoreConfigError(path, f"expected {expected} on one line, without control characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise StoreConfigError(path, f"expected {expected}, got {describe(value)}")
    return value
