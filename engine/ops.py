"""Operator endpoints of a running engine, started and stopped together by the engine.

* the admin socket on UNIX (``engine.admin_unix``, mode 0600) and optionally on loopback TCP
  (``engine.admin_tcp``, token-authenticated), see :mod:`engine.admin`;
* the Prometheus listener (``engine.metrics_http``), see :mod:`engine.metrics_http`;
* the rate sampler: a task that copies the engine's running totals into :class:`~engine.stats.Stats`'
  ring buffer once per real second (events/s and sends/s cost nothing per event).

All of them read the engine through one :class:`~engine.stats.StatsView`, so ``stats``, ``cartwheel
top`` and ``/metrics`` always agree.
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from engine.admin import AdminCommands, AdminServer
from engine.clock import monotonic
from engine.config import ENV_ADMIN_TOKEN
from engine.stats import StatsView

__all__ = ["SAMPLE_INTERVAL_S", "OpsEndpoints", "start_ops"]

log = logging.getLogger("cartwheel.ops")

#: how often the rate sampler runs (real seconds)
SAMPLE_INTERVAL_S = 1.0


class OpsEndpoints:
    """What :func:`start_ops` started; ``close()`` stops all of it."""

    def __init__(self, view: StatsView, admin: AdminServer) -> None:
        self.view = view
        self.admin = admin
        self.metrics: Any = None  # engine.metrics_http.MetricsServer when metrics_http is set
        self._sampler: asyncio.Task[None] | None = None

    @property
    def admin_path(self) -> str | None:
        """The admin UNIX socket's path (None: disabled)."""
        return self.admin.path

    @property
    def admin_tcp_address(self) -> tuple[str, int] | None:
        return self.admin.tcp_address

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return None if self.metrics is None else self.metrics.address

    def start_sampler(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._sampler = asyncio.get_running_loop().create_task(self._sample(interval_s), name="cartwheel-rates")

    async def _sample(self, interval_s: float) -> None:
        stats = self.view.engine.stats
        while True:
            stats.sample(monotonic())
            await asyncio.sleep(interval_s)  # real time on purpose: rates are real throughput

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
            self._sampler = None
        if self.metrics is not None:
            await self.metrics.close()
        await self.admin.close()

    def __repr__(self) -> str:
        return f"<OpsEndpoints admin={self.admin!r} metrics={self.metrics!r}>"


async def start_ops(engine: Any, *, base_dir: Path) -> OpsEndpoints:
    """Start the operator endpoints of ``engine`` (an :class:`engine.app.Engine`) as its config says.

    Relative socket paths are resolved against ``base_dir``. If one listener fails to start (a port in
    use), the ones already started are closed again and the error propagates.
    """
    settings = engine.config.engine
    view = StatsView(engine)
    admin = AdminServer(AdminCommands(engine, view))
    ops = OpsEndpoints(view, admin)
    try:
        if settings.admin_unix:
            path = Path(settings.admin_unix)
            await admin.start(str(path if path.is_absolute() else base_dir / path))
        if settings.admin_tcp is not None:
            token = settings.admin_token or os.environ.get(ENV_ADMIN_TOKEN, "")
            await admin.start_tcp(settings.admin_tcp[0], settings.admin_tcp[1], token)
        if settings.metrics_http is not None:
            from engine.metrics_http import MetricsServer  # aiohttp is imported only when it is used

            ops.metrics = MetricsServer(view)
            await ops.metrics.start(*settings.metrics_http)
        ops.start_sampler()
    except BaseException:
        await ops.close()
        raise
    log.info("ops: admin unix=%s tcp=%s metrics=%s", ops.admin_path, ops.admin_tcp_address, ops.metrics_address)
    return ops
