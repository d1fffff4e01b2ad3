"""The file store writes a full snapshot while it is encoded, never holding the whole document in memory;
the file it leaves is the same document, and a failure or a crash half-way leaves the previous one."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from engine.stores import StoreError
from engine.stores.file import SNAPSHOT_FORMAT
from tests.persistence.conftest import crash, engine_config, start_engine
from tests.persistence.helpers import cart_event, feed, profile_states, states

CARTS = 600


async def _engine_with_carts(engines: list, tmp_path: Path) -> Any:
    engine = await start_engine(engines, engine_config(tmp_path, f"file:{tmp_path / 'state'}"), tmp_path)
    for start in range(0, CARTS, 100):
        reply = await feed(engine, [cart_event(f"c{i}") for i in range(start, start + 100)])
        assert reply["accepted"] == 100
    # small stages and a slice per 64 carts, so that one snapshot of a few hundred carts streams in parts
    engine.snapshotter.stage_size = 50
    engine.snapshotter.slice_budget_s = 0.0
    return engine


async def test_a_full_snapshot_reaches_the_disk_in_parts_while_it_is_encoded(engines: list, tmp_path: Path) -> None:
    engine = await _engine_with_carts(engines, tmp_path)
    store = engine.store
    base = tmp_path / "state" / "snapshot.msgpack"
    before = base.read_bytes()  # the engine's first snapshot (an empty store gets one at start)
    tmp = base.with_name(base.name + ".tmp")
    seen: list[tuple[int, bool]] = []
    stage = store._stage

    def watched(carts: dict[int, list[Any]], profiles: dict[int, list[Any]]) -> None:
        stage(carts, profiles)
        seen.append((tmp.stat().st_size, base.read_bytes() == before))

    store._stage = watched
    await engine.snapshotter.snapshot(full=True)

    assert len(seen) >= 4, seen  # staged while encoding, then the rest at the commit
    sizes = [size for size, _ in seen]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # the document grew on disk, part by part
    assert all(unchanged for _, unchanged in seen)  # and nothing was live before the commit
    assert sorted(p.name for p in base.parent.glob("*.tmp")) == []
    doc = msgpack.unpackb(base.read_bytes(), raw=False, strict_map_key=False)
    assert set(doc) == {"format", "meta", "log", "dedup", "carts", "profiles", "ledger"}
    assert doc["format"] == SNAPSHOT_FORMAT
    assert doc["carts"] and doc["profiles"]

    expected, expected_profiles = states(engine), profile_states(engine)
    assert len(expected) == CARTS
    await crash(engine)
    again = await start_engine(engines, engine_config(tmp_path, f"file:{tmp_path / 'state'}"), tmp_path)
    assert states(again) == expected
    assert profile_states(again) == expected_profiles


async def test_a_full_snapshot_failing_half_way_leaves_the_previous_one(engines: list, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    engine = await _engine_with_carts(engines, tmp_path)
    await engine.snapshotter.snapshot(full=True)
    base = tmp_path / "state" / "snapshot.msgpack"
    committed = base.read_bytes()
    expected = states(engine)

    def disk_full(write: Any) -> list[bytes]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(engine.store, "_tail", disk_full)
    await feed(engine, cart_event("c1", value=99.0))
    with pytest.raises(StoreError, match="No space left on device"):
        await engine.snapshotter.snapshot(full=True)
    assert base.read_bytes() == committed
    assert sorted(p.name for p in base.parent.glob("*.tmp")) == []  # the half-written files are gone

    monkeypatch.undo()
    await engine.snapshotter.snapshot(full=True)  # the next one succeeds and holds the change
    changed = states(engine)
    assert changed != expected
    await crash(engine)
    again = await start_engine(engines, engine_config(tmp_path, f"file:{tmp_path / 'state'}"), tmp_path)
    assert states(again) == changed


async def test_files_of_a_snapshot_cut_off_by_a_crash_are_dropped_at_start(engines: list, tmp_path: Path) -> None:
    engine = await _engine_with_carts(engines, tmp_path)
    await engine.snapshotter.snapshot(full=True)
    expected = states(engine)
    await crash(engine)
    state = tmp_path / "state"
    # what kill -9 in the middle of a full snapshot leaves: the document and the profiles' side file
    (state / "snapshot.msgpack.tmp").write_bytes(b"\x87\xa6format" + b"\x00" * 1000)
    (state / "snapshot.msgpack.profiles.tmp").write_bytes(b"\x92\xc4\x01a" * 100)
    again = await start_engine(engines, engine_config(tmp_path, f"file:{state}"), tmp_path)
    assert states(again) == expected
    assert sorted(p.name for p in state.glob("*.tmp")) == []
