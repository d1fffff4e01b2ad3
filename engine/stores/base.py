"""What every store does, and the names and records they share.

A *store* keeps three things for the engine (DESIGN.md "Nothing lost, nothing twice"):

* **snapshots** — every cart, profile and global counter as of a *cut* (a consistent instant of the
  engine, see :mod:`engine.snapshot`), written incrementally: only what changed since the last cut;
* the **journal** — accepted ingest batches appended after a cut (``durability = "journal"``);
* the **intent ledger** — every send intent with its idempotency key, written before the provider is
  called and marked done after (:mod:`engine.intents`).

Two implementations: :class:`engine.stores.file.FileStore` (``file:DIR``, the embedded default) and
:class:`engine.stores.redis.RedisStore` (``redis://``). Both implement :class:`Store`.

Sequence numbers. Every journal batch and every ledger operation takes the next number of one
engine-wide counter, the *lsn* (log sequence number, :class:`Sequence`). A cut records the lsn it
covers: restore loads the cut, then replays what has a larger lsn, in lsn order.

Partitions. A cart belongs to partition ``crc32(store + "\\0" + cart) % partitions`` (stable across
processes and Python versions: never ``hash()``); a profile to the crc32 of its field name started at
:data:`PROFILE_SEED`. Redis
keys carry the partition as a Cluster hash tag, ``cw:{p17}:...``, so that a partition lives on one
slot.

Fields. A partition's carts (and, apart, its profiles) are fields of one hash (Redis) or one map (a
snapshot file) of two kinds:

* *chunks*, written by a full snapshot: name :data:`CHUNK_PREFIX` + a number, value a packed
  ``[store id, flat]`` of many carts or profiles (:mod:`actors.bulk`). Restore decodes a chunk in one
  call and loads its carts in one loop: about three times faster than a document per cart;
* *single fields*, written by incremental cuts on top: name ``store + "\\0" + cart`` (or profile id),
  UTF-8; value the packed ``CartActor.to_state()`` (``Profile.to_state()``, or ``b"R"`` + the profile's
  record), or empty (``b""``, or nil in a file): a *tombstone*, the cart or profile is gone. A single
  field overrides whatever a chunk says about the same cart; the store compacts (writes a new full
  snapshot) when the single fields outgrow a share of the chunks.

A name starting with ``\\0`` cannot be a single field: store ids are never empty.
"""
from __future__ import annotations

import abc
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

__all__ = [
    "CHUNK_PREFIX",
    "STORE_FORMAT",
    "CorruptStore",
    "JournalBatch",
    "Loaded",
    "Progress",
    "Sequence",
    "SnapshotWrite",
    "Store",
    "StoreError",
    "StoreLost",
    "StoreTaken",
    "StoreUnavailable",
    "cart_field",
    "event_partition",
    "partition_of",
    "profile_field",
    "profile_partition",
    "profile_state",
    "split_field",
]

#: format tag of everything a store writes (meta documents, snapshot and delta files)
STORE_FORMAT = "cartwheel-store/3"
#: the start of a chunk field's name (see the module docstring)
CHUNK_PREFIX = b"\0"

Progress = Callable[[str], None]

_crc32 = zlib.crc32


class StoreError(RuntimeError):
    """A store operation failed; the message names the store (and the key, where there is one)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or refused a write (Redis down, disk full): retry later."""


class StoreLost(StoreUnavailable):
    """The store answers, but without the data this engine wrote (a Redis restarted without
    persistence, or flushed): everything must be written again (a full snapshot, the ledger...)."""


class StoreTaken(StoreUnavailable):
    """Another engine process writes to this store (its meta names another epoch): two engines on one
    store database would both restore the same carts and send every message twice. This engine stops
    writing there (it runs from memory, reported down) instead of overwriting the other's state."""


class CorruptStore(StoreError):
    """The store holds data that is not ours or not readable; names the key and what is wrong.

    Never retried: restarting reads the same bytes. The operator moves the data aside (or points the
    engine at another store) and starts again.
    """


