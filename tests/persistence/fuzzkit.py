"""A randomised shop workload for the crash tests, with the paths :mod:`crashkit`'s script does not take.

:func:`workload` (deterministic for a seed) adds to crashkit's abandon / recover / buy / opt-out / clear:

* shoppers who come back during a recovery run (the run pauses) and leave again, so that the next run
  *resumes*; some come back again late, so that their next abandonment falls past the paused run's
  expiry (the flow starts over);
* ``cart.cleared`` followed right away by ``order.completed`` (a shop that empties the cart at checkout);
* admin ``cancel STORE CART`` of a run, some followed by an order (still credited);
* shoppers stated only by ``profile.updated`` whose carts cite them by id; some of them lose their only
  cart and get a new one, citing the profile by id, later;
* shoppers with two or three carts (the frequency cap: postponed sends, tombstones the cap keeps);
* WhatsApp, whose ``whatsapp_delay`` changes across graceful restarts (``restart`` steps, which the
  uninterrupted baseline plays too);
* a message log capped at ``log_max_records = 1000`` (the minimum).

:class:`FuzzDriver` plays ``admin`` and ``restart`` steps besides crashkit's ones. :func:`violations`
checks the invariants every run must keep: a key at most once in the outbox; nothing created after the
cart's order, its run's cancel or the profile's opt-out was acknowledged; no step number sent twice to a
shopper whose runs only paused.
"""
from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.persistence.crashkit import HOUR, START, Died, Driver, EngineProcess, Step
from tests.persistence.crashkit import write_config as crashkit_write_config

#: whatsapp_delay values the restarts walk through (None: the flow's 1 h 30)
DELAYS = (None, "6h", "2h", None)


@dataclass
class Plan:
    """What the workload promised the checks: per cart, the clock time after which it gets no message."""

    steps: list[Step]
    #: cart -> clock time of its order / cancel after which nothing may be created (if no update follows)
    silent_after: dict[str, float] = field(default_factory=dict)
    #: profile -> clock time of its email opt-out
    opted_out: dict[str, float] = field(default_factory=dict)
    #: carts whose runs only paused (each return resumed): no step twice
    paused_only: set[str] = field(default_factory=set)
    profile_of: dict[str, str] = field(default_factory=dict)
    #: carts of profiles stated only by profile.updated, created after their profile's first cart went
    late_kept: set[str] = field(default_factory=set)


