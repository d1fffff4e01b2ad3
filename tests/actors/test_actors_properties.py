"""Property tests: for random event sequences the recovery rules always hold.

* no send intent is produced for a cart between its ``order.completed`` and its next update;
* no send intent is produced for a channel the shopper has not consented to (at that instant);
* no idempotency key is ever issued twice;
* bookkeeping stays exact: one pending timer per cart exactly when ``due`` is set, state counts match,
  profile reference counts match.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from actorsim import HOUR, Sim, at, cart_event, make_registry
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import SendIntent

CARTS = ("a", "b", "c")
PROFILE_OF = {"a": "p1", "b": "p1", "c": "p2"}
CONSENT_CHANNELS = ("email", "push", "whatsapp", "sms")
STORE = {
    "timezone": "Europe/Madrid", "credits": 6, "whatsapp": {"phone_number_id": "1", "token": "t"},
    "quiet_hours": {"start": "22:00", "end": "08:00"}, "incentive": {"kind": "discount", "percent": 5},
}
FLOWS = {"mixed": {
    "abandon_after": "20m", "expire_after": "30h", "on_cap": "postpone",
    "steps": [
        {"after": "1h", "channels": ["email", "push", "sms"]},
        {"after": "90m", "channels": ["whatsapp"], "window": "whatsapp"},
        {"after": "3h", "channels": ["email", "sms"], "incentive": True, "min_value": 20},
        {"after": "20h", "channels": ["email", "push", "webhook"], "send_in": "profile"},
    ],
}}

cart = st.sampled_from(CARTS)
op = st.one_of(
    st.tuples(st.just("update"), cart, st.booleans()),
    st.tuples(st.just("old_update"), cart, st.integers(1, 4 * 3600)),
    st.tuples(st.just("empty"), cart),
    st.tuples(st.just("end"), cart),
    st.tuples(st.just("payfail"), cart),
    st.tuples(st.just("order"), cart),
    st.tuples(st.just("clear"), cart),
    st.tuples(st.just("consent"), st.sampled_from(("p1", "p2")), st.sampled_from(CONSENT_CHANNELS), st.booleans()),
    st.tuples(st.just("advance"), st.integers(0, 30 * 3600)),
)


def profile_map(pid: str, consent: dict[str, bool]) -> dict[str, Any]:
    return {"id": pid, "email": f"{pid}@example.com", "phone": "+34600000000", "push": f"tok-{pid}",
            "timezone": "America/New_York", "consent": dict(consent)}


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=40), st.sampled_from(["revenue_recovery", "mixed", "four_touch"]))
def test_random_sequences_keep_the_rules(ops: list[tuple[Any, ...]], flow: str) -> None:
    reg = make_registry({"demo": STORE | {"flow": flow}}, FLOWS)
    t0 = at("2024-03-30 18:00", "Europe/Madrid")  # DST night ahead
    consent = {pid: dict.fromkeys(CONSENT_CHANNELS, True) for pid in ("p1", "p2")}
    ordered = dict.fromkeys(CARTS, False)
    keys: set[str] = set()
    violations: list[str] = []

    class CheckingSim(Sim):
        def run(self, effects: list[Any] | None) -> list[Any] | None:
            for effect in effects or ():
                if effect[0] == 3:  # SEND
                    intent: SendIntent = effect[1]
                    if ordered[intent.cart]:
                        violations.append(f"send after order: {intent.key}")
                    if intent.channel != "webhook" and not consent[PROFILE_OF[intent.cart]][intent.channel]:
                        violations.append(f"send without consent: {intent.key}")
                    if intent.key in keys:
                        violations.append(f"repeated key: {intent.key}")
                    keys.add(intent.key)
            return super().run(effects)

    sim = CheckingSim(reg, t0)
    for step in ops:
        kind = step[0]
        if kind in ("update", "old_update", "empty"):
            c = step[1]
            event = cart_event(c, prof=profile_map(PROFILE_OF[c], consent[PROFILE_OF[c]]),
                               type="checkout.started" if kind == "update" and step[2] else "cart.updated",
                               items=[] if kind == "empty" else None)
            if kind == "old_update":
                event["ts"] = sim.now - step[2]
            ordered[c] = False
            sim.apply(event)
        elif kind == "end":
            sim.apply({"type": "session.ended", "store": "demo", "cart": step[1]})
        elif kind == "payfail":
            sim.apply({"type": "payment.failed", "store": "demo", "cart": step[1], "reason": "declined"})
        elif kind == "order":
            ordered[step[1]] = True
            sim.apply({"type": "order.completed", "store": "demo", "cart": step[1], "order": "o", "value": 10.0})
        elif kind == "clear":
            sim.apply({"type": "cart.cleared", "store": "demo", "cart": step[1]})
        elif kind == "consent":
            _, pid, channel, value = step
            consent[pid][channel] = value
            sim.apply({"type": "profile.updated", "store": "demo", "profile": {"id": pid, "consent": {channel: value}}})
        else:
            sim.advance(sim.now + step[1])
        assert not violations, violations
        # bookkeeping invariants
        actors = list(reg)
        assert len(actors) == len(reg)
        assert Counter(a.state.value for a in actors) == {k: v for k, v in reg.carts_by_state().items() if v}
        for actor in actors:
            assert (actor.timer is not None) == (actor.due is not None), actor
            assert actor.profile is None or actor.profile in actor.store.profiles, actor
        refs = Counter((a.store.id, a.profile) for a in actors if a.profile is not None)
        for store, profile in reg.profiles():
            assert profile.refs == refs[(store, profile.id)], profile
    sim.advance(sim.now + 40 * 24 * HOUR)
    assert not violations, violations
    # every cart ends: abandoned, run out, tombstone gone; empty ones forgotten. Nothing leaks.
    assert len(reg) == 0 and sum(reg.carts_by_state().values()) == 0
    assert all(p.refs == 0 for _, p in reg.profiles())
