"""The Redis store (``store = "redis://HOST:PORT/DB"``): redis-py asyncio with the hiredis parser.

Keys (``P`` a partition number, ``G`` a snapshot generation; ``{...}`` is the Cluster hash tag)::

    cw:{g}:meta               string   the committed cut: generation, lsn, time, counters (msgpack)
    cw:{g}:writing            string   generation of a full snapshot being written (absent otherwise)
    cw:{g}:log                hash     N -> message-log records of one cut (N counts the writes: oldest first)
    cw:{g}:dedup              hash     N -> ingest event ids first seen up to one cut (N as for the log)
    cw:{pP}:gG:carts          hash     \\0N -> a chunk of carts; STORE\\0CART -> CartActor.to_state() or b""
    cw:{pP}:gG:profiles       hash     \\0N -> a chunk of profiles; STORE\\0PROFILE -> its record or b""
                                       (chunks, single fields and tombstones: engine.stores.base)
    cw:{pP}:intents           hash     idempotency key -> ledger entry (engine.intents)
    cw:{pP}:journal           stream   entry id LSN-0, field g: [[lsn, now, [[index, event], ...]], ...]
                                       (the partition's events of one group commit; LSN its last batch)

Writes. An *incremental* cut is one ``MULTI``/``EXEC``: multi-field ``HSET`` of single fields on the
current generation's hashes (at most :data:`CHUNK` fields per command: per-command overhead, not
per-field, is what costs in redis-py; a deleted cart or profile is a tombstone ``b""``, which hides its
copy in a chunk), the ledger prunes, ``XTRIM MINID`` of every journal stream, the new meta, and an
``HLEN`` of each hash: when the single fields outgrow ``compact_ratio`` of the carts,
:meth:`RedisStore.wants_full` asks for a new generation (restore reads chunks ~3x faster).
A *full* snapshot writes a new generation's hashes (chunk fields) outside any transaction (pipelined,
chunk by chunk), then commits by one ``MULTI`` that switches the meta to it; the old generation is
unlinked afterwards.
A crash mid-way leaves the old generation and meta in force (the half-written one is removed at the
next start). Commands are packed with ``hiredis.pack_command`` (C) and sent on a connection taken from
redis-py's pool.

Ordering. Journal appends and the ledger go through :meth:`RedisStore.append` (also one
``MULTI``/``EXEC``: all or nothing). Appends and the commit transaction hold one lock, so Redis applies
them in the order the engine issued them.

Cluster note: the incremental transaction spans the ``{g}`` slot and every partition's slot, which a
single Redis (or a Redis with one shard) accepts; on Redis Cluster each partition would commit on its
own, with its own copy of the globals (DESIGN.md "Scaling out": future work).

Errors: a connection problem is :class:`StoreUnavailable` (the engine runs from memory and retries); a
``WRONGTYPE`` reply or bytes that are not ours are :class:`CorruptStore` naming the key.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
import msgpack
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from actors.packing import packb as _packb
from engine.stores.base import (
    CHUNK_PREFIX,
    CorruptStore,
    JournalBatch,
    Loaded,
    Progress,
    SnapshotWrite,
    Store,
    StoreLost,
    StoreTaken,
    StoreUnavailable,
    check_meta,
    dedup_newest,
)

__all__ = ["CHUNK", "RedisStore"]

log = logging.getLogger("cartwheel.store.redis")

#: fields per HSET/HDEL command
CHUNK = 1000
META = b"cw:{g}:meta"
WRITING = b"cw:{g}:writing"
LOG = b"cw:{g}:log"
DEDUP = b"cw:{g}:dedup"
_pack: Any = hiredis.pack_command  # its stub types the argument as a 1-tuple


def carts_key(part: int, gen: int) -> bytes:
    return b"cw:{p%d}:g%d:carts" % (part, gen)


def profiles_key(part: int, gen: int) -> bytes:
    return b"cw:{p%d}:g%d:profiles" % (part, gen)


def intents_key(part: int) -> bytes:
    return b"cw:{p%d}:intents" % part


def journal_key(part: int) -> bytes:
    return b"cw:{p%d}:journal" % part


def _hset(key: bytes, flat: list[Any], out: list[tuple[Any, ...]], *, tombstones: bool = False) -> None:
    """Multi-field HSET/HDEL commands for ``flat`` = ``[name, value, name, value, ...]`` (a None value
    deletes the field, or with ``tombstones`` sets it to ``b""``), appended to ``out``: at most
    :data:`CHUNK` fields per command."""
    if tombstones and None in flat[1::2]:
        flat = [b"" if v is None and i & 1 else v for i, v in enumerate(flat)]
    if None not in flat[1::2]:
        for start in range(0, len(flat), 2 * CHUNK):
            out.append((b"HSET", key, *flat[start:start + 2 * CHUNK]))
        return
    sets: list[bytes] = []
    dels: list[bytes] = []
    for name, value in zip(flat[::2], flat[1::2]):
        if value is None:
            dels.append(name)
            if len(dels) >= CHUNK:
                out.append((b"HDEL", key, *dels))
                dels = []
        else:
            sets.append(name)
            sets.append(value)
            if len(sets) >= 2 * CHUNK:
                out.append((b"HSET", key, *sets))
                sets = []
    if sets:
        out.append((b"HSET", key, *sets))
    if dels:
        out.append((b"HDEL", key, *dels))


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username + ':***@' if parts.username else ':***@'}{host}{':' + str(parts.port) if parts.port else ''}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


class RedisStore(Store):
    """Snapshots, journal and ledger in Redis; see the module docstring.

    Args:
        url: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS).
        partitions: partition count for new writes.
        connect_timeout_s: TCP connect timeout (a down Redis is noticed this fast).
        timeout_s: read timeout for one reply.
        compact_ratio, compact_min: a new generation is due when the single fields on top of the
            chunks exceed both ``compact_ratio`` times the carts and ``compact_min``.
    """

    kind = "redis"

    def __init__(self, url: str, *, partitions: int = 16, connect_timeout_s: float = 2.0, timeout_s: float = 60.0,
                 compact_ratio: float = 0.25, compact_min: int = 20_000) -> None:
        super().__init__(partitions=partitions)
        self.compact_ratio = compact_ratio
        self.compact_min = compact_min
        self._singles = 0  # single fields (and tombstones) on top of the current generation's chunks
        self._chunks = 0  # chunk fields of the current generation
        self._base_carts = 0  # carts the current generation's full snapshot held
        self.url = url
        self._client = Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=connect_timeout_s, socket_timeout=timeout_s,
            health_check_interval=0, decode_responses=False, socket_read_size=1 << 20,
        )
        self._lock = asyncio.Lock()
        self._gen = 0
        self._expect: tuple[int, str] | None = None  # (generation, epoch) of the meta we wrote last
        self._meta_raw: bytes | None = None  # the meta read() found, until claim() rewrites it
        self._began = 0  # generation whose full write begin_full() prepared
        self._staged_chunks = 0  # chunk fields staged for that generation
        self._old_partitions = partitions
        self._log_fields: dict[bytes, float] = {}  # field -> newest record time
        self._dedup_fields: dict[bytes, float] = {}
        # The last field number of the log and dedup hashes. Each blob gets a field of its own: a cut's
        # lsn is no name for it, since cuts with no ledger operation between them share their lsn (they
        # overwrote each other's ids and records); several dedup blobs may come in one write.
        self._field_no = 0

    def describe(self) -> str:
        return _redact(self.url)

    def wants_full(self) -> bool:
        """True when the single fields outgrew ``compact_ratio`` of the carts (time for a new generation),
        or when there is no generation yet."""
        return self._gen == 0 or self._singles > max(self.compact_ratio * self._base_carts, self.compact_min)

    # ------------------------------------------------------------------ plumbing
    async def open(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"{self.describe()}: {exc}") from None

    async def close(self) -> None:
        await self._client.aclose()

    async def _send(self, commands: list[tuple[Any, ...]], *, transaction: bool,
                    guard: tuple[bytes, Any] | None = None, watch: bool = False, fresh: bool = False) -> list[Any]:
        """Send ``commands`` on one connection, pipelined; returns their replies (EXEC's, in a transaction).

        Args:
            transaction: wrap them in MULTI/EXEC.
            guard: ``(key, check)``: read ``key`` first on the same connection and call ``check(value)``,
                which raises when the store is not what the engine expects. With ``watch`` the key is
                WATCHed and read in a round trip before the transaction is sent (nothing is written
                when the check fails, or when the key changes before EXEC); without it the read is
                pipelined in front (no extra round trip; the caller just does not count the write).

        Raises:
            StoreUnavailable: connection problems, EXECABORT, a watched key that changed.
            StoreLost, StoreTaken: the guard's check failed.
            CorruptStore: a WRONGTYPE reply (names the key).
        """
        if not commands:
            return []
        sent = (commands, transaction, guard, watch)
        if transaction:
            commands = [(b"MULTI",), *commands, (b"EXEC",)]
        pool = self._client.connection_pool
        try:
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"{self.describe()}: {exc}") from None
        head = 0
        stale = False
        replies: list[Any] = []
        try:
            if guard is not None and watch:
                await conn.send_packed_command([_pack((b"WATCH", guard[0])), _pack((b"GET", guard[0]))], check_health=False)
                await conn.read_response()
                value = await conn.read_response()
                try:
                    guard[1](value)
                except BaseException:
                    await conn.send_packed_command([_pack((b"UNWATCH",))], check_health=False)
                    await conn.read_response()
                    raise
            elif guard is not None:
                commands = [(b"GET", guard[0]), *commands]
                head = 1
            # Packed and sent a few multi-field commands at a time (~1 ms of packing), yielding between
            # them: a big transaction must not hold the loop while it is packed.
            for start in range(0, len(commands), 4):
                await conn.send_packed_command([_pack(c) for c in commands[start:start + 4]], check_health=False)
                if len(commands) > 4:
                    await asyncio.sleep(0)
            for _ in commands:
                replies.append(await conn.read_response())
        except ResponseError as exc:
            await conn.disconnect()
            # the failing reply's own command names the key (not the whole pipeline's)
            raise self._response_error(exc, commands[len(replies):len(replies) + 1] or commands) from None
        except (TimeoutError, RedisError, OSError) as exc:
            await conn.disconnect()
            if not fresh and not replies and isinstance(exc, (RedisConnectionError, ConnectionError)) \
                    and not isinstance(exc, TimeoutError):
                # A pooled connection that Redis closed while it was idle (a restart): nothing of ours was
                # read, so nothing ran; once more on a new connection. (Were the commands to have run
                # after all, the meta guard and the journal's explicit entry ids make the retry harmless.)
                stale = True
            else:
                raise StoreUnavailable(f"{self.describe()}: {exc or type(exc).__name__}") from None
        except (StoreLost, StoreTaken):
            raise
        except BaseException:
            await conn.disconnect()  # cancelled mid-reply: the connection's state is unknown
            raise
        finally:
            await pool.release(conn)
        if stale:
            return await self._send(sent[0], transaction=sent[1], guard=sent[2], watch=sent[3], fresh=True)
        if head:
            guard[1](replies[0])  # type: ignore[index]
            replies = replies[1:]
            commands = commands[1:]
        if not transaction:
            return replies
        result = replies[-1]
        if result is None and watch:
            raise StoreUnavailable(f"{self.describe()}: {guard[0].decode()} changed during the commit; retrying")  # type: ignore[index]
        if not isinstance(result, list):
            raise StoreUnavailable(f"{self.describe()}: transaction aborted ({result!r})")
        for reply, command in zip(result, commands[1:-1]):
            if isinstance(reply, ResponseError) and not self._benign(reply, command):
                raise self._response_error(reply, [command])
        return result

    def _check_meta(self, raw: Any) -> None:
        """Guard: the meta is the one this engine wrote last (else Redis lost our data: StoreLost, or another
        engine writes here: StoreTaken)."""
        expect = self._expect
        if expect is None:
            return
        meta = None
        if raw is not None:
            try:
                meta = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            except Exception:  # noqa: BLE001 - unreadable meta: not ours
                meta = None
        if isinstance(meta, dict) and meta.get("epoch") != expect[1]:
            raise self._taken(meta)
        if not isinstance(meta, dict) or meta.get("gen") != expect[0]:
            found = "nothing" if raw is None else f"generation {meta.get('gen') if isinstance(meta, dict) else '?'}"
            raise StoreLost(f"{self.describe()}: {META.decode()} holds {found}, not generation {expect[0]} of this "
                            "engine (Redis restarted without persistence, or was flushed)")

    def _taken(self, meta: dict[str, Any]) -> StoreTaken:
        return StoreTaken(
            f"{self.describe()}: {META.decode()} was written by another engine (epoch {meta.get('epoch')!r}, "
            f"generation {meta.get('gen')!r}): two engines use this store; this one stops writing to it and "
            "runs from memory. One engine owns a store database: stop the other (or give it its own database), "
            "then restart this one")

    @staticmethod
    def _benign(error: ResponseError, command: tuple[Any, ...]) -> bool:
        # A journal entry written by an attempt whose reply was lost: it is there already.
        return command[0] == b"XADD" and "equal or smaller" in str(error)

    def _response_error(self, exc: ResponseError, commands: list[tuple[Any, ...]]) -> Exception:
        text = str(exc)
        keys = sorted({c[1].decode(errors="replace") for c in commands if len(c) > 1 and isinstance(c[1], bytes)})
        where = keys[0] if len(keys) == 1 else ", ".join(keys[:3]) + ("..." if len(keys) > 3 else "")
        if "WRONGTYPE" in text:
            return CorruptStore(f"{self.describe()}: key {where} holds data of another type (not ours?): {text}")
        return StoreUnavailable(f"{self.describe()}: {where}: {text}")

    async def _call(self, *args: Any) -> Any:
        """One read (GET, HGETALL, XRANGE, SCAN), once more on a new connection if the pooled one was closed
        by Redis while idle (reads: nothing to repeat twice)."""
        try:
            try:
                return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]
            except RedisConnectionError:
                return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            raise self._response_error(exc, [tuple(a if isinstance(a, bytes) else str(a).encode() for a in args)]) from None
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreUnavailable(f"{self.describe()}: {exc or type(exc).__name__}") from None

    # ------------------------------------------------------------------ appends
    async def append(self, batches: list[JournalBatch], ledger: list[tuple[int, int, bytes, bytes]]) -> None:
        commands: list[tuple[Any, ...]] = []
        # One stream entry per partition per append (group commit), holding that partition's part of every
        # batch: [[lsn, now, [[index, event], ...]], ...]; its id is the last lsn in it.
        groups: dict[int, list[Any]] = {}
        for batch in batches:
            split: dict[int, list[Any]] = {}
            for index, encoded, part in batch.events:  # encoded and partitioned by Journal.barrier
                events = split.get(part)
                if events is None:
                    events = split[part] = []
                events.append((index, encoded))
            for part, events in split.items():
                groups.setdefault(part, []).append((batch.lsn, batch.now, events))
        for part, records in groups.items():
            data = _packb(records)  # per event the journal's main cost: msgspec, same bytes as msgpack
            commands.append((b"XADD", journal_key(part), b"%d-0" % records[-1][0], b"g", data))
        by_part: dict[int, list[bytes]] = {}
        for _, part, key, entry in ledger:
            flat = by_part.get(part)
            if flat is None:
                flat = by_part[part] = []
            flat.append(key)
            flat.append(entry)
        for part, items in by_part.items():
            _hset(intents_key(part), items, commands)
        async with self._lock:
            await self._send(commands, transaction=True, guard=(META, self._check_meta))

    # ------------------------------------------------------------------ snapshots
    async def commit(self, write: SnapshotWrite) -> None:
        if write.full:
            await self._commit_full(write)
        else:
            await self._commit_incremental(write)

    def _field(self) -> bytes:
        """A new field name for the log or dedup hash, above every one in use (they load in this order)."""
        self._field_no += 1
        return b"%d" % self._field_no

    def _globals(self, write: SnapshotWrite, commands: list[tuple[Any, ...]]) -> None:
        if write.log:
            newest = max(r[1] for r in write.log)
            field = self._field()
            commands.append((b"HSET", LOG, field, msgpack.packb(write.log, use_bin_type=True)))
            self._log_fields[field] = newest
        for blob_t, blob in write.dedup:
            field = self._field()
            commands.append((b"HSET", DEDUP, field, blob))
            self._dedup_fields[field] = blob_t
        for fields, keep_after, key in ((self._log_fields, write.meta.get("log_keep_after"), LOG),
                                        (self._dedup_fields, write.meta.get("dedup_keep_after"), DEDUP)):
            if keep_after is None:
                continue
            old = [f for f, t in fields.items() if t < keep_after]
            for f in old:
                del fields[f]
            if old:
                commands.append((b"HDEL", key, *old))
        for part in range(max(self.partitions, self._old_partitions)):
            commands.append((b"XTRIM", journal_key(part), b"MINID", b"%d-0" % (write.cut + 1)))
        for part, items in write.ledger_marks.items():
            _hset(intents_key(part), items, commands)
        for part, keys in write.ledger_prune.items():
            for start in range(0, len(keys), CHUNK):
                commands.append((b"HDEL", intents_key(part), *keys[start:start + CHUNK]))
        commands.append((b"SET", META, msgpack.packb(write.meta, use_bin_type=True)))

    async def _commit_incremental(self, write: SnapshotWrite) -> None:
        commands: list[tuple[Any, ...]] = []
        gen = write.gen
        for part, items in write.carts.items():
            _hset(carts_key(part, gen), items, commands, tombstones=True)
        for part, items in write.profiles.items():
            _hset(profiles_key(part, gen), items, commands, tombstones=True)
        self._globals(write, commands)
        sizes = [(b"HLEN", key(part, gen)) for part in range(self.partitions) for key in (carts_key, profiles_key)]
        async with self._lock:
            replies = await self._send(commands + sizes, transaction=True, guard=(META, self._check_meta), watch=True)
        self._expect = (write.gen, write.meta["epoch"])
        fields = sum(n for n in replies[-len(sizes):] if isinstance(n, int))
        self._singles = max(0, fields - self._chunks)

    async def begin_full(self, gen: int, rewrite: bool) -> None:
        """A full snapshot of generation ``gen`` starts: mark it, clear leftovers of an earlier attempt.

        The marker names the generation being written (removed at the next start if we die mid-way).
        Unless everything is rewritten, our data must still be there: ledger, log and ids stay as they are.
        """
        await self._send([(b"SET", WRITING, b"%d" % gen)], transaction=False,
                         guard=None if rewrite else (META, self._check_meta))
        clear = [(b"UNLINK", carts_key(p, gen), profiles_key(p, gen)) for p in range(self.partitions)]
        await self._send(clear, transaction=False)
        self._began = gen
        self._staged_chunks = 0

    async def stage(self, gen: int, carts: dict[int, list[Any]], profiles: dict[int, list[Any]]) -> None:
        """Write part of a full snapshot's generation ``gen`` now (it is not live until the commit)."""
        commands: list[tuple[Any, ...]] = []
        for part, items in carts.items():
            _hset(carts_key(part, gen), items, commands)
            self._staged_chunks += len(items) // 2
        for part, items in profiles.items():
            _hset(profiles_key(part, gen), items, commands)
            self._staged_chunks += len(items) // 2
        for start in range(0, len(commands), 4):
            await self._send(commands[start:start + 4], transaction=False)

    async def _commit_full(self, write: SnapshotWrite) -> None:
        gen = write.gen
        old_gen = self._gen
        marker = b"%d" % gen
        if self._began != gen:
            await self.begin_full(gen, write.rewrite)
        await self.stage(gen, write.carts, write.profiles)
        commands: list[tuple[Any, ...]] = []
        if write.rewrite:
            for part in range(max(self.partitions, self._old_partitions)):
                commands.append((b"UNLINK", intents_key(part)))
            commands.append((b"UNLINK", LOG, DEDUP))
            self._log_fields.clear()
            self._dedup_fields.clear()
        self._globals(write, commands)

        def marker_kept(value: Any) -> None:
            if value != marker:
                raise StoreLost(f"{self.describe()}: {WRITING.decode()} vanished while generation {gen} was "
                                "written (Redis restarted?); writing it again")

        async with self._lock:
            if write.rewrite and write.ledger_live is not None:
                live = write.ledger_live() if callable(write.ledger_live) else write.ledger_live
                for part, items in live.items():
                    _hset(intents_key(part), items, commands)
            commands.append((b"DEL", WRITING))
            await self._send(commands, transaction=True, guard=(WRITING, marker_kept), watch=True)
        self._expect = (gen, write.meta["epoch"])
        self._gen = gen
        self._began = 0
        self._singles = 0
        self._chunks = self._staged_chunks
        self._staged_chunks = 0
        self._base_carts = int(write.meta.get("carts") or 0)
        if old_gen and old_gen != gen:
            drop = [(b"UNLINK", carts_key(p, old_gen), profiles_key(p, old_gen)) for p in range(self._old_partitions)]
            try:
                await self._send(drop, transaction=False)
            except StoreUnavailable as exc:
                log.warning("could not remove the previous snapshot generation %d: %s", old_gen, exc)
        if self._old_partitions > self.partitions:
            extra = [(b"UNLINK", intents_key(p), journal_key(p)) for p in range(self.partitions, self._old_partitions)]
            await self._send(extra, transaction=False)
        self._old_partitions = self.partitions

    async def claim(self, epoch: str) -> None:
        """Write ``epoch`` (a restored engine's own) into the meta that :meth:`read` found, if it is still
        there unchanged; from now on the guards expect it.

        Raises:
            StoreLost, StoreTaken: the meta changed since it was read (another engine still commits
            there: StoreTaken). StoreUnavailable: no answer.
        """
        raw = self._meta_raw
        if raw is None or self._expect is None:
            return
        meta = {**msgpack.unpackb(raw, raw=False, strict_map_key=False), "epoch": epoch}

        def unchanged(value: Any) -> None:
            if value != raw:
                self._check_meta(value)  # gone: StoreLost; another epoch: StoreTaken
                raise self._taken(msgpack.unpackb(value, raw=False, strict_map_key=False))  # same epoch, newer cut

        async with self._lock:
            await self._send([(b"SET", META, msgpack.packb(meta, use_bin_type=True))], transaction=True,
                             guard=(META, unchanged), watch=True)
        self._meta_raw = None
        self._expect = (self._expect[0], epoch)

    async def intact(self, gen: int, epoch: str) -> bool:
        raw = await self._call(b"GET", META)
        if raw is None:
            return False
        try:
            meta = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except Exception:  # noqa: BLE001 - unreadable meta: not ours
            return False
        if isinstance(meta, dict) and meta.get("epoch") != epoch:
            raise self._taken(meta)
        return isinstance(meta, dict) and meta.get("gen") == gen

    # ------------------------------------------------------------------ reading
    async def read(self, progress: Progress) -> Loaded | None:
        raw = await self._call(b"GET", META)
        if raw is None:
            stray = await self._call(b"SCAN", b"0", b"MATCH", b"cw:{*", b"COUNT", b"1000")
            keys = [k for k in (stray[1] if isinstance(stray, (list, tuple)) else []) if k != WRITING]
            if keys:
                raise CorruptStore(
                    f"{self.describe()}: key {keys[0].decode(errors='replace')} exists but {META.decode()} does not "
                    "(Redis lost the data the engine wrote, or another program uses the cw: keys); "
                    "delete the cw:* keys (or use another database) to start empty")
            return None
        try:
            meta = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data naming the key
            raise CorruptStore(f"{self.describe()}: key {META.decode()}: not msgpack ({type(exc).__name__}: {exc})") from None
        meta = check_meta(meta, where=f"{self.describe()}: key {META.decode()}")
        gen, cut, parts = meta["gen"], meta["cut"], meta["partitions"]
        self._gen = gen
        self._expect = (gen, meta["epoch"])
        self._meta_raw = raw
        self._old_partitions = parts
        writing = await self._call(b"GET", WRITING)
        if writing is not None and writing != b"%d" % gen:
            try:
                stale = int(writing)
            except ValueError:
                raise CorruptStore(f"{self.describe()}: key {WRITING.decode()}: not a generation number: {writing[:40]!r}") from None
            log.warning("removing generation %d of an interrupted full snapshot", stale)
            await self._send([(b"UNLINK", carts_key(p, stale), profiles_key(p, stale)) for p in range(max(parts, self.partitions))]
                             + [(b"DEL", WRITING)], transaction=False)
        t0 = time.perf_counter()
        carts: list[tuple[str, list[tuple[bytes, bytes]]]] = []
        profiles: list[tuple[str, list[tuple[bytes, bytes]]]] = []
        ledger: list[tuple[str, bytes]] = []
        journal: list[JournalBatch] = []
        self._chunks = self._singles = 0
        # Every HGETALL in one pipeline: Redis builds the replies while hiredis parses the earlier ones.
        names = [name for part in range(parts)
                 for name in (carts_key(part, gen), profiles_key(part, gen), intents_key(part))]
        replies = await self._send([(b"HGETALL", k) for k in names], transaction=False)
        for n, (key, reply) in enumerate(zip(names, replies)):
            if isinstance(reply, dict):  # RESP3 maps
                items = list(reply.items())
            elif isinstance(reply, list):
                items = list(zip(reply[::2], reply[1::2]))
            else:
                raise CorruptStore(f"{self.describe()}: key {key.decode()}: unexpected reply {type(reply).__name__}")
            kind = n % 3
            if kind < 2:
                for name, _ in items:
                    if name[:1] == CHUNK_PREFIX:
                        self._chunks += 1
                    else:
                        self._singles += 1
            if kind == 0:
                carts.append((key.decode(), items))
            elif kind == 1:
                profiles.append((key.decode(), items))
            else:
                for name, value in items:
                    ledger.append((f"{key.decode()} field {name.decode(errors='replace')!r}", value))
        del replies
        self._base_carts = int(meta.get("carts") or 0)
        progress(f"restore: read {self._chunks:,} chunks and {self._singles:,} single fields from {parts} partitions "
                 f"in {time.perf_counter() - t0:.2f} s")
        for part in range(parts):
            entries = await self._call(b"XRANGE", journal_key(part), b"%d-0" % (cut + 1), b"+")
            for entry_id, fields in entries or ():
                where = f"{journal_key(part).decode()} entry {entry_id.decode(errors='replace')}"
                if isinstance(fields, list):
                    fields = dict(zip(fields[::2], fields[1::2]))
                data = fields.get(b"g") if isinstance(fields, dict) else None
                if data is None:
                    raise CorruptStore(f"{self.describe()}: {where}: no field g (not a cartwheel journal entry)")
                try:
                    records = msgpack.unpackb(data, raw=False, strict_map_key=False)
                    if not isinstance(records, list):
                        raise TypeError("not a list of batches")
                except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data naming the key
                    raise CorruptStore(f"{self.describe()}: {where}: not a cartwheel journal entry ({exc})") from None
                for record in records:
                    batch = JournalBatch.from_record(record, where=where)
                    if batch.lsn > cut:
                        journal.append(batch)
        journal.sort(key=lambda b: (b.lsn, b.events[0][0] if b.events else 0))
        log_records: deque[Any] = deque(maxlen=self.log_max_records)  # the newest, as the log in memory
        for name, blob in self._in_field_order(LOG, await self._hgetall(LOG)):
            try:
                records = msgpack.unpackb(blob, raw=False, strict_map_key=False)
                self._log_fields[name] = max((r[1] for r in records), default=0.0)
            except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data naming the key
                raise CorruptStore(f"{self.describe()}: key {LOG.decode()} field {name!r}: {exc}") from None
            log_records.extend(records)
        dedup: list[Any] = []
        for name, blob in self._in_field_order(DEDUP, await self._hgetall(DEDUP)):
            where = f"{self.describe()}: key {DEDUP.decode()} field {name!r}"
            try:
                ids = msgpack.unpackb(blob, raw=False, strict_map_key=False)
            except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data naming the key
                raise CorruptStore(f"{where}: {exc}") from None
            self._dedup_fields[name] = dedup_newest(ids, where=where)
            dedup.append((self._dedup_fields[name], blob))
        self._field_no = max([self._field_no, *(int(f) for f in self._log_fields), *(int(f) for f in self._dedup_fields)])
        return Loaded(meta=meta, carts=carts, profiles=profiles, ledger=ledger, journal=journal,
                      log=log_records, dedup=dedup)

    def _in_field_order(self, key: bytes, pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The log's or dedup's ``(field, blob)`` pairs oldest first (fields are write numbers).

        Raises: CorruptStore naming the key and field when a field is not a number."""
        for name, _ in pairs:
            if not name.isdigit():
                raise CorruptStore(f"{self.describe()}: key {key.decode()} field {name!r}: not a write number")
        return sorted(pairs, key=lambda kv: int(kv[0]))

    async def _hgetall(self, key: bytes) -> list[tuple[bytes, bytes]]:
        reply = await self._call(b"HGETALL", key)
        if isinstance(reply, dict):
            return list(reply.items())
        if isinstance(reply, list):
            return list(zip(reply[::2], reply[1::2]))
        raise CorruptStore(f"{self.describe()}: key {key.decode()}: unexpected reply {type(reply).__name__}")

    def __repr__(self) -> str:
        return f"<RedisStore {self.describe()} gen={self._gen} partitions={self.partitions}>"

