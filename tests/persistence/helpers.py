"""Workload helpers shared by the persistence tests."""
from __future__ import annotations

import asyncio
from typing import Any

from engine.app import Engine

HOUR = 3600.0


def cart_event(cart: str, *, store: str = "shop1", profile: str | None = None, value: float = 30.0,
               **extra: Any) -> dict[str, Any]:
    pid = profile or f"p-{cart}"
    event = {
        "type": "cart.updated", "store": store, "cart": cart,
        "profile": {"id": pid, "email": f"{pid}@example.test", "consent": {"email": True}},
        "items": [{"sku": "A1", "name": "Lamp", "qty": 1, "price": value}],
        "value": value, "currency": "EUR", "checkout_url": f"https://shop.test/c/{cart}",
    }
    event.update(extra)
    return event


async def feed(engine: Engine, frame: Any) -> dict[str, Any]:
    """One frame through the engine's handler, as ingest would; waits for journal durability."""
    engine._seq_test = getattr(engine, "_seq_test", 0) + 1  # type: ignore[attr-defined]
    reply = engine.handler.handle(engine._seq_test, frame)  # type: ignore[attr-defined]
    barrier = engine.handler.barrier
    wait = barrier() if barrier is not None else None
    if wait is not None:
        await wait
    return reply


def states(engine: Engine) -> dict[tuple[str, str], list[Any]]:
    """Every cart's persisted state, by (store, cart)."""
    return {(a.store.id, a.cart): a.to_state() for a in engine.registry}


def profile_states(engine: Engine) -> dict[tuple[str, str], list[Any]]:
    from engine.snapshot import profile_ids

    out = {}
    for sid, pid in profile_ids(engine.registry):
        profile = engine.registry.profile(sid, pid)
        if profile is not None:
            state = profile.to_state()
            out[(sid, pid)] = state
    return out


def strip_refs(profiles: dict[tuple[str, str], list[Any]]) -> dict[tuple[str, str], list[Any]]:
    """Profile states without the reference count (rebuilt by carts on load)."""
    out = {}
    for key, state in profiles.items():
        state = list(state)
        if len(state) >= 10:
            state[8] = None
        out[key] = state
    return out


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)
