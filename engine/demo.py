"""``cartwheel demo``: the engine's main job on its embedded default, with a simulated shop.

A real engine (ingest over a UNIX socket, the timing wheel, actors, the outbox channels, file
snapshots) runs on a scaled clock — by default one simulated hour per real second, so a 48-hour
recovery flow plays out in under a minute. A simulated shop of a few thousand shoppers talks to it over
the ingest socket exactly as a shop backend would: shoppers arrive over the first hours, fill carts in
a few updates, and then buy at once, end their session, or just walk away. Some of those who walked
away come back and buy after a recovery message reaches them (the shop watches the message log, as a
shop would see a click). A progress line shows the funnel live; a summary closes the run.

Everything lands under ``--dir`` (default ``run/demo``): ``outbox/*.jsonl`` holds every message
"sent", ``state/`` the snapshot. Nothing leaves the machine.
"""
from __future__ import annotations

import asyncio
import heapq
import math
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack

from engine.clock import ScaledClock, wall_time

__all__ = ["run_demo"]

PRODUCTS = [
    ("LMP-01", "Brass desk lamp", 49.0), ("SFA-22", "Linen sofa", 890.0), ("MUG-07", "Stoneware mug", 14.5),
    ("RUG-13", "Wool rug", 240.0), ("CHR-05", "Oak chair", 165.0), ("PLT-31", "Ceramic planter", 32.0),
    ("BLK-02", "Cotton blanket", 79.0), ("VAS-18", "Glass vase", 45.0), ("SHF-09", "Wall shelf", 119.0),
]
FIRST = ["ana", "bo", "carla", "dev", "eli", "femi", "gus", "hana", "ivo", "jun", "kai", "lea", "mo", "noa"]
LOCALES = ["en", "es", "en", "es-ES", "en-GB"]


def _config(directory: Path) -> Any:
    from engine.config import parse_config

    return parse_config({
        "engine": {
            "ingest_tcp": "", "ingest_unix": str(directory / "ingest.sock"),
            "admin_unix": str(directory / "admin.sock"), "store": f"file:{directory / 'state'}",
            "snapshot_interval": "5s",
        },
        "stores": {"demo": {
            "name": "Demo Shop", "timezone": "Europe/Madrid", "credits": 100_000,
            "whatsapp_window": {"days": "mon-sat", "start": "09:00", "end": "21:00"},
            "incentive": {"kind": "discount", "percent": 10, "code_prefix": "BACK"},
            "whatsapp": {"phone_number_id": "1055501", "token": "demo-token"},
        }},
        "channels": {name: {"kind": "outbox", "dir": str(directory / "outbox")}
                     for name in ("email", "push", "whatsapp", "sms")},
    }, source="<demo>")


