"""Restore: load the latest cut into an empty engine, then replay what came after it.

Order (each step needs the one before):

1. profiles, then carts, chunks in bulk (:mod:`actors.bulk`) with the single fields written after
   them taking precedence (each cart re-arms its one timer: the wheel is rebuilt from every cart's next
   deadline; the wheel starts at the cut's time so that replay can step through it), then every
   profile's count of carts is made right, with progress
   lines (carts per second, ETA) for large stores, the cyclic collector off meanwhile and
   ``gc.freeze()`` after (DESIGN.md principle 4);
2. the store counters (email credits), metrics and send counts, the message log and the ingest ids
   (all as of the cut), the intent ledger;
3. replay, in lsn order: journal batches (journal durability) and *late outcomes* (sends issued before
   the cut whose outcome came after it). Before each item the timers due by its time fire, stepping from
   deadline to deadline so that every actor sees the time its timer was due at — the same order the
   original run had. Sends issued during replay meet the ledger: a completed key is not sent again (its
   outcome goes to the actors), an uncertain one is reported;
4. the caller then resolves what the ledger still holds pending (uncertain) or unsent, starts the
   pools and the tick driver: timers that fell due while the engine was down fire at the first tick, in
   due order.

Errors name the key or file and the field (:class:`~engine.stores.base.CorruptStore`).
"""
from __future__ import annotations

import gc
import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from actors.bulk import book_ids, load_carts, load_profiles, new_counts, row_of_state, settle_refs
from actors.effects import LogRecord
from engine.intents import Entry
from engine.stores.base import (
    CHUNK_PREFIX,
    CorruptStore,
    JournalBatch,
    Loaded,
    Sequence,
    dedup_newest,
    profile_state,
    split_field,
)
from engine.validate import Deduper
from timing_wheel import TimingWheel

__all__ = ["RestoreReport", "restore"]

log = logging.getLogger("cartwheel.restore")

_unpackb = msgpack.unpackb
_packb = msgpack.packb
_LOG_FIELDS = LogRecord.__slots__


@dataclass(slots=True)
class RestoreReport:
    """What a restore did (logged, and kept for ``stats``)."""

    carts: int = 0
    profiles: int = 0
    journal_batches: int = 0
    journal_events: int = 0
    late_outcomes: int = 0
    ledger_entries: int = 0
    timers_fired: int = 0
    load_s: float = 0.0
    replay_s: float = 0.0
    cut: int = 0
    generation: int = 0


class _Progress:
    """Progress lines every ``every_s`` seconds: done/total, rate, ETA."""

    def __init__(self, total: int, say: Callable[[str], None], every_s: float = 1.0) -> None:
        self.total = total
        self.say = say
        self.every_s = every_s
        self.t0 = time.perf_counter()
        self.next_at = self.t0 + every_s

    def tick(self, done: int) -> None:
        now = time.perf_counter()
        if now < self.next_at:
            return
        self.next_at = now + self.every_s
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        self.say(f"restore: {done:,}/{self.total:,} carts ({rate:,.0f} carts/s, ETA {eta:.1f} s)")