def workload(seed: int, n_carts: int = 120, *, delays: tuple[str | None, ...] = DELAYS) -> Plan:
    rnd = random.Random(seed)
    eid = 0
    # timeline: clock instants (hours), each with the frames sent at it
    slots: dict[float, list[list[dict[str, Any]]]] = defaultdict(list)
    admin: dict[float, list[str]] = defaultdict(list)
    plan = Plan(steps=[])

    def ev(kind: str, cart: str, t_h: float, **fields: Any) -> dict[str, Any]:
        nonlocal eid
        eid += 1
        ts = START + t_h * HOUR - int(cart[1:]) * 0.5  # distinct per cart: no two carts share a deadline
        return {"type": kind, "store": "shop1", "cart": cart, "ts": ts, "id": f"e{eid}", **fields}

    def pmap(pid: str) -> dict[str, Any]:
        return {"id": pid, "email": f"{pid}@example.test", "phone": "+34600000000", "locale": "en",
                "consent": {"email": True, "whatsapp": True}}

    # profiles: groups of 1-3 carts; some stated only by profile.updated (carts cite them by id)
    stated: set[str] = set()
    i = 0
    pid_n = 0
    while i < n_carts:
        size = rnd.choice((1, 1, 1, 2, 2, 3))
        pid = f"p{pid_n}"
        pid_n += 1
        if rnd.random() < 0.25:
            stated.add(pid)
        for j in range(i, min(n_carts, i + size)):
            plan.profile_of[f"c{j}"] = pid
        i += size

    def upd(cart: str, t_h: float, value: float) -> dict[str, Any]:
        pid = plan.profile_of[cart]
        return ev("cart.updated", cart, t_h, profile=pid if pid in stated else pmap(pid), value=value,
                  currency=rnd.choice(("EUR", "EUR", "USD")),
                  items=[{"sku": f"S{cart}", "name": "Thing", "qty": 1, "price": value}],
                  checkout_url=f"https://shop.test/c/{cart}")

    # profile.updated first (its own frame, before the carts that cite it)
    slots[0.0].append([{"type": "profile.updated", "store": "shop1", "ts": START - 60.0, "id": f"pu-{p}",
                        "profile": pmap(p)} for p in sorted(stated)])
    # arrivals over the first 20 minutes
    arrivals = [[] for _ in range(4)]
    for j in range(n_carts):
        arrivals[j % 4].append(upd(f"c{j}", (j % 4) * 5 / 60, 20.0 + j % 40))
    for k, frame in enumerate(arrivals):
        slots[k * 5 / 60].append(frame)

    carts = [f"c{j}" for j in range(n_carts)]
    rnd.shuffle(carts)
    late_id = n_carts
    # every cart gets one fate
    for n, cart in enumerate(carts):
        fate = rnd.choice(("idle", "idle", "return", "return", "return_late", "clear_order", "cancel",
                           "cancel_order", "order", "optout", "reclear"))
        pid = plan.profile_of[cart]
        if fate == "return":
            # back after the 1 h reminder (abandoned at ~0h30, reminder at ~1h30), gone again
            back = rnd.choice((1.7, 2.2, 4.6, 10.0))
            slots[back].append([upd(cart, back, 33.0)])
            if rnd.random() < 0.5:
                back = back + rnd.choice((1.0, 3.0, 12.0))
                slots[back].append([upd(cart, back, 34.0)])
            if rnd.random() < 0.3:  # and buys later
                t = back + 5.0
                slots[t].append([ev("order.completed", cart, t, order=f"o{cart}", value=40.0)])
                plan.silent_after[cart] = START + t * HOUR
            plan.paused_only.add(cart)
        elif fate == "return_late":
            # back shortly before the run expires (~48h30), active again past its expiry: starts over
            slots[47.8].append([upd(cart, 47.8, 35.0)])
            slots[48.3].append([upd(cart, 48.3, 36.0)])
        elif fate == "clear_order":
            t = rnd.choice((1.7, 4.6, 25.0))
            slots[t].append([ev("cart.cleared", cart, t)])
            slots[t].append([ev("order.completed", cart, t + 1 / 3600, order=f"o{cart}", value=50.0)])
            plan.silent_after[cart] = START + t * HOUR
        elif fate in ("cancel", "cancel_order"):
            t = rnd.choice((1.7, 4.6, 25.0))
            admin[t].append(f"cancel shop1 {cart}")
            plan.silent_after[cart] = START + t * HOUR
            if fate == "cancel_order":
                slots[t + 2].append([ev("order.completed", cart, t + 2, order=f"o{cart}", value=60.0)])
        elif fate == "order":
            t = rnd.choice((0.4, 1.7, 4.6, 25.0))
            slots[t].append([ev("order.completed", cart, t, order=f"o{cart}", value=25.0)])
            plan.silent_after[cart] = START + t * HOUR
        elif fate == "optout":
            t = rnd.choice((1.7, 4.6))
            slots[t].append([{"type": "profile.updated", "store": "shop1", "ts": START + t * HOUR, "id": f"opt-{cart}",
                              "profile": {"id": pid, "consent": {"email": False}}}])
            plan.opted_out[pid] = min(plan.opted_out.get(pid, 1e18), START + t * HOUR)
        elif fate == "reclear" and pid in stated:
            # the only cart goes before any flow; a new cart cites the (kept) profile by id later
            slots[0.25].append([ev("cart.cleared", cart, 0.25)])
            new = f"c{late_id}"
            late_id += 1
            plan.profile_of[new] = pid
            slots[6.0].append([upd(new, 6.0, 45.0)])
            plan.late_kept.add(new)

    # after an opt-out, the shopper's carts cite the profile by id (a map would state the consent again)
    for m, frames in slots.items():
        for frame in frames:
            for e in frame:
                pid = plan.profile_of.get(e.get("cart", ""))
                if e["type"] == "cart.updated" and pid in plan.opted_out and e["ts"] >= plan.opted_out[pid] - HOUR:
                    e["profile"] = pid
    # the clock: every half hour for the first 6 h, then coarser, to 56 h
    marks = sorted({*(k / 2 for k in range(1, 13)), 8.0, 10.0, 12.0, 16.0, 20.0, 25.0, 28.0, 30.0, 36.0, 42.0,
                    47.8, 48.3, 49.0, 52.0, 56.0, *slots, *admin})
    restarts = {3.0: delays[1], 12.0: delays[2], 30.0: delays[3]}
    for m in marks:
        if m > 0:
            plan.steps.append(Step("clock", at=START + m * HOUR))
        for frame in slots.get(m, ()):
            plan.steps.append(Step("events", [frame]))
        for command in admin.get(m, ()):
            plan.steps.append(Step("admin", frames=[command]))
        if m in restarts:
            plan.steps.append(Step("restart", frames=[restarts[m]]))
        if rnd.random() < 0.4:
            plan.steps.append(Step("sync"))
    return plan