class Shop:
    """The simulated shop: a schedule of events in simulated time, sent over the ingest socket."""

    def __init__(self, shoppers: int, start: float, rnd: random.Random) -> None:
        self.rnd = rnd
        self.queue: list[tuple[float, int, dict[str, Any]]] = []
        self.seq = 0
        self.buy_back: set[str] = set()
        self.bought: set[str] = set()
        for n in range(shoppers):
            self._shopper(n, start + rnd.uniform(0, 6 * 3600))

    def _push(self, at: float, event: dict[str, Any]) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, event))

    def _shopper(self, n: int, at: float) -> None:
        rnd = self.rnd
        cart = f"cart-{n:05d}-{rnd.getrandbits(24):06x}"
        name = rnd.choice(FIRST)
        consent = {"email": rnd.random() < 0.92, "push": rnd.random() < 0.45,
                   "whatsapp": rnd.random() < 0.35, "sms": rnd.random() < 0.2}
        profile = {"id": f"cust-{n:05d}", "email": f"{name}.{n}@example.test", "locale": rnd.choice(LOCALES),
                   "consent": consent}
        if rnd.random() < 0.6:
            profile["phone"] = f"+346{rnd.randrange(10**7, 10**8)}"
        if consent["push"]:
            profile["push"] = f"fcm-token-{n:05d}"
        items: list[dict[str, Any]] = []
        for _ in range(rnd.randint(1, 4)):
            sku, title, price = rnd.choice(PRODUCTS)
            items.append({"sku": sku, "name": title, "qty": rnd.randint(1, 2), "price": price,
                          "url": f"https://demo.shop.test/p/{sku}"})
            value = round(sum(i["qty"] * i["price"] for i in items), 2)
            event = {"type": "cart.updated", "store": "demo", "cart": cart, "profile": profile,
                     "items": [dict(i) for i in items], "value": value, "currency": "EUR",
                     "checkout_url": f"https://demo.shop.test/checkout/{cart}"}
            self._push(at, event)
            at += rnd.uniform(60, 600)
        value = round(sum(i["qty"] * i["price"] for i in items), 2)
        fate = rnd.random()
        if fate < 0.22:  # buys in the same session: converted, no message
            self._push(at + rnd.uniform(60, 900), {"type": "order.completed", "store": "demo", "cart": cart,
                                                   "order": f"o-{n}", "value": value})
        elif fate < 0.32:
            self._push(at, {"type": "checkout.started", "store": "demo", "cart": cart, "profile": profile["id"],
                            "items": items, "value": value, "currency": "EUR",
                            "checkout_url": f"https://demo.shop.test/checkout/{cart}"})
            self._push(at + 120, {"type": "payment.failed", "store": "demo", "cart": cart, "reason": "card_declined"})
        elif fate < 0.45:
            self._push(at + 30, {"type": "session.ended", "store": "demo", "cart": cart})
        if rnd.random() < 0.03 and consent["email"]:  # a few opt out later on
            opt = dict(profile, consent=dict(consent, email=False))
            self._push(at + rnd.uniform(3600, 20 * 3600), {"type": "profile.updated", "store": "demo", "profile": opt})
        self.values = getattr(self, "values", {})
        self.values[cart] = value

    def on_message(self, record: dict[str, Any], now: float) -> None:
        """A message reached a shopper: some come back and buy (about 4% per message)."""
        cart = record["cart"]
        if cart in self.bought or self.rnd.random() > 0.04:
            return
        self.bought.add(cart)
        self._push(now + self.rnd.uniform(300, 3 * 3600), {
            "type": "order.completed", "store": "demo", "cart": cart, "order": f"o-back-{cart}",
            "value": self.values.get(cart, 0.0)})

    def due(self, now: float) -> list[dict[str, Any]]:
        out = []
        while self.queue and self.queue[0][0] <= now:
            at, _, event = heapq.heappop(self.queue)
            event["ts"] = max(at, now - 1.0)
            out.append(event)
        return out


async def _demo(shoppers: int, speed: float, hours: float, seed: int, directory: Path) -> int:
    from engine.app import Engine

    directory = directory.resolve()  # the engine resolves relative paths against its own base dir
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    config = _config(directory)
    # Start at the next 08:00 Madrid-ish morning (07:00 UTC) so the day's windows show.
    now = wall_time()
    start = now - now % 86400 + 86400 + 7 * 3600
    clock = ScaledClock(speed, start=start)
    engine = Engine(config, clock=clock, base_dir=directory)
    await engine.start()
    rnd = random.Random(seed)
    shop = Shop(shoppers, start, rnd)
    reader, writer = await asyncio.open_unix_connection(str(directory / "ingest.sock"))
    unpacker = msgpack.Unpacker(raw=False)
    replies = Counter[str]()

    async def read_replies() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            unpacker.feed(data)
            for reply in unpacker:
                replies["accepted"] += reply.get("accepted", 0)
                replies["rejected"] += len(reply.get("rejected", []))

    reading = asyncio.create_task(read_replies())
    end = start + hours * 3600
    seen_log = 0
    last_progress = 0.0
    t0 = time.perf_counter()
    tty = sys.stdout.isatty()
    print(f"cartwheel demo: {shoppers:,} shoppers, {hours:g} simulated hours at {speed:g}x "
          f"(~{hours * 3600 / speed:.0f} s); outbox in {directory / 'outbox'}", flush=True)
    while clock.now() < end:
        sim_now = clock.now()
        batch = shop.due(sim_now)
        if batch:
            for i in range(0, len(batch), 500):
                writer.write(msgpack.packb(batch[i:i + 500]))
            await writer.drain()
        log = engine.runtime.msglog
        records = list(log)
        for record in records[seen_log:]:
            if record.outcome == "sent":
                shop.on_message(record.as_dict(), sim_now)
        seen_log = len(records)
        if time.perf_counter() - last_progress >= (1.0 if tty else 5.0):
            last_progress = time.perf_counter()
            _progress(engine, sim_now - start, tty)
        await asyncio.sleep(0.02)
    _progress(engine, clock.now() - start, tty)
    if tty:
        print(flush=True)
    writer.close()
    reading.cancel()
    summary = _summary(engine, replies, time.perf_counter() - t0, shoppers)
    await engine.stop()
    print(summary)
    return 0