def restore(loaded: Loaded, *, runtime: Any, ledger: Any, snapshotter: Any, seq: Sequence,
            deduper: Deduper | None, partitions: int, progress: Callable[[str], None]) -> RestoreReport:
    """Load ``loaded`` into the (empty) engine and replay; see the module docstring.

    Raises:
        CorruptStore: naming the key or file and the field at fault.
    """
    report = RestoreReport()
    meta = loaded.meta
    cut = meta["cut"]
    at = float(meta.get("at") or 0.0)
    report.cut = cut
    report.generation = meta["gen"]
    registry = runtime.registry
    clock = runtime.clock
    # The wheel starts at the cut's time: replay steps through it, past-due timers fire in order.
    if len(runtime.wheel) == 0 and at > 0:
        start_s = min(at, clock.now())
        runtime.wheel = TimingWheel(runtime._tick_of(start_s), tick_s=runtime.tick_s)
    if hasattr(clock, "set") and clock.now() < at:
        clock.set(at)  # a manual clock resumes where the snapshot was taken
    t0 = time.perf_counter()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        _load_actors(loaded, registry, runtime, report, progress, at)
        _load_globals(loaded, meta, runtime, snapshotter, deduper, report)
        entries = []
        for where, data in loaded.ledger:
            entries.append(Entry.unpack(data, where=where, partitions=partitions))
        # The highest lsn stored, read before ``load`` marks the entries that their carts will issue again.
        top = max([cut] + [b.lsn for b in loaded.journal] + [max(e.issue_lsn, e.done_lsn) for e in entries])
        ledger.load(entries, cut)
        report.ledger_entries = len(entries)
        seq.lsn = max(seq.lsn, top)
        report.load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        _replay(loaded, runtime, ledger, deduper, cut, report)
        report.replay_s = time.perf_counter() - t1
    finally:
        if gc_was:
            gc.enable()
        gc.freeze()  # what was restored is long-lived: keep it out of the collector's generations
    snapshotter.gen = meta["gen"]
    # The store holds the restored epoch until this process writes its own (Snapshotter.claim, at
    # start): an epoch names one process, so a second engine on the store is noticed.
    snapshotter.store_epoch = meta["epoch"]
    snapshotter.want_full = meta["partitions"] != partitions  # re-lay the keys out in the new partitions
    return report


def _load_actors(loaded: Loaded, registry: Any, runtime: Any, report: RestoreReport,
                 progress: Callable[[str], None], at: float) -> None:
    """Profiles, then carts: single fields first (they override chunks: see ``engine.stores.base``), then
    the chunks in bulk (:mod:`actors.bulk`), then the single carts; then every profile's cart count."""
    p_chunks, p_single = _split(loaded.profiles)
    c_chunks, c_single = _split(loaded.carts)
    # -- profiles
    p_skip, p_live = _singles(p_single)
    for where, name, value in p_chunks:
        store, flat = _chunk(where, name, value, "profile")
        try:
            report.profiles += load_profiles(registry, store, flat, p_skip.get(store, _NONE))
        except (ValueError, TypeError) as exc:
            raise CorruptStore(f"{where} chunk {_chunk_no(name)}: not a cartwheel profile chunk ({exc})") from None
    for where, name, store, pid, value in p_live:
        try:
            if value[:1] == b"R":
                load_profiles(registry, store, [pid, value[1:]])
            else:
                registry.load_profile(*profile_state(name, value))
        except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data naming the key
            raise CorruptStore(f"{where} field {name[:80]!r}: not a cartwheel profile "
                               f"({type(exc).__name__}: {exc})") from None
        report.profiles += 1
    # -- carts
    c_skip, c_live = _singles(c_single)
    total = int(loaded.meta.get("carts") or 0) or len(c_chunks) + len(c_live)
    meter = _Progress(total, progress)
    counts: dict[str, dict[str, int]] = {}
    ids: dict[str, dict[str, str]] = {}

    def counter(store: str) -> dict[str, int]:
        found = counts.get(store)
        if found is None:
            found = counts[store] = new_counts(registry, store)
            ids[store] = book_ids(registry, store)
        return found

    wheel = runtime.wheel
    tick_s = runtime.tick_s
    done = 0
    for where, name, value in c_chunks:
        store, flat = _chunk(where, name, value, "cart")
        try:
            done += load_carts(registry, store, flat, counts=counter(store), schedule_many=wheel.schedule_many,
                               tick_s=tick_s, skip=c_skip.get(store, _NONE), ids=ids[store])
        except (ValueError, TypeError, KeyError) as exc:
            raise CorruptStore(f"{where} chunk {_chunk_no(name)}: not a cartwheel cart chunk ({exc})") from None
        meter.tick(done)
    for where, name, _, _, value in c_live:
        try:
            store, row = row_of_state(_unpackb(value, raw=False, strict_map_key=False))
            done += load_carts(registry, store, row, counts=counter(store),
                               schedule_many=wheel.schedule_many, tick_s=tick_s, ids=ids[store])
        except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data naming the key
            raise CorruptStore(f"{where} field {name[:80]!r}: not a cartwheel cart ({type(exc).__name__}: {exc})") from None
        if done & 0x3FFF == 0:
            meter.tick(done)
    for store, rules in list(registry.stores.items()):
        if store in counts or len(rules.profiles):
            settle_refs(registry, store, counter(store))
    report.carts = done
    if total >= 100_000:
        took = time.perf_counter() - meter.t0
        progress(f"restore: {done:,} carts loaded in {took:.2f} s ({done / max(took, 1e-9):,.0f} carts/s)")


