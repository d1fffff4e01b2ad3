"""Operator endpoints of a running engine: the admin socket (and, later, its TCP listener and the
Prometheus ``/metrics`` listener), started and stopped together by the engine."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.admin import AdminCommands, AdminServer

__all__ = ["OpsEndpoints", "start_ops"]


class OpsEndpoints:
    """What :func:`start_ops` started; ``close()`` stops all of it."""

    def __init__(self, admin: AdminServer) -> None:
        self.admin = admin

    @property
    def admin_path(self) -> str | None:
        return self.admin.path

    async def close(self) -> None:
        await self.admin.close()


async def start_ops(engine: Any, *, base_dir: Path) -> OpsEndpoints:
    """Start the admin socket of ``engine`` (an :class:`engine.app.Engine`) as its config says."""
    settings = engine.config.engine
    admin = AdminServer(AdminCommands(engine))
    if settings.admin_unix:
        path = Path(settings.admin_unix)
        await admin.start(str(path if path.is_absolute() else base_dir / path))
    return OpsEndpoints(admin)