def write_config(directory: Path, *, store: str, durability: str, port: int, whatsapp_delay: str | None = None,
                 snapshot_interval: str = "300ms") -> Path:
    """crashkit's config with WhatsApp (and ``whatsapp_delay``), a WhatsApp channel and a small log."""
    delay = f'whatsapp_delay = "{whatsapp_delay}"\n' if whatsapp_delay else ""
    channels = "".join(f'\n[channels.{name}]\nkind = "outbox"\ndir = "{directory / "outbox"}"\n'
                       for name in ("email", "push", "whatsapp"))
    return crashkit_write_config(
        directory, store=store, durability=durability, port=port, snapshot_interval=snapshot_interval,
        engine="log_max_records = 1000\n", shop='whatsapp = { phone_number_id = "1055501", token = "t" }\n' + delay,
        channels=channels)


class FuzzDriver(Driver):
    """crashkit's :class:`Driver` plus ``admin`` steps (a command; an error reply is fine on a replay)
    and ``restart`` steps (SIGTERM, rewrite the config's ``whatsapp_delay``, start; a durable point)."""

    def __init__(self, engine: EngineProcess, steps: list[Step], *, journal: bool, config: dict[str, Any],
                 kill_at: dict[int, int] | None = None, on_step: Any = None, snapshot_after_admin: bool = False) -> None:
        super().__init__(engine, steps, journal=journal, kill_at=kill_at, on_step=on_step)
        self.snapshot_after_admin = snapshot_after_admin
        self.config = config
        self.admin_errors: list[tuple[int, dict[str, Any]]] = []
        self.stopped: dict[str, float] = {}  # cart -> clock of a successful cancel
        self.restarted: set[int] = set()  # restart steps played

    durable_steps = ("sync", "restart")

    def _resume_point(self, i: int, back: int) -> int:
        return max(back, self._last_restart(i))  # a restart step is never played twice

    def _last_restart(self, i: int) -> int:
        last = 0
        for n, step in enumerate(self.steps[: i + 1]):
            if step.kind == "restart" and n < i:
                last = n + 1
        return last

    def _acked(self, n: int, step: Step, acked: set[tuple[int, int]]) -> bool:
        if step.kind == "admin":
            return (n, 0) in acked
        if step.kind == "restart":
            return n in self.restarted  # (a kill right before it: the restart, with its new config, is to come)
        return super()._acked(n, step, acked)

    async def _play(self, i: int, step: Step, acked: set[tuple[int, int]]) -> None:
        if step.kind == "admin":
            kill = self.kill_at.pop(i, None)
            try:
                reply = await self.engine.admin(step.frames[0])
                if self.snapshot_after_admin:
                    assert (await self.engine.admin("snapshot"))["ok"]
            except (OSError, ConnectionError):
                raise Died from None
            acked.add((i, 0))
            if reply.get("ok"):
                self.stopped.setdefault(step.frames[0].split()[-1], self.clock)
            else:
                self.admin_errors.append((i, reply))
            if kill is not None:
                self.engine.kill9()
                raise Died
            return
        if step.kind == "restart":
            self.kill_at.pop(i, None)
            assert self.engine.terminate() == 0
            self.config["whatsapp_delay"] = step.frames[0]
            write_config(**self.config)
            await self.engine.start()
            self.restarted.add(i)
            return
        await super()._play(i, step, acked)


def outbox(directory: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((directory / "outbox").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line)["message"])
    return rows


def violations(directory: Path, plan: Plan) -> list[str]:
    """The invariants of a run's outbox against its plan (see the module docstring)."""
    rows = outbox(directory)
    out: list[str] = []
    keys = Counter(r["key"] for r in rows)
    out += [f"twice: {k}" for k, n in keys.items() if n > 1]
    steps_sent: dict[str, Counter[tuple[int, str]]] = defaultdict(Counter)
    for r in rows:
        cart, at = r["cart"], r["created_at"]
        if cart in plan.silent_after and at > plan.silent_after[cart] + 1e-6:
            out.append(f"after order/cancel ({plan.silent_after[cart] - START:.0f}s): {r['key']} at {at - START:.0f}s")
        pid = plan.profile_of.get(cart)
        if r["channel"] == "email" and pid in plan.opted_out and at > plan.opted_out[pid] + 1e-6:
            out.append(f"after opt-out: {r['key']} at {at - START:.0f}s")
        steps_sent[cart][(r["step"], r["channel"])] += 1
    for cart in plan.paused_only:
        again = {k: n for k, n in steps_sent[cart].items() if n > 1}
        if again:
            out.append(f"a paused run's step sent again: {cart} {again}")
    return out
