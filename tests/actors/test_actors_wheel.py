"""The registry driven by the real timing wheel (100 ms ticks), as the runtime will drive it."""
from __future__ import annotations

from typing import Any

import pytest
from actorsim import HOUR, MIN, at, cart_event, make_registry, profile

from actors import CANCEL, SCHEDULE, SEND, Registry

timing_wheel = pytest.importorskip("timing_wheel")
TICK_S = 0.1


class WheelRuntime:
    def __init__(self, reg: Registry, start_s: float) -> None:
        self.reg = reg
        self.wheel = timing_wheel.TimingWheel(int(start_s / TICK_S), tick_s=TICK_S)
        self.sent: list[tuple[float, int, str]] = []

    def now(self) -> float:
        return float(self.wheel.now * TICK_S)

    def run(self, effects: list[Any] | None) -> None:
        for effect in effects or ():
            if effect[0] is SCHEDULE:
                _, actor, due_s, tag = effect
                if actor.timer is not None:
                    self.wheel.cancel(actor.timer)
                actor.timer = self.wheel.schedule(self.wheel.to_tick(due_s), actor, tag)
            elif effect[0] is CANCEL:
                if effect[1].timer is not None:
                    self.wheel.cancel(effect[1].timer)
                    effect[1].timer = None
            elif effect[0] is SEND:
                intent = effect[1]
                assert self.reg.still_wanted(intent, self.now()) is None
                self.sent.append((self.now(), intent.step, intent.channel))
                self.run(self.reg.delivered(intent, "sent", self.now()))

    def advance(self, to_s: float) -> None:
        for actor, tag in self.wheel.advance(int(to_s / TICK_S)):
            actor.timer = None
            self.run(self.reg.fire(actor, tag, self.now()))


def test_full_run_on_the_wheel_sends_within_one_tick() -> None:
    reg = make_registry({"demo": {"timezone": "Europe/Madrid", "whatsapp": {"phone_number_id": "1", "token": "t"}}})
    t0 = at("2024-05-15 10:00", "Europe/Madrid") + 0.03
    rt = WheelRuntime(reg, t0)
    rt.run(reg.apply(cart_event(prof=profile(phone="+34600111222")), t0))
    for minutes in (3, 7, 12):  # updates cost no timer operation: the wheel keeps one timer
        assert reg.apply(cart_event(prof=profile(phone="+34600111222")), t0 + minutes * MIN) is None
    assert len(rt.wheel) == 1
    rt.advance(t0 + 3 * 24 * HOUR)
    abandoned = t0 + 42 * MIN
    expected = [(1, 1, "email"), (4, 3, "email"), (24, 4, "email"), (40, 5, "email")]
    expected.insert(1, (1.5, 2, "whatsapp"))
    assert [(step, ch) for (_, step, ch) in rt.sent] == [(s, c) for (_, s, c) in expected]
    for (when, _, _), (hours, _, _) in zip(rt.sent, expected, strict=True):
        assert 0 <= when - (abandoned + hours * HOUR) < TICK_S + 1e-6
    assert reg.carts_by_state()["expired"] == 1 and len(rt.wheel) == 1  # the tombstone timer
