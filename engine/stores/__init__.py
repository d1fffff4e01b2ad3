"""Stores: where snapshots, the journal and the send-intent ledger are kept (DESIGN.md "Nothing lost").

``open_store(spec)`` builds the store named by ``engine.store``: ``file:DIR`` (the embedded default,
:mod:`engine.stores.file`) or ``redis://HOST:PORT/DB`` / ``rediss://...`` (:mod:`engine.stores.redis`).
"""
from __future__ import annotations

from pathlib import Path

from engine.stores.base import (
    CorruptStore,
    JournalBatch,
    Loaded,
    Sequence,
    SnapshotWrite,
    Store,
    StoreError,
    StoreLost,
    StoreTaken,
    StoreUnavailable,
    cart_field,
    partition_of,
)
from engine.stores.journal import Journal, StoreHealth

__all__ = [
    "CorruptStore",
    "Journal",
    "JournalBatch",
    "Loaded",
    "Sequence",
    "SnapshotWrite",
    "Store",
    "StoreError",
    "StoreHealth",
    "StoreLost",
    "StoreTaken",
    "StoreUnavailable",
    "cart_field",
    "open_store",
    "partition_of",
]


def open_store(spec: str, *, base: Path | None = None, partitions: int = 16) -> Store:
    """The store named by ``engine.store`` (not yet opened: ``await store.open()``).

    Args:
        spec: ``"file:DIR"`` (relative to ``base``) or ``"redis://..."`` / ``"rediss://..."``.
        base: directory relative file stores are resolved against.
        partitions: cart partitions (``engine.partitions``).

    Raises:
        ValueError: an unknown scheme.
    """
    if spec.startswith("file:"):
        from engine.stores.file import FileStore

        path = Path(spec[len("file:"):] or "state")
        if base is not None and not path.is_absolute():
            path = base / path
        return FileStore(path, partitions=partitions)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from engine.stores.redis import RedisStore

        return RedisStore(spec, partitions=partitions)
    raise ValueError(f'engine.store: expected "file:DIR" or "redis://HOST:PORT/DB", got {spec!r}')
