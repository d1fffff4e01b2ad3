"""Email credits across a restart: the balance is kept where the config still limits credits, and a
store the config now leaves unlimited is unlimited (file store, manual clock, outbox)."""
from __future__ import annotations

from pathlib import Path

from engine.admin import AdminCommands
from tests.engine.conftest import cart_event, engine_config, start_engine

HOUR = 3600.0


def _shopper(cart: str, profile: str) -> dict:
    event = cart_event(cart)
    event["profile"] = {"id": profile, "email": f"{profile}@example.test", "consent": {"email": True}}
    return event


async def test_a_balance_spent_or_topped_up_survives_a_restart(tmp_path: Path) -> None:
    stores = {"shop1": {"name": "Acme", "timezone": "UTC", "credits": 5}}
    engine = await start_engine(engine_config(tmp_path, stores=stores), tmp_path)
    try:
        assert (await AdminCommands(engine).run("credits shop1 +7"))["credits"] == 12
    finally:
        await engine.stop()
    engine = await start_engine(engine_config(tmp_path, stores=stores), tmp_path)
    try:
        assert engine.registry.rules("shop1").credits == 12
    finally:
        await engine.stop()


async def test_a_store_made_unlimited_in_the_config_is_unlimited_after_a_restart(tmp_path: Path) -> None:
    """The saved balance of 0 used to apply whatever the config said: every email skipped for good."""
    limited = {"shop1": {"name": "Acme", "timezone": "UTC", "credits": 1}}
    engine = await start_engine(engine_config(tmp_path, stores=limited), tmp_path)
    try:
        engine.runtime.apply_event(_shopper("c1", "p1"), engine.runtime.now())
        await engine.runtime.advance_clock(1.5 * HOUR)
        assert engine.registry.rules("shop1").credits == 0
    finally:
        await engine.stop()
    unlimited = {"shop1": {"name": "Acme", "timezone": "UTC"}}
    engine = await start_engine(engine_config(tmp_path, stores=unlimited), tmp_path)
    try:
        rt = engine.runtime
        rt.apply_event(_shopper("c2", "p2"), rt.now())
        await rt.advance_clock(1.5 * HOUR)
        assert [(r.outcome, r.step) for r in rt.msglog if r.cart == "c2" and r.channel == "email"] == [("sent", 1)]
        assert engine.registry.rules("shop1").credits is None
    finally:
        await engine.stop()