def _progress(engine: Any, elapsed_s: float, tty: bool) -> None:
    rec = engine.stats.recovery()
    sends = engine.stats.sends
    sent = sum(v.get("sent", 0) for v in sends.values())
    carts = len(engine.registry)
    h, m = divmod(int(elapsed_s // 60), 60)
    lead = "\r" if tty else ""
    line = (f"{lead}  +{h:02d}h{m:02d}m  carts {carts:>6,}  abandoned {rec['abandoned']:>6,}  messages {sent:>6,}  "
            f"recovered {rec['recovered']:>5,} ({rec['rate'] * 100:4.1f}%)  revenue {rec['revenue']:>10,.2f} EUR  "
            f"timers {len(engine.runtime.wheel):>6,}")
    print(line, end="" if tty else "\n", file=sys.stdout, flush=True)


def _summary(engine: Any, replies: Counter[str], real_s: float, shoppers: int) -> str:
    rec = engine.stats.recovery()
    lines = ["", "cartwheel demo — summary", "-" * 48]
    rows = [
        ("events accepted", f"{replies['accepted']:,}"),
        ("shoppers (one cart each)", f"{shoppers:,}"),
        ("abandoned", f"{rec['abandoned']:,}"),
        ("converted (bought, no message)", f"{rec['converted']:,}"),
        ("recovered (bought after a message)", f"{rec['recovered']:,}"),
        ("expired (flow ran out)", f"{rec['expired']:,}"),
        ("recovery rate", f"{rec['rate'] * 100:.1f}%"),
        ("revenue recovered", f"{rec['revenue']:,.2f} EUR"),
    ]
    for channel, outcomes in sorted(engine.stats.sends.items()):
        if channel == "-":
            continue
        parts = ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items()))
        rows.append((f"messages: {channel}", parts))
    rows.append(("real time", f"{real_s:.1f} s"))
    width = max(len(k) for k, _ in rows)
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


#: what a demo run leaves in its directory: the only entries a new run may delete
_DEMO_ENTRIES = frozenset({"outbox", "state", "ingest.sock", "admin.sock"})


def _not_a_demo_dir(directory: Path) -> str | None:
    """Why ``directory`` must not be wiped for a new run (None: it is new, empty, or an earlier run's)."""
    if not directory.exists():
        return None
    if not directory.is_dir():
        return f"{directory} is not a directory"
    foreign = sorted(entry.name for entry in directory.iterdir() if entry.name not in _DEMO_ENTRIES)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        return (f"{directory} holds files an earlier demo did not make ({shown}); a run starts by deleting "
                "its directory: give a new or empty --dir")
    return None


def run_demo(*, shoppers: int = 3000, speed: float = 3600.0, hours: float = 54.0, seed: int = 7,
             directory: Path = Path("run/demo")) -> int:
    from engine.config import ConfigError

    if shoppers < 1 or not (0 < speed < math.inf) or not (0 < hours < math.inf):  # (NaN fails both)
        print("cartwheel demo: --shoppers, --speed and --hours must be positive finite numbers", file=sys.stderr)
        return 2
    problem = _not_a_demo_dir(directory.resolve())
    if problem is not None:
        print(f"cartwheel demo: {problem}", file=sys.stderr)
        return 2
    try:
        _config(directory.resolve())  # (before anything is deleted: a --dir too long for its socket paths)
    except ConfigError as exc:
        print(f"cartwheel demo: --dir {directory}: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_demo(shoppers, speed, hours, seed, directory))
