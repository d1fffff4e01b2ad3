"""Validation of untrusted ingest events, and the event-id deduplicator. Hot path.

Every decoded event goes through :meth:`Validator.validate` before an actor sees it. The answer is
``None`` (valid) or one reason string ``"field: reason"`` that names the field precisely
(``"items[2].qty: must be a positive integer"``) and is sent back to the client in the frame's
``rejected`` list. One bad event never affects another: the validator keeps no state between calls.

What is checked (DESIGN.md, "Events")
-------------------------------------
Common to every event: ``type`` (required, one of the table's types), ``store`` (required, non-empty
string), ``ts`` (optional number, unix seconds, finite and >= 0; filled with the receive time when
missing), ``id`` (optional non-empty string, the idempotency key for :class:`Deduper`).

==========================================  ================================================================
type                                        fields (required in bold; all others optional but typed)
==========================================  ================================================================
``cart.updated``, ``checkout.started``      **cart**, profile, items, value, currency, checkout_url
``session.ended``, ``cart.cleared``         **cart**
``payment.failed``                          **cart**, reason
``order.completed``                         **cart**, order, value
``profile.updated``                         **profile** (a map here: it carries the contact data)
``message.opened``, ``message.clicked``     **message**
==========================================  ================================================================

Field rules: ids and names are non-empty strings of at most ``max_string`` characters; ``items`` is a
list of at most ``max_items`` maps with **sku** (string), **qty** (positive integer, at most 1 000 000),
**price** (finite number >= 0), and optional ``name`` (string) and ``url``/``image`` (http(s) URLs);
``value`` is a finite number >= 0; ``currency`` three ASCII letters (upper-cased); ``checkout_url`` an
http(s) URL. ``profile`` is a profile id string or a map with **id**, ``email`` (looks like
``local@domain.tld``), ``phone`` (E.164: ``+`` and 8 to 15 digits), ``push`` (a token string or a Web
Push subscription map with an http(s) ``endpoint``, ``keys`` and ``expirationTime``; its other fields
are removed), ``locale`` (a language tag like ``en`` or
``es-ES``; ``es_ES`` is rewritten ``es-ES``), ``timezone`` (a zoneinfo name) and ``consent`` (a map of
booleans, e.g. ``email``, ``sms``, ``whatsapp``, ``push``). Every map's keys must be strings. An
optional field whose value is ``nil`` counts as absent (JSON-minded backends send ``null`` for "none").

**Unknown fields are ignored**, at the top level and inside ``profile`` and items, so that a shop
backend can send fields a newer engine will understand without this one rejecting its events. They are
not checked and not removed; the actor stores only the fields it knows.

Normalisation in place (on the caller's dicts): a missing ``ts`` is set to ``now`` (only for valid
events), integer ``ts``/``value``/``price`` become floats, ``currency`` is upper-cased and ``locale``
uses ``-``. A rejected event may have been partly normalised; it is dropped anyway.

Costs: O(fields + items); no allocation on success beyond the normalised values, no logging, no
dataclasses. Time-zone names are looked up once and cached (:func:`_known_zone`).

The ingest server normally does not call :meth:`Validator.validate` first: it decodes each event with
:attr:`Validator.decoder` (``engine.schema``: the structural rules, checked in C while decoding) and
finishes with :meth:`Validator.check_decoded`. Only events the fast path refuses come here, so every
reason a client sees is this module's.
"""
from __future__ import annotations

import re
import sys
from collections import deque
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Protocol, get_args
from zoneinfo import ZoneInfo

from engine.schema import MAX_QTY, EventDecoder, EventType, event_decoder

__all__ = ["Validator", "Limits", "Deduper", "DeduperStatistics", "is_control", "EVENT_TYPES", "DIGEST_OVER", "dedup_key"]

_INF = float("inf")
_MAX_INT_FLOAT = int(sys.float_info.max)  # larger ints cannot become floats (OverflowError)
_MAX_QTY = MAX_QTY

