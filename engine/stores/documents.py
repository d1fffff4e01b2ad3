"""Whole snapshot documents in memory, and registry helpers shared by the snapshot code.

:func:`encode_state` / :func:`restore_state` turn a registry into one ``cartwheel-snapshot/3`` document
and back (the shape of the file store's base snapshot, ``snapshot.msgpack``); the engine itself writes
through :class:`engine.snapshot.Snapshotter`. These are for tools and tests, and read the first file
store's ``cartwheel-snapshot/1`` documents too.
"""
from __future__ import annotations

import asyncio
import gc
from typing import Any

import msgpack

from actors.bulk import CART_WIDTH, state_of_row
from engine.stores.base import CHUNK_PREFIX, STORE_FORMAT, cart_field, profile_field, profile_state

__all__ = ["FORMAT", "SnapshotError", "encode_state", "profile_id", "profile_ids", "restore_state"]

#: the whole-document format of :func:`encode_state` (also the file store's base snapshot)
FORMAT = "cartwheel-snapshot/3"
_LEGACY_FORMAT = "cartwheel-snapshot/1"
_packb = msgpack.packb


class SnapshotError(RuntimeError):
    """A snapshot could not be read: names the file or key and what is wrong with it."""


def profile_id(actor: Any) -> str | None:
    """The id of a cart's profile (carts hold the id, or in older layouts the profile object)."""
    ref = actor.profile
    if ref is None or isinstance(ref, str):
        return ref
    return ref.id  # type: ignore[no-any-return]


def profile_id_lists(registry: Any) -> list[tuple[str, list[str]]]:
    """``[(store, [profile id, ...]), ...]`` of every profile: one list copy per store, no tuple per
    profile (about 10 ms for a million ids)."""
    out: list[tuple[str, list[str]]] = []
    for sid, rules in registry.stores.items():
        book = getattr(rules, "profiles", None)
        records = getattr(book, "_records", None)  # ProfileBook: id -> packed record
        if isinstance(records, dict):
            if records:
                out.append((sid, list(records)))
        elif book is not None:
            out.append((sid, [p.id for p in book]))
    if not out and hasattr(registry, "_profiles"):  # an older registry keeping Profile objects
        grouped: dict[str, list[str]] = {}
        for sid, profile in registry.profiles():
            grouped.setdefault(sid, []).append(profile.id)
        out = list(grouped.items())
    return out


def profile_ids(registry: Any) -> list[tuple[str, str]]:
    """Every ``(store, profile id)`` of the registry, without unpacking the profiles where possible."""
    out: list[tuple[str, str]] = []
    for sid, rules in registry.stores.items():
        book = getattr(rules, "profiles", None)
        records = getattr(book, "_records", None)  # ProfileBook: id -> packed record
        if isinstance(records, dict):
            out.extend((sid, pid) for pid in records)
    if out or not hasattr(registry, "_profiles"):
        return out
    return [(sid, p.id) for sid, p in registry.profiles()]


async def encode_state(registry: Any, now: float, *, slice_size: int = 20_000) -> bytes:
    """The registry as one ``cartwheel-snapshot/3`` document, yielding every ``slice_size`` carts.

    (The engine writes through :class:`Snapshotter`; this is for tools and tests.)
    """
    carts = []
    for n, actor in enumerate(list(registry)):
        carts.append([cart_field(actor.store.id, actor.cart), _packb(actor.to_state(), use_bin_type=True)])
        if n % slice_size == slice_size - 1:
            await asyncio.sleep(0)
    profiles = []
    for sid, pid in profile_ids(registry):
        profile = registry.profile(sid, pid)
        if profile is not None:
            profiles.append([profile_field(sid, pid), _packb(profile.to_state(), use_bin_type=True)])
    credits = {sid: rules.credits for sid, rules in registry.stores.items() if rules.credits is not None}
    meta = {"format": STORE_FORMAT, "gen": 1, "cut": 0, "at": now, "partitions": 1, "epoch": "", "credits": credits}
    return _packb({"format": FORMAT, "meta": meta, "carts": carts, "profiles": profiles, "ledger": [],
                   "log": [], "dedup": []}, use_bin_type=True)


def restore_state(registry: Any, data: bytes, *, source: str) -> list[Any]:
    """Load a whole snapshot document into an empty registry; returns the effects re-arming timers.

    Reads ``cartwheel-snapshot/3`` (this engine) and ``/1`` (the first file store).

    Raises:
        SnapshotError: the data is not a cartwheel snapshot (names ``source`` and the problem).
    """
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # noqa: BLE001 - foreign bytes: any failure is a SnapshotError
        raise SnapshotError(f"{source}: not a msgpack document ({exc})") from None
    fmt = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
    if fmt not in (FORMAT, _LEGACY_FORMAT):
        raise SnapshotError(f"{source}: not a {FORMAT} snapshot (format: {fmt!r})")
    effects: list[Any] = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        if fmt == _LEGACY_FORMAT:
            registry.restore_credits(doc.get("credits") or {})
            for store, state in doc.get("profiles") or ():
                registry.load_profile(store, state)
            for state in doc.get("carts") or ():
                effects.extend(registry.load_cart(state) or ())
            return effects
        registry.restore_credits((doc.get("meta") or {}).get("credits") or {})
        for name, value in _fields(doc.get("profiles") or (), _profile_states):
            registry.load_profile(*profile_state(name, value))
        for name, value in _fields(doc.get("carts") or (), _cart_states):
            effects.extend(registry.load_cart(msgpack.unpackb(value, raw=False)) or ())
    except SnapshotError:
        raise
    except Exception as exc:  # noqa: BLE001 - foreign bytes: any failure is a SnapshotError
        raise SnapshotError(f"{source}: corrupt snapshot data ({type(exc).__name__}: {exc})") from None
    finally:
        if gc_was:
            gc.enable()
    return effects


def _fields(pairs: Any, expand: Any) -> list[tuple[bytes, bytes]]:
    """Single ``(name, packed state)`` fields of a store map: chunks expanded, later single fields and
    tombstones (an empty value) winning over chunks (see ``engine.stores.base``)."""
    out: dict[bytes, bytes | None] = {}
    singles: list[tuple[bytes, bytes | None]] = []
    for name, value in pairs:
        if name[:1] == CHUNK_PREFIX:
            store, flat = msgpack.unpackb(value, raw=False)
            for field, state in expand(store, flat):
                out.setdefault(field, state)
        else:
            singles.append((name, value))
    for name, value in singles:
        out[name] = value
    return [(name, value) for name, value in out.items() if value]


def _cart_states(store: str, flat: list[Any]) -> Any:
    for i in range(0, len(flat), CART_WIDTH):
        row = flat[i:i + CART_WIDTH]
        yield cart_field(store, row[0]), _packb(state_of_row(store, row), use_bin_type=True)


def _profile_states(store: str, flat: list[Any]) -> Any:
    for i in range(0, len(flat), 2):
        yield profile_field(store, flat[i]), b"R" + flat[i + 1]
