"""Memory per cart: build N live carts through the Registry and measure the resident set.

What it measures. Each size runs in a fresh child process (so one size's heap cannot pollute the next
one's baseline). The child builds ``N`` carts by feeding the :class:`actors.Registry` one realistic
``cart.updated`` event per cart, exactly as ingest will: a 29-character cart id (``cart_`` + 24 hex), a
20-character profile id with an email address and an email consent (one shopper per cart: the worst
case, no profile sharing), three items (sku, name, qty, price), value, currency and a checkout URL. Every
cart gets its pending inactivity timer, held in a ``timing_wheel.TimingWheel`` (tick 100 ms) like the
runtime does, or in a plain list (``timers="list"``, to separate the wheel's share). Then it reports:

* ``bytes_per_cart``: (RSS after - RSS before) / N, RSS read from ``/proc/self/statm`` (no tracemalloc:
  it would double the heap). Everything is in it: carts, profiles, packed contents, dict entries, timers.
  Measured twice at the first size: with a profile per cart (the worst case for profiles: no shopper
  has two carts) and with anonymous carts (``profiles=none``): the difference is what a shopper's
  profile costs (its id, its record and its entry in the store's book), once per shopper however many
  carts they have. The per-cart target is read on the anonymous run; the other shows the worst case.
* ``index_bytes_per_cart``: the registry's dict (``sys.getsizeof``: entries and hash table) per cart.
* ``packed_bytes_per_cart``: the cart's packed contents (items, value, currency, checkout URL) plus the
  profile's packed record, as ``sys.getsizeof`` of those ``bytes`` objects, and
  ``bytes_per_cart_unpacked`` = ``bytes_per_cart - packed_bytes_per_cart``: what the structure costs
  (target: at most 400 B per cart on top of its packed data).
* ``rss``: RSS after building; ``build_rate``: carts per second while building, collector on;
  ``update_rate``: repeated ``cart.updated`` events per second on live carts (the idle-timer hot path,
  which returns no effect); ``gc_full_s`` / ``gc_full_frozen_s``: one full ``gc.collect()`` before and
  after ``gc.freeze()``.

The garbage collector stays ON throughout (DESIGN.md principle 4). ``gc.freeze()`` is applied only after
the bulk build, which is where the engine would apply it (after restoring a snapshot): it moves every
live object to the permanent generation so that later full collections stop traversing millions of
carts. It frees nothing and loses nothing (carts hold no reference cycles; reference counting still
frees them); it only saves collector time, which ``gc_full_s`` against ``gc_full_frozen_s`` shows.

Usage: ``run(quick, progress)`` returns result rows (``quick``: 50 k and 200 k carts, else 1 M and 5 M);
``python -m bench.memory [--quick] [--carts N] [--timers wheel|list]`` prints them.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run", "measure"]

_ROOT = Path(__file__).resolve().parents[1]
_PAGE = os.sysconf("SC_PAGE_SIZE")
_NAMES = (
    "Organic cotton T-shirt", "Trail running shoes", "Merino wool beanie", "Leather card wallet",
    "Stoneware coffee mug", "Cork yoga mat", "Linen bed sheet set", "Bamboo toothbrush 4-pack",
)
_START_S = 1_715_760_000.0  # 2024-05-15 08:00 UTC: any fixed instant will do


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _event(i: int, profile: bool = True) -> dict[str, Any]:
    """The ``i``-th cart's first ``cart.updated`` event (deterministic, realistic sizes)."""
    h = (i * 0x9E3779B97F4A7C15 + 0x7F4A7C15) & ((1 << 96) - 1)
    cart = f"cart_{h:024x}"
    event = {
        "type": "cart.updated", "store": "demo", "cart": cart,
        "profile": {"id": f"cus_{h >> 32:016x}", "email": f"shopper.{i}@example.com", "consent": {"email": True}},
        "items": [
            {"sku": f"SKU-{(i * 7 + k) % 99991:05d}", "name": _NAMES[(i + k) % len(_NAMES)], "qty": 1 + (i + k) % 3,
             "price": round(9.95 + ((i * 13 + k * 31) % 9000) / 100, 2)}
            for k in range(3)
        ],
        "value": 62.85, "currency": "EUR", "checkout_url": f"https://shop.example.com/checkout/{cart}",
    }
    if not profile:
        del event["profile"]
    return event


