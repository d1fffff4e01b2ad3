"""The engine: config in, every component built and wired, started and stopped in the right order.

Start: restore the latest snapshot (re-arming every cart's timer; those that fell due while the engine
was down fire at the first tick, in due order), start the channel pools, the tick driver, the periodic
snapshot task, then the listeners (admin first, ingest last, so that nothing is accepted before the
engine can apply it). Stop (SIGTERM/SIGINT): stop accepting, drain the channels, stop the tick driver,
write a final snapshot.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from actors.flows import flows_from_config
from actors.registry import Registry
from actors.stores import parse_store
from engine.clock import Clock, clock_from_spec, monotonic
from engine.config import Config
from engine.ingest import FrameHandler, IngestServer
from engine.ops import OpsEndpoints, start_ops
from engine.runtime import Dispatcher, Runtime
from engine.snapshot import FileStore, encode_state, open_store, restore_state
from engine.validate import Deduper, Validator

__all__ = ["Engine", "build_registry"]

log = logging.getLogger("cartwheel.engine")


def build_registry(config: Config) -> Registry:
    """Flows and stores from the config (already validated by ``check_sections``)."""
    flows = flows_from_config(config.flows)
    stores = {name: parse_store(name, table, flows) for name, table in config.stores.items()}
    return Registry(stores, flows)


class Engine:
    """One engine process's components.

    Args:
        config: the parsed config.
        clock: overrides the config's clock (tests pass a ManualClock).
        dispatcher: overrides the channel pools (None: build them from ``[channels.*]``).
        base_dir: relative paths in the config are resolved against it (default: the working dir).
    """

    def __init__(self, config: Config, *, clock: Clock | None = None, dispatcher: Dispatcher | None = None,
                 base_dir: Path | None = None, build_channels: bool = True) -> None:
        self.config = config
        settings = config.engine
        self.clock = clock or clock_from_spec(settings.clock, settings.clock_start)
        self.registry = build_registry(config)
        self.base_dir = base_dir or Path.cwd()
        self.runtime = Runtime(self.registry, self.clock, tick_s=settings.tick_s,
                               log_retention_s=settings.log_retention_s)
        self.stats = self.runtime.stats
        self.store: FileStore = open_store(settings.store, base=self.base_dir)
        self.dispatcher = dispatcher
        if self.dispatcher is None and build_channels:
            from engine.dispatch import ChannelDispatcher

            self.dispatcher = ChannelDispatcher.from_config(config, self.runtime, base_dir=self.base_dir)
        self.runtime.dispatcher = self.dispatcher
        self.handler = FrameHandler(
            apply=self.runtime.apply_event, now=self.clock.now, validator=Validator(settings),
            deduper=Deduper(settings.dedup_window_s, settings.dedup_capacity), stats=self.stats,
            sync=self.sync, max_batch=settings.max_batch,
        )
        self.ingest = IngestServer(self.handler, self.stats, max_frame_bytes=settings.max_frame_bytes)
        self.ops: OpsEndpoints | None = None
        self.started_at = monotonic()
        self.restoring = False
        self.last_snapshot_at: float | None = None  # monotonic seconds
        self.last_snapshot_s: float | None = None
        self.snapshot_error: str | None = None
        self._snapshot_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        settings = self.config.engine
        self.restore()
        if self.dispatcher is not None and hasattr(self.dispatcher, "start"):
            await self.dispatcher.start()
        self.runtime.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._snapshot_loop(), name="cartwheel-snapshots"))
        self.ops = await start_ops(self, base_dir=self.base_dir)
        await self.ingest.start(tcp=settings.ingest_tcp,
                                unix=str(self._path(settings.ingest_unix)) if settings.ingest_unix else None)
        log.info("cartwheel engine started: ingest tcp=%s unix=%s admin=%s store=%s clock=%r",
                 self.ingest.tcp_address, self.ingest.unix_path, self.ops.admin_path, self.store.describe(), self.clock)

    def _path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path

    def restore(self) -> int:
        """Load the latest snapshot, if any; returns the number of carts restored."""
        data = self.store.load()
        if data is None:
            return 0
        self.restoring = True
        t0 = time.perf_counter()
        effects = restore_state(self.registry, data, source=str(getattr(self.store, "path", self.store.describe())))
        now = self.clock.now()
        self.runtime.apply_effects(effects, now)
        self.restoring = False
        n = len(self.registry)
        log.info("restored %d carts from %s in %.2f s", n, self.store.describe(), time.perf_counter() - t0)
        return n

    async def stop(self) -> None:
        """Graceful stop: stop accepting, drain sends, stop ticking, final snapshot."""
        await self.ingest.stop_accepting()
        if self.dispatcher is not None and hasattr(self.dispatcher, "stop"):
            await self.dispatcher.stop()
        await self.runtime.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.snapshot()
        await self.ingest.close()
        if self.ops is not None:
            await self.ops.close()
        await self.store.close()
        self._stopped.set()

    # ------------------------------------------------------------------ durability
    async def snapshot(self) -> float:
        """Write a full snapshot now; returns the seconds it took."""
        async with self._snapshot_lock:
            t0 = monotonic()
            data = await encode_state(self.registry, self.clock.now())
            await self.store.save(data)
            took = monotonic() - t0
            self.last_snapshot_at = monotonic()
            self.last_snapshot_s = took
            self.snapshot_error = None
            return took

    async def sync(self) -> None:
        """Return once every event accepted so far is durable (answers the ``sync`` frame)."""
        await asyncio.wait_for(self.snapshot(), self.config.engine.sync_timeout_s)

    async def _snapshot_loop(self) -> None:
        interval = self.config.engine.snapshot_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.snapshot()
            except Exception as exc:  # keep running from memory; report it
                self.snapshot_error = str(exc)
                log.error("snapshot to %s failed: %s", self.store.describe(), exc)

    # ------------------------------------------------------------------ views for the admin socket
    def stats_document(self) -> dict[str, Any]:
        doc = self.stats.snapshot()
        doc["carts"] = {k: v for k, v in self.registry.carts_by_state().items()}
        doc["timers"] = len(self.runtime.wheel)
        doc["clock"] = {"now": self.clock.now(), "kind": self.clock.kind}
        doc["persistence"] = {
            "store": self.store.describe(),
            "durability": self.config.engine.durability,
            "snapshot_age_s": None if self.last_snapshot_at is None else round(monotonic() - self.last_snapshot_at, 3),
            "snapshot_duration_s": self.last_snapshot_s,
            "error": self.snapshot_error,
        }
        doc["channels"] = self.channels_document()
        doc["uptime_s"] = round(monotonic() - self.started_at, 3)
        return doc

    def channels_document(self) -> dict[str, Any]:
        if self.dispatcher is None or not hasattr(self.dispatcher, "describe"):
            return {}
        return self.dispatcher.describe()

    def pause_channel(self, name: str, paused: bool) -> None:
        if self.dispatcher is None or not hasattr(self.dispatcher, "pause"):
            raise KeyError(name)
        self.dispatcher.pause(name, paused)
