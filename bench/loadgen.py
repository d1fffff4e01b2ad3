"""Load generator: a simulated shop that drives the ingest protocol (``cartwheel loadgen``).

The shop
--------
``N`` carts (``c0`` .. ``c{N-1}``) spread over ``S`` stores; cart ``c`` belongs to store ``c % S`` and to
profile ``p{c % P}`` with ``P = 0.8 N`` (a fifth of the shoppers keep two carts). Time is *virtual* and
only decides the order of events; the wire rate is chosen separately. Every cart starts a session about
once per ``CART_LIFETIME_S`` (48 h) on average, but which cart starts the next session follows a
Zipf-like law over cart ranks (density ``(r + 1) ** -s``, default ``s = 0.8``: rank 0 gets about 1 % of
all sessions at a million carts), so a few carts are busy and most are quiet. A session is:

* 1 + Geometric(1/3) updates (mean 3) spaced by Exp(60 s): ``cart.updated`` with the full profile map
  on the first update and the profile id afterwards; items are added, re-counted or removed; the last
  update is ``checkout.started`` for 60 % of buying sessions and 15 % of the others.
* then, with probability ``1 - abandon_rate`` (default 30 %), ``order.completed`` 1 to 15 min later;
  otherwise the cart is abandoned: ``session.ended`` for ``explicit_exit`` of them (30 %), ``cart.cleared``
  for 2 %, and a *late purchase* for ``return_rate`` (10 %): ``order.completed`` after a log-normal delay
  (median 4 h, clipped to 20 min .. 5 days), the recovery that the engine is for;
* an opt-out for ``optout_rate`` of sessions (1 %): ``profile.updated`` with every consent false, 1 h to
  2 days later.

Late purchases of carts abandoned *before* the stream begins are a thinned Poisson process (rate: the
steady-state return rate times the chance that the delay reaches past the start), so a short stream looks
like the middle of a shop's life, not its first day. A fraction ``bad_fraction`` (1 %) of the events is
replaced by a copy spoiled in one of six ways that validation must reject. The resulting mix (measured,
default spec): 74.5 % ``cart.updated``, 8 % ``checkout.started``, 10 % ``order.completed``, 6 %
``session.ended``, 0.4 % ``cart.cleared``, 0.1-0.2 % ``profile.updated`` opt-outs, 1 % invalid; ~340 B
per event packed.
``--populate`` instead sends exactly one ``cart.updated`` per cart, in order: the way to fill the engine
before a measurement.

The run
-------
Events are generated and packed to msgpack *before* the timed run (``pool`` events, cycled when a run
needs more; without ``id`` fields a replayed event is just another update). A frame of batch size ``B``
is a msgpack array header plus ``B`` packed events sliced from one buffer, so any ``B`` is cheap.

* **Open loop** (``--rate R``): frame ``i`` is due at ``t0 + events_before(i) / R``. A sender wakes, writes
  every frame due so far (one ``write`` per connection) and sleeps until the next one is due. It never
  waits for replies, so a slow server cannot slow the offered load down. Latency is measured from the
  *scheduled* send time to the reply (no coordinated omission: a stalled server or a late sender counts
  against the latency, every frame it delayed).
* **Closed loop** (``--rate 0``): each connection keeps ``window`` frames in flight and sends one more per
  reply: the maximal rate. Latency is measured from the actual send time (it is queueing delay at
  saturation, not a service-level figure).

Frames are dealt round robin over ``--connections``; replies come back in order per connection, so a
FIFO of send times per connection pairs them up. Latencies go to an HDR histogram (1 µs .. 60 s, 3
digits); a progress line (stderr, once per second) shows what was sent, replies, events/s and the p99 of
that second. The summary (stdout with ``--json``) has events sent, accepted, rejected, events/s,
p50/p99/p99.9/max in ms and errors.

Simplifications admitted on purpose: events carry no ``ts`` (the engine stamps the receive time) and no
``id`` (so a cycled pool is not de-duplicated); all stores share one currency per store index; one
client process is single-threaded (use several processes beyond ~300 k events/s).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import json
import math
import random
import sys
import time
from array import array
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
from hdrh.histogram import HdrHistogram

__all__ = [
    "EventPool", "ShopModel", "ShopSpec", "add_parser", "build_frames", "generate_pool", "main", "run_load",
]

CART_LIFETIME_S = 48 * 3600.0
_MAX_LATENCY_US = 60_000_000
_MAX_BUFFERED = 512 << 20  # open loop: client-side backlog at which a run gives up
_perf = time.perf_counter
_LOCALES = ("es-ES", "en-GB", "de-DE", "fr-FR", "it", "en")
_ZONES = ("Europe/Madrid", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Rome", "UTC")
_CURRENCIES = ("EUR", "GBP", "USD", "EUR")
_NO_CONSENT = {"email": False, "sms": False, "whatsapp": False, "push": False}
_POOL_MAGIC = "cartwheel-loadgen-pool/1"


@dataclass(frozen=True, slots=True)
class ShopSpec:
    """The simulated shop (see the module docstring for what each knob means)."""

    carts: int = 100_000
    stores: int = 4
    zipf_s: float = 0.8
    abandon_rate: float = 0.7
    explicit_exit: float = 0.3
    return_rate: float = 0.1
    optout_rate: float = 0.01
    clear_rate: float = 0.02
    bad_fraction: float = 0.01
    seed: int = 1


class ShopModel:
    """Generates the shop's event stream in virtual-time order; deterministic for a given spec."""

    def __init__(self, spec: ShopSpec) -> None:
        if spec.carts < 1 or spec.stores < 1:
            raise ValueError("carts and stores must be >= 1")
        self.spec = spec
        self.rnd = random.Random(spec.seed)
        rnd = self.rnd
        self.stores = [f"shop{k + 1}" for k in range(spec.stores)]
        self.profiles = max(1, int(spec.carts * 0.8))
        # 2 000 products; each item map is built once per (product, qty) and shared (it is packed at once).
        self.catalog = []
        for k in range(2000):
            price = round(rnd.lognormvariate(3.0, 0.8), 2)
            base = {"sku": f"SKU-{k:05d}", "name": f"Product {k}", "price": price,
                    "url": f"https://shop.example.test/p/{k}"}
            self.catalog.append([dict(base, qty=q) for q in (1, 2, 3)])
        self.session_rate = spec.carts / CART_LIFETIME_S  # sessions per virtual second
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.now = 0.0
        self.next_session = rnd.expovariate(self.session_rate)
        self.ret_ss = self.session_rate * spec.abandon_rate * spec.return_rate
        self.next_background = rnd.expovariate(self.ret_ss) if self.ret_ss > 0 else math.inf
        self.in_session: set[int] = set()
        self._zipf_a = (spec.carts + 1) ** (1.0 - spec.zipf_s) - 1.0 if spec.zipf_s != 1.0 else 0.0

    # ------------------------------------------------------------------ pieces of events
    def _pick_cart(self) -> int:
        """A cart rank from the bounded continuous Zipf law (inverse CDF), redrawn if it is mid-session."""
        spec, rnd = self.spec, self.rnd
        s = spec.zipf_s
        for _ in range(4):
            u = rnd.random()
            if s == 1.0:
                c = int((spec.carts + 1) ** u) - 1
            else:
                c = int((1.0 + self._zipf_a * u) ** (1.0 / (1.0 - s))) - 1
            c = min(max(c, 0), spec.carts - 1)
            if c not in self.in_session:
                return c
        return c

    def profile_map(self, p: int) -> dict[str, Any]:
        h = (p * 2654435761) & 0xFFFFFFFF
        m: dict[str, Any] = {
            "id": f"p{p}", "email": f"shopper{p}@example.test", "locale": _LOCALES[h % 6],
            "timezone": _ZONES[(h >> 3) % 6],
            "consent": {"email": h % 10 < 8, "sms": h % 7 < 3, "whatsapp": h % 5 < 2, "push": h % 3 == 0},
        }
        if h % 4 == 0:
            m["phone"] = f"+3460{p % 10_000_000:07d}"
        if h % 3 == 0:
            m["push"] = f"fcm-token-{p}"
        return m

    def cart_event(self, c: int, items: list[dict[str, Any]], full_profile: bool, etype: str = "cart.updated") -> dict[str, Any]:
        si = c % self.spec.stores
        store = self.stores[si]
        p = c % self.profiles
        value = 0.0
        for it in items:
            value += it["price"] * it["qty"]
        return {
            "type": etype, "store": store, "cart": f"c{c}",
            "profile": self.profile_map(p) if full_profile else f"p{p}",
            "items": items, "value": round(value, 2), "currency": _CURRENCIES[si % 4],
            "checkout_url": f"https://{store}.example.test/checkout/c{c}",
        }

    def _simple(self, etype: str, c: int) -> dict[str, Any]:
        return {"type": etype, "store": self.stores[c % self.spec.stores], "cart": f"c{c}"}

    def _order(self, c: int) -> dict[str, Any]:
        self.seq += 1
        return {"type": "order.completed", "store": self.stores[c % self.spec.stores], "cart": f"c{c}",
                "order": f"o{self.seq}", "value": round(self.rnd.lognormvariate(4.0, 0.7), 2)}

    def _optout(self, c: int) -> dict[str, Any]:
        return {"type": "profile.updated", "store": self.stores[c % self.spec.stores],
                "profile": {"id": f"p{c % self.profiles}", "consent": _NO_CONSENT}}

    def _new_items(self) -> list[dict[str, Any]]:
        rnd, catalog = self.rnd, self.catalog
        return [catalog[rnd.randrange(2000)][0] for _ in range(1 + (rnd.random() < 0.4))]

    def _edit_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rnd = self.rnd
        r = rnd.random()
        items = list(items)
        if r < 0.6 and len(items) < 12:
            items.append(self.catalog[rnd.randrange(2000)][0])
        elif r < 0.85:
            k = rnd.randrange(len(items))
            sku = int(items[k]["sku"][4:])
            items[k] = self.catalog[sku][rnd.randrange(3)]
        elif len(items) > 1:
            del items[rnd.randrange(len(items))]
        return items

    def spoil(self, ev: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``ev`` that validation must reject (six ways, chosen at random)."""
        bad = dict(ev)
        kind = self.rnd.randrange(6)
        if kind == 0:
            del bad["store"]
        elif kind == 1:
            bad["type"] = "cart.exploded"
        elif kind == 2:
            bad["ts"] = "yesterday"
        elif kind == 3 and "items" in bad:
            bad["items"] = [dict(bad["items"][0], qty=0)] + bad["items"][1:]
        elif kind == 4 and "currency" in bad:
            bad["currency"] = "EURO"
        elif kind == 5 and "checkout_url" in bad:
            bad["checkout_url"] = "ftp://" + bad["checkout_url"][8:]
        else:
            bad["ts"] = -1.0
        return bad

    # ------------------------------------------------------------------ the stream
    def _push(self, at: float, c: int, step: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, c, step))

    def _start_session(self, t: float) -> dict[str, Any]:
        rnd, spec = self.rnd, self.spec
        c = self._pick_cart()
        self.in_session.add(c)
        updates = 1
        while rnd.random() < 2 / 3 and updates < 10:
            updates += 1
        buys = rnd.random() >= spec.abandon_rate
        items = self._new_items()
        state = [updates - 1, items, buys]
        self._after_update(t, c, state)
        return self.cart_event(c, items, True, self._update_type(state))

    def _update_type(self, state: list[Any]) -> str:
        if state[0] == 0 and self.rnd.random() < (0.6 if state[2] else 0.15):
            return "checkout.started"
        return "cart.updated"

    def _after_update(self, t: float, c: int, state: list[Any]) -> None:
        rnd, spec = self.rnd, self.spec
        if state[0] > 0:
            self._push(t + rnd.expovariate(1 / 60.0), c, state)
            return
        self.in_session.discard(c)
        if state[2]:
            self._push(t + rnd.uniform(60.0, 900.0), c, "order")
        else:
            r = rnd.random()
            if r < spec.explicit_exit:
                self._push(t + rnd.expovariate(1 / 30.0), c, "exit")
            elif r < spec.explicit_exit + spec.clear_rate:
                self._push(t + rnd.uniform(60.0, 3600.0), c, "clear")
            if rnd.random() < spec.return_rate:
                delay = min(max(rnd.lognormvariate(math.log(4 * 3600.0), 1.0), 1200.0), 5 * 86400.0)
                self._push(t + delay, c, "order")
        if rnd.random() < spec.optout_rate:
            self._push(t + rnd.uniform(3600.0, 2 * 86400.0), c, "optout")

    def _background_return(self, t: float) -> dict[str, Any] | None:
        # Thinning: a return from before the stream is still to come with probability S(t) (log-normal tail).
        z = (math.log(max(t, 1e-9)) - math.log(4 * 3600.0)) / math.sqrt(2)
        if self.rnd.random() < 0.5 * math.erfc(z):
            return self._order(self.rnd.randrange(self.spec.carts))
        return None

    def next_event(self) -> dict[str, Any]:
        """The next event in virtual time (good; :meth:`events` spoils some)."""
        rnd = self.rnd
        while True:
            t_heap = self.heap[0][0] if self.heap else math.inf
            t = min(t_heap, self.next_session, self.next_background)
            self.now = t
            if t == self.next_session:
                self.next_session = t + rnd.expovariate(self.session_rate)
                return self._start_session(t)
            if t == self.next_background:
                self.next_background = t + rnd.expovariate(self.ret_ss)
                ev = self._background_return(t)
                if ev is not None:
                    return ev
                continue
            _, _, c, step = heapq.heappop(self.heap)
            if type(step) is list:
                step[0] -= 1
                step[1] = self._edit_items(step[1])
                etype = self._update_type(step)
                self._after_update(t, c, step)
                return self.cart_event(c, step[1], False, etype)
            if step == "order":
                return self._order(c)
            if step == "exit":
                return self._simple("session.ended", c)
            if step == "clear":
                return self._simple("cart.cleared", c)
            return self._optout(c)

    def iter_events(self, n: int) -> Iterator[tuple[dict[str, Any], bool]]:
        """``n`` events as ``(event, bad)``: ``bad`` ones must be rejected, the others accepted."""
        rnd, bad_fraction = self.rnd, self.spec.bad_fraction
        for _ in range(n):
            ev = self.next_event()
            if rnd.random() < bad_fraction:
                yield self.spoil(ev), True
            else:
                yield ev, False

    def populate(self) -> Iterator[tuple[dict[str, Any], bool]]:
        """One ``cart.updated`` (full profile) per cart, in cart order: fills an engine."""
        for c in range(self.spec.carts):
            yield self.cart_event(c, self._new_items(), True), False


# ---------------------------------------------------------------------- packed pools and frames


@dataclass(slots=True)
class EventPool:
    """Packed events back to back in ``data``; event ``i`` is ``data[offsets[i]:offsets[i + 1]]``."""

    data: bytes
    offsets: array[int]  # 'Q', len = events + 1
    mix: dict[str, int]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            f.write(msgpack.packb([_POOL_MAGIC, self.mix, self.offsets.tobytes(), self.data]))

    @classmethod
    def load(cls, path: str) -> EventPool:
        with open(path, "rb") as f:
            magic, mix, offsets, data = msgpack.unpackb(f.read(), raw=False, max_bin_len=1 << 34)
        if magic != _POOL_MAGIC:
            raise ValueError(f"{path}: not a loadgen event pool")
        return cls(data, array("Q", offsets), mix)


def generate_pool(spec: ShopSpec, events: int, *, populate: bool = False) -> EventPool:
    """Generate and pack ``events`` events (or one per cart with ``populate``)."""
    model = ShopModel(spec)
    pack = msgpack.Packer(autoreset=True).pack
    chunks = []
    offsets = array("Q", [0])
    mix: Counter[str] = Counter()
    size = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived dicts: the cyclic collector would rescan the growing pool
    try:
        for ev, bad in (model.populate() if populate else model.iter_events(events)):
            b = pack(ev)
            chunks.append(b)
            size += len(b)
            offsets.append(size)
            mix["bad" if bad else ev["type"]] += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return EventPool(b"".join(chunks), offsets, dict(mix))


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def build_frames(pool: EventPool, batch: int) -> tuple[list[bytes], list[int]]:
    """Frames of ``batch`` events (batch 1: bare maps) and the event count of each."""
    data, off, n = pool.data, pool.offsets, len(pool)
    if batch <= 1:
        return [data[off[i]:off[i + 1]] for i in range(n)], [1] * n
    frames, counts = [], []
    for i in range(0, n, batch):
        j = min(i + batch, n)
        frames.append(_array_header(j - i) + data[off[i]:off[j]])
        counts.append(j - i)
    return frames, counts


# ---------------------------------------------------------------------- the client


class _Conn(asyncio.Protocol):
    """One connection: writes frames, pairs in-order replies with their (scheduled) send times."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.sent_at: deque[float] = deque()
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        run = self.run
        self.unpacker.feed(data)
        now = _perf()
        sent_at, hist, ihist = self.sent_at, run.hist, run.ihist
        freed = 0
        for reply in self.unpacker:
            if not sent_at:
                run.error(f"unexpected reply {reply!r}"[:200])
                continue
            us = int((now - sent_at.popleft()) * 1e6)
            us = 1 if us < 1 else min(us, _MAX_LATENCY_US)
            hist.record_value(us)
            ihist.record_value(us)
            freed += 1
            if type(reply) is not dict or "accepted" not in reply:
                run.error(f"error reply {reply!r}"[:200])
                continue
            run.accepted += reply["accepted"]
            rejected = reply["rejected"]
            if rejected:
                run.rejected += len(rejected)
                if len(run.samples) < 5:
                    run.samples.append(rejected[0][1])
        run.frames_replied += freed
        run.last_reply = now
        if run.closed_loop and freed:
            run.refill(self, freed)
        if not sent_at and run.sending_done:
            run.check_done()

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        if self.sent_at or not run.closing:
            run.error(f"connection lost with {len(self.sent_at)} replies missing: {exc or 'EOF'}")
            run.sending_done = True  # the server hung up: stop the run rather than send into the void
        if not self.lost.done():
            self.lost.set_result(None)
        run.check_done()


class _Run:
    """One load run's state and counters."""

    def __init__(self, frames: list[bytes], counts: list[int], *, rate: float, total_events: int, window: int) -> None:
        self.frames, self.counts = frames, counts
        self.rate = rate
        self.closed_loop = rate <= 0
        self.total_events = total_events
        self.window = window
        self.conns: list[_Conn] = []
        self.hist = HdrHistogram(1, _MAX_LATENCY_US, 3)
        self.ihist = HdrHistogram(1, _MAX_LATENCY_US, 3)
        self.next_frame = 0
        self.events_sent = 0
        self.frames_replied = 0
        self.accepted = 0
        self.rejected = 0
        self.errors = 0
        self.samples: list[str] = []
        self.error_samples: list[str] = []
        self.late_frames = 0
        self.max_send_lag_s = 0.0
        self.t0 = 0.0
        self.t_end = math.inf
        self.last_send = 0.0
        self.last_reply = 0.0
        self.sending_done = False
        self.closing = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)

    def more(self) -> bool:
        return self.events_sent < self.total_events and (self.t_end == math.inf or _perf() < self.t_end)

    def refill(self, conn: _Conn, n: int) -> None:
        """Closed loop: send up to ``n`` more frames on ``conn``."""
        if conn.transport is None or conn.transport.is_closing():
            return
        frames, counts, nframes = self.frames, self.counts, len(self.frames)
        out = []
        now = _perf()
        for _ in range(n):
            if not self.more():
                self.sending_done = True
                break
            k = self.next_frame % nframes
            self.next_frame += 1
            self.events_sent += counts[k]
            out.append(frames[k])
            conn.sent_at.append(now)
        if out:
            conn.transport.write(b"".join(out))
            self.last_send = now

    async def open_loop(self) -> None:
        frames, counts, nframes = self.frames, self.counts, len(self.frames)
        conns, nconns, rate, total = self.conns, len(self.conns), self.rate, self.total_events
        outs: list[list[bytes]] = [[] for _ in conns]
        t0 = self.t0
        due = t0
        sleep = asyncio.sleep
        while self.events_sent < total and not self.sending_done:
            now = _perf()
            if now < due:
                await sleep(due - now)
                now = _perf()
            lag = now - due
            if lag > 0.001:
                self.late_frames += 1
                self.max_send_lag_s = max(self.max_send_lag_s, lag)
            i, sent = self.next_frame, self.events_sent
            while sent < total and due <= now:
                k = i % nframes
                c = i % nconns
                conns[c].sent_at.append(due)
                outs[c].append(frames[k])
                sent += counts[k]
                i += 1
                due = t0 + sent / rate
            self.next_frame, self.events_sent = i, sent
            for c, out in enumerate(outs):
                if out:
                    transport = conns[c].transport
                    transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[union-attr]
                    out.clear()
                    if transport.get_write_buffer_size() > _MAX_BUFFERED:  # type: ignore[union-attr]
                        self.error(f"over {_MAX_BUFFERED >> 20} MiB unsent: the server stopped reading")
                        self.sending_done = True
            self.last_send = now
        self.sending_done = True
        self.check_done()

    def check_done(self) -> None:
        if self.sending_done and not self.done.done() and all(not c.sent_at or c.lost.done() for c in self.conns):
            self.done.set_result(None)

    async def progress(self, write: Any) -> None:
        last_t, last_events = self.t0, 0
        while True:
            await asyncio.sleep(1.0)
            now = _perf()
            replied = self.accepted + self.rejected
            p99 = self.ihist.get_value_at_percentile(99) / 1000 if self.ihist.get_total_count() else 0.0
            self.ihist.reset()
            write(f"loadgen {now - self.t0:6.1f}s  sent={self.events_sent:,}  replies={replied:,}  "
                  f"events/s={(replied - last_events) / (now - last_t):,.0f}  p99={p99:.2f}ms")
            last_t, last_events = now, replied


