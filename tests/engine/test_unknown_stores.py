"""Events for stores the config does not name: default rules while they have carts, nothing after."""
from __future__ import annotations

from pathlib import Path

from engine.app import Engine
from engine.clock import ManualClock
from tests.engine.conftest import Client, cart_event, engine_config, start_engine

DAY = 86400.0


async def test_made_up_store_ids_leave_no_rules_behind(tmp_path: Path) -> None:
    """Each made-up store id gets a copy of the default rules (~1 KB, with its own profile book); once
    its carts and profiles are gone, so is the copy, also through the snapshots taken meanwhile."""
    config = engine_config(tmp_path)
    engine = await start_engine(config, tmp_path)
    try:
        client = await Client.tcp(engine)
        reply = await client.frame([cart_event(f"c{i}", store=f"ghost{i}", profile=f"p{i}") for i in range(300)])
        await client.close()
        assert reply["rejected"] == [] and len(engine.registry.stores) == 301
        for _ in range(9):  # every run ends (48 h) and every tombstone passes its attribution window (5 d)
            await engine.runtime.advance_clock(DAY)
            await engine.snapshot()
        assert len(engine.registry) == 0 and engine.registry.statistics()["profiles"] == 0
        assert list(engine.registry.stores) == ["shop1"]
        now = engine.clock.now()
    finally:
        await engine.stop()
    again = Engine(config, clock=ManualClock(now), base_dir=tmp_path)
    await again.start()
    try:
        assert len(again.registry) == 0 and list(again.registry.stores) == ["shop1"]
    finally:
        await again.stop()