class Sequence:
    """The engine-wide log sequence number (lsn): one counter for journal batches and ledger ops."""

    __slots__ = ("lsn",)

    def __init__(self, start: int = 0) -> None:
        self.lsn = start

    def next(self) -> int:
        self.lsn += 1
        return self.lsn

    def __repr__(self) -> str:
        return f"<Sequence lsn={self.lsn}>"


def cart_field(store: str, cart: str) -> bytes:
    """The field name of a cart in its partition's hash (and in snapshot files)."""
    return f"{store}\0{cart}".encode()


def profile_field(store: str, pid: str) -> bytes:
    return f"{store}\0{pid}".encode()


def profile_state(name: bytes, value: bytes) -> tuple[str, list[Any]]:
    """``(store, Profile.to_state())`` from a stored profile: ``to_state()`` packed, or ``b"R"`` and the
    profile's packed in-memory record (``[refs, email, ..., invalid, caps]``, see ``actors.profiles``).

    Raises:
        ValueError: not a profile.
    """
    store, pid = split_field(name)
    if value[:1] == b"R":
        record = msgpack.unpackb(value[1:], raw=False, strict_map_key=False)
        if not isinstance(record, list) or len(record) != 9:
            raise ValueError("a profile record is a list of 9")
        return store, [pid, *record[1:8], record[0], record[8]]
    state = msgpack.unpackb(value, raw=False, strict_map_key=False)
    if not isinstance(state, list):
        raise TypeError("a profile state is a list")
    return store, state


def split_field(name: bytes) -> tuple[str, str]:
    """``(store, id)`` from a field name.

    Raises:
        ValueError: not a ``store\\0id`` name.
    """
    store, sep, rest = name.decode().partition("\0")
    if not sep or not store:
        raise ValueError(f"field {name[:80]!r} is not STORE\\0ID")
    return store, rest


def partition_of(store: str, cart: str, partitions: int) -> int:
    """The partition of cart ``(store, cart)``: stable, so a restarted process agrees with Redis."""
    return _crc32(f"{store}\0{cart}".encode()) % partitions


#: crc32 start value for profiles: a profile and a cart with the same id land in unrelated partitions
PROFILE_SEED = 0x5A5A5A5A


def profile_partition(store: str, pid: str, partitions: int) -> int:
    return _crc32(f"{store}\0{pid}".encode(), PROFILE_SEED) % partitions


def event_partition(event: dict[str, Any], partitions: int) -> int:
    """Where an accepted event is journaled: its cart's partition, a profile update's profile's, else 0."""
    cart = event.get("cart")
    if isinstance(cart, str):
        return partition_of(event["store"], cart, partitions)
    if event.get("type") == "profile.updated":
        ref = event.get("profile")
        pid = ref.get("id") if isinstance(ref, dict) else None
        if isinstance(pid, str):
            return profile_partition(event["store"], pid, partitions)
    return 0


@dataclass(slots=True)
class JournalBatch:
    """Accepted events applied at engine time ``now``, in the order they were applied.

    ``events`` holds each event with its position in the frame, so that a batch split over partitions
    replays in the original order. Two shapes: on the way to a store, ``(index, encoded, partition)``
    (the event already msgpack, as ``msgspec.Raw``, which encoders copy verbatim: the event's dicts
    die with their frame instead of waiting for the group commit, where the collector would walk
    them); read back from a store, ``(index, event)`` with the event a dict.
    """

    lsn: int
    now: float
    events: list[tuple[Any, ...]]
    where: str = ""  #: read back from a store: the key or file it came from (error messages)

    @classmethod
    def unpack(cls, data: bytes, *, where: str) -> JournalBatch:
        """Raises: CorruptStore naming ``where``."""
        try:
            record = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data naming the key
            raise CorruptStore(f"{where}: not a cartwheel journal entry ({type(exc).__name__}: {exc})") from None
        return cls.from_record(record, where=where)

    @classmethod
    def from_record(cls, record: Any, *, where: str) -> JournalBatch:
        """From a decoded ``[lsn, now, [[index, event], ...]]``. Raises: CorruptStore naming ``where``."""
        try:
            lsn, now, events = record
            if not isinstance(lsn, int) or not isinstance(now, (int, float)) or not isinstance(events, list):
                raise TypeError("expected [lsn, now, events]")
            pairs = [(int(i), e) for i, e in events]
            if not all(isinstance(e, dict) and isinstance(e.get("store"), str) for _, e in pairs):
                raise ValueError("an event is not a map with a store")
        except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data naming the key
            raise CorruptStore(f"{where}: not a cartwheel journal entry ({type(exc).__name__}: {exc})") from None
        return cls(lsn, float(now), pairs, where)


