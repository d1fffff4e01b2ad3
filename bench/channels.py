"""Channels benchmark: what the send pools cost and what they deliver.

Scenarios (each row: ``{"impl", "params", "metric", "value", "unit"}``):

1. **Pool overhead** — N messages through a :class:`channels.Pool` (no rate limit) into an in-process
   sink that answers "sent" at once, fed by a producer using ``await pool.submit()`` (so the bounded
   queue's back-pressure is on the path); compared with awaiting the sink directly in a loop.
2. **Rate accuracy** — a 1 000/s limit (burst 10) fed far more than it may send, for 10 s (quick: 3 s):
   messages per wall-clock second, mean and worst deviation. The target is 1 000 ± 2 % per second.
3. **SMTP throughput** — emails through the SMTP sender into a local aiosmtpd server (its own thread)
   with 1, 4 and 16 pooled, persistent connections, against the naive peer that opens one connection
   per message (connect, EHLO, MAIL, RCPT, DATA, QUIT) at the same concurrency.
4. **HTTP providers** — WhatsApp Cloud API and Twilio SMS senders against the loopback emulators of
   ``tests/channels/emulators.py`` with concurrency 1, 4, 16 and 64; the emulators answer after a
   simulated provider latency of 5 ms, so concurrency is what buys throughput. Emulators run in the
   same process and loop as the client: the numbers are a floor, not the client's ceiling.

The pool is driven by a tiny real clock defined here (bench/ may read the time; channels/ may not).
"""
from __future__ import annotations

import asyncio
import gc
import importlib.util
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

from channels import DeliveryResult, Message, Pool, Renderer, RetryPolicy, SmsOptions, SmsSender, SmtpOptions
from channels import SmtpSender, WhatsAppOptions, WhatsAppSender

Row = dict[str, Any]
Progress = Callable[[str], None]

#: simulated provider round trip for the HTTP emulators, seconds
PROVIDER_LATENCY_S = 0.005


