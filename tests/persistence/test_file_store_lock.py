"""One engine per file store directory: the second one is refused (naming the first's pid) instead of
restoring the same carts and sending every message twice; the lock dies with its process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine.app
from engine.app import Engine
from engine.stores import StoreError, StoreTaken
from engine.stores.file import FileStore
from tests.persistence.conftest import engine_config, start_engine

_HOLDER = """
import asyncio, sys
from engine.stores.file import FileStore
async def main():
    await FileStore(sys.argv[1]).open()
    print("locked", flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


async def test_a_second_store_on_the_same_directory_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    a = FileStore(tmp_path / "state")
    await a.open()
    b = FileStore(tmp_path / "state")
    with pytest.raises(StoreTaken, match=rf"in use by another engine \(pid {os.getpid()}\)"):
        await b.open()
    await a.close()
    await b.open()  # released on close
    await b.close()


async def test_the_lock_of_a_killed_engine_does_not_outlive_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(state)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreTaken, match=rf"pid {holder.pid}\)"):
            await FileStore(state).open()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    store = FileStore(state)
    await store.open()  # kill -9 left no stale lock behind
    await store.close()


async def test_a_second_engine_on_the_same_state_directory_cannot_start(
        tmp_path: Path, engines: list, monkeypatch: pytest.MonkeyPatch) -> None:
    config = engine_config(tmp_path, f"file:{tmp_path / 'state'}")
    await start_engine(engines, config, tmp_path)
    monkeypatch.setattr(engine.app, "STORE_WAIT_S", 0.5)  # it retries that long (the first may be stopping)
    other = tmp_path / "b"
    other.mkdir()
    with pytest.raises(StoreTaken, match=r"in use by another engine .* \(gave up after 0.5 s\)"):
        await start_engine(engines, engine_config(other, f"file:{tmp_path / 'state'}"), other)


async def test_a_state_path_that_is_a_file_fails_at_once(tmp_path: Path) -> None:
    """Not retried for STORE_WAIT_S as a store that is not available yet: the path is wrong."""
    (tmp_path / "state").write_text("not a directory")
    config = engine_config(tmp_path, f"file:{tmp_path / 'state'}")
    second = Engine(config, base_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(StoreError, match="exists and is not a directory"):
        await second.start()
    assert time.monotonic() - started < 2
    await second.stop()
