"""Snapshots: a consistent cut of the engine's state, written incrementally without stopping ingest.

Definitions
-----------
*Dirty*: the runtime adds ``(store, cart)`` to ``runtime.dirty`` for every event, fired timer and
delivery result that reaches a cart (one ``set.add``), and profile updates reach
:meth:`Snapshotter.mark_profile`. A *cut* is an instant between two loop turns: it takes the dirty set
(swapping in an empty one), the engine-wide lsn, the store counters (email credits), the metrics, the
message-log records and ingest event ids added since the previous cut. The snapshot written for that
cut holds every dirty cart (and its profile) *as it was at the cut*.

Encoding does not stop the loop: it runs in slices of ``slice_size`` carts with a yield between them.
Events keep arriving meanwhile, so the runtime calls a *copy-on-write* hook (``before_event``,
``before_fire``, ``before_delivered``) before it changes a cart: if that cart (or its profile) belongs to
the running cut and is not encoded yet, it is encoded right then, before the change. Outside a cut the
hooks are None and cost one attribute test. A full snapshot works the same way over every cart that
existed at the cut (carts born after it are recognised by the hook: they did not exist when first
touched).

Why a true cut: restore loads the cut and replays, in lsn order, exactly what came after it (journal
batches, late send outcomes). Anything newer inside the snapshot would be applied twice.

Worked example (``partitions = 16``, 1 % of 1 M carts dirty): the cut swaps a 10 k-entry set (no copy),
encodes ~10 k carts and their profiles in 5 slices of 2 000 (about 6 ms each on this project's
reference machine), and the store commits them in one Redis ``MULTI`` of ~20 multi-field ``HSET``
commands. A ``sync`` frame in snapshot durability asks for the next cut and waits for its commit.

Failure: when the store refuses a commit, the cut's keys go back into the dirty set (they are written
by the next cut), the store is reported down, and cuts are retried with back-off; ``sync`` callers
keep waiting until their own ``sync_timeout`` and then hear an error naming the store. When the store
comes back without the data it had (a Redis restarted without persistence), the next cut is full and
rewrites the ledger, message log and event ids too. A cut with nothing to write (an idle engine) still
asks the store whether it holds the last cut (one probe) before it answers ``sync`` callers, so that a
store that lost everything, or went away, is noticed without new events.

Concurrency contract: one cut at a time (a lock); the hooks run on the loop thread only.

The module also keeps the original helpers :func:`encode_state` / :func:`restore_state` for a whole
snapshot document in memory (tests and tools).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import zlib
from collections import deque
from typing import Any

import msgpack

from actors.effects import LogRecord
from engine.clock import wait_event, wall_time
from actors.bulk import cart_row
from engine.stores.base import (
    CHUNK_PREFIX,
    PROFILE_SEED,
    STORE_FORMAT,
    CorruptStore,
    Sequence,
    SnapshotWrite,
    Store,
    StoreError,
    StoreLost,
    StoreUnavailable,
    split_field,
)
from engine.stores.documents import (
    FORMAT,
    SnapshotError,
    encode_state,
    profile_id,
    profile_id_lists,
    profile_ids,
    restore_state,
)
from engine.stores.journal import Journal, StoreHealth
from engine.tasks import cancel_and_wait
from engine.validate import Deduper, dedup_key

__all__ = [
    "FORMAT",
    "RecordingDeduper",
    "SnapshotError",
    "Snapshotter",
    "encode_state",
    "profile_id",
    "profile_ids",
    "restore_state",
]

log = logging.getLogger("cartwheel.snapshot")

_packb = msgpack.packb
_crc32 = zlib.crc32
_LOG_FIELDS = LogRecord.__slots__
#: prefix of a profile value that is an ``actors.profiles.ProfileBook`` record as it is kept in memory
_RAW_PROFILE = b"R"
#: a cut's ``log_end`` for a message log that cannot tell its newest record: take whatever is there
_LOG_ANY = object()


class RecordingDeduper(Deduper):
    """The ingest :class:`~engine.validate.Deduper`, also remembering ids first seen since the last cut.

    An id whose key the deduper keeps as a digest (longer than :data:`~engine.validate.DIGEST_OVER`) is
    recorded, and stored, as ``("", digest in hex)``: no event has an empty store, and a 2 048-character
    id is not kept twice (:mod:`engine.stores.restore` reads both shapes).
    """

    __slots__ = ("recent",)

    def __init__(self, window_s: float, capacity: int) -> None:
        super().__init__(window_s, capacity)
        #: ids first seen since the last cut, oldest first; while the store is down no cut takes them, so
        #: they are bounded as the deduper is: the newest ``capacity`` (maxlen), none older than the window
        self.recent: deque[tuple[str, str, float]] = deque(maxlen=capacity)

    def seen(self, store: str, event_id: str, now: float) -> bool:
        key = dedup_key(store, event_id)
        if type(key) is bytes:  # a digest: recorded as one
            store, event_id = "", key.hex()
        if self.seen_key(key, now):
            return True
        recent = self.recent
        recent.append((store, event_id, now))
        if recent[0][2] + self.window_s <= now:  # no cut for a whole window (an outage): the deduper forgot it
            while recent[0][2] + self.window_s <= now:
                recent.popleft()
        return False

    def forget(self, store: str, event_id: str) -> None:
        super().forget(store, event_id)
        key = dedup_key(store, event_id)
        if type(key) is bytes:
            store, event_id = "", key.hex()
        self.recent = deque((r for r in self.recent if r[0] != store or r[1] != event_id), maxlen=self.recent.maxlen)

    def take_recent(self, now: float) -> list[tuple[str, str, float]]:
        """The ids recorded since the last call that the deduper still remembers at ``now``, oldest first
        (a cut takes them)."""
        recent = self.recent
        while recent and recent[0][2] + self.window_s <= now:
            recent.popleft()
        taken = list(recent)
        recent.clear()
        return taken


class _Cut:
    """The state of one cut while it is being encoded (see the module docstring)."""

    __slots__ = (
        "born",
        "buffered",
        "captured",
        "cart_rows",
        "carts",
        "chunks",
        "cow",
        "cow_profiles",
        "full",
        "globals",
        "log_end",
        "lsn",
        "meta",
        "n_carts",
        "pending",
        "pending_profiles",
        "profile_rows",
        "profiles",
        "profiles_done",
        "recent_ids",
        "started",
    )

    def __init__(self, full: bool, lsn: int) -> None:
        self.full = full
        self.lsn = lsn
        self.pending: set[tuple[str, str]] = set()
        self.captured: list[Any] = []
        self.cow: set[Any] = set()  # full cut: actors encoded by the copy-on-write hook (few)
        self.cow_profiles: dict[str, set[str]] = {}  # full cut: profiles encoded by the hook, per store
        self.born: set[tuple[str, str]] = set()
        #: incremental: a set of (store, profile id); full: [(store, [profile id, ...]), ...]
        self.pending_profiles: Any = ()
        self.profiles_done: set[tuple[str, str]] = set()
        self.carts: dict[int, list[Any]] = {}  # partition -> [name, value, name, value, ...]
        self.profiles: dict[int, list[Any]] = {}
        #: full cut: (partition, store) -> chunk fields not packed yet (actors.bulk), sealed by _seal
        self.cart_rows: dict[tuple[int, str], list[Any]] = {}
        self.profile_rows: dict[tuple[int, str], list[Any]] = {}
        self.chunks = 0  # chunk fields sealed so far (their names are b"\0" + the number)
        self.meta: dict[str, Any] = {}
        self.started = time.perf_counter()
        self.n_carts = 0
        self.buffered = 0
        self.globals: tuple[Any, ...] = ()
        #: ingest event ids first seen before the cut, and the newest message-log record at the cut:
        #: what is applied while the cut encodes belongs to the next one (an id stored without its
        #: event's effect would make the client's re-sent event a "duplicate" after a restore)
        self.recent_ids: list[tuple[str, str, float]] = []
        self.log_end: Any = None


class Snapshotter:
    """Cuts, encodes and commits snapshots; see the module docstring.

    Args:
        runtime: the engine runtime (``registry``, ``stats``, ``msglog``, ``clock``, hook attributes).
        store: where snapshots go.
        journal: the write-ahead path (told which lsn a committed cut covers).
        ledger: the intent ledger (prunes on commit); may be None.
        seq: the engine's lsn counter.
        health: shared store health.
        partitions: partition count.
        interval_s: time between cuts (``snapshot_interval``).
        deduper: the ingest deduper, when it records ids (:class:`RecordingDeduper`).
        slice_budget_s: how long one encoding slice may hold the loop before it yields.
        stage_size: a full cut hands the store chunks of this many carts/profiles while encoding.
    """

    def __init__(self, *, runtime: Any, store: Store, journal: Journal, ledger: Any, seq: Sequence,
                 health: StoreHealth, partitions: int, interval_s: float, log_retention_s: float = 5 * 86400,
                 deduper: RecordingDeduper | None = None, slice_budget_s: float = 0.004,
                 stage_size: int = 4000) -> None:
        self.runtime = runtime
        self.registry = runtime.registry
        self.store = store
        self.journal = journal
        self.ledger = ledger
        self.seq = seq
        self.health = health
        self.partitions = partitions
        self.interval_s = interval_s
        self.log_retention_s = log_retention_s
        self.deduper = deduper
        self.slice_budget_s = slice_budget_s
        self.stage_size = stage_size
        self.gen = 0
        #: this process's epoch, written with every cut; the store's meta holds ``store_epoch`` (the
        #: restored one until this process's first cut): another epoch there is another engine's
        self.epoch = os.urandom(8).hex()
        self.store_epoch = self.epoch
        self.want_full = True  # the first cut of a fresh store is full (it creates generation 1)
        self.rewrite = False  # the store lost its data: rewrite ledger, log and ids with the next full cut
        self.dirty_profiles: set[tuple[str, str]] = set()
        #: the event ids of the committed and unsent cuts, for a full rewrite: (newest time, packed ids,
        #: how many), oldest first; at most the blobs that hold the deduper's newest ``capacity`` ids
        self.dedup_blobs: deque[tuple[float, bytes, int]] = deque()
        self._dedup_ids = 0  # ids in dedup_blobs
        self._dedup_unsent = 0  # the newest blobs of dedup_blobs that no commit wrote yet
        self._last_log: Any = None
        self._last_cut_lsn = -1
        self._last_globals: tuple[Any, ...] = ()
        self._cut: _Cut | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        # statistics
        self.last_at: float | None = None  # monotonic time of the last commit
        self.last_s: float | None = None
        self.last_carts = 0
        self.last_full = False
        self.cuts = 0
        self.failures = 0
        self.max_slice_ms = 0.0
        self.last_error: str | None = None
        runtime.dirty = set()
        runtime.on_dirty = self._on_dirty_event
        runtime.registry.on_unlink = self.mark_profile
        health.on_up.append(self._wake.set)

    # ------------------------------------------------------------------ dirty marks
    def _on_dirty_event(self, event: dict[str, Any]) -> None:
        """An applied event without a cart (rare) that names a profile marks it (a ``profile.updated``). A
        cart event's profile is written with its dirty cart, or, if the cart leaves the profile before the
        cut, through the registry's ``on_unlink``."""
        ref = event.get("profile")
        pid = ref.get("id") if isinstance(ref, dict) else ref
        if isinstance(ref, dict) and not (isinstance(pid, str) and pid) and isinstance(event.get("cart"), str):
            pid = "~" + event["cart"]
        if isinstance(pid, str) and pid:
            self.mark_profile(event["store"], pid)

    def mark_profile(self, store: str, pid: str) -> None:
        self.dirty_profiles.add((store, pid))

    def dirty_count(self) -> int:
        return len(self.runtime.dirty or ()) + len(self.dirty_profiles)

    # ------------------------------------------------------------------ encoding
    def _emit_cart(self, cut: _Cut, store: str, cart: str, actor: Any) -> None:
        name = f"{store}\0{cart}".encode()  # the field (engine.stores.base.cart_field), and its partition
        part = _crc32(name) % self.partitions
        if cut.full:
            if actor is None:
                return  # a new generation starts empty: nothing to delete
            rows = cut.cart_rows.get((part, store))
            if rows is None:
                rows = cut.cart_rows[(part, store)] = []
            cart_row(actor, rows)
            cut.n_carts += 1
            cut.buffered += 1
            return  # a full cut writes every profile anyway
        if actor is None:
            value = None
        else:
            value = _packb(actor.to_state(), use_bin_type=True)
            cut.n_carts += 1
        out = cut.carts.get(part)
        if out is None:
            out = cut.carts[part] = []
        out.append(name)  # flat [name, value, ...]: no tuple per cart for the collector to track
        out.append(value)
        cut.buffered += 1
        if actor is not None:
            pid = profile_id(actor)
            if pid is not None:
                self._emit_profile(cut, store, pid)

    def _emit_profile(self, cut: _Cut, store: str, pid: str) -> None:
        key = (store, pid)
        if key in cut.profiles_done:
            return
        cut.profiles_done.add(key)
        self._write_profile(cut, store, pid)

    def _write_profile(self, cut: _Cut, store: str, pid: str) -> None:
        name = f"{store}\0{pid}".encode()  # engine.stores.base.profile_field / profile_partition
        part = _crc32(name, PROFILE_SEED) % self.partitions
        if cut.full:
            rules = self.registry.stores.get(store)  # (an unconfigured store's rules go with its last profile)
            record = None if rules is None else rules.profiles._records.get(pid)
            if record is None:
                return
            rows = cut.profile_rows.get((part, store))
            if rows is None:
                rows = cut.profile_rows[(part, store)] = []
            rows.append(pid)
            rows.append(record)
            cut.buffered += 1
            return
        value = self._profile_value(store, pid)
        out = cut.profiles.get(part)
        if out is None:
            out = cut.profiles[part] = []
        out.append(name)
        out.append(value)
        cut.buffered += 1

    def _profile_value(self, store: str, pid: str) -> bytes | None:
        """A profile, packed: its ``to_state()``, or straight its packed record when the registry keeps
        profiles as records (``actors.profiles.ProfileBook``; restore reads both shapes)."""
        rules = self.registry.stores.get(store)
        records = getattr(getattr(rules, "profiles", None), "_records", None)
        if isinstance(records, dict):
            record = records.get(pid)
            return None if record is None else _RAW_PROFILE + record
        profile = self.registry.profile(store, pid)
        return None if profile is None else _packb(profile.to_state(), use_bin_type=True)

    # -- copy-on-write hooks (installed on the runtime only while a cut is encoding)
    def _cow_cart(self, store: str, cart: str) -> None:
        cut = self._cut
        if cut is None:
            return
        key = (store, cart)
        registry = self.registry
        if cut.full:
            # The first change since the cut encodes the cart as it is (still its state at the cut),
            # whether or not the main loop passed it already (then it is written twice, identically).
            if key in cut.born:
                return
            actor = registry.cart(store, cart)
            if actor is None:
                cut.born.add(key)  # created after the cut: not part of it
                return
            if actor not in cut.cow:
                cut.cow.add(actor)
                self._emit_cart(cut, store, cart, actor)
        else:
            actor = registry.cart(store, cart)
            if key in cut.pending:
                cut.pending.discard(key)
                self._emit_cart(cut, store, cart, actor)
                return
            if actor is None:
                return
        pid = profile_id(actor)
        if pid is not None:
            self._cow_profile(store, pid)

    def _cow_profile(self, store: str, pid: str) -> None:
        # Encoding a profile that turns out not to be part of the cut is harmless: its stored state is
        # its state at the cut (it has not changed since it was last written).
        cut = self._cut
        if cut is None:
            return
        if cut.full:
            done = cut.cow_profiles.get(store)
            if done is None:
                done = cut.cow_profiles[store] = set()
            if pid not in done:
                done.add(pid)
                self._write_profile(cut, store, pid)
        elif (store, pid) not in cut.profiles_done:
            self._emit_profile(cut, store, pid)

    def _before_event(self, event: dict[str, Any]) -> None:
        store = event["store"]
        cart = event.get("cart")
        if isinstance(cart, str):
            self._cow_cart(store, cart)
        ref = event.get("profile")
        if isinstance(ref, dict):
            pid = ref.get("id")
            if not isinstance(pid, str) or not pid:
                pid = "~" + cart if isinstance(cart, str) else None  # an anonymous profile (actors.registry)
            ref = pid
        if isinstance(ref, str):
            self._cow_profile(store, ref)

    def _before_fire(self, actor: Any) -> None:
        self._cow_cart(actor.store.id, actor.cart)

    def _before_delivered(self, intent: Any) -> None:
        self._cow_cart(intent.store, intent.cart)
        if intent.profile:
            self._cow_profile(intent.store, intent.profile)

    def _hooks(self, on: bool) -> None:
        runtime = self.runtime
        runtime.before_event = self._before_event if on else None
        runtime.before_fire = self._before_fire if on else None
        runtime.before_delivered = self._before_delivered if on else None

    # ------------------------------------------------------------------ the cut
    def _take_cut(self, full: bool) -> _Cut:
        """Synchronous: everything the cut needs from the live engine, in one loop turn."""
        runtime = self.runtime
        registry = self.registry
        cut = _Cut(full, self.seq.lsn)
        pending = runtime.dirty
        runtime.dirty = set()
        profiles, self.dirty_profiles = self.dirty_profiles, set()
        if full:
            cut.captured = list(registry)  # ~30 ms at 1 M carts: references only
            cut.pending_profiles = profile_id_lists(registry)
        else:
            cut.pending = pending
            cut.pending_profiles = profiles
        now = runtime.clock.now()
        stats = runtime.stats
        cut.globals = self._globals_now()
        if self.deduper is not None:
            cut.recent_ids = self.deduper.take_recent(now)
        records_deque = getattr(runtime.msglog, "_records", None)
        cut.log_end = _LOG_ANY if records_deque is None else records_deque[-1] if records_deque else None
        log_keep_after = now - self.log_retention_s
        if records_deque and runtime.msglog.full():
            # A full log (log_max_records) has pushed out every record older than its oldest: the store
            # lets them go too (Redis drops the log fields all older than this), as memory did.
            log_keep_after = max(log_keep_after, records_deque[0].at)
        credits = {sid: rules.credits for sid, rules in registry.stores.items() if rules.credits is not None}
        metrics = dict(getattr(stats, "metrics", {}))
        sends = {ch: dict(v) for ch, v in getattr(stats, "sends", {}).items()}
        dedup_window = self.deduper.window_s if self.deduper is not None else 86400.0
        cut.meta = {
            "format": STORE_FORMAT, "gen": self.gen, "cut": cut.lsn, "at": now, "partitions": self.partitions,
            "epoch": self.epoch, "carts": len(registry), "credits": credits, "metrics": metrics, "sends": sends,
            "log_keep_after": log_keep_after, "dedup_keep_after": now - dedup_window,
            "written_at": wall_time(),
        }
        self._cut = cut
        self._hooks(True)
        return cut

    def _log_since_cut(self, everything: bool, end: Any) -> list[Any]:
        """Message-log records after the previous cut's last one, up to ``end`` (the newest at this cut,
        None when the log was empty then; records appended while the cut encoded are the next cut's)."""
        msglog = self.runtime.msglog
        records = []
        if end is None:
            if everything:
                self._last_log = None
            return []
        last = None if everything else self._last_log
        # MessageLog iterates oldest first; its deque walks back from the newest for free.
        records_deque = getattr(msglog, "_records", None)
        newest_first = reversed(records_deque) if records_deque is not None else reversed(list(msglog))
        reached = end is _LOG_ANY
        for record in newest_first:
            if not reached:
                if record is not end:
                    continue
                reached = True
            if record is last:
                break
            records.append(record)
        records.reverse()
        if records:
            self._last_log = records[-1]
        elif everything:
            self._last_log = None
        return [[getattr(r, f) for f in _LOG_FIELDS] for r in records]

    def _dedup_since_cut(self, meta: dict[str, Any], everything: bool,
                         recent: list[tuple[str, str, float]]) -> list[tuple[float, bytes]]:
        """Event-id blobs to write: ``recent`` (the ids the cut took) packed, plus what earlier cuts
        could not commit (all of them, with ``everything``).

        Only the newest ``capacity`` ids are worth keeping (the deduper has forgotten older ones), so a
        cut packs at most that many, and the store may drop the blobs :meth:`keep_dedup_blob` let go of:
        the cut's ``dedup_keep_after`` is raised to the oldest blob kept.
        """
        deduper = self.deduper
        if deduper is None:
            return []
        if recent:
            if len(recent) > deduper.capacity:
                recent = recent[-deduper.capacity:]
            blob = (recent[-1][2], _packb(recent, use_bin_type=True))
            self._dedup_unsent += 1
            self.keep_dedup_blob(blob[0], blob[1], len(recent))
        keep_after = meta["at"] - deduper.window_s
        blobs = self.dedup_blobs
        while blobs and blobs[0][0] < keep_after:
            self._dedup_ids -= blobs.popleft()[2]
        self._dedup_unsent = min(self._dedup_unsent, len(blobs))  # (ids older than the window: not sent)
        if blobs:
            # (min, not the first: a wall clock set back makes a newer blob look older)
            meta["dedup_keep_after"] = max(keep_after, min(b[0] for b in blobs))
        first = 0 if everything else len(blobs) - self._dedup_unsent
        return [(t, blob) for t, blob, _ in itertools.islice(blobs, first, None)]

    def keep_dedup_blob(self, blob_t: float, blob: bytes, n: int) -> None:
        """Keep a blob of ``n`` event ids (the newest first seen at ``blob_t``) for a full rewrite, and let
        go of the oldest blobs whose ids are all older than the newest ``capacity`` ones: the deduper
        remembers no more than those, and at 1 000 ids/s a day of ids would be 86 M (restore calls this
        too, oldest blob first)."""
        blobs = self.dedup_blobs
        blobs.append((blob_t, blob, n))
        self._dedup_ids += n
        capacity = self.deduper.capacity if self.deduper is not None else 0
        while self._dedup_ids - blobs[0][2] >= capacity and len(blobs) > 1:
            self._dedup_ids -= blobs.popleft()[2]
        self._dedup_unsent = min(self._dedup_unsent, len(blobs))  # (older ids: forgotten, not sent)

    def _work(self, cut: _Cut) -> Any:
        """One cart or profile encoded per step (a generator: the caller decides when to yield)."""
        registry = self.registry
        if cut.full:
            cow = cut.cow
            for actor in cut.captured:
                if actor not in cow:
                    self._emit_cart(cut, actor.store.id, actor.cart, actor)
                yield
            cut.captured = []
            for store, pids in cut.pending_profiles:
                cow_profiles = cut.cow_profiles.get(store, ())
                for pid in pids:
                    if pid not in cow_profiles:
                        self._write_profile(cut, store, pid)
                    yield
        else:
            pending = cut.pending
            while pending:
                store, cart = pending.pop()
                self._emit_cart(cut, store, cart, registry.cart(store, cart))
                yield
            done = cut.profiles_done
            for store, pid in cut.pending_profiles:
                if (store, pid) not in done:
                    self._emit_profile(cut, store, pid)
                yield  # also when skipped: a million skips must not hold the loop either
        cut.pending_profiles = ()

    async def _encode(self, cut: _Cut) -> None:
        """Encode the cut's carts and profiles in slices of about ``slice_budget_s``, yielding between.

        A full cut on a store that can stage (Redis) hands finished chunks to the store while encoding
        goes on: Redis stores them while Python encodes the next ones.
        """
        perf = time.perf_counter
        budget_s = self.slice_budget_s
        stage = getattr(self.store, "stage", None) if cut.full else None
        staging: list[asyncio.Task[None]] = []
        t0 = perf()
        n = 0
        try:
            for _ in self._work(cut):
                n += 1
                if n & 63 or perf() - t0 < budget_s:
                    continue
                self._slice_done(t0)
                if stage is not None and cut.buffered >= self.stage_size:
                    self._seal(cut)
                    carts, profiles = cut.carts, cut.profiles
                    cut.carts, cut.profiles, cut.buffered = {}, {}, 0
                    staging.append(asyncio.get_running_loop().create_task(stage(self.gen, carts, profiles)))
                    if len(staging) > 2:
                        await staging.pop(0)  # back-pressure: at most a few chunks in flight
                await asyncio.sleep(0)
                t0 = perf()
            self._slice_done(t0)
            while staging:
                await staging.pop(0)
        finally:
            for task in staging:
                task.cancel()

    @staticmethod
    def _seal(cut: _Cut) -> None:
        """Pack a full cut's pending rows into chunk fields ``(b"\\0" + number, [store, flat])`` of their
        partition's cart or profile hash (see :mod:`actors.bulk` and :mod:`engine.stores.base`)."""
        for rows, out in ((cut.cart_rows, cut.carts), (cut.profile_rows, cut.profiles)):
            for (part, store), flat in rows.items():
                fields = out.get(part)
                if fields is None:
                    fields = out[part] = []
                fields.append(CHUNK_PREFIX + b"%d" % cut.chunks)
                fields.append(_packb([store, flat], use_bin_type=True))
                cut.chunks += 1
            rows.clear()

    def _slice_done(self, t0: float) -> float:
        ms = (time.perf_counter() - t0) * 1000
        self.max_slice_ms = max(self.max_slice_ms, ms)
        return ms

    # ------------------------------------------------------------------ one snapshot
    async def snapshot(self, *, full: bool = False) -> float:
        """Cut, encode and commit one snapshot; returns the seconds it took.

        A cut refused because the store lost our data (:class:`StoreLost`: a Redis restarted empty) is
        written again at once as the full rewrite that :meth:`store_lost` asks for: a graceful stop's
        final snapshot must not fail on a store it can rewrite.

        Args:
            full: every cart (a new generation), not only the dirty ones.

        Raises:
            StoreError: the store refused it (the dirty marks are kept for the next attempt).
        """
        try:
            return await self._snapshot(full)
        except StoreLost:
            if not self.rewrite:
                raise
            return await self._snapshot(True)

    async def _snapshot(self, full: bool) -> float:
        async with self._lock:
            full = full or self.want_full or bool(getattr(self.store, "wants_full", lambda: False)())
            if not full and len(self.runtime.dirty or ()) > max(100_000, len(self.registry) // 4):
                full = True  # a new generation, staged chunk by chunk, instead of one huge transaction
            if not full and self._unchanged():
                if await self._idle_cut():
                    return 0.0
                full = True  # the store lost our data (store_lost() ran): the full rewrite, now
            rewrite = self.rewrite
            if full:
                self.gen += 1
            waiters, self._waiters = self._waiters, []
            cut = self._take_cut(full)
            t0 = time.perf_counter()
            last_log = self._last_log
            log_records: list[Any] = []
            prune: dict[int, list[bytes]] = {}
            everything = full and (rewrite or self.store.kind == "file")
            try:
                try:
                    # The ids the cut took are packed first: a cut refused from here on leaves them unsent,
                    # for the next one (they were dropped when the store refused to begin a full cut).
                    dedup = self._dedup_since_cut(cut.meta, everything, cut.recent_ids)
                    begin = getattr(self.store, "begin_full", None) if full else None
                    if begin is not None:
                        await begin(self.gen, rewrite)
                    await self._encode(cut)
                finally:
                    self._hooks(False)
                    self._cut = None
                if full:
                    self._seal(cut)
                meta = cut.meta
                meta["gen"] = self.gen
                log_records = self._log_since_cut(everything, cut.log_end)
                prune = self.ledger.prunable(cut.lsn) if self.ledger is not None else {}
                write = SnapshotWrite(
                    full=full, gen=self.gen, cut=cut.lsn, meta=meta, carts=cut.carts, profiles=cut.profiles,
                    ledger_prune=prune, ledger_marks=self.ledger.marks() if self.ledger is not None else {},
                    ledger_live=self.ledger.live if self.ledger is not None else None,
                    rewrite=rewrite or (full and self.store.kind == "file"), log=log_records, dedup=dedup,
                )
                await self.store.commit(write)
            except BaseException as exc:
                self._last_log = last_log  # the next cut collects these records again
                self._failed(cut, full, exc, waiters)
                raise
            self._dedup_unsent = 0
            self.store_epoch = self.epoch
            self._last_cut_lsn = cut.lsn
            self._last_globals = cut.globals
            took = time.perf_counter() - t0
            self.want_full = False
            if rewrite:
                self.rewrite = False
            if self.ledger is not None:
                self.ledger.forget(prune)
            self.journal.covered_by_cut(cut.lsn)
            if self.health.ok():
                log.info("snapshot: store reachable again")
            self.cuts += 1
            self.last_at = time.monotonic()
            self.last_s = took
            self.last_carts = cut.n_carts
            self.last_full = full
            self.last_error = None
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
            if full:
                log.info("snapshot: full, generation %d, %d carts, lsn %d, %.3f s", self.gen, cut.n_carts, cut.lsn, took)
            return took

    def _globals_now(self) -> tuple[Any, ...]:
        registry = self.registry
        stats = self.runtime.stats
        credits = tuple((sid, rules.credits) for sid, rules in registry.stores.items() if rules.credits is not None)
        return credits, tuple(getattr(stats, "metrics", {}).items())

    def _unchanged(self) -> bool:
        """Nothing to write since the last committed cut (then a cut would only add an empty delta)."""
        if self.gen == 0 or self.rewrite or self.store_epoch != self.epoch or self.runtime.dirty or self.dirty_profiles:
            return False
        if self.seq.lsn != self._last_cut_lsn or self._dedup_unsent:
            return False
        if self.deduper is not None and self.deduper.recent:
            return False
        records = getattr(self.runtime.msglog, "_records", None)
        newest = records[-1] if records else None
        if newest is not self._last_log and (records is None or newest is not None):
            return False
        return self._globals_now() == self._last_globals

    async def _idle_cut(self) -> bool:
        """Nothing changed since the last committed cut: what was accepted is durable if the store still
        holds that cut. One probe (:meth:`Store.intact`, a ``GET`` on Redis) tells, before the waiters
        hear ``synced``: a Redis restarted empty while the engine was idle is noticed here.

        Returns:
            True: the store holds the cut; the waiters are answered. False: it lost it (:meth:`store_lost`
            ran; the caller writes the full rewrite for the waiters).

        Raises:
            StoreError: the store does not answer (reported down; the waiters keep waiting).
        """
        try:
            intact = await self.store.intact(self.gen, self.store_epoch)
        except StoreError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.health.down(exc, "probe")
            raise
        if not intact:
            self.store_lost()
            return False
        if self.health.ok():
            log.info("snapshot: store reachable again")
        self.last_error = None
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        self.last_at = time.monotonic()
        return True

    def _failed(self, cut: _Cut, full: bool, exc: BaseException, waiters: list[asyncio.Future[None]]) -> None:
        """A commit failed: put the cut's marks back so that the next cut writes them again.

        A full cut needs none: the next cut is full again and writes every cart and profile (its fields are
        sealed chunks by now, whose names are chunk numbers, not ``store\\0id``).
        """
        if full:
            self.want_full = True
            self.gen -= 1  # the generation was not committed; the next full cut reuses its number
        else:
            dirty = self.runtime.dirty
            for flat in cut.carts.values():
                for name in flat[::2]:
                    dirty.add(split_field(name))
            dirty.update(cut.pending)
            for flat in cut.profiles.values():
                for name in flat[::2]:
                    self.dirty_profiles.add(split_field(name))
        self._waiters[:0] = [w for w in waiters if not w.done()]
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, StoreLost):
            self.store_lost()
        if isinstance(exc, StoreError):
            self.health.down(exc, "snapshot")
        if isinstance(exc, CorruptStore):
            log.error("snapshot: %s", exc)

    # ------------------------------------------------------------------ sync and the loop
    async def sync(self, timeout_s: float) -> None:
        """Return once a cut taken after this call is committed (the ``sync`` frame, snapshot mode).

        Raises:
            StoreError: not committed within ``timeout_s`` (names the store and the reason).
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            reason = self.health.error or self.last_error or "no snapshot committed in time"
            raise StoreUnavailable(f"not durable after {timeout_s:g} s: store {self.store.describe()}: {reason}") from None

    async def claim(self) -> None:
        """A restored engine writes its own epoch into the store's meta at start (stores that can:
        Redis), so that an engine still writing there with the restored epoch finds it taken.

        Raises:
            StoreError: not written (then the first cut writes it: it is never an idle one).
        """
        claim = getattr(self.store, "claim", None)
        if claim is None or self.gen == 0 or self.store_epoch == self.epoch:
            return
        await claim(self.epoch)
        self.store_epoch = self.epoch

    def request_full(self) -> None:
        """Make the next cut a full one (compaction, recovery after data loss)."""
        self.want_full = True
        self._wake.set()

    def store_lost(self) -> None:
        """The store answers without our data: the next cut is full and rewrites ledger, log and ids."""
        if not self.rewrite:
            log.error("store %s lost the engine's data (restarted without persistence?); writing a full "
                      "snapshot and the ledger again", self.store.describe())
        self.rewrite = True
        self.want_full = True
        self.journal.lost_store_data()
        self._wake.set()

    async def verify(self) -> bool:
        """Probe the store: True when it answers (and if it lost our data, the next cut rewrites it)."""
        if self.gen == 0:
            return True
        try:
            intact = await self.store.intact(self.gen, self.store_epoch)
        except StoreError as exc:
            self.health.down(exc, "probe")
            return False
        if not intact:
            self.store_lost()
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cartwheel-snapshots")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)  # (the loop talks to Redis: one cancel may be swallowed)
        self._task = None

    async def _run(self) -> None:
        backoff_s = 0.25
        while True:
            if self.health.up and not self._waiters and not self.want_full:
                self._wake.clear()
                await wait_event(self._wake, self.interval_s)  # (not wait_for: see wait_event)
            # Down: probe with back-off (cheap), cut only once the store answers again.
            if not self.health.up and not await self.verify():
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
                continue
            try:
                await self.snapshot()
                backoff_s = 0.25
            except StoreError as exc:
                log.error("snapshot to %s failed: %s; retrying in %.1f s", self.store.describe(), exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
            except Exception as exc:  # a bug: report it, keep the engine running from memory
                log.exception("snapshot failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)

    def statistics(self) -> dict[str, Any]:
        return {
            "generation": self.gen, "cuts": self.cuts, "failures": self.failures,
            "last_carts": self.last_carts, "last_full": self.last_full,
            "dirty": self.dirty_count(), "max_slice_ms": round(self.max_slice_ms, 3), "error": self.last_error,
        }

    def __repr__(self) -> str:
        return f"<Snapshotter gen={self.gen} cuts={self.cuts} dirty={self.dirty_count()} failures={self.failures}>"