# Compiled once; ``fullmatch`` on strings already bounded by max_string, so each is O(len).
_URL_RE = re.compile(r"https?://[^\x00-\x20\x7f/?#@]+(?:[/?#][^\x00-\x20\x7f]*)?", re.IGNORECASE)
_EMAIL_RE = re.compile(r"[^\x00-\x20\x7f@<>()\[\],;:\"]+@[^\x00-\x20\x7f@<>()\[\],;:\"]+\.[A-Za-z]{2,63}")
_PHONE_RE = re.compile(r"\+[0-9]{8,15}")
_LOCALE_RE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}")
#: URLs already found valid (max_string is the same for every Validator in a process that matters:
#: a longer URL never gets in, because the length check runs before it is added).
_GOOD_URLS: dict[str, None] = {}
_GOOD_URLS_MAX = 1 << 16
_ZONE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,3}")


class Limits(Protocol):
    """What the validator needs from the settings (``engine.config.EngineSettings`` fits)."""

    @property
    def max_items(self) -> int:
        """Most items in one cart."""

    @property
    def max_string(self) -> int:
        """Longest string field, in characters."""


def is_control(obj: object) -> bool:
    """True for the ``{"type": "sync"}`` control frame (answered when earlier events are durable)."""
    return type(obj) is dict and obj.get("type") == "sync"


# -------------------------------------------------------------------------------------- time zones

_ZONES: dict[str, bool] = {}
_ZONES_MAX = 4096  # the tz database has ~600 names: a full cache means someone is sending junk


def _known_zone(name: str) -> bool:
    """Whether ``name`` is a zoneinfo key; answers are cached (ZoneInfo hits the file system)."""
    known = _ZONES.get(name)
    if known is None:
        # The regex keeps path tricks ("../", absolute paths, NULs) away from the file system.
        known = len(name) <= 64 and _ZONE_RE.fullmatch(name) is not None
        if known:
            try:
                ZoneInfo(name)
            except Exception:  # ZoneInfoNotFoundError, ValueError, IsADirectoryError ("Europe"), ...
                known = False
        if len(_ZONES) >= _ZONES_MAX:
            _ZONES.clear()  # untrusted names must not grow the cache without bound
        _ZONES[name] = known
    return known


# -------------------------------------------------------------------------------------- validator


