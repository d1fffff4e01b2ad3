"""The engine: config in, every component built and wired, started and stopped in the right order.

Start: check that the sockets and ports to listen on are free (else fail before touching the store),
open the store (waiting for it a while if it is down), start the channel pools, restore (the latest snapshot, then the journal and late send outcomes after it; see :mod:`engine.stores.restore`),
report and resolve the sends whose outcome is unknown, then start the tick driver, the snapshot loop and
the listeners (admin first, ingest last, so that nothing is accepted before the engine can apply it). A
fresh store gets an empty full snapshot first, so that every later journal entry has a base.

Durability (``engine.durability``):

* ``snapshot`` — an accepted event is durable at the next snapshot cut; a ``sync`` frame asks for the
  next (incremental) cut and waits for its commit;
* ``journal`` — every accepted frame's events are appended to the journal (group commit) before its
  reply is written; a snapshot records the lsn it covers and the journal is trimmed to it.

In both modes every send intent is recorded in the ledger before its provider is called
(:mod:`engine.intents`).

Stop (SIGTERM/SIGINT): stop accepting, drain the channels (messages still queued are recorded as unsent
and go out after the restart), stop ticking, flush the journal, write a final full snapshot.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any

from actors.flows import flows_from_config
from actors.registry import Registry
from actors.stores import parse_store
from engine.clock import Clock, ManualClock, clock_from_spec, monotonic
from engine.config import Config
from engine.ingest import FrameHandler, IngestServer
from engine.intents import IntentLedger
from engine.ops import OpsEndpoints, start_ops
from engine.runtime import Dispatcher, Runtime
from engine.snapshot import RecordingDeduper, Snapshotter
from engine.stores import (
    Journal,
    Sequence,
    Store,
    StoreError,
    StoreHealth,
    StoreUnavailable,
    open_store,
)
from engine.stores.restore import RestoreReport, restore
from engine.unix_path import refuse_live
from engine.validate import Validator

__all__ = ["Engine", "build_registry"]

log = logging.getLogger("cartwheel.engine")

#: how long start() waits for a store that does not answer before giving up
STORE_WAIT_S = 30.0


def build_registry(config: Config) -> Registry:
    """Flows and stores from the config (already validated by ``check_sections``)."""
    flows = flows_from_config(config.flows)
    stores = {name: parse_store(name, table, flows) for name, table in config.stores.items()}
    return Registry(stores, flows)


def uncertain_policies(config: Config) -> dict[str, str]:
    """``on_uncertain`` of every channel a flow may use (``skip`` unless its table says ``resend``)."""
    from channels import ChannelSettings
    from engine.dispatch import FLOW_CHANNELS

    out = {}
    for name in dict.fromkeys([*FLOW_CHANNELS, *config.channels]):
        try:
            out[name] = ChannelSettings.from_table(name, config.channels.get(name)).on_uncertain
        except Exception:  # noqa: BLE001 - reported by the config check; the default is the safe choice
            out[name] = "skip"
    return out


class Engine:
    """One engine process's components.

    Args:
        config: the parsed config.
        clock: overrides the config's clock (tests pass a ManualClock).
        dispatcher: overrides the channel pools (None: build them from ``[channels.*]``).
        base_dir: relative paths in the config are resolved against it (default: the working dir).
        build_channels: False leaves the engine without pools (sends count as sent at once).
    """

    def __init__(self, config: Config, *, clock: Clock | None = None, dispatcher: Dispatcher | None = None,
                 base_dir: Path | None = None, build_channels: bool = True) -> None:
        self.config = config
        settings = config.engine
        self.clock = clock or clock_from_spec(settings.clock, settings.clock_start)
        self.registry = build_registry(config)
        self.base_dir = base_dir or Path.cwd()
        self.runtime = Runtime(self.registry, self.clock, tick_s=settings.tick_s,
                               log_retention_s=settings.log_retention_s,
                               log_max_records=settings.log_max_records)
        self.stats = self.runtime.stats
        self.seq = Sequence()
        self.health = StoreHealth()
        self.store: Store = open_store(settings.store, base=self.base_dir, partitions=settings.partitions)
        self.store.log_max_records = settings.log_max_records
        self.journal = Journal(self.store, self.seq, self.health, timeout_s=settings.sync_timeout_s)
        self.dispatcher = dispatcher
        self.ledger: IntentLedger | None = None
        if self.dispatcher is None and build_channels:
            from engine.dispatch import ChannelDispatcher

            channel_dispatcher = ChannelDispatcher.from_config(config, self.runtime, base_dir=self.base_dir)
            self.ledger = IntentLedger(journal=self.journal, seq=self.seq, partitions=settings.partitions,
                                       runtime=self.runtime, policy=uncertain_policies(config))
            channel_dispatcher.attach_ledger(self.ledger)
            self.health.on_down.append(self.ledger.release_all)
            self.dispatcher = channel_dispatcher
        self.runtime.dispatcher = self.dispatcher
        self.deduper = RecordingDeduper(settings.dedup_window_s, settings.dedup_capacity)
        self.snapshotter = Snapshotter(
            runtime=self.runtime, store=self.store, journal=self.journal, ledger=self.ledger, seq=self.seq,
            health=self.health, partitions=settings.partitions, interval_s=settings.snapshot_interval_s,
            log_retention_s=settings.log_retention_s, deduper=self.deduper,
        )
        self.journal.need_full = self.snapshotter.request_full
        self.journal.verify = self.snapshotter.verify
        self.journal.on_lost = self.snapshotter.store_lost
        self.journaling = settings.durability == "journal"
        self.handler = FrameHandler(
            apply=self._apply_journaled if self.journaling else self.runtime.apply_event, now=self.clock.now,
            validator=Validator(settings), deduper=self.deduper, stats=self.stats, sync=self.sync,
            max_batch=settings.max_batch, barrier=self.journal.barrier if self.journaling else None,
        )
        self.ingest = IngestServer(self.handler, self.stats, max_frame_bytes=settings.max_frame_bytes)
        if hasattr(self.dispatcher, "on_pressure"):
            # Back-pressure (DESIGN.md "Wire protocol"): when the channels' queues are full and sends
            # overflow, ingest stops reading sockets until they have room again, rather than buffer.
            self.dispatcher.on_pressure = self._on_send_pressure
        if not isinstance(self.clock, ManualClock):  # a manual clock's timers fire only on `clock advance`
            self.ingest.between_slices = self._fire_between_slices
        self.ops: OpsEndpoints | None = None
        self.started_at = monotonic()
        self.restoring = False
        self.restore_report: RestoreReport | None = None
        #: why the final snapshot of :meth:`stop` failed (None: it did not, or no stop yet)
        self.final_snapshot_error: str | None = None
        self._stopped = asyncio.Event()

    def _on_send_pressure(self, behind: bool) -> None:
        if behind:
            self.ingest.pause_all()
        else:
            self.ingest.resume_all()

    def _fire_between_slices(self) -> None:
        """Fire what is due between two slices of a busy connection's frames (fairness)."""
        self.runtime.fire_due(self.clock.now())

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Open the store, restore, start everything.

        Raises:
            StoreError: the store holds data this engine cannot read (names the key or file), or did
                not answer within :data:`STORE_WAIT_S`.
        """
        settings = self.config.engine
        self._check_listeners()
        await self._open_store()
        self.journal.start()
        if self.dispatcher is not None and hasattr(self.dispatcher, "start"):
            await self.dispatcher.start()
        if self.ledger is not None:
            self.ledger.holding = True  # sends issued during restore wait until it is complete
        fresh = await self.restore() < 0
        if fresh:
            await self.snapshotter.snapshot(full=True)  # generation 1: a base for every later journal entry
        else:
            try:
                await self.snapshotter.claim()  # this process's epoch in the store: one engine per store
            except StoreError as exc:
                log.error("store %s: could not write this engine's epoch at start: %s", self.store.describe(), exc)
                self.health.down(exc, "start")
        if self.ledger is not None:
            uncertain, resent = self.ledger.resolve()
            if uncertain or resent:
                log.warning("restore: %d sends with an unknown outcome (reported as uncertain), %d sent again",
                            uncertain, resent)
            self.ledger.release_held()
        self.runtime.start()
        self.snapshotter.start()
        self.ops = await start_ops(self, base_dir=self.base_dir)
        await self.ingest.start(tcp=settings.ingest_tcp,
                                unix=str(self._path(settings.ingest_unix)) if settings.ingest_unix else None)
        log.info("cartwheel engine started: ingest tcp=%s unix=%s admin=%s store=%s durability=%s clock=%r",
                 self.ingest.tcp_address, self.ingest.unix_path, self.ops.admin_path, self.store.describe(),
                 settings.durability, self.clock)

    async def _open_store(self) -> None:
        deadline = monotonic() + STORE_WAIT_S
        delay_s = 0.2
        while True:
            try:
                await self.store.open()
                return
            except StoreUnavailable as exc:
                if monotonic() + delay_s > deadline:
                    raise type(exc)(f"{exc} (gave up after {STORE_WAIT_S:g} s)") from None
                log.error("store %s not available (%s); retrying in %.1f s", self.store.describe(), exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    def _check_listeners(self) -> None:
        """Fail before the store is touched when a socket or port this engine must listen on is another
        process's (a second engine started by mistake with the running one's config). The listeners
        start last, after the store is opened, restored and claimed with this process's epoch: an
        engine that failed only then had already taken the store from the running one.

        Raises:
            OSError: EADDRINUSE naming the socket or the address.
        """
        settings = self.config.engine
        for key, value in (("admin_unix", settings.admin_unix), ("ingest_unix", settings.ingest_unix)):
            if value:
                refuse_live(self._path(value), f"engine.{key}")
        for key, address in (("ingest_tcp", settings.ingest_tcp), ("admin_tcp", settings.admin_tcp),
                             ("metrics_http", settings.metrics_http)):
            if address is None:
                continue
            host, port = address
            try:
                found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            except OSError as exc:  # socket.gaierror: its message does not say which address
                raise OSError(exc.errno, f"engine.{key}: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            if port == 0:
                continue
            for family, kind, proto, _, sockaddr in found:
                with socket.socket(family, kind, proto) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the listeners bind
                    try:
                        probe.bind(sockaddr)
                    except OSError as exc:
                        raise OSError(exc.errno, f"engine.{key}: cannot listen on {host}:{port}: "
                                                 f"{exc.strerror or exc}") from None

    def _path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path

    def _apply_journaled(self, event: dict[str, Any], now: float) -> None:
        if not self.journal.frame:
            # a frame's first event: fire what is due first, as replay does before each batch
            self.runtime.fire_due(now, limit=1 << 30)
        self.runtime.apply_event(event, now)
        self.journal.add_events(event, now)

    async def restore(self) -> int:
        """Load the latest snapshot and replay what follows it; returns the carts restored (-1: empty store).

        Raises:
            CorruptStore: naming the key or file at fault.
        """
        self.restoring = True
        try:
            t0 = time.perf_counter()
            loaded = await self.store.read(log.info)
            if loaded is None:
                log.info("store %s is empty: starting fresh", self.store.describe())
                return -1
            report = restore(loaded, runtime=self.runtime, ledger=self.ledger or _NoLedger(), seq=self.seq,
                             snapshotter=self.snapshotter, deduper=self.deduper,
                             partitions=self.config.engine.partitions, progress=log.info)
            self.restore_report = report
            log.info("restored %d carts, %d profiles, %d ledger entries from %s (generation %d, lsn %d) in %.2f s; "
                     "replayed %d journal batches (%d events) and %d late outcomes, %d timers fired, in %.2f s",
                     report.carts, report.profiles, report.ledger_entries, self.store.describe(), report.generation,
                     report.cut, time.perf_counter() - t0, report.journal_batches, report.journal_events,
                     report.late_outcomes, report.timers_fired, report.replay_s)
            return report.carts
        finally:
            self.restoring = False

    async def stop(self) -> None:
        """Graceful stop: stop accepting, record the sends already issued (so that they reach the pools),
        drain the pools (what is still queued, or issued after, is recorded as unsent and goes after the
        restart), stop ticking, flush, final snapshot."""
        await self.ingest.stop_accepting()
        if self.ledger is not None and self.ledger.waiting():
            try:  # sends issued just before: their records made durable, they reach the pools
                await self.journal.flush(min(self.config.engine.sync_timeout_s, 5.0))
            except (TimeoutError, StoreError) as exc:
                log.error("stop: intents not recorded: %s", exc)
        if self.dispatcher is not None and hasattr(self.dispatcher, "stop"):
            await self.dispatcher.stop()  # (an intent recorded after this is kept as unsent)
        await self.runtime.stop()
        await self.snapshotter.stop()
        try:
            await self.journal.flush(min(self.config.engine.sync_timeout_s, 5.0))
        except (TimeoutError, StoreError) as exc:
            log.error("stop: journal not flushed: %s", exc)
        try:
            await self.snapshot()
        except StoreError as exc:
            self.final_snapshot_error = str(exc)
            log.error("stop: final snapshot to %s failed: %s (the journal and the last snapshot stand)",
                      self.store.describe(), exc)
        await self.journal.close()
        await self.ingest.close()
        if self.ops is not None:
            await self.ops.close()
        await self.store.close()
        self._stopped.set()

    # ------------------------------------------------------------------ durability
    async def snapshot(self) -> float:
        """Write a full snapshot now; returns the seconds it took.

        Raises:
            StoreError: the store refused it.
        """
        return await self.snapshotter.snapshot(full=True)

    async def sync(self) -> None:
        """Return once every event accepted so far is durable (answers the ``sync`` frame).

        Raises:
            StoreError: not durable within ``sync_timeout`` (the message names the store and why).
        """
        timeout_s = self.config.engine.sync_timeout_s
        if self.journaling:
            # The journal counts what the store acknowledged; the store is asked first whether it still
            # holds it (a Redis restarted empty while the engine was idle): a loss makes the journal wait
            # for the full rewrite. A store that does not answer: wait for the snapshot loop to reach it.
            deadline = monotonic() + timeout_s
            try:
                reachable = await asyncio.wait_for(self.snapshotter.verify(), timeout_s)
            except TimeoutError:
                reachable = False
            if not reachable:
                await self.snapshotter.sync(max(deadline - monotonic(), 0.001))
            await self.journal.wait_durable(self.journal.last_batch_lsn, max(deadline - monotonic(), 0.001))
            return
        await self.snapshotter.sync(timeout_s)

    # snapshot figures under the names engine.stats.StatsView reads
    @property
    def last_snapshot_at(self) -> float | None:
        return self.snapshotter.last_at

    @property
    def last_snapshot_s(self) -> float | None:
        return self.snapshotter.last_s

    @property
    def snapshot_error(self) -> str | None:
        return self.health.error or self.snapshotter.last_error

    # ------------------------------------------------------------------ views for the admin socket
    def persistence_document(self) -> dict[str, Any]:
        """The ``persistence`` part of ``stats``: store, mode, up/down, snapshot and journal figures."""
        snap = self.snapshotter
        doc: dict[str, Any] = {
            "store": self.store.describe(),
            "durability": self.config.engine.durability,
            "up": self.health.up,
            "error": self.snapshot_error,
            "down_for_s": None if self.health.down_since is None else round(time.monotonic() - self.health.down_since, 3),
            "outages": self.health.outages,
            "snapshot_age_s": None if snap.last_at is None else round(time.monotonic() - snap.last_at, 3),
            "snapshot_duration_s": snap.last_s,
            "snapshot": snap.statistics(),
            "journal": self.journal.statistics(),
            "lsn": self.seq.lsn,
        }
        if self.ledger is not None:
            doc["intents"] = self.ledger.statistics()
        if self.restore_report is not None:
            r = self.restore_report
            doc["restore"] = {"carts": r.carts, "load_s": round(r.load_s, 3), "replay_s": round(r.replay_s, 3),
                              "journal_events": r.journal_events, "late_outcomes": r.late_outcomes}
        return doc

    def stats_document(self) -> dict[str, Any]:
        """The admin ``stats`` document (one builder: :class:`engine.stats.StatsView`)."""
        from engine.stats import StatsView

        view = getattr(self.ops, "view", None) or StatsView(self)
        return view.document()

    def channels_document(self) -> dict[str, Any]:
        if self.dispatcher is None or not hasattr(self.dispatcher, "describe"):
            return {}
        return self.dispatcher.describe()  # type: ignore[no-any-return]

    def pause_channel(self, name: str, paused: bool) -> None:
        if self.dispatcher is None or not hasattr(self.dispatcher, "pause"):
            raise KeyError(name)
        self.dispatcher.pause(name, paused)


class _NoLedger:
    """Stands in for the ledger when the engine has no channel pools (no sends to remember)."""

    def load(self, entries: list[Any], cut: int) -> None:
        return None

    def late_outcomes(self, cut: int) -> list[Any]:
        return []
