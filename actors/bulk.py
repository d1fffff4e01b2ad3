"""Bulk form of carts and profiles: flat columns for snapshots, loaded back at millions per second.

A restore of 1 M carts and their profiles has about 3 s (issue #6), so about 1.5 µs per cart for all
of Python's work. Rebuilding each cart from its own msgpack document (``CartActor.from_state`` through
``Registry.load_cart``) costs ~5 µs: a list per cart, a call per cart, a profile record unpacked and
packed again for every reference count. This module works on *chunks* instead:

* a cart chunk is ``[store id, flat]`` where ``flat`` holds :data:`CART_WIDTH` fields per cart, in
  :data:`CART_FIELDS` order (what ``CartActor.to_state()`` holds after the store id). Decoding a chunk
  makes only the leaf objects (ids, the packed items, floats); the loader assigns them to a fresh actor
  in one loop without a call per cart;
* a profile chunk is ``[store id, flat]`` with ``flat = [pid, record, pid, record, ...]``: ``record`` is
  the :class:`~actors.profiles.ProfileBook` record itself (packed bytes), stored back without unpacking.

Reference counts. A profile record carries how many carts point at it. The counts stored in a cut can
be stale (a profile is written when one of its carts is, not when a cart that left it is purged), so the
loader counts the carts per profile while it loads them and :func:`settle_refs` fixes the records whose
stored count differs. Records keep ``refs`` first so that the comparison reads it from the bytes
(:func:`~actors.profiles.record_refs`); only a record that is wrong is unpacked and packed again.

Corrupt input raises ``ValueError`` / ``TypeError`` / ``KeyError`` naming what is wrong; the caller
(``engine.stores.restore``) adds the key or file.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Container
from collections.abc import Set as AbstractSet
from typing import Any

import msgpack

from actors.cart import _STATE_OF, NO_RUN, TAG_IDLE, TAG_PURGE, TAG_STEP, CartActor, pack_run, position_dones
from actors.profiles import ProfileBook, is_kept, record_refs, with_refs
from actors.states import FINAL_STATES, CartState

try:  # Counter.update's C loop (CPython); the same in Python elsewhere
    from collections import _count_elements  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    def _count_elements(mapping: dict[Any, int], iterable: Any) -> None:
        for x in iterable:
            mapping[x] = mapping.get(x, 0) + 1

__all__ = [
    "CART_FIELDS", "CART_WIDTH", "STATE_CODES", "book_ids", "cart_row", "load_carts", "load_profiles", "new_counts",
    "row_of_state", "settle_refs", "state_of_row",
]

#: the fields of one cart in a chunk, in order (``CartActor.to_state()`` without the store id, except
#: ``state``, which is its number in :data:`STATE_CODES`; ``done`` is stored negated, and a positive
#: value is a schedule position from an older snapshot: see ``actors.cart.pack_run``)
CART_FIELDS = ("cart", "profile", "blob", "state", "flags", "seen", "due", "run", "done", "since", "held", "touch")
CART_WIDTH = len(CART_FIELDS)
#: a state's number in chunks: fixed here, independent of the enum's order (stored data depends on it).
#: A number decodes to a cached small int where a name would be a new string per cart.
STATE_CODES: dict[CartState, int] = {
    _STATE_OF[name]: code for code, name in enumerate(
        ("active", "abandoned", "recovering", "recovered", "converted", "expired", "cleared"))
}
#: state number -> (state, tag of the timer a cart in that state has pending)
_TAG_OF: tuple[tuple[CartState, int], ...] = tuple(
    (s, TAG_IDLE if s is CartState.ACTIVE else TAG_PURGE if s in FINAL_STATES else TAG_STEP)
    for s, _ in sorted(STATE_CODES.items(), key=lambda kv: kv[1])
)
_EMPTY: frozenset[str] = frozenset()
_new = CartActor.__new__
_unpackb = msgpack.unpackb
_VALID_CODES = frozenset(range(len(_TAG_OF)))
_CODE_OF = STATE_CODES


def cart_row(actor: CartActor, out: list[Any]) -> None:
    """Append ``actor``'s :data:`CART_WIDTH` chunk fields to ``out`` (the snapshot side).

    The run fields come from ``packed_run`` in one unpack (its list is already the chunk's form: held
    sends and the last message as lists), not through the five properties.
    """
    packed = actor.packed_run
    out += (actor.cart, actor.profile, actor.blob, _CODE_OF[actor.state], actor.flags, actor.seen, actor.due)
    out += NO_RUN if packed is None else _unpackb(packed)


def row_of_state(state: list[Any]) -> tuple[str, list[Any]]:
    """``(store id, chunk row)`` from a ``CartActor.to_state()`` list (a single field of a snapshot).

    Raises:
        ValueError: not a cart state.
    """
    if not isinstance(state, list) or len(state) != CART_WIDTH + 1 or not isinstance(state[0], str):
        raise ValueError(f"expected a list of {CART_WIDTH + 1} starting with the store id")
    row = state[1:]
    try:
        row[3] = _CODE_OF[_STATE_OF[row[3]]]
    except (KeyError, TypeError):
        raise ValueError(f"unknown state {row[3]!r}") from None
    return state[0], row


def state_of_row(store: str, row: list[Any]) -> list[Any]:
    """The ``CartActor.to_state()`` list of a chunk row (the inverse of :func:`row_of_state`)."""
    state = [store, *row]
    state[4] = _TAG_OF[row[3]][0].value
    return state


def load_profiles(registry: Any, store: str, flat: list[Any], skip: AbstractSet[str] = _EMPTY) -> int:
    """Store ``[pid, record, ...]`` into ``store``'s book, except the ids in ``skip``; returns how many.

    Load profiles before carts: :func:`load_carts` counts references against them.

    Raises:
        ValueError: a malformed chunk (odd length, an id that is not a string, a record that is not one).
    """
    if len(flat) & 1:
        raise ValueError(f"a profile chunk holds [id, record] pairs, got {len(flat)} values")
    ids, records = flat[0::2], flat[1::2]
    # Checked in C-speed passes rather than per pair: a restore loads a million of these.
    if set(map(type, ids)) - {str} or set(map(type, records)) - {bytes} or {r[:1] for r in records} - {b"\x99"}:
        bad = next(i for i, (p, r) in enumerate(zip(ids, records))
                   if type(p) is not str or type(r) is not bytes or r[:1] != b"\x99")
        raise ValueError(f"profile {str(ids[bad])[:80]!r}: not an id and a packed profile record")
    book = registry.rules(store).profiles._records
    if skip and not skip.isdisjoint(ids):
        pairs = [(p, r) for p, r in zip(ids, records) if p not in skip]
        book.update(pairs)
        return len(pairs)
    book.update(zip(ids, records))
    return len(ids)


def load_carts(registry: Any, store: str, flat: list[Any], *, counts: dict[str, int],
               schedule_many: Callable[[list[int], list[Any], list[Any]], list[Any]], tick_s: float,
               skip: Container[str] = _EMPTY, ids: dict[Any, Any] | None = None) -> int:
    """Rebuild ``store``'s carts from a chunk's flat fields and arm their timers; returns how many.

    Args:
        counts: profile id -> carts pointing at it, added to (from :func:`new_counts`; see
            :func:`settle_refs`).
        schedule_many: the wheel's ``schedule_many(due_ticks, actors, tags) -> handles``.
        tick_s: the wheel's tick (seconds); a due time goes to the first tick at or after it.
        skip: cart ids not to load (a newer copy of them comes later, or a tombstone).
        ids: from :func:`book_ids`: a cart then holds its profile's id as the very string that keys
            the book, as carts built by events do (a decoded copy would cost ~60 bytes per cart).

    A cart already loaded (a full cut can hold a cart twice, identically) keeps its first copy.

    Raises:
        ValueError, TypeError, KeyError: a malformed chunk (the message names the cart).
    """
    if len(flat) % CART_WIDTH:
        raise ValueError(f"a cart chunk holds {CART_WIDTH} values per cart, got {len(flat)} values")
    # Checked in C-speed passes over the columns, so that the loop below needs no checks.
    cart_ids = flat[0::CART_WIDTH]
    if set(map(type, cart_ids)) - {str}:
        bad = next(c for c in cart_ids if type(c) is not str)
        raise ValueError(f"cart id {bad!r} is not a string")
    codes = flat[3::CART_WIDTH]
    if not _VALID_CODES.issuperset(codes):
        bad_at = next(i for i, c in enumerate(codes) if c not in _VALID_CODES or type(c) is not int)
        raise ValueError(f"cart {str(cart_ids[bad_at])[:80]!r}: unknown state number {codes[bad_at]!r}")
    rules = registry.rules(store)
    carts = registry._carts.setdefault(rules.id, {})
    by_code = [0] * len(_TAG_OF)
    n_steps = len(rules.schedule)
    old_dones = position_dones(rules.schedule)  # an older snapshot's positions (see actors.cart.stored_done)
    flow_steps = len(rules.flow.steps)
    tag_of = _TAG_OF
    ceil = math.ceil
    new = _new
    put = carts.setdefault
    ticks: list[int] = []
    armed: list[CartActor] = []
    tags: list[int] = []
    canonical = (ids if ids is not None else {}).get
    it = iter(flat)
    uncount: list[Any] = []  # profiles of carts not loaded after all (skipped, second copies): rare
    for cart, pid, blob, code, flags, seen, due, run, done, since, held, touch in zip(it, it, it, it, it, it, it, it, it, it, it, it):
        if skip and cart in skip:
            uncount.append(pid)
            continue
        state, tag = tag_of[code]
        a = new(CartActor)
        a.store = rules
        a.cart = cart
        a.profile = canonical(pid, pid)
        a.blob = blob
        a.state = state
        a.flags = flags
        a.seen = seen
        a.due = due
        a.timer = None
        if run or done or since is not None or held or touch is not None:  # a cart that has run a flow
            # held: the flow may have changed since, so steps it no longer has are dropped
            a.packed_run = pack_run([
                run, done if done <= 0 else old_dones[done if done <= n_steps else n_steps], since,
                ([[d, s, c] for d, s, c in sorted((d, s, c) for d, s, c in held if 1 <= s <= flow_steps)] or None)
                if held else None,
                None if touch is None else touch[:8],  # the last message, and the one before it if any
            ])
        else:
            a.packed_run = None
        if put(cart, a) is not a:
            uncount.append(pid)
            continue  # a second copy of the same cart
        by_code[code] += 1
        if due is not None:
            ticks.append(ceil(due / tick_s - 1e-9))
            armed.append(a)
            tags.append(tag)
    for a, handle in zip(armed, schedule_many(ticks, armed, tags)):
        a.timer = handle
    # References counted in C over the profile column (a Python loop doing it costs ~0.5 µs per cart).
    _count_elements(counts, flat[1::CART_WIDTH])
    for pid in uncount:
        counts[pid] -= 1
    n = sum(by_code)
    registry._size += n
    registry_counts = registry._counts
    for (state, _), k in zip(_TAG_OF, by_code):
        registry_counts[state] += k
    return n


def book_ids(registry: Any, store: str) -> dict[str, str]:
    """``{id: id}`` over ``store``'s profile book, mapping an equal string to the book's own key object
    (see :func:`load_carts`). Made in C; load profiles first."""
    records = registry.rules(store).profiles._records
    return dict(zip(records, records))


def new_counts(registry: Any, store: str) -> dict[Any, int]:
    """A reference counter for ``store``'s carts: every profile id of its book at 0, in the book's order.

    Call it after the profiles are loaded and before the carts. Made in one C call, already sized: the
    counting then only increments (no growth), and :func:`settle_refs` walks it beside the book.
    """
    return dict.fromkeys(registry.rules(store).profiles._records, 0)


def settle_refs(registry: Any, store: str, counts: dict[Any, int]) -> int:
    """Make every profile record of ``store`` count the carts that point at it; returns how many changed.

    ``counts`` is :func:`new_counts`' dict after :func:`load_carts`: its first entries are the book's
    ids in the book's order, then ids no profile has. A cart pointing at a profile the store does not
    hold gets an empty one (no contact, no consent: the same as an event naming an unknown profile id).
    A profile that had carts when it was written and has none now is dropped: the live engine forgot
    it when its last cart went (one stated by ``profile.updated`` stays: :data:`actors.profiles.KEPT`).

    Raises:
        ValueError: ``counts`` does not start with the book's ids (the book changed in between).
    """
    book: ProfileBook = registry.rules(store).profiles
    records = book._records
    fixed = 0
    gone: list[str] = []
    ns = iter(counts.items())
    for (pid, record), (cid, n) in zip(records.items(), ns):
        if cid is not pid:
            raise ValueError(f"profile {pid!r}: the counts are not the book's (call new_counts after loading profiles)")
        stored = record[1]  # record_refs(), inline: refs is a one-byte fixint unless >= 128
        if stored != n and (stored < 0x80 or record_refs(record) != n):
            if n or is_kept(record):
                records[pid] = with_refs(record, n)
            else:
                gone.append(pid)
            fixed += 1
    for pid in gone:
        del records[pid]
    for pid, n in ns:
        if pid is not None and n > 0:
            book.upsert(pid, None)
            records[pid] = with_refs(records[pid], n)
            fixed += 1
    return fixed
