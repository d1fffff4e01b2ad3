"""``cartwheel simulate`` against the real engine on the same events: the same messages at the same
virtual times, on the same channels, with the same skip reasons."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.simulate import simulate
from tests.engine.conftest import START, Client, engine_config, start_engine

H = 3600.0
STORES = {
    "shop1": {"name": "Acme", "timezone": "UTC", "whatsapp": {"phone_number_id": "1", "token": "t"},
              "whatsapp_window": {"days": "mon-sat", "start": "09:00", "end": "21:00"}},
    "quiet": {"name": "Quiet", "timezone": "Europe/Madrid", "quiet_hours": {"start": "22:00", "end": "08:00"},
              "credits": 2, "incentive": {"kind": "discount", "percent": 10, "code_prefix": "BACK"}},
    "four": {"name": "Four", "timezone": "UTC", "flow": "four_touch"},
}


def _profile(pid: str, **consent: bool) -> dict[str, Any]:
    return {"id": pid, "email": f"{pid}@example.test", "phone": "+34600111222", "push": "tok-" + pid,
            "consent": {"email": True, "sms": True, "whatsapp": True, "push": True, **consent}}


def _cart(store: str, cart: str, ts: float, profile: Any) -> dict[str, Any]:
    return {"type": "cart.updated", "store": store, "cart": cart, "ts": START + ts, "profile": profile,
            "items": [{"sku": "A1", "name": "Lamp", "qty": 1, "price": 30.0}], "value": 30.0, "currency": "EUR",
            "checkout_url": f"https://shop.test/c/{cart}"}


SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "opt_out": [
        _cart("shop1", "c1", 0, _profile("p1")),
        {"type": "profile.updated", "store": "shop1", "ts": START + 2.2 * H, "profile": _profile("p1", email=False, whatsapp=False)},
    ],
    "window": [  # abandoned on a Friday evening: WhatsApp postponed to Saturday 09:00
        _cart("shop1", "c1", 9.5 * H, _profile("p1")),
    ],
    "purchase": [
        _cart("shop1", "c1", 0, _profile("p1")),
        {"type": "order.completed", "store": "shop1", "cart": "c1", "ts": START + 2.5 * H, "order": "o1", "value": 30.0},
    ],
    "four_touch": [
        _cart("four", "c1", 0, _profile("p1")),
        {"type": "cart.updated", "store": "four", "cart": "c1", "ts": START + 30 * H, "profile": "p1",
         "items": [{"sku": "A1", "qty": 2, "price": 30.0}], "value": 60.0},
    ],
    "two_carts_one_profile": [
        _cart("shop1", "c1", 0, _profile("p1")),
        _cart("shop1", "c2", 0.2 * H, "p1"),
        {"type": "session.ended", "store": "shop1", "cart": "c2", "ts": START + 0.3 * H},
    ],
    "repeated_id_later_copy_first_in_file": [  # the engine meets the copy stamped first first
        dict(_cart("shop1", "c1", 2 * H, _profile("p1")), id="e1"),
        dict(_cart("shop1", "c1", 0, _profile("p1")), id="e1"),
    ],
    "quiet_and_credits": [
        _cart("quiet", "c1", 10 * H, _profile("p1")),
        _cart("quiet", "c2", 10.1 * H, _profile("p2")),
    ],
}


def _rows(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((round(r["at"], 3), r["store"], r["cart"], r["run"], r["step"], r["channel"], r["outcome"],
                   "" if r["outcome"] == "sent" else r["reason"] or "") for r in records)  # (a sent one's is the provider's id)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_simulate_matches_the_engine(name: str, tmp_path: Path) -> None:
    events = SCENARIOS[name]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    config = engine_config(tmp_path, stores=STORES, log_retention="30d")
    horizon = 12 * 86400.0
    predicted, problems = await simulate(config, path, horizon_s=horizon)
    assert all(": ignored: id " in p for p in problems), problems
    engine = await start_engine(config, tmp_path)
    try:
        client = await Client.unix(engine)
        for event in sorted(events, key=lambda e: e["ts"]):
            await engine.runtime.advance_clock(event["ts"] - engine.clock.now())
            reply = await client.frame(event)
            assert reply["accepted"] == 1, reply
        await engine.runtime.advance_clock(horizon)
        actual = [r.as_dict() for r in engine.runtime.msglog]
        await client.close()
    finally:
        await engine.stop()
    assert _rows(predicted) == _rows(actual)