_NONE: frozenset[str] = frozenset()


def _split(chunks: list[tuple[str, list[tuple[bytes, bytes]]]]) -> tuple[list[tuple[str, bytes, bytes]], list[tuple[str, bytes, bytes]]]:
    """``(chunk fields, single fields)`` as ``(where, name, value)``; see ``engine.stores.base``."""
    bulk: list[tuple[str, bytes, bytes]] = []
    single: list[tuple[str, bytes, bytes]] = []
    for where, items in chunks:
        for name, value in items:
            (bulk if name[:1] == CHUNK_PREFIX else single).append((where, name, value))
    return bulk, single


def _singles(fields: list[tuple[str, bytes, bytes]]) -> tuple[dict[str, set[str]], list[tuple[str, bytes, str, str, bytes]]]:
    """``(skip, live)`` of single fields: the ids they name per store (a chunk's copy of them must not
    load), and ``(where, name, store, id, value)`` of those that are not tombstones.

    Raises:
        CorruptStore: a field name that is not ``store\\0id``.
    """
    skip: dict[str, set[str]] = {}
    live: list[tuple[str, bytes, str, str, bytes]] = []
    for where, name, value in fields:
        try:
            store, key = split_field(name)
        except ValueError as exc:
            raise CorruptStore(f"{where} field {name[:80]!r}: {exc}") from None
        skip.setdefault(store, set()).add(key)
        if value:
            live.append((where, name, store, key, value))
    return skip, live


def _chunk_no(name: bytes) -> str:
    return name[1:].decode(errors="replace")


def _chunk(where: str, name: bytes, value: bytes, kind: str) -> tuple[str, list[Any]]:
    """``(store id, flat)`` of a chunk field. Raises: CorruptStore naming the key and chunk."""
    try:
        store, flat = _unpackb(value, raw=False, strict_map_key=False)
        if not isinstance(store, str) or not store or not isinstance(flat, list):
            raise TypeError("expected [store id, [fields...]]")
    except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data naming the key
        raise CorruptStore(f"{where} chunk {_chunk_no(name)}: not a cartwheel {kind} chunk "
                           f"({type(exc).__name__}: {exc})") from None
    return store, flat


def _load_globals(loaded: Loaded, meta: dict[str, Any], runtime: Any, snapshotter: Any, deduper: Deduper | None,
                  report: RestoreReport) -> None:
    registry = runtime.registry
    stats = runtime.stats
    try:
        registry.restore_credits(meta.get("credits") or {})
        metrics = getattr(stats, "metrics", None)
        if metrics is not None:
            for name, value in (meta.get("metrics") or {}).items():
                metrics[name] = value
        sends = getattr(stats, "sends", None)
        if sends is not None:
            for channel, outcomes in (meta.get("sends") or {}).items():
                for outcome, n in outcomes.items():
                    sends[channel][outcome] = n
    except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data
        raise CorruptStore(f"meta of generation {meta.get('gen')}: bad counters ({type(exc).__name__}: {exc})") from None
    msglog = runtime.msglog
    last = None
    for record in loaded.log:
        try:
            last = LogRecord(**dict(zip(_LOG_FIELDS, record)))
        except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data
            raise CorruptStore(f"message log of generation {meta.get('gen')}: bad record ({exc})") from None
        msglog.append(last)
    msglog.expire(runtime.clock.now())
    snapshotter._last_log = last  # what is loaded is stored already; the next cut starts after it
    if deduper is None:
        return
    # Newest blob first, until they hold the deduper's capacity: older ids would be forgotten at once
    # (a store written before ids were bounded by capacity may hold a day of them), then oldest first.
    window_start = runtime.clock.now() - deduper.window_s
    where = f"event ids of generation {meta.get('gen')}"
    wanted: list[tuple[float, bytes, list[Any]]] = []
    n = 0
    for blob_t, blob in reversed(loaded.dedup):
        if n >= deduper.capacity:
            break
        if blob_t < window_start:
            continue
        try:
            ids = _unpackb(blob, raw=False)
        except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data
            raise CorruptStore(f"{where}: not msgpack ({exc})") from None
        dedup_newest(ids, where=where)
        wanted.append((blob_t, blob, ids))
        n += len(ids)
    if n > deduper.capacity:  # the oldest blob wanted holds ids older than the newest capacity: drop them
        blob_t, blob, ids = wanted[-1]
        ids = ids[n - deduper.capacity:]
        wanted[-1] = (blob_t, _packb(ids, use_bin_type=True), ids)
    for blob_t, blob, ids in reversed(wanted):
        snapshotter.keep_dedup_blob(blob_t, blob, len(ids))
        for store, event_id, t in ids:
            if t < window_start:
                continue
            if store:
                Deduper.seen(deduper, store, event_id, t)  # the base method: not recorded again
                continue
            try:  # ("", hex): the digest of a long key (engine.snapshot.RecordingDeduper)
                key = bytes.fromhex(event_id)
            except ValueError:
                key = b""
            if len(key) != 16:
                raise CorruptStore(f"{where}: not cartwheel event ids ({['', event_id, t]!r:.80} has no store)")
            deduper.seen_key(key, t)


