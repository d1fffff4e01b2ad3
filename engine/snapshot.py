"""Snapshots of the engine's state, and the embedded ``file:`` store that keeps them.

A snapshot is one msgpack document: a header (format version, engine time), the stores' mutable
counters (email credits), every profile's ``to_state()`` and every cart's ``to_state()``. The file store
writes it to ``DIR/snapshot.msgpack`` atomically: a temporary file in the same directory, ``fsync``,
``rename``, ``fsync`` of the directory, so a crash leaves either the old or the new snapshot, never a
torn one.

Encoding runs on the event loop (it reads live actors), in slices that yield between them so ingest
keeps flowing; the file write and fsync run in a worker thread.
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import msgpack

__all__ = ["FORMAT", "SnapshotError", "FileStore", "encode_state", "restore_state", "open_store"]

log = logging.getLogger("cartwheel.snapshot")

#: snapshot format tag; a different tag is refused with a clear error, never half-loaded
FORMAT = "cartwheel-snapshot/1"


class SnapshotError(RuntimeError):
    """A snapshot could not be read: names the file and what is wrong with it."""


async def encode_state(registry: Any, now: float, *, slice_size: int = 20_000) -> bytes:
    """The registry as one msgpack document, yielding to the loop every ``slice_size`` carts."""
    profiles: list[Any] = []
    for n, (store, profile) in enumerate(registry.profiles()):
        profiles.append([store, profile.to_state()])
        if n % slice_size == slice_size - 1:
            await asyncio.sleep(0)
    carts: list[Any] = []
    for n, actor in enumerate(list(registry)):
        carts.append(actor.to_state())
        if n % slice_size == slice_size - 1:
            await asyncio.sleep(0)
    credits = {sid: rules.credits for sid, rules in registry.stores.items() if rules.credits is not None}
    doc = {"format": FORMAT, "at": now, "credits": credits, "profiles": profiles, "carts": carts}
    return msgpack.packb(doc, use_bin_type=True)


def restore_state(registry: Any, data: bytes, *, source: str) -> list[Any]:
    """Load a snapshot into an empty registry; returns the effects re-arming the carts' timers.

    Raises:
        SnapshotError: the data is not a cartwheel snapshot (names ``source`` and the problem).
    """
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise SnapshotError(f"{source}: not a msgpack document ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise SnapshotError(f"{source}: not a {FORMAT} snapshot (format: {found!r})")
    effects: list[Any] = []
    try:
        for sid, credits in (doc.get("credits") or {}).items():
            registry.rules(sid).credits = credits
        for store, state in doc.get("profiles") or ():
            registry.load_profile(store, state)
        for n, state in enumerate(doc.get("carts") or ()):
            more = registry.load_cart(state)
            if more:
                effects.extend(more)
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError(f"{source}: corrupt snapshot data ({type(exc).__name__}: {exc})") from None
    return effects


class FileStore:
    """The embedded store: atomic snapshot files on local disk (``store = "file:DIR"``)."""

    kind = "file"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "snapshot.msgpack"

    def describe(self) -> str:
        return f"file:{self.directory}"

    def _write(self, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def save(self, data: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._write, data)

    def load(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    async def close(self) -> None:
        return None


def open_store(spec: str, *, base: Path | None = None) -> FileStore:
    """The store named by ``engine.store``. ``redis://`` comes with the persistence work (issue 6)."""
    if spec.startswith("file:"):
        path = Path(spec[len("file:"):] or "state")
        if base is not None and not path.is_absolute():
            path = base / path
        return FileStore(path)
    raise ValueError(f"engine.store: {spec.split(':', 1)[0]}:// stores are not available yet; use \"file:DIR\"")