def measure(n: int, *, timers: str = "wheel", profiles: bool = True,
            progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Build ``n`` carts in this process and measure them (see the module docstring)."""
    from actors import Registry, StoreRules

    wheel: Any = None
    handles: list[Any] = []
    if timers == "wheel":
        from timing_wheel import TimingWheel

        wheel = TimingWheel(int(_START_S / 0.1), tick_s=0.1)
    reg = Registry({"demo": StoreRules("demo", timezone="Europe/Madrid")})
    gc.collect()
    base = _rss()
    began = time.perf_counter()
    step = max(n // 10, 1)
    for i in range(n):
        effects = reg.apply(_event(i, profiles), _START_S + i * 0.001)
        assert effects is not None
        _, actor, due_s, tag = effects[0]
        if wheel is not None:
            actor.timer = wheel.schedule(wheel.to_tick(due_s), actor, tag)
        else:
            handles.append(actor)
            actor.timer = len(handles)
        if (i + 1) % step == 0:
            progress(f"memory: {i + 1:,}/{n:,} carts, rss {_rss() / 2**20:,.0f} MiB")
    build_s = time.perf_counter() - began
    rss = _rss()
    per_cart = (rss - base) / n
    # packed data, from a sample of carts (sizes vary by a few bytes only)
    sample = [reg.cart("demo", _event(i)["cart"]) for i in range(0, n, max(n // 1000, 1))]
    book = reg.stores["demo"].profiles
    packed_items = sum(sys.getsizeof(a.blob) for a in sample if a) / len(sample)
    packed_profile = sum(sys.getsizeof(book._records[a.profile]) for a in sample if a and a.profile) / len(sample)
    carts_dict = reg._carts["demo"]
    index_bytes = sys.getsizeof(carts_dict) / n  # the registry's dict: entries and hash table
    # the hot path: repeated updates of live carts return no effect and touch no timer
    m = min(n, 200_000)
    events = [_event((i * 7919) % n, profiles) for i in range(m)]
    began = time.perf_counter()
    now = _START_S + n * 0.001
    for event in events:
        reg.apply(event, now)
    update_s = time.perf_counter() - began
    del events
    began = time.perf_counter()
    gc.collect()
    gc_full_s = time.perf_counter() - began
    gc.freeze()
    began = time.perf_counter()
    gc.collect()
    gc_frozen_s = time.perf_counter() - began
    gc.unfreeze()
    return {
        "carts": n, "timers": timers, "profiles": profiles, "index_bytes": index_bytes, "bytes_per_cart": per_cart, "packed_items": packed_items,
        "packed_profile": packed_profile, "rss": rss, "build_rate": n / build_s, "update_rate": m / update_s,
        "gc_full_s": gc_full_s, "gc_full_frozen_s": gc_frozen_s, "live": len(reg),
    }


def _child(n: int, timers: str, progress: Callable[[str], None], profiles: bool = True) -> dict[str, Any]:
    """Run :func:`measure` in a fresh interpreter, forwarding its progress lines."""
    cmd = [sys.executable, "-m", "bench.memory", "--child", "--carts", str(n), "--timers", timers]
    if not profiles:
        cmd.append("--no-profiles")
    proc = subprocess.Popen(cmd, cwd=_ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    result: dict[str, Any] | None = None
    for line in proc.stdout:
        message = json.loads(line)
        if "progress" in message:
            progress(message["progress"])
        else:
            result = message["result"]
    if proc.wait() != 0 or result is None:
        raise RuntimeError(f"memory benchmark child for {n} carts failed (exit {proc.returncode})")
    return result


def _rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    params = {"carts": r["carts"], "timers": r["timers"], "profiles": "per cart" if r["profiles"] else "none"}
    packed = r["packed_items"] + r["packed_profile"]

    def row(metric: str, value: float, unit: str) -> dict[str, Any]:
        return {"impl": "cartwheel", "params": dict(params), "metric": metric, "value": round(value, 3), "unit": unit}

    return [
        row("bytes_per_cart", r["bytes_per_cart"], "B"),
        row("bytes_per_cart_unpacked", r["bytes_per_cart"] - packed, "B"),
        row("packed_bytes_per_cart", packed, "B"),
        row("packed_item_bytes_per_cart", r["packed_items"], "B"),
        row("index_bytes_per_cart", r["index_bytes"], "B"),
        row("rss", r["rss"], "B"),
        row("projected_rss_10m_carts", r["bytes_per_cart"] * 10_000_000, "B"),
        row("build_rate", r["build_rate"], "carts/s"),
        row("update_rate", r["update_rate"], "events/s"),
        row("gc_full_collect", r["gc_full_s"], "s"),
        row("gc_full_collect_frozen", r["gc_full_frozen_s"], "s"),
    ]


def run(quick: bool = False, progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Measure memory per cart at two sizes (quick: 50 k and 200 k, else 1 M and 5 M carts).

    The smaller size is also measured with the timers in a plain list, to show the wheel's share.
    """
    sizes = (50_000, 200_000) if quick else (1_000_000, 5_000_000)
    rows: list[dict[str, Any]] = []
    for n, timers, profiles in ((sizes[0], "wheel", True), (sizes[0], "wheel", False), (sizes[0], "list", True),
                                (sizes[1], "wheel", True)):
        progress(f"memory: building {n:,} carts (timers in a {timers}, {'a profile each' if profiles else 'no profiles'})")
        result = _child(n, timers, progress, profiles)
        progress(
            f"memory: {n:,} carts: {result['bytes_per_cart']:.0f} B/cart "
            f"({result['bytes_per_cart'] - result['packed_items'] - result['packed_profile']:.0f} B + "
            f"{result['packed_items'] + result['packed_profile']:.0f} B packed), rss {result['rss'] / 2**30:.2f} GiB"
        )
        rows += _rows(result)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 k and 200 k carts instead of 1 M and 5 M")
    parser.add_argument("--carts", type=int, help="measure this one size only")
    parser.add_argument("--timers", choices=("wheel", "list"), default="wheel")
    parser.add_argument("--no-profiles", action="store_true", help="anonymous carts (no shopper profile)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        def emit(line: str) -> None:
            print(json.dumps({"progress": line}), flush=True)

        result = measure(args.carts, timers=args.timers, profiles=not args.no_profiles, progress=emit)
        print(json.dumps({"result": result}), flush=True)
        return 0
    if args.carts:
        rows = _rows(_child(args.carts, args.timers, lambda line: print(line, file=sys.stderr), not args.no_profiles))
    else:
        rows = run(args.quick, lambda line: print(line, file=sys.stderr))
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