def _replay(loaded: Loaded, runtime: Any, ledger: Any, deduper: Deduper | None, cut: int,
            report: RestoreReport) -> None:
    late = ledger.late_outcomes(cut)
    # A batch split over partitions comes back as one piece per partition: join them, in event order.
    batches: dict[int, JournalBatch] = {}
    for piece in loaded.journal:
        batch = batches.get(piece.lsn)
        if batch is None:
            batches[piece.lsn] = JournalBatch(piece.lsn, piece.now, list(piece.events), piece.where)
        else:
            batch.events.extend(piece.events)
            if piece.where not in batch.where:
                batch.where += f", {piece.where}"
    items: list[tuple[int, int, int, Any]] = []
    for n, batch in enumerate(batches.values()):
        events = batch.events
        events.sort(key=lambda pair: pair[0])
        if any(events[k][0] == events[k - 1][0] for k in range(1, len(events))):
            # A piece stored twice: an append whose reply was lost was retried with later batches, and
            # went into the store again inside a later group. Each event of a batch is replayed once.
            batch.events = [e for k, e in enumerate(events) if k == 0 or e[0] != events[k - 1][0]]
        items.append((batch.lsn, 0, n, batch))
    items += [(e.done_lsn, 1, n, e) for n, e in enumerate(late)]
    heapq.heapify(items)
    tick_s = runtime.tick_s
    wheel = runtime.wheel
    apply = runtime.apply_event
    seen = deduper.seen if deduper is not None else None
    last_t = 0.0
    while items:
        _, kind, _, item = heapq.heappop(items)
        t = item.now if kind == 0 else item.at
        last_t = max(last_t, t)
        # Fire what fell due before this item, deadline by deadline.
        while True:
            nxt = wheel.next_due()
            if nxt is None or nxt * tick_s > t + 1e-9:
                break
            report.timers_fired += runtime.fire_due(max(nxt * tick_s, 0.0), limit=1 << 30)
        if kind == 0:
            report.journal_batches += 1
            for _, event in item.events:
                event_id = event.get("id")
                if event_id is not None and seen is not None and seen(event["store"], event_id, item.now):
                    continue
                try:
                    apply(event, item.now)
                except Exception as exc:  # noqa: BLE001 - stored bytes: an event the engine cannot apply
                    raise CorruptStore(f"{item.where or 'journal'}: batch lsn {item.lsn}: not a cartwheel event "
                                       f"({type(exc).__name__}: {exc}): {str(event)[:120]}") from None
                report.journal_events += 1
        else:
            report.late_outcomes += 1
            ledger.deliver_late(item)
    clock = runtime.clock
    if hasattr(clock, "set") and clock.now() < last_t:
        clock.set(last_t)  # a manual clock stands where the replayed history ends