def _clip(value: str) -> str:
    """``repr`` of an untrusted string, cut so that a reason stays short."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


class Validator:
    """Checks one decoded event at a time; see the module docstring for the rules.

    Args:
        limits: ``max_items`` and ``max_string`` (``EngineSettings`` has both).
    """

    __slots__ = ("max_items", "max_string", "_too_long", "_too_many", "_checks", "decoder")

    def __init__(self, limits: Limits) -> None:
        self.max_items = int(limits.max_items)
        self.max_string = int(limits.max_string)
        self._too_long = f"longer than {self.max_string} characters"
        self._too_many = f"items: more than {self.max_items} items"
        #: the fast path: decodes and type-checks one event's msgpack bytes (see engine.schema)
        self.decoder: EventDecoder = event_decoder(self.max_string, self.max_items)
        cart = self._cart_fields
        self._checks = {
            "cart.updated": cart,
            "checkout.started": cart,
            "session.ended": self._cart_only,
            "cart.cleared": self._cart_only,
            "payment.failed": self._payment_failed,
            "order.completed": self._order_completed,
            "profile.updated": self._profile_updated,
            "message.opened": self._message,
            "message.clicked": self._message,
        }

    def __repr__(self) -> str:
        return f"<Validator max_items={self.max_items} max_string={self.max_string}>"

    def validate(self, obj: Any, now: float) -> str | None:
        """Return ``None`` if ``obj`` is a valid event (normalising it in place), else the reason.

        Args:
            obj: one decoded msgpack value (anything at all: it is untrusted).
            now: the receive time in unix seconds, used when the event has no ``ts``.

        Returns:
            ``None`` or ``"field: reason"``, e.g. ``"store: required"``.
        """
        if type(obj) is not dict:
            return "event: must be a map"
        for key in obj:
            if type(key) is not str:
                return "event: keys must be strings"
        kind = obj.get("type")
        if kind is None:
            return "type: required"
        if type(kind) is not str:
            return "type: must be a string"
        check = self._checks.get(kind)
        if check is None:
            return f"type: unknown event type {_clip(kind)}"
        err = self._id(obj.get("store"), "store")
        if err is not None:
            return err
        ts = obj.get("ts")
        if ts is not None:
            t = type(ts)
            if t is int:
                if not (0 <= ts <= _MAX_INT_FLOAT):
                    return "ts: must be a finite number >= 0 (unix seconds)"
                obj["ts"] = float(ts)
            elif t is not float:
                return "ts: must be a number (unix seconds)"
            elif not (0.0 <= ts < _INF):  # also false for NaN
                return "ts: must be a finite number >= 0 (unix seconds)"
        if obj.get("id") is not None:
            err = self._id(obj["id"], "id")
            if err is not None:
                return err
        err = check(obj)
        if err is not None:
            return err
        if ts is None:
            obj["ts"] = now
        return None

    def check_decoded(self, obj: dict[str, Any], now: float) -> str | None:
        """:meth:`validate` for an event that :attr:`decoder` produced (types and lengths already hold).

        Checks what the schema's types cannot say: the field the event type requires, URLs, currency
        letters, a profile map's contents; then normalises as :meth:`validate` does. Whenever something
        is off it hands the event to :meth:`validate`, whose answer (a reason, or acceptance when this
        check was stricter than the rules) is final.
        """
        if obj.get(_REQUIRED[obj["type"]]) is None:
            return self.validate(obj, now)
        profile = obj.get("profile")
        if profile is not None:
            if type(profile) is dict:
                if self._profile(profile) is not None:
                    return self.validate(obj, now)
            elif obj["type"] == "profile.updated":
                return self.validate(obj, now)
        currency = obj.get("currency")
        if currency is not None:
            if not (currency.isascii() and currency.isalpha()):
                return self.validate(obj, now)
            if not currency.isupper():
                obj["currency"] = currency.upper()
        good = _GOOD_URLS
        url = obj.get("checkout_url")
        if url is not None and url not in good and self._url(url, "checkout_url") is not None:
            return self.validate(obj, now)
        items = obj.get("items")
        if items:
            for item in items:
                if len(item) > 3:  # optional fields present
                    url = item.get("url")
                    if url is not None and url not in good and self._url(url, "url") is not None:
                        return self.validate(obj, now)
                    url = item.get("image")
                    if url is not None and url not in good and self._url(url, "image") is not None:
                        return self.validate(obj, now)
        if obj.get("ts") is None:
            obj["ts"] = now
        return None

    # ------------------------------------------------------------------------------- field helpers

    def _id(self, value: Any, name: str) -> str | None:
        """A required, non-empty string of at most ``max_string`` characters (ids, names, reasons)."""
        if type(value) is not str:
            return f"{name}: required" if value is None else f"{name}: must be a string"
        if not value:
            return f"{name}: must not be empty"
        if len(value) > self.max_string:
            return f"{name}: {self._too_long}"
        return None

    def _money(self, holder: dict[str, Any], key: str, name: str) -> str | None:
        """A finite number >= 0, stored back as a float. ``holder[key]`` must exist."""
        v = holder[key]
        t = type(v)
        if t is float:
            if 0.0 <= v < _INF:  # false for NaN too
                return None
        elif t is int and 0 <= v <= _MAX_INT_FLOAT:
            holder[key] = float(v)
            return None
        return f"{name}: must be a non-negative finite number"

    def _url(self, value: Any, name: str) -> str | None:
        if type(value) is not str:
            return f"{name}: required" if value is None else f"{name}: must be an http(s) URL"
        if value in _GOOD_URLS:  # a cart's checkout URL and a product's URL repeat on every update
            return None
        if len(value) > self.max_string:  # checked first: bounds the regex's work
            return f"{name}: {self._too_long}"
        if _URL_RE.fullmatch(value) is None:
            return f"{name}: must be an http(s) URL"
        if len(_GOOD_URLS) >= _GOOD_URLS_MAX:
            _GOOD_URLS.clear()  # bounded memory; it refills with what is hot
        _GOOD_URLS[value] = None
        return None

    def _item_url(self, item: dict[str, Any], key: str, i: int) -> str | None:
        """``items[i].url`` / ``.image``: the reason string is only built when the value is bad."""
        value = item.get(key)
        if value is None or (type(value) is str and value in _GOOD_URLS):
            return None
        return self._url(value, f"items[{i}].{key}")

    # ------------------------------------------------------------------------------ per event type

    def _cart_only(self, obj: dict[str, Any]) -> str | None:
        return self._id(obj.get("cart"), "cart")

    def _message(self, obj: dict[str, Any]) -> str | None:
        return self._id(obj.get("message"), "message")

    def _payment_failed(self, obj: dict[str, Any]) -> str | None:
        err = self._id(obj.get("cart"), "cart")
        if err is None and obj.get("reason") is not None:
            err = self._id(obj["reason"], "reason")
        return err

    def _order_completed(self, obj: dict[str, Any]) -> str | None:
        err = self._id(obj.get("cart"), "cart")
        if err is None and obj.get("order") is not None:
            err = self._id(obj["order"], "order")
        if err is None and obj.get("value") is not None:
            err = self._money(obj, "value", "value")
        return err

    def _profile_updated(self, obj: dict[str, Any]) -> str | None:
        profile = obj.get("profile")
        if profile is None:
            return "profile: required"
        if type(profile) is not dict:
            return "profile: must be a map"
        return self._profile(profile)

    def _cart_fields(self, obj: dict[str, Any]) -> str | None:
        """``cart.updated`` and ``checkout.started``."""
        err = self._id(obj.get("cart"), "cart")
        if err is not None:
            return err
        profile = obj.get("profile")
        if profile is not None:
            if type(profile) is dict:
                err = self._profile(profile)
            elif type(profile) is str:
                err = self._id(profile, "profile")
            else:
                return "profile: must be a map or a profile id string"
            if err is not None:
                return err
        items = obj.get("items")
        if items is not None:
            err = self._items(items)
            if err is not None:
                return err
        if obj.get("value") is not None:
            err = self._money(obj, "value", "value")
            if err is not None:
                return err
        currency = obj.get("currency")
        if currency is not None:
            if type(currency) is not str or len(currency) != 3 or not (currency.isascii() and currency.isalpha()):
                return 'currency: must be a 3-letter code like "EUR"'
            if not currency.isupper():
                obj["currency"] = currency.upper()
        if obj.get("checkout_url") is not None:
            return self._url(obj["checkout_url"], "checkout_url")
        return None

    def _items(self, items: Any) -> str | None:
        if type(items) is not list and type(items) is not tuple:
            return "items: must be a list"
        if len(items) > self.max_items:
            return self._too_many
        max_string = self.max_string
        for i, item in enumerate(items):
            # Reason strings are only formatted on failure, so the loop allocates nothing else.
            if type(item) is not dict:
                return f"items[{i}]: must be a map"
            for key in item:
                if type(key) is not str:
                    return f"items[{i}]: keys must be strings"
            sku = item.get("sku")
            if type(sku) is not str or not sku or len(sku) > max_string:
                return self._id(sku, f"items[{i}].sku")
            qty = item.get("qty")
            if type(qty) is not int or qty <= 0:
                return f"items[{i}].qty: required" if qty is None else f"items[{i}].qty: must be a positive integer"
            if qty > _MAX_QTY:
                return f"items[{i}].qty: must be at most {_MAX_QTY}"
            if item.get("price") is None:
                return f"items[{i}].price: required"
            if type(item["price"]) is not float:  # floats are the common case: skip the call
                err = self._money(item, "price", f"items[{i}].price")
                if err is not None:
                    return err
            elif not (0.0 <= item["price"] < _INF):
                return f"items[{i}].price: must be a non-negative finite number"
            if len(item) > 3:  # optional fields present
                name = item.get("name")
                if name is not None:
                    if type(name) is not str:
                        return f"items[{i}].name: must be a string"
                    if len(name) > max_string:
                        return f"items[{i}].name: {self._too_long}"
                err = self._item_url(item, "url", i) or self._item_url(item, "image", i)
                if err is not None:
                    return err
        return None

    def _profile(self, p: dict[str, Any]) -> str | None:
        """A profile map (``cart.updated``'s or ``profile.updated``'s)."""
        for key in p:
            if type(key) is not str:
                return "profile: keys must be strings"
        err = self._id(p.get("id"), "profile.id")
        if err is not None:
            return err
        if len(p) == 1:  # just an id: the common case for returning shoppers
            return None
        v = p.get("email")
        if v is not None and (type(v) is not str or len(v) > 254 or _EMAIL_RE.fullmatch(v) is None):
            return "profile.email: must look like an email address"
        v = p.get("phone")
        if v is not None and (type(v) is not str or _PHONE_RE.fullmatch(v) is None):
            return 'profile.phone: must be "+" and 8 to 15 digits (E.164, like "+34600123456")'
        v = p.get("push")
        if v is not None:
            if type(v) is str:
                err = self._id(v, "profile.push")
            elif type(v) is dict:
                err = self._push_subscription(v)
            else:
                err = "profile.push: must be a token string or a subscription map"
            if err is not None:
                return err
        v = p.get("locale")
        if v is not None:
            if type(v) is not str or len(v) > 35 or _LOCALE_RE.fullmatch(v) is None:
                return 'profile.locale: must be a language tag like "en" or "es-ES"'
            if "_" in v:
                p["locale"] = v.replace("_", "-")
        v = p.get("timezone")
        if v is not None:
            if type(v) is not str:
                return 'profile.timezone: must be a time zone name like "Europe/Madrid"'
            if not _known_zone(v):
                return f"profile.timezone: unknown time zone {_clip(v)}"
        v = p.get("consent")
        if v is not None:
            if type(v) is not dict:
                return "profile.consent: must be a map"
            for key, flag in v.items():
                if type(key) is not str:
                    return "profile.consent: keys must be strings"
                if type(flag) is not bool:
                    return f"profile.consent.{key if key.isidentifier() else _clip(key)}: must be a boolean"
        return None

    def _push_subscription(self, sub: dict[str, Any]) -> str | None:
        """A Web Push subscription: ``{"endpoint": URL, "keys": {"p256dh": ..., "auth": ...}}``, with an
        optional ``expirationTime`` (a number or nil).

        The map is stored whole and handed to a channel as JSON, so any other field is removed (in place)
        rather than carried: it may hold what msgpack can carry and JSON cannot (bin, extension types, maps
        with int keys), which broke the profile's record or the cart's flow when it was sent.
        """
        unknown = False
        for key in sub:
            if type(key) is not str:
                return "profile.push: keys must be strings"
            if key not in _SUBSCRIPTION_FIELDS:
                unknown = True
        if unknown:
            for key in [key for key in sub if key not in _SUBSCRIPTION_FIELDS]:
                del sub[key]
        expires = sub.get("expirationTime")
        if expires is not None and not ((type(expires) is int or type(expires) is float) and -_INF < expires < _INF):
            return "profile.push.expirationTime: must be a number or nil"
        err = self._url(sub.get("endpoint"), "profile.push.endpoint")
        if err is not None:
            return err
        keys = sub.get("keys")
        if keys is not None:
            if type(keys) is not dict:
                return "profile.push.keys: must be a map of strings"
            for key, value in keys.items():
                if type(key) is not str or type(value) is not str or len(value) > self.max_string:
                    return "profile.push.keys: must be a map of strings"
        return None


#: the fields of a Web Push subscription map that are kept (see Validator._push_subscription)
_SUBSCRIPTION_FIELDS = frozenset(("endpoint", "keys", "expirationTime"))

#: The event types of DESIGN.md, in its table's order.
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


#: the field each event type cannot do without (the schema makes them all optional)
_REQUIRED: dict[str, str] = {
    "cart.updated": "cart", "checkout.started": "cart", "session.ended": "cart", "payment.failed": "cart",
    "order.completed": "cart", "cart.cleared": "cart", "profile.updated": "profile",
    "message.opened": "message", "message.clicked": "message",
}


# -------------------------------------------------------------------------------------- deduper


@dataclass(frozen=True, slots=True)
class DeduperStatistics:
    """A snapshot of :class:`Deduper`'s counters (served by the admin ``stats`` command)."""

    size: int  #: ids remembered now
    capacity: int  #: most ids ever remembered
    window_s: float  #: how long an id is remembered, in seconds
    duplicates: int  #: events ignored as duplicates since start
    evicted: int  #: ids forgotten before their window ended because the capacity was reached