async def run_load(frames: list[bytes], counts: list[int], *, tcp: tuple[str, int] | None = None,
                   unix: str | None = None, rate: float = 0.0, duration_s: float | None = 10.0,
                   count: int | None = None, connections: int = 1, window: int = 0,
                   reply_timeout_s: float = 30.0, progress: Any = None) -> dict[str, Any]:
    """Drive one run against a server; returns the summary dict.

    Args:
        frames, counts: from :func:`build_frames` (cycled if the run needs more).
        tcp / unix: where to connect (exactly one).
        rate: offered events/s (open loop); 0 = as fast as the server answers (closed loop).
        duration_s / count: stop after this long or this many events (``count`` wins).
        window: frames in flight per connection in closed loop (0: about 2 000 events, 8 to 256 frames).
        progress: ``progress(line)`` once per second, or None.
    """
    if (tcp is None) == (unix is None):
        raise ValueError("give exactly one of tcp and unix")
    if count is not None:
        duration_s = None  # a count overrides the duration
    elif rate > 0 and duration_s:
        count = int(rate * duration_s)
        duration_s = None  # open loop: the schedule ends the run, not the wall clock
    else:
        count = sys.maxsize
    batch = counts[0] if counts else 1
    window = window or max(8, min(256, 2000 // batch))  # 8: big frames over TCP need a deeper pipe
    run = _Run(frames, counts, rate=rate, total_events=count, window=window)
    loop = asyncio.get_running_loop()
    for _ in range(connections):
        conn = _Conn(run)
        if tcp is not None:
            await loop.create_connection(lambda c=conn: c, tcp[0], tcp[1])  # type: ignore[misc]
        else:
            await loop.create_unix_connection(lambda c=conn: c, unix)  # type: ignore[misc]
        run.conns.append(conn)
    reporter = loop.create_task(run.progress(progress)) if progress is not None else None
    run.t0 = _perf()
    if duration_s and run.closed_loop:
        run.t_end = run.t0 + duration_s
    try:
        if run.closed_loop:
            for conn in run.conns:
                run.refill(conn, window)
            if not run.more():
                run.sending_done = True
                run.check_done()
            await asyncio.wait_for(asyncio.shield(run.done), (duration_s or 3600.0) + reply_timeout_s)
        else:
            await run.open_loop()
            await asyncio.wait_for(asyncio.shield(run.done), reply_timeout_s)
    except TimeoutError:
        run.error(f"timeout: {sum(len(c.sent_at) for c in run.conns)} frames without a reply")
    finally:
        if reporter is not None:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
        run.closing = True
        for conn in run.conns:
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.gather(*(c.lost for c in run.conns))
    return _summary(run, tcp, unix, batch, connections)


def _summary(run: _Run, tcp: Any, unix: str | None, batch: int, connections: int) -> dict[str, Any]:
    h = run.hist
    replied = run.accepted + run.rejected
    elapsed = max(run.last_reply - run.t0, 1e-9)
    ms = (lambda q: h.get_value_at_percentile(q) / 1000) if h.get_total_count() else (lambda q: 0.0)
    return {
        "mode": "closed" if run.closed_loop else "open",
        "transport": "tcp" if tcp is not None else "unix",
        "batch": batch, "connections": connections, "window": run.window if run.closed_loop else None,
        "offered_rate": run.rate if run.rate > 0 else None,
        "duration_s": round(elapsed, 4),
        "send_duration_s": round(run.last_send - run.t0, 4),
        "frames_sent": run.next_frame, "frames_replied": run.frames_replied,
        "events_sent": run.events_sent, "accepted": run.accepted, "rejected": run.rejected,
        "events_per_s": replied / elapsed,
        "latency_ms": {"p50": ms(50), "p90": ms(90), "p99": ms(99), "p999": ms(99.9),
                       "max": h.get_max_value() / 1000 if h.get_total_count() else 0.0,
                       "mean": h.get_mean_value() / 1000 if h.get_total_count() else 0.0},
        "late_frames": run.late_frames, "max_send_lag_ms": round(run.max_send_lag_s * 1000, 3),
        "errors": run.errors, "error_samples": run.error_samples, "rejection_samples": run.samples,
    }


# ---------------------------------------------------------------------- command line


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_argument_group("target (one of)")
    where.add_argument("--tcp", metavar="HOST:PORT", type=_address, help="ingest TCP address")
    where.add_argument("--unix", metavar="PATH", help="ingest UNIX socket")
    load = p.add_argument_group("load")
    load.add_argument("--rate", type=float, default=0.0, help="offered events/s, open loop (0: as fast as possible)")
    load.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    load.add_argument("--count", type=int, help="events to send (overrides --duration)")
    load.add_argument("--batch", type=int, default=100, help="events per frame (default 100; 1 sends bare maps)")
    load.add_argument("--connections", type=int, default=1, help="connections, frames dealt round robin")
    load.add_argument("--window", type=int, default=0, help="closed loop: frames in flight per connection")
    load.add_argument("--reply-timeout", type=float, default=30.0, help="seconds to wait for the last replies")
    shop = p.add_argument_group("shop")
    d = ShopSpec()
    shop.add_argument("--carts", type=int, default=d.carts, help=f"live carts (default {d.carts})")
    shop.add_argument("--stores", type=int, default=d.stores)
    shop.add_argument("--zipf", type=float, default=d.zipf_s, help="activity skew exponent (default 0.8)")
    shop.add_argument("--abandon-rate", type=float, default=d.abandon_rate)
    shop.add_argument("--return-rate", type=float, default=d.return_rate, help="abandoned carts bought later")
    shop.add_argument("--optout-rate", type=float, default=d.optout_rate)
    shop.add_argument("--bad-fraction", type=float, default=d.bad_fraction, help="events spoiled on purpose")
    shop.add_argument("--seed", type=int, default=d.seed)
    shop.add_argument("--populate", action="store_true", help="one cart.updated per cart, then stop")
    shop.add_argument("--pool", type=int, default=500_000, help="events generated before the run (cycled)")
    shop.add_argument("--events", metavar="FILE", help="use a saved event pool instead of generating")
    shop.add_argument("--save-events", metavar="FILE", help="write the generated pool (and exit without a target)")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    out.add_argument("--quiet", action="store_true", help="no progress lines")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``loadgen`` to the ``cartwheel`` sub-commands; ``main(args)`` runs it."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "loadgen", help="drive a running engine with a simulated shop (benchmarks)")
    _add_arguments(p)
    return p


def _bad_argument(args: argparse.Namespace) -> str | None:
    """The first argument out of its range, said as the option and what it takes (None: all fine)."""
    checks = [
        ("--carts", args.carts >= 1, "at least 1"), ("--stores", args.stores >= 1, "at least 1"),
        ("--batch", args.batch >= 1, "at least 1"), ("--connections", args.connections >= 1, "at least 1"),
        ("--pool", args.pool >= 1, "at least 1"), ("--window", args.window >= 0, "0 or more"),
        ("--count", args.count is None or args.count >= 1, "at least 1"),
        ("--rate", 0 <= args.rate < math.inf, "a finite number >= 0 (0: as fast as possible)"),
        ("--duration", 0 < args.duration < math.inf, "a finite number of seconds > 0"),
        ("--reply-timeout", 0 < args.reply_timeout < math.inf, "a finite number of seconds > 0"),
    ]
    for name in ("abandon_rate", "return_rate", "optout_rate", "bad_fraction"):
        value = getattr(args, name)
        checks.append((f"--{name.replace('_', '-')}", 0 <= value <= 1, "a fraction within 0..1"))
    for option, ok, expected in checks:
        if not ok:
            return f"{option}: expected {expected}"
    return None


def main(args: argparse.Namespace) -> int:
    """Run ``cartwheel loadgen`` with parsed arguments; returns the exit code (1 if any error)."""
    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    problem = _bad_argument(args)
    if problem is not None:
        print(f"cartwheel loadgen: {problem}", file=sys.stderr)
        return 2
    spec = ShopSpec(carts=args.carts, stores=args.stores, zipf_s=args.zipf, abandon_rate=args.abandon_rate,
                    return_rate=args.return_rate, optout_rate=args.optout_rate, bad_fraction=args.bad_fraction,
                    seed=args.seed)
    if args.tcp is None and args.unix is None and not args.save_events:
        print("cartwheel loadgen: give --tcp HOST:PORT or --unix PATH (or --save-events FILE)", file=sys.stderr)
        return 2
    t = _perf()
    if args.events:
        pool = EventPool.load(args.events)
    else:
        if args.populate:
            size = args.carts
        elif args.count:
            size = min(args.count, args.pool)
        else:
            size = min(int(args.rate * args.duration) or args.pool, args.pool)
        pool = generate_pool(spec, size, populate=args.populate)
    if args.save_events:
        pool.save(args.save_events)
    if args.tcp is None and args.unix is None:
        say(f"loadgen: {len(pool):,} events ({len(pool.data) / max(len(pool), 1):.0f} B each) -> {args.save_events}")
        return 0
    frames, counts = build_frames(pool, args.batch)
    count = args.count if args.count is not None else (len(pool) if args.populate else None)
    say(f"loadgen: {len(pool):,} events in {len(frames):,} frames ready in {_perf() - t:.1f}s; mix {pool.mix}")
    import uvloop

    try:
        summary = uvloop.run(run_load(
            frames, counts, tcp=args.tcp, unix=args.unix, rate=args.rate, duration_s=args.duration, count=count,
            connections=args.connections, window=args.window, reply_timeout_s=args.reply_timeout,
            progress=None if args.quiet else say,
        ))
    except OSError as exc:  # nothing listening there, refused, ...
        target = args.unix or f"{args.tcp[0]}:{args.tcp[1]}"
        print(f"cartwheel loadgen: cannot reach the engine at {target}: {exc.strerror or exc}; is `cartwheel run` "
              "running?", file=sys.stderr)
        return 1
    summary["pool"] = {"events": len(pool), "bytes_per_event": round(len(pool.data) / max(len(pool), 1), 1),
                       "mix": pool.mix, "spec": asdict(spec), "populate": args.populate}
    if args.json:
        print(json.dumps(summary))
    else:
        lat = summary["latency_ms"]
        print(f"{summary['events_sent']:,} events sent, {summary['accepted']:,} accepted, "
              f"{summary['rejected']:,} rejected, {summary['events_per_s']:,.0f} events/s, latency ms "
              f"p50 {lat['p50']:.3f} p99 {lat['p99']:.3f} p99.9 {lat['p999']:.3f} max {lat['max']:.3f}, "
              f"{summary['errors']} errors")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="cartwheel loadgen", description=__doc__.split("\n", 1)[0])
    _add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
