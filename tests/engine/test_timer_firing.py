"""Firing timers through the runtime: every tick length reaches every timer, and one cart's failure
does not cost the other carts of its batch their timers (real engine, manual clock, outbox)."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import cart_event, engine_config, start_engine

HOUR = 3600.0


@pytest.mark.parametrize("tick", ["15ms", "30ms", "70ms", "100ms", "1s"])
async def test_clock_advance_fires_every_timer_whatever_the_tick(tmp_path: Path, tick: str) -> None:
    """n * tick / tick can come out just below n at unix-time magnitudes: the timer's tick was never
    reached and `clock advance` spun forever (tick 30ms: about 4 % of due times)."""
    engine = await start_engine(engine_config(tmp_path, tick=tick), tmp_path)
    try:
        rt = engine.runtime
        for i in range(40):  # due times spread over many ticks
            await rt.advance_clock(0.66)
            rt.apply_event(cart_event(f"c{i}", ts=rt.now(), profile=f"p{i}"), rt.now())
        now, fired = await asyncio.wait_for(rt.advance_clock(2 * HOUR), 60)
        assert fired >= 80  # abandonment and the first step of each cart
        sent = {r.cart for r in rt.msglog if r.channel == "email" and r.outcome == "sent"}
        assert sent == {f"c{i}" for i in range(40)}
    finally:
        await engine.stop()


async def test_a_failing_cart_does_not_cost_the_others_their_timers(tmp_path: Path, monkeypatch: Any) -> None:
    engine = await start_engine(engine_config(tmp_path), tmp_path)
    try:
        rt = engine.runtime
        registry_class = type(rt.registry)
        fire = registry_class.fire

        def broken_for_c1(registry: Any, actor: Any, tag: Any, now: float) -> Any:
            if actor.cart == "c1":
                raise RuntimeError("a bug in one cart's rules")
            return fire(registry, actor, tag, now)

        monkeypatch.setattr(registry_class, "fire", broken_for_c1)
        for cart in ("c1", "c2", "c3"):
            rt.apply_event(cart_event(cart, profile=f"p-{cart}"), rt.now())  # all three due on the same tick
        await rt.advance_clock(2 * HOUR)
        sent = sorted(r.cart for r in rt.msglog if r.channel == "email" and r.outcome == "sent")
        assert sent == ["c2", "c3"]
        assert rt.stats.timer_errors == 1
    finally:
        await engine.stop()
