"""What the recovery flows cost the engine's core: CPU per timer fired and per message sent.

``python -m bench.flow_costs [--carts N]`` builds the ``e2e`` engine (``bench.e2e.engine_config``: four
stores, the default flow, every channel an outbox in a temporary directory, the file store) on a
**manual clock**, in-process, with no rate limit holding messages back. It loads ``N`` carts of the load
generator's shop (one ``cart.updated`` with a full profile each, all at the same instant), moves the
clock past the 30-minute abandonment (every cart abandons: that firing is not measured), then past the
first step's hour and measures, with ``resource.getrusage`` (the process's user + system CPU, every
thread):

* **firing**: ``Runtime.fire_due`` for every cart's step-1 timer, per timer: the actor's step (profile,
  consent, windows, frequency cap, credits), the send intents, log records, re-arming, and each
  intent's ledger record queued for the journal;
* **sending**: from there until every message is in the outbox, per message: the ledger records made
  durable, the pool's queue, rendering (an email's subject, text and HTML; a push's title and body),
  the outbox line written, the outcome back through the dispatcher to the actor and the ledger.

Why a manual clock: the e2e benchmark's figures mix these costs with ingest and with the machine's
scheduling; here the same work is done once, in a burst, and only CPU time is counted. The messages
are the default flow's step 1 (email and push; WhatsApp needs a configured store). Sizes up to a few
hundred thousand carts run in seconds; the cost per timer grows a little with the carts (cache misses).
"""
from __future__ import annotations

import argparse
import gc
import resource
import shutil
import tempfile
import time
from pathlib import Path

__all__ = ["flow_costs"]

def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def flow_costs(*, carts: int = 50_000) -> str:
    """The report (a few lines of text) for ``carts`` carts; see the module docstring."""
    import uvloop

    return uvloop.run(_flow_costs(carts))


async def _flow_costs(carts: int) -> str:
    from bench.e2e import STORES, engine_config
    from bench.loadgen import ShopModel, ShopSpec
    from engine.app import Engine
    from engine.clock import ManualClock

    tmp = Path(tempfile.mkdtemp(prefix="cw-flow-costs-"))
    try:
        clock = ManualClock(1_700_000_000.0)
        engine = Engine(engine_config(tmp, 1.0, unlimited=True), clock=clock, base_dir=tmp)
        await engine.start()
        try:
            handle = engine.handler.handle
            batch, seq = [], 0
            for event, _bad in ShopModel(ShopSpec(carts=carts, stores=STORES)).populate():
                event["ts"] = clock.now()
                batch.append(event)
                if len(batch) == 1_000:
                    seq += 1
                    handle(seq, batch)
                    batch = []
            if batch:
                handle(seq + 1, batch)
            gc.collect()
            gc.freeze()  # as the engine does every 10 s: the carts leave the collector's scans
            stats = engine.stats

            def sent() -> int:
                return sum(outcomes.get("sent", 0) for outcomes in stats.sends.values())

            await engine.runtime.advance_clock(30 * 60 + 1)  # every cart abandons; not measured
            fired0, sent0 = stats.timers_fired, sent()
            clock.set(clock.now() + 3600)  # the first step (email and push) falls due for every cart
            cpu0, t0 = _cpu_s(), time.perf_counter()
            engine.runtime.fire_due(clock.now(), limit=1 << 30)
            cpu1 = _cpu_s()
            fired = stats.timers_fired - fired0
            await engine.dispatcher.idle()  # every message sent and its outcome durable
            cpu2, wall = _cpu_s(), time.perf_counter() - t0
            messages = sent() - sent0
            by_channel = {ch: o.get("sent", 0) for ch, o in sorted(stats.sends.items()) if o.get("sent")}
        finally:
            await engine.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not fired or not messages:
        raise RuntimeError(f"nothing to measure: {fired} timers fired, {messages} messages sent")
    return "\n".join([
        f"flow costs, {carts:,} carts, manual clock, in-process (CPU of every thread; wall {wall:.1f} s):",
        f"  firing: {fired:,} step-1 timers, {(cpu1 - cpu0) / fired * 1e6:.1f} us per timer",
        f"  sending: {messages:,} messages ({', '.join(f'{ch} {n:,}' for ch, n in by_channel.items())}), "
        f"{(cpu2 - cpu1) / messages * 1e6:.1f} us per message",
        f"  in all: {(cpu2 - cpu0) / messages * 1e6:.1f} us per message sent "
        f"(one core: about {messages / (cpu2 - cpu0):,.0f} messages/s with nothing else to do)",
    ])


if __name__ == "__main__":  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(prog="python -m bench.flow_costs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--carts", type=int, default=50_000, help="carts loaded (default 50000)")
    print(flow_costs(carts=parser.parse_args().carts))
