"""A second `cartwheel run` started by mistake with the running engine's config fails (its admin socket
or ingest port is taken): it must leave the running engine's store alone."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgpack
import pytest

from engine.config import load_config
from tests.persistence.conftest import RedisServer, free_port, start_engine
from tests.persistence.helpers import cart_event, feed

EXE = str(Path(sys.executable).parent / "cartwheel")


def _config(path: Path, directory: Path, store: str, port: int) -> Path:
    path.write_text(f'[engine]\ningest_tcp = "127.0.0.1:{port}"\ningest_unix = ""\n'
                    f'admin_unix = "{directory / "admin.sock"}"\nstore = "{store}"\nclock = "manual"\n'
                    f'clock_start = "2026-03-06T10:00:00Z"\nsnapshot_interval = "1h"\nsync_timeout = "2s"\n'
                    f'[channels.email]\nkind = "outbox"\ndir = "{directory / "outbox"}"\n')
    return path


@pytest.mark.parametrize("taken", ["admin socket", "ingest port"])
async def test_a_second_engine_that_cannot_listen_does_not_take_the_store(
        taken: str, redis_server: RedisServer, tmp_path: Path, engines: list) -> None:
    """The listeners start last, after the store is opened, restored and claimed with the new process's
    epoch: the engine that failed with "address in use" had already made the running one stop writing
    to its store ("written by another engine")."""
    port = free_port()
    cfg = _config(tmp_path / "a.toml", tmp_path, redis_server.url, port)
    a = await start_engine(engines, load_config(cfg), tmp_path)
    await feed(a, cart_event("c1"))
    await a.sync()
    if taken == "ingest port":  # its own admin socket, the running engine's port
        (tmp_path / "b").mkdir()
        cfg = _config(tmp_path / "b.toml", tmp_path / "b", redis_server.url, port)
    proc = await asyncio.create_subprocess_exec(EXE, "run", "--config", str(cfg), cwd=tmp_path,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 3 and b"cannot start" in err, (out, err)
    meta = msgpack.unpackb(redis_server.command("GET", "cw:{g}:meta"), raw=False)
    assert meta["epoch"] == a.snapshotter.epoch, "the engine that failed to start claimed the running one's store"
    await feed(a, cart_event("c2"))
    await a.sync()  # the running engine still persists
    assert a.stats_document()["persistence"]["up"] is True