@dataclass(slots=True)
class SnapshotWrite:
    """One cut, ready for a store: what changed since the previous cut (or everything, ``full``).

    Values are packed msgpack; a ``None`` value deletes the field. Globals (credits, metrics, message-log
    pointer...) travel in ``meta``; ``log`` and ``dedup`` are what was appended since the previous cut.
    """

    full: bool
    gen: int  #: the snapshot generation this write belongs to (a full write starts a new one)
    cut: int  #: the lsn the cut covers
    meta: dict[str, Any]
    carts: dict[int, list[tuple[bytes, bytes | None]]] = field(default_factory=dict)
    profiles: dict[int, list[tuple[bytes, bytes | None]]] = field(default_factory=dict)
    #: ledger keys done and covered by this cut: deleted once the cut is committed (partition -> keys)
    ledger_prune: dict[int, list[bytes]] = field(default_factory=dict)
    #: ledger entries to write with the cut (partition -> [key, entry, ...]), before the prunes: entries
    #: loaded at restore that their carts will issue again (``IntentLedger.marks``), for stores that keep
    #: the ledger apart from snapshots (Redis)
    ledger_marks: dict[int, list[bytes]] = field(default_factory=dict)
    #: a callable returning every live ledger entry (partition -> [(key, entry)]), called by the store
    #: right before its commit: for stores that keep the ledger inside snapshots (file) or must rewrite it
    ledger_live: Any = None
    #: also rewrite the ledger, message log and event ids from scratch (the store lost its data)
    rewrite: bool = False
    #: message-log records (lists, ``LogRecord.__slots__`` order) since the previous cut (all of them
    #: when ``rewrite`` or for a file base)
    log: list[Any] = field(default_factory=list)
    #: ingest event-id blobs ``(newest time, packed [[store, id, t], ...])`` since the previous cut (all
    #: when ``rewrite`` or for a file base)
    dedup: list[tuple[float, bytes]] = field(default_factory=list)

    def counts(self) -> tuple[int, int]:
        """(cart writes, profile writes), deletions included."""
        return sum(map(len, self.carts.values())), sum(map(len, self.profiles.values()))


@dataclass(slots=True)
class Loaded:
    """What a store holds, ready for :func:`engine.stores.restore.restore`.

    ``carts`` and ``profiles`` are chunks ``(where, [(field, packed value), ...])``: ``where`` names
    the key or file they came from, for error messages.
    """

    meta: dict[str, Any]
    carts: list[tuple[str, list[tuple[bytes, bytes]]]]
    profiles: list[tuple[str, list[tuple[bytes, bytes]]]]
    ledger: list[tuple[str, bytes]]
    journal: list[JournalBatch]
    log: Iterable[Any]  # oldest first; at most the store's ``log_max_records``
    dedup: list[Any]

    def cart_count(self) -> int:
        return sum(len(items) for _, items in self.carts)


