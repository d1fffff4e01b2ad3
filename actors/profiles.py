"""Shopper profiles: contact data, consents, invalidated contacts and the per-channel frequency cap.

A profile is identified by ``(store, profile id)`` and shared by every cart of that shopper in that
store. Carts hold only the profile *id* (the very string object that keys the store's book, so it costs
a pointer) and look the profile up when they are about to send; an opt-out (``profile.updated`` with a
consent set to false) therefore stops that channel for all of the shopper's carts at once, without
visiting them.

Storage (DESIGN.md principle 4). A :class:`ProfileBook` per store maps id -> one packed msgpack record
``[refs, email, phone, push, locale, timezone, consent, invalid, caps]``. A record is one ``bytes``: no
per-profile Python object, nothing for the cyclic garbage collector to traverse (measured: a slotted
profile object plus its packed contact cost ~96 bytes more per profile than the record alone). A
:class:`Profile` is the unpacked *value* of a record, built on demand (a send, an update, the admin) and
written back with :meth:`ProfileBook.put` when changed; it is never kept by a cart.

Frequency cap: ``caps`` remembers, per channel, the last recovery message issued to this profile and for
which cart (and the one before it, so that withdrawing the last one brings the earlier one back). A
message for cart B is held back when the profile got one on the same channel for a *different* cart less
than ``frequency_cap_s`` ago; a cart's own flow paces its own messages (the built-in flow's 1 h and 4 h
emails are three hours apart by design). A cap entry is recorded when the intent is issued, moved to
the time it went out when it waited in a queue, and withdrawn again if that intent is cancelled or fails
before going out.

Defaults on purpose: a channel without an explicit ``consent`` of true is not used (no consent map, no
messages), and the ``webhook`` channel needs neither consent nor contact (it notifies the store itself).
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from actors.packing import packb as _packb
from actors.packing import unpackb as _unpackb

__all__ = ["Profile", "ProfileBook", "CONSENT_BITS", "CONTACT_FIELDS", "KEPT", "is_kept", "record_refs", "with_refs"]


#: one bit per channel, for ``consent`` and ``invalid``
CONSENT_BITS: dict[str, int] = {"email": 1, "push": 2, "whatsapp": 4, "sms": 8, "webhook": 16}
#: the contact fields of a profile map, in record order
CONTACT_FIELDS = ("email", "phone", "push", "locale", "timezone")
#: record positions: ``refs`` first, so that a restore reads it from the packed bytes without unpacking
#: (:func:`record_refs`), then the contact fields from :data:`_CONTACT0`, then these
_REFS, _CONTACT0, _CONSENT, _INVALID, _CAPS = 0, 1, 6, 7, 8
#: the record's ``consent`` holds the channels' bits in its low byte and, above it, the time of the latest
#: statement about them the profile took into account (see :func:`_merge`): event time in milliseconds
#: (0: never stated). Events can arrive late (a queue
#: backlog, a client resending): a profile map older than the change it would undo is no news about the
#: shopper's consent, and re-enabling a channel the shopper left since would be a message sent to someone
#: who opted out. Kept in the one integer, the record and every stored snapshot keep their layout.
_BITS, _AT_SHIFT = 0xFF, 8
#: a bit of the record's ``invalid`` field that is no channel's: the shop stated this profile itself, in a
#: ``profile.updated`` (its address book, which later events may cite by id alone), so the profile stays
#: when its last cart goes (:meth:`ProfileBook.decref`); a profile known only from carts' maps goes
KEPT = 0x80
#: a map repeating the consents as they stand dates them again only this long (ms) after the last time
_RESTATE_MS = 60_000
# which contact field each channel uses, and which invalid bits a changed field clears
_FIELD_OF = {"email": "email", "push": "push", "whatsapp": "phone", "sms": "phone"}
_CLEARS = (1, 4 | 8, 2, 0, 0)  # email, phone (sms + whatsapp), push, locale, timezone
_MISSING = {"email": "no email address", "push": "no push subscription", "phone": "no phone number"}
_INVALID_REASON = {
    "email": "email address marked undeliverable", "push": "push token marked invalid",
    "whatsapp": "phone number marked undeliverable on whatsapp", "sms": "phone number marked undeliverable by sms",
}


def record_refs(record: bytes) -> int:
    """The ``refs`` of a packed record, read from its bytes when it is small (the common case).

    A record is a 9-element msgpack array (``0x99``) whose first element is ``refs``: a positive fixint
    (one byte under 128) needs no unpacking.
    """
    first = record[1]
    return first if first < 0x80 else _unpackb(record)[_REFS]


def is_kept(record: bytes) -> bool:
    """Whether a packed record carries :data:`KEPT` (stated by ``profile.updated``: kept without carts)."""
    return bool(_unpackb(record)[_INVALID] & KEPT)


def with_refs(record: bytes, refs: int) -> bytes:
    """``record`` with its ``refs`` set to ``refs``."""
    fields = _unpackb(record)
    fields[_REFS] = refs
    return _packb(fields)


#: ``(field, record position, invalid bits a change clears)`` per contact field, for :func:`_merge`
_CONTACTS = tuple((name, _CONTACT0 + i, _CLEARS[i]) for i, name in enumerate(CONTACT_FIELDS))
_ABSENT = object()


def _merge(record: list[Any], data: Mapping[str, Any], at: float | None = None) -> bool:
    """Merge a profile map into an unpacked record in place; True when anything changed.

    Fields present replace, absent ones stay; ``""`` clears a field. A changed email, phone or push
    token clears that contact's "invalid" mark; a consent set to false withdraws it. Hot path: a cart
    update usually repeats its shopper's unchanged map, so this runs on every such event.

    ``at`` is the event's time (unix seconds); None applies the map whatever its age. The profile keeps
    one time (see :data:`_BITS`): the latest statement about its consents that it took into account.
    A map may always *withdraw* a consent, however old (wrongly withdrawing only loses a message); it
    may *grant* one only if it is not older than that time (a late copy of an old map must not undo an
    opt-out). A map that repeats a withdrawal dates the consents again, at most once a minute per
    profile (:data:`_RESTATE_MS`): a late map is weighed against the latest opt-out *stated*, within that
    minute, not only the latest change. A map that only repeats grants writes nothing (the hot path: a
    cart update repeating its consenting shopper's map).
    """
    changed = False
    get = data.get
    for name, slot, clears in _CONTACTS:
        value = get(name, _ABSENT)
        if value is not _ABSENT:
            if value == "":
                value = None
            if value != record[slot]:
                record[slot] = value
                record[_INVALID] &= ~clears
                changed = True
    consent = get("consent")
    if consent is not None and (type(consent) is dict or isinstance(consent, Mapping)):
        stored = record[_CONSENT]
        old = stored & _BITS
        grant = withdraw = 0
        for channel, flag in consent.items():  # the channels given (bits are independent of order)
            bit = CONSENT_BITS.get(channel)
            if bit is not None:
                if flag is True:
                    grant |= bit
                else:
                    withdraw |= bit
        bits = (old | grant) & ~withdraw
        if bits == old:  # the hot path: the map repeats the consents as they stand
            if withdraw and at is not None:
                at_ms = int(at * 1000)
                if at_ms >= (stored >> _AT_SHIFT) + _RESTATE_MS:  # a repeated opt-out, dated again
                    record[_CONSENT] = old | at_ms << _AT_SHIFT
                    return True
            return changed
        stated_at = stored >> _AT_SHIFT
        if at is not None:
            at_ms = max(0, int(at * 1000))
            if at_ms < stated_at:  # older than what the profile took into account: withdrawals only
                bits = old & ~withdraw
                if bits == old:
                    return changed
            else:
                stated_at = at_ms
        record[_CONSENT] = bits | stated_at << _AT_SHIFT
        return True
    return changed


class Profile:
    """One shopper of one store, unpacked (a value: change it, then :meth:`ProfileBook.put` it).

    Attributes:
        id: the profile id.
        email, phone, push, locale, timezone: contact data (None when unknown; ``push`` is a token
            string or a web push subscription map).
        consent: bit set of channels the shopper consented to (:data:`CONSENT_BITS`).
        consent_at: the latest statement about the consents taken into account (:func:`_merge`): event
            time in milliseconds, 0 if never stated.
        invalid: bit set of channels whose contact a delivery result marked unusable.
        refs: how many live carts point here; the book forgets a profile when the last one goes.
        caps: None, or ``{channel: (at_s, cart_id)}``: the last message issued per channel, or
            ``(at_s, cart_id, before_at_s, before_cart_id)`` with the one issued before it.
    """

    __slots__ = ("id", "email", "phone", "push", "locale", "timezone", "consent", "consent_at", "invalid", "refs", "caps")

    def __init__(self, id: str) -> None:
        self.id = id
        self.email: str | None = None
        self.phone: str | None = None
        self.push: Any = None
        self.locale: str | None = None
        self.timezone: str | None = None
        self.consent = 0
        self.consent_at = 0
        self.invalid = 0
        self.refs = 0
        self.caps: dict[str, tuple[Any, ...]] | None = None

    # ------------------------------------------------------------------ record form
    def _record(self) -> list[Any]:
        caps = None if not self.caps else [[ch, *last] for ch, last in self.caps.items()]
        consent = self.consent | self.consent_at << _AT_SHIFT
        return [self.refs, self.email, self.phone, self.push, self.locale, self.timezone, consent, self.invalid, caps]

    @classmethod
    def _from_record(cls, pid: str, record: list[Any]) -> Profile:
        profile = cls(pid)
        (profile.refs, profile.email, profile.phone, profile.push, profile.locale, profile.timezone,
         consent, profile.invalid, caps) = record
        profile.consent = consent & _BITS
        profile.consent_at = consent >> _AT_SHIFT
        profile.caps = None if not caps else {entry[0]: tuple(entry[1:]) for entry in caps}
        return profile

    def update(self, data: Mapping[str, Any], at: float | None = None) -> bool:
        """Merge a profile map from an event at ``at`` (see :func:`_merge`); True when anything changed."""
        record = self._record()
        if not _merge(record, data, at):
            return False
        (self.refs, self.email, self.phone, self.push, self.locale, self.timezone, consent,
         self.invalid) = record[:_CAPS]
        self.consent = consent & _BITS
        self.consent_at = consent >> _AT_SHIFT
        return True

    # ------------------------------------------------------------------ reaching the shopper
    def mark_invalid(self, channel: str) -> None:
        """Record that the contact used on ``channel`` is unusable (bounced email, dead token, bad number)."""
        self.invalid |= CONSENT_BITS.get(channel, 0)

    def zone(self) -> ZoneInfo | None:
        """The shopper's own time zone, or None when unknown or not a valid IANA name."""
        if not isinstance(self.timezone, str):
            return None
        try:
            return ZoneInfo(self.timezone)
        except Exception:  # ZoneInfoNotFoundError, ValueError on malformed keys: treat as unknown
            return None

    def reach(self, channel: str) -> tuple[str | None, str]:
        """How to reach the shopper on ``channel``: ``(contact, "")``, or ``(None, reason)`` when we may not.

        Reasons never contain the contact itself (no email address or phone number in logs).
        """
        if channel == "webhook":
            return "", ""
        bit = CONSENT_BITS[channel]
        if not self.consent & bit:
            return None, f"no {channel} consent"
        field = _FIELD_OF[channel]
        value = getattr(self, field)
        if value is None:
            return None, _MISSING[field]
        if self.invalid & bit:
            return None, _INVALID_REASON[channel]
        if not isinstance(value, str):  # a web push subscription map: hand it to the channel as JSON
            value = json.dumps(value, sort_keys=True, separators=(",", ":"))
        return value, ""

    # ------------------------------------------------------------------ frequency cap
    def cap_until(self, channel: str, cart: str, now: float, cap_s: float) -> float | None:
        """When a message for ``cart`` on ``channel`` may go, if the cap holds it back now; else None."""
        caps = self.caps
        if caps is None or cap_s <= 0 or channel == "webhook":
            return None
        last = caps.get(channel)
        if last is None or last[1] == cart:
            return None
        until = last[0] + cap_s
        return until if now < until else None

    def record_send(self, channel: str, cart: str, at: float) -> None:
        """Remember a message issued on ``channel`` for ``cart`` at ``at`` (unix seconds), and the one
        it replaces as the last (which :meth:`forget_send` brings back)."""
        if self.caps is None:
            self.caps = {}
        before = self.caps.get(channel)
        self.caps[channel] = (at, cart) if before is None else (at, cart, before[0], before[1])

    def record_sent(self, channel: str, cart: str, issued_at: float, sent_at: float) -> bool:
        """The message :meth:`record_send` remembered went out at ``sent_at``: the cap counts from then (a
        message that waited in a queue, for quiet hours or a paused channel, went out later than it was
        issued). Only if it is still the last; True when the record changed."""
        last = None if self.caps is None else self.caps.get(channel)
        if last is None or last[0] != issued_at or last[1] != cart or sent_at <= issued_at:
            return False
        self.caps[channel] = (sent_at, cart, *last[2:])  # type: ignore[index]
        return True

    def forget_send(self, channel: str, cart: str, at: float) -> bool:
        """Withdraw :meth:`record_send` for a message that never went out (only if it is still the last):
        the message issued before it, if any, is the last again (it may have gone out: a cancelled
        reminder must not lift the cap that an earlier, sent one set)."""
        caps = self.caps
        last = None if caps is None else caps.get(channel)
        if last is None or last[0] != at or last[1] != cart:
            return False
        assert caps is not None
        if len(last) == 4:
            caps[channel] = (last[2], last[3])
        else:
            del caps[channel]
            if not caps:
                self.caps = None
        return True

    # ------------------------------------------------------------------ snapshots
    def to_state(self) -> list[Any]:
        """Plain, msgpack-able values: ``[id, email, phone, push, locale, timezone, consent, invalid, refs, caps]``
        (``consent`` as the record holds it: the bits and ``consent_at``)."""
        r = self._record()
        return [self.id, *r[_CONTACT0:_CAPS], r[_REFS], r[_CAPS]]

    @classmethod
    def from_state(cls, state: list[Any] | tuple[Any, ...]) -> Profile:
        """Rebuild a profile from :meth:`to_state`."""
        return cls._from_record(state[0], [state[8], *state[1:8], state[9]])

    def __repr__(self) -> str:
        consents = ",".join(ch for ch, bit in CONSENT_BITS.items() if self.consent & bit) or "none"
        return f"<Profile {self.id} consent={consents} carts={self.refs}>"


class ProfileBook:
    """The profiles of one store: id -> packed record. See the module docstring.

    The first cart of a profile creates it, and the id string it holds is the book's key: in the common
    case of one cart per shopper the id is stored once. (A further cart of the same shopper holds the
    equal string of its own event: a dict cannot hand out its stored key object cheaply.)
    """

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, pid: object) -> bool:
        return pid in self._records

    def __iter__(self) -> Iterator[Profile]:
        """Every profile, unpacked (for snapshots and the admin)."""
        for pid, record in self._records.items():
            yield Profile._from_record(pid, _unpackb(record))

    def get(self, pid: str) -> Profile | None:
        """The profile ``pid`` unpacked, or None."""
        record = self._records.get(pid)
        return None if record is None else Profile._from_record(pid, _unpackb(record))

    def put(self, profile: Profile) -> None:
        """Store ``profile`` (new or changed). A profile with no carts stays until :meth:`decref` drops it."""
        self._records[profile.id] = _packb(profile._record())

    def upsert(self, pid: str, data: Mapping[str, Any] | None, at: float | None = None, *, keep: bool = False) -> str:
        """Create ``pid`` if unknown and merge ``data`` (an event's map, of time ``at``) into it; returns
        the book's key string for ``pid``. ``keep``: the map comes from a ``profile.updated``; the profile
        is then kept without carts (:data:`KEPT`).

        The hot path (a cart update repeating an unchanged profile map) unpacks the record once,
        compares and writes nothing.
        """
        records = self._records
        record = records.get(pid)
        if record is None:
            fields: list[Any] = [0, None, None, None, None, None, 0, KEPT if keep else 0, None]
            if data is not None:
                _merge(fields, data, at)
            records[pid] = _packb(fields)
            return pid
        if data is not None:
            fields = _unpackb(record)
            changed = _merge(fields, data, at)
            if keep and not fields[_INVALID] & KEPT:
                fields[_INVALID] |= KEPT
                changed = True
            if changed:
                records[pid] = _packb(fields)
        return pid

    def _add_refs(self, pid: str, delta: int) -> None:
        record = self._records.get(pid)
        if record is None:
            return
        fields = _unpackb(record)
        fields[_REFS] += delta
        if fields[_REFS] <= 0 and delta < 0 and not fields[_INVALID] & KEPT:
            del self._records[pid]
        else:
            self._records[pid] = _packb(fields)

    def incref(self, pid: str) -> None:
        """A cart now points at ``pid``."""
        self._add_refs(pid, 1)

    def decref(self, pid: str) -> None:
        """A cart stopped pointing at ``pid``; the last one going forgets the profile, unless the shop
        stated it in a ``profile.updated`` (:data:`KEPT`)."""
        self._add_refs(pid, -1)
