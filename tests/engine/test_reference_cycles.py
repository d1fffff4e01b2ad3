"""The engine's steady path frees what it makes by reference counting alone.

Why it matters: every ``GC_FREEZE_INTERVAL_S`` the runtime moves every object the collector tracks out
of its reach (``gc.freeze()``, so that a full collection does not walk millions of carts). Garbage in a
reference cycle is freed only by the cyclic collector: made on the hot path it costs collections, and
once frozen it is never freed. A closure in the renderer that read its own variables back made ~30
such objects per rendered message; at 5 M carts their collections took the timer lag p99 of a whole
benchmark phase from 46 to 476 ms.
"""
from __future__ import annotations

import gc
from pathlib import Path

from engine.app import Engine
from tests.engine.conftest import Client, cart_event

DAY = 86_400.0


async def _flows(engine: Engine, client: Client, carts: range) -> None:
    """Carts updated, abandoned and taken through their whole recovery flow (emails to the outbox),
    half of them bought back on the way; an opt-out and a bad event too."""
    batch = [cart_event(f"c{i}", profile=f"p{i}", value=10.0 + i) for i in carts]
    batch.append({"type": "cart.updated", "store": "shop1", "cart": "bad", "items": [{"sku": "A", "qty": -1}]})
    reply = await client.frame(batch)
    assert reply["accepted"] == len(carts) and len(reply["rejected"]) == 1
    await engine.runtime.advance_clock(0.1 * DAY)  # abandoned, first email sent
    bought = [{"type": "order.completed", "store": "shop1", "cart": f"c{i}", "value": 10.0 + i}
              for i in carts if i % 2]
    optout = {"type": "profile.updated", "store": "shop1", "profile": {"id": f"p{carts[0]}", "consent": {"email": False}}}
    assert (await client.frame([*bought, optout]))["accepted"] == len(bought) + 1
    await engine.runtime.advance_clock(3 * DAY)  # the rest of the flow, expiry, tombstones dropped


async def test_ingest_timers_and_sends_leave_no_reference_cycles(engine: Engine, tmp_path: Path) -> None:
    client = await Client.tcp(engine)
    try:
        await _flows(engine, client, range(0, 4))  # caches (templates, zones, money formats) filled
        for _ in range(10):  # earlier tests' garbage, and what finalizers free on a first pass
            if not gc.collect():
                break
        gc.disable()
        try:
            await _flows(engine, client, range(4, 44))
            found = gc.collect()
        finally:
            gc.enable()
        sent = sum(len(p.read_text().splitlines()) for p in (tmp_path / "outbox").iterdir())
        assert sent >= 44  # the flows really ran: every cart got at least its first email
        assert found == 0
    finally:
        await client.close()


async def test_a_full_collection_finds_the_old_generation_frozen(engine: Engine) -> None:
    """With a runtime running, survivors are frozen when a full collection falls due, not only every
    10 s: a flood of new carts must not make a full collection walk all of them (a pause of 120+ ms
    at ~100 k new carts/s, measured)."""
    walked: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            walked.append(len(gc.get_objects(generation=2)))

    frozen = gc.get_freeze_count()
    gc.callbacks.insert(0, watch)
    try:
        kept = [[i] for i in range(1_500_000)]  # long-lived objects, as carts are: ~15 young collections
    finally:
        gc.callbacks.remove(watch)
    assert gc.get_freeze_count() - frozen >= 1_000_000  # frozen as they aged, long before the 10 s timer
    assert max(walked, default=0) < 200_000
    del kept