class Store(abc.ABC):
    """A place that keeps snapshots, the journal and the intent ledger. See the module docstring.

    Concurrency contract: one engine process owns a store at a time. Methods are called from the event
    loop; implementations do their blocking I/O elsewhere (a worker thread, a socket). ``commit`` and
    ``append`` may run concurrently with each other, never two ``commit`` at once.
    """

    kind: str = "?"
    #: the engine's ``log_max_records`` (None: no bound): :meth:`read` returns at most the newest this
    #: many message-log records, dropping older ones as it reads (the log in memory would drop them)
    log_max_records: int | None = None

    def __init__(self, *, partitions: int) -> None:
        self.partitions = partitions

    @abc.abstractmethod
    def describe(self) -> str:
        """``file:/path`` or ``redis://host:port/db`` (no password)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect / create directories. Raises: StoreUnavailable."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def read(self, progress: Progress) -> Loaded | None:
        """Everything the store holds, or None when it is empty (a first start).

        Raises:
            CorruptStore: naming the key/file and the problem.
            StoreUnavailable: the store cannot be read now.
        """

    @abc.abstractmethod
    async def commit(self, write: SnapshotWrite) -> None:
        """Make one cut durable, atomically: after a crash the store shows this cut or the previous one.

        Raises:
            StoreUnavailable: nothing of this cut can be assumed written (the previous cut stands).
        """

    @abc.abstractmethod
    async def append(self, batches: list[JournalBatch], ledger: list[tuple[int, int, bytes, bytes]]) -> None:
        """Append journal batches and ledger entries ``(lsn, partition, key, entry)``; durable on return.

        Raises:
            StoreUnavailable: none of them may be assumed durable.
        """

    @abc.abstractmethod
    async def intact(self, gen: int, epoch: str) -> bool:
        """Whether the store still holds generation ``gen`` written by ``epoch`` (False: it lost its
        data, e.g. a Redis restarted without persistence).

        Raises:
            StoreTaken: another process wrote over it (a store that can tell).
            StoreUnavailable: no answer.
        """

    async def rotate(self, cut: int) -> None:
        """A cut up to ``cut`` is committed: journal records up to it may be dropped (default: nothing)."""
        return

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()} partitions={self.partitions}>"


def check_meta(meta: Any, *, where: str) -> dict[str, Any]:
    """Validate a decoded meta document; returns it.

    Raises:
        CorruptStore: not ours, or a format this engine does not read.
    """
    if not isinstance(meta, dict):
        raise CorruptStore(f"{where}: not a cartwheel meta document (a {type(meta).__name__})")
    fmt = meta.get("format")
    if fmt != STORE_FORMAT:
        raise CorruptStore(f"{where}: format {fmt!r} is not {STORE_FORMAT!r} (foreign data, or another version)")
    for key, kind in (("gen", int), ("cut", int), ("partitions", int), ("epoch", str)):
        if not isinstance(meta.get(key), kind):
            raise CorruptStore(f"{where}: field {key!r} missing or not a {kind.__name__}")
    if not 1 <= meta["partitions"] <= 16384:
        raise CorruptStore(f"{where}: partitions {meta['partitions']!r} out of range")
    at = meta.get("at")
    if at is not None and (isinstance(at, bool) or not isinstance(at, (int, float))):
        raise CorruptStore(f"{where}: field 'at' is not a time in seconds: {str(at)[:40]!r}")
    return meta


def dedup_newest(ids: Any, *, where: str) -> float:
    """The newest time in a decoded event-id blob ``[[store, id, t], ...]``.

    Raises:
        CorruptStore: naming ``where``, when it is not such a list.
    """
    newest = 0.0
    try:
        for store, event_id, t in ids:
            if not isinstance(store, str) or not isinstance(event_id, str) or isinstance(t, bool) \
                    or not isinstance(t, (int, float)):
                raise TypeError(f"{[store, event_id, t]!r:.80} is not [store, id, time]")
            newest = max(newest, t)
    except (TypeError, ValueError) as exc:
        raise CorruptStore(f"{where}: not cartwheel event ids ({exc})") from None
    return newest