#: a dedup key (``f"{len(store)}:{store}{id}"``) longer than this many characters is kept as its 16-byte
#: BLAKE2b digest instead: ids and stores may be ``max_string`` (2 048) characters each, ~4 KB a key
DIGEST_OVER = 64


def dedup_key(store: str, event_id: str) -> str | bytes:
    """The :class:`Deduper`'s key of ``(store, event_id)``: ``f"{len(store)}:{store}{id}"``, or its
    16-byte BLAKE2b digest when longer than :data:`DIGEST_OVER` characters (see the class docstring)."""
    key = f"{len(store)}:{store}{event_id}"
    if len(key) > DIGEST_OVER:  # (a long id or store: 16 bytes instead of up to ~4 KB)
        return blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return key


class Deduper:
    """Remembers ``(store, id)`` pairs for ``window_s`` seconds in at most ``capacity`` entries.

    DESIGN.md: "a repeated ``id`` for the same store within 24 h is accepted once and ignored after".
    The window runs from the *first* sighting; a duplicate does not extend it.

    Structure: a set of keys for O(1) lookups, plus two FIFOs (keys and their expiry times) in insertion
    order. A key is ``f"{len(store)}:{store}{id}"`` (length-prefixed, so that ("a:b", "c") and ("a", "b:c")
    differ), or its 16-byte BLAKE2b digest when it is longer than :data:`DIGEST_OVER` characters: a key
    then holds at most 64 characters whatever the ids' length. Only long keys pay for the digest (measured:
    ~0.4 us, ~2.5 us for a 2 048-character id; digesting every key would add ~0.4 us to the
    ~0.8 us a call costs). Because ``now`` only moves forward, insertion order is expiry
    order, so expiring is popping from the front: amortised O(1) per call, no scan, no timer. If ``now``
    ever goes backwards, entries inserted after the jump expire late (never early).

    Capacity trade-off: memory is bounded (measured with 1 000 000 ids: about 160 bytes per id with
    36-character ids, 190 at most whatever the length of ids and stores, so under ~200 MB for the default
    1 000 000; fewer ids cost a little more each), but when ids arrive faster than
    ``capacity / window_s`` per second (11.6/s for the defaults) the oldest ids are forgotten before their
    window ends, and the effective window shrinks to ``capacity / rate`` (at 1 000 ids/s: about 17
    minutes). A retry older than that is accepted twice. Retries usually come within seconds or minutes,
    and ``statistics().evicted`` counts every early eviction: if it grows, raise ``dedup_capacity``.

    Not thread-safe; one per event loop. Snapshot mode persists the ids through
    :class:`engine.snapshot.RecordingDeduper`; restore feeds them back with :meth:`seen` and
    :meth:`seen_key`.
    """

    __slots__ = ("window_s", "capacity", "_ids", "_keys", "_expiry", "duplicates", "evicted")

    def __init__(self, window_s: float, capacity: int) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.window_s = float(window_s)
        self.capacity = int(capacity)
        self._ids: set[str | bytes] = set()
        self._keys: deque[str | bytes] = deque()
        self._expiry: deque[float] = deque()
        self.duplicates = 0
        self.evicted = 0

    def seen(self, store: str, event_id: str, now: float) -> bool:
        """Record ``(store, event_id)`` at ``now``; True if it was already seen within the window.

        Args:
            store: the event's store (ids are per store: tenants never collide).
            event_id: the event's ``id``.
            now: the receive time in unix seconds (engine clock).

        Returns:
            True for a duplicate: ignore the event (but count it accepted, DESIGN.md says so).
        """
        return self.seen_key(dedup_key(store, event_id), now)

    def seen_key(self, key: str | bytes, now: float) -> bool:
        """:meth:`seen` for a key already made by :func:`dedup_key`."""
        expiry = self._expiry
        if expiry and expiry[0] <= now:
            keys, ids = self._keys, self._ids
            while expiry and expiry[0] <= now:
                expiry.popleft()
                ids.discard(keys.popleft())
        ids = self._ids
        if key in ids:
            self.duplicates += 1
            return True
        ids.add(key)
        self._keys.append(key)
        expiry.append(now + self.window_s)
        if len(ids) > self.capacity:  # full: forget the oldest id before its window ends
            expiry.popleft()
            ids.discard(self._keys.popleft())
            self.evicted += 1
        return False

    def forget(self, store: str, event_id: str) -> None:
        """Forget ``(store, event_id)``: its event was answered "not applied" (an internal error), so a
        retry with the same id must be applied, not ignored as a duplicate. (Its entry in the expiry
        queue stays; it may end a retry's window early, never extend one.)"""
        self._ids.discard(dedup_key(store, event_id))

    def __len__(self) -> int:
        return len(self._ids)

    def statistics(self) -> DeduperStatistics:
        """Current size and counters."""
        return DeduperStatistics(
            size=len(self._ids), capacity=self.capacity, window_s=self.window_s,
            duplicates=self.duplicates, evicted=self.evicted,
        )

    def __repr__(self) -> str:
        return (
            f"<Deduper size={len(self._ids)}/{self.capacity} window_s={self.window_s:g} "
            f"duplicates={self.duplicates} evicted={self.evicted}>"
        )