class WallClock:
    """The pool's clock for benchmarks: unix time, real sleeping."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


class SinkSender:
    """Answers "sent" at once; optionally records when each send happened (monotonic seconds)."""

    kind = "sink"

    def __init__(self, *, record: bool = False) -> None:
        self.times: list[float] | None = [] if record else None

    async def send(self, message: Message) -> DeliveryResult:
        if self.times is not None:
            self.times.append(time.perf_counter())
        return DeliveryResult.sent("sink")

    async def close(self) -> None:
        pass


class NaiveSmtpSender:
    """The naive peer: one SMTP connection per message (connect … QUIT)."""

    kind = "smtp-naive"

    def __init__(self, host: str, port: int, renderer: Renderer) -> None:
        self.host = host
        self.port = port
        self.renderer = renderer

    async def send(self, message: Message) -> DeliveryResult:
        import aiosmtplib

        data = self.renderer.email_bytes(message, from_addr="shop@bench.example")
        try:
            await aiosmtplib.send(data, sender="shop@bench.example", recipients=[message.to], hostname=self.host,
                                  port=self.port, local_hostname="localhost", start_tls=False, timeout=30)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return DeliveryResult.transient(str(exc))
        return DeliveryResult.sent("")

    async def close(self) -> None:
        pass


def _messages(n: int, channel: str, to: Callable[[int], str], extra: dict[str, Any] | None = None) -> list[Message]:
    return [
        Message(
            id=f"b{i}",
            key=f"bench:c{i}:1:1:{channel}",
            channel=channel,
            store="bench",
            store_name="Bench Shop",
            cart=f"c{i}",
            to=to(i),
            items=[{"sku": "MUG", "name": "Blue mug", "qty": 2, "price": 12.5},
                   {"sku": "TEE", "name": "Logo tee", "qty": 1, "price": 20}],
            value=45.0,
            currency="EUR",
            checkout_url=f"https://shop.example/checkout?cart=c{i}",
            extra=extra or {},
            created_at=1_700_000_000.0,
        )
        for i in range(n)
    ]


async def _through_pool(pool: Pool, messages: list[Message], done: asyncio.Event) -> float:
    """Submit everything, wait for every outcome; elapsed seconds."""
    start = time.perf_counter()
    await pool.start()
    for message in messages:
        await pool.submit(message)
    await done.wait()
    elapsed = time.perf_counter() - start
    await pool.stop()
    return elapsed


def _counter(n: int) -> tuple[Callable[[Message, DeliveryResult], None], asyncio.Event, dict[str, int]]:
    done = asyncio.Event()
    counts: dict[str, int] = {}

    def on_result(message: Message, result: DeliveryResult) -> None:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
        if sum(counts.values()) >= n:
            done.set()

    return on_result, done, counts


def _row(impl: str, params: dict[str, Any], metric: str, value: float, unit: str) -> Row:
    return {"impl": impl, "params": params, "metric": metric, "value": round(value, 2), "unit": unit}


# -- 1. pool overhead ---------------------------------------------------------------------------------
async def bench_pool_overhead(quick: bool, progress: Progress) -> list[Row]:
    n = 50_000 if quick else 200_000
    rows = []
    sink = SinkSender()
    messages = _messages(n, "email", lambda i: f"s{i}@example.com")
    start = time.perf_counter()
    for message in messages:
        await sink.send(message)
    direct = n / (time.perf_counter() - start)
    rows.append(_row("direct-await", {"messages": n}, "throughput", direct, "msg/s"))
    progress(f"pool overhead: direct await {direct:,.0f} msg/s")
    for concurrency in (1, 64):
        on_result, done, counts = _counter(n)
        pool = Pool("bench", SinkSender(), clock=WallClock(), on_result=on_result, concurrency=concurrency,
                    max_queue=10_000)
        elapsed = await _through_pool(pool, messages, done)
        assert counts.get("sent") == n, counts
        rows.append(_row("pool", {"messages": n, "concurrency": concurrency, "max_queue": 10_000},
                         "throughput", n / elapsed, "msg/s"))
        rows.append(_row("pool", {"messages": n, "concurrency": concurrency}, "overhead_per_message",
                         elapsed / n * 1e6, "us"))
        progress(f"pool overhead: concurrency {concurrency}: {n / elapsed:,.0f} msg/s ({elapsed / n * 1e6:.1f} us/msg)")
    return rows


# -- 2. rate accuracy ---------------------------------------------------------------------------------
async def bench_rate_accuracy(quick: bool, progress: Progress) -> list[Row]:
    rate, seconds = 1000, (3 if quick else 10)
    sink = SinkSender(record=True)
    assert sink.times is not None
    pool = Pool("bench", sink, clock=WallClock(), on_result=lambda m, r: None, rate_per_s=rate, burst=10,
                concurrency=64, max_queue=rate * (seconds + 2))
    for message in _messages(rate * (seconds + 1), "email", lambda i: f"r{i}@example.com"):
        pool.offer(message)
    gc.collect()  # start clean: a full collection of the previous scenario's garbage is a long pause
    start = time.perf_counter()
    await pool.start()
    await asyncio.sleep(seconds + 0.2)  # the measurement window, plus a margin so no stop lands in it
    await pool.stop(drain=False)
    counts = [0] * seconds
    for t in sink.times:
        k = int(t - start)
        if 0 <= k < seconds:
            counts[k] += 1
    mean = sum(counts) / seconds
    worst = max(abs(c - rate) for c in counts) / rate * 100
    progress(f"rate accuracy: {rate}/s for {seconds} s: per second {counts}, worst deviation {worst:.2f}%")
    params = {"rate_per_s": rate, "burst": 10, "seconds": seconds}
    return [
        _row("pool", params, "rate_mean", mean, "msg/s"),
        _row("pool", params, "rate_min_second", min(counts), "msg/s"),
        _row("pool", params, "rate_max_second", max(counts), "msg/s"),
        _row("pool", params, "rate_worst_deviation", worst, "%"),
    ]


# -- 3. SMTP ------------------------------------------------------------------------------------------
class _AcceptAll:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 2.0.0 Ok"


async def bench_smtp(quick: bool, progress: Progress) -> list[Row]:
    import socket

    from aiosmtpd.controller import Controller

    class BoundController(Controller):
        def __init__(self, handler: Any) -> None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # see conftest
            self._sock.bind(("127.0.0.1", 0))
            # server_hostname spares aiosmtpd a socket.getfqdn() (a DNS lookup) per connection.
            super().__init__(handler, hostname="127.0.0.1", port=self._sock.getsockname()[1],
                             server_hostname="mx.bench.local")

        def _create_server(self) -> Any:
            return self.loop.create_server(self._factory_invoker, sock=self._sock)

    handler = _AcceptAll()
    controller = BoundController(handler)
    controller.start()
    rows = []
    renderer = Renderer()
    try:
        for impl in ("pooled", "naive"):
            for connections in (1, 4, 16):
                n = (300 if quick else 2000) if impl == "pooled" else (150 if quick else 1000)
                if impl == "pooled":
                    options = SmtpOptions(host="127.0.0.1", port=controller.port, from_addr="shop@bench.example")
                    sender: Any = SmtpSender(options, renderer=renderer, pool_size=connections)
                else:
                    sender = NaiveSmtpSender("127.0.0.1", controller.port, renderer)
                on_result, done, counts = _counter(n)
                pool = Pool("email", sender, clock=WallClock(), on_result=on_result, concurrency=connections,
                            retry=RetryPolicy(max_attempts=1))
                elapsed = await _through_pool(pool, _messages(n, "email", lambda i: f"s{i}@example.com"), done)
                assert counts.get("sent") == n, counts
                params = {"connections": connections, "messages": n}
                if impl == "pooled":
                    params["connections_opened"] = sender.connections_opened
                rows.append(_row(f"smtp-{impl}", params, "throughput", n / elapsed, "msg/s"))
                progress(f"smtp {impl}, {connections} connection(s): {n / elapsed:,.0f} msg/s")
    finally:
        controller.stop()
        controller.loop.close()
    return rows


# -- 4. HTTP providers --------------------------------------------------------------------------------
def _load_emulators() -> Any:
    path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "channels" / "emulators.py"
    spec = importlib.util.spec_from_file_location("_cartwheel_channel_emulators", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the provider emulators from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def bench_http(quick: bool, progress: Progress) -> list[Row]:
    emulators = _load_emulators()
    rows = []
    renderer = Renderer()
    for provider in ("whatsapp", "sms"):
        emulator = (
            emulators.WhatsAppEmulator(latency_s=PROVIDER_LATENCY_S)
            if provider == "whatsapp"
            else emulators.TwilioEmulator(latency_s=PROVIDER_LATENCY_S)
        )
        await emulator.start()
        try:
            for concurrency in (1, 4, 16, 64):
                n = min(2000 if quick else 8000, max(100, (40 if quick else 150) * concurrency))
                if provider == "whatsapp":
                    sender: Any = WhatsAppSender(WhatsAppOptions(base_url=emulator.base_url), renderer=renderer,
                                                 concurrency=concurrency)
                    extra = {"whatsapp": {"phone_number_id": "1055501", "token": "wa-token"}}
                else:
                    sender = SmsSender(SmsOptions(base_url=emulator.base_url, account_sid=emulator.account_sid,
                                                  auth_token=emulator.auth_token, from_number="+15005550006"),
                                       renderer=renderer, concurrency=concurrency)
                    extra = {}
                on_result, done, counts = _counter(n)
                pool = Pool(provider, sender, clock=WallClock(), on_result=on_result, concurrency=concurrency,
                            retry=RetryPolicy(max_attempts=1))
                messages = _messages(n, provider, lambda i: f"+3460{i:07d}", extra)
                elapsed = await _through_pool(pool, messages, done)
                assert counts.get("sent") == n and not emulator.problems, (counts, emulator.problems[:3])
                rows.append(_row(provider, {"concurrency": concurrency, "messages": n,
                                            "provider_latency_ms": PROVIDER_LATENCY_S * 1000},
                                 "throughput", n / elapsed, "msg/s"))
                progress(f"{provider}, concurrency {concurrency}: {n / elapsed:,.0f} msg/s")
        finally:
            await emulator.close()
    return rows


async def _main(quick: bool, progress: Progress) -> list[Row]:
    rows: list[Row] = []
    for scenario in (bench_pool_overhead, bench_rate_accuracy, bench_smtp, bench_http):
        rows.extend(await scenario(quick, progress))
    return rows


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run every scenario (quick: well under a minute) and return the result rows."""
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay runnable without it
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_main(quick, progress))


if __name__ == "__main__":  # pragma: no cover
    from bench.harness import scenario_main

    sys.exit(scenario_main("channels")[1]())
