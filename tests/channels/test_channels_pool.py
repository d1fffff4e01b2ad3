"""The pool under a manual clock: exact rate-limit counts, priorities, breaker, pause, cancellation,
invalid contacts, pair spacing, back-pressure, retries and shutdown. The sender is an in-process
sink (the pool's contract is the Sender protocol; protocol peers are tested in the other files)."""
from __future__ import annotations

import asyncio
import collections
import logging
import random

import pytest

from channels import DeliveryResult, Message, Pool, PoolClosed, RetryPolicy, Throttle

NO_JITTER = RetryPolicy(max_attempts=5, base_s=1.0, max_s=60.0, jitter=0.0)


class SinkSender:
    """Records sends; answers from ``script`` (default: sent); optionally blocks on ``gate``."""

    kind = "sink"

    def __init__(self, script: list[DeliveryResult] | None = None) -> None:
        self.sent: list[Message] = []
        self.script: collections.deque[DeliveryResult] = collections.deque(script or [])
        self.answers: dict[str, DeliveryResult] = {}
        self.gate: asyncio.Event | None = None
        self.started: asyncio.Queue[Message] = asyncio.Queue()
        self.closed = False

    async def send(self, message: Message) -> DeliveryResult:
        self.sent.append(message)
        self.started.put_nowait(message)
        if self.gate is not None:
            await self.gate.wait()
        if message.to in self.answers:
            return self.answers[message.to]
        if self.script:
            return self.script.popleft()
        return DeliveryResult.sent(f"provider-{message.id}")

    async def close(self) -> None:
        self.closed = True

    def ids(self) -> list[str]:
        return [m.id for m in self.sent]


def new_pool(sink, clock, results, **options) -> Pool:
    options.setdefault("retry", NO_JITTER)
    options.setdefault("rng", random.Random(7))
    return Pool("test", sink, clock=clock, on_result=results, **options)


async def test_rate_limit_lets_through_exact_counts(clock, results, make_message):
    sink = SinkSender()
    pool = new_pool(sink, clock, results, rate_per_s=10, burst=10, concurrency=100)
    await pool.start()
    for _ in range(35):
        assert pool.offer(make_message())
    await pool.wait_idle()
    assert len(sink.sent) == 10  # the full bucket
    clock.advance(0.5)
    await pool.wait_idle()
    assert len(sink.sent) == 15
    clock.advance(0.5)
    await pool.wait_idle()
    assert len(sink.sent) == 20
    clock.advance(100.0)  # a long gap banks only `burst` tokens
    await pool.wait_idle()
    assert len(sink.sent) == 30
    clock.advance(0.25)
    await pool.wait_idle()
    assert len(sink.sent) == 32
    clock.advance(0.25)
    await pool.wait_idle()
    assert len(sink.sent) == 35
    assert results.outcomes() == ["sent"] * 35
    await pool.stop()
    assert sink.closed


async def test_priority_order_when_rate_limited(clock, results, make_message):
    sink = SinkSender()
    pool = new_pool(sink, clock, results, rate_per_s=1, burst=1)
    await pool.start()
    pool.offer(make_message(id="first"))
    await pool.wait_idle()
    for mid, priority in [("low1", 0), ("high1", 5), ("low2", 0), ("high2", 5), ("mid", 2)]:
        pool.offer(make_message(id=mid, priority=priority))
    await pool.wait_idle()
    assert sink.ids() == ["first"]
    for _ in range(5):
        clock.advance(1.0)
        await pool.wait_idle()
    assert sink.ids() == ["first", "high1", "high2", "mid", "low1", "low2"]
    await pool.stop()


async def test_pause_and_resume(clock, results, make_message):
    sink = SinkSender()
    pool = new_pool(sink, clock, results)
    await pool.start()
    pool.pause()
    for _ in range(3):
        pool.offer(make_message())
    await pool.wait_idle()
    assert sink.sent == [] and pool.statistics().queued == 3 and pool.statistics().paused
    pool.resume()
    await pool.wait_idle()
    assert len(sink.sent) == 3 and not pool.paused
    await pool.stop()


async def test_breaker_opens_after_consecutive_failures_and_closes_on_probe(clock, results, make_message):
    failure = DeliveryResult.transient("HTTP 503")
    sink = SinkSender([failure, failure, failure])
    pool = new_pool(sink, clock, results, breaker_threshold=3, breaker_cooldown_s=30.0,
                    retry=RetryPolicy(max_attempts=10, base_s=1.0, max_s=60.0, jitter=0.0))
    await pool.start()
    pool.offer(make_message(id="a"))
    await pool.wait_idle()  # attempt 1 fails; retry at +1 s
    clock.advance(1.0)
    await pool.wait_idle()  # attempt 2 fails; retry at +2 s
    clock.advance(2.0)
    await pool.wait_idle()  # attempt 3 fails: breaker opens
    assert pool.statistics().breaker == "open"
    assert pool.statistics().breaker_opened == 1
    pool.offer(make_message(id="b"))
    clock.advance(4.0)  # a's retry is due, but the breaker holds everything
    await pool.wait_idle()
    assert sink.ids() == ["a", "a", "a"]
    assert pool.statistics().queued == 2

    sink.gate = asyncio.Event()
    sink.started = asyncio.Queue()
    clock.advance(26.0)  # 30 s after opening: half-open, one probe
    probe = await sink.started.get()
    assert probe.id == "a"
    stats = pool.statistics()
    assert stats.breaker == "half_open" and stats.in_flight == 1 and stats.queued == 1
    sink.gate.set()
    await pool.wait_idle()
    assert sink.ids() == ["a", "a", "a", "a", "b"]
    assert pool.statistics().breaker == "closed"
    assert results.of("a").attempts == 4 and results.of("a").ok
    await pool.stop()


async def test_breaker_probe_failure_reopens(clock, results, make_message):
    failure = DeliveryResult.transient("connect refused")
    sink = SinkSender([failure] * 3)
    pool = new_pool(sink, clock, results, breaker_threshold=2, breaker_cooldown_s=10.0,
                    retry=RetryPolicy(max_attempts=10, base_s=1.0, max_s=60.0, jitter=0.0))
    await pool.start()
    pool.offer(make_message(id="a"))
    await pool.wait_idle()
    clock.advance(1.0)
    await pool.wait_idle()
    assert pool.statistics().breaker == "open"
    clock.advance(10.0)
    await pool.wait_idle()  # the probe fails: open again for another 10 s
    assert pool.statistics().breaker == "open" and pool.statistics().breaker_opened == 2
    assert len(sink.sent) == 3
    clock.advance(9.0)
    await pool.wait_idle()
    assert len(sink.sent) == 3
    clock.advance(1.0)
    await pool.wait_idle()
    assert len(sink.sent) == 4 and results.of("a").ok
    await pool.stop()


async def test_still_wanted_cancels_right_before_sending(clock, results, make_message):
    sink = SinkSender()
    bought = {"c-bought"}
    asked: list[str] = []

    def still_wanted(message: Message) -> str | None:
        asked.append(message.id)
        return "order completed" if message.cart in bought else None

    pool = new_pool(sink, clock, results, still_wanted=still_wanted, rate_per_s=1, burst=1)
    await pool.start()
    pool.offer(make_message(id="x", cart="c-open"))
    pool.offer(make_message(id="y", cart="c-later"))
    await pool.wait_idle()
    bought.add("c-later")  # the shopper buys while y waits for a token
    clock.advance(1.0)
    await pool.wait_idle()
    assert sink.ids() == ["x"]
    assert results.of("y").outcome == "cancelled" and results.of("y").detail == "order completed"
    assert results.of("y").attempts == 0
    assert asked == ["x", "y"]
    assert pool.statistics().cancelled == 1
    await pool.stop()


async def test_still_wanted_may_hold_a_message_back_until_a_time(clock, results, make_message):
    """A float from still_wanted: not yet (quiet hours), ask again then; the message keeps its place and
    the others go meanwhile."""
    sink = SinkSender()
    opens_at = int(clock.now()) + 3600  # a number of either kind (an int is a time too)
    asked: list[tuple[str, float]] = []

    def still_wanted(message: Message) -> str | float | None:
        asked.append((message.id, clock.now()))
        return opens_at if message.cart == "c-quiet" and clock.now() < opens_at else None

    pool = new_pool(sink, clock, results, still_wanted=still_wanted)
    await pool.start()
    pool.offer(make_message(id="q", cart="c-quiet"))
    pool.offer(make_message(id="n", cart="c-now"))
    await pool.wait_idle()
    assert sink.ids() == ["n"] and pool.statistics().queued == 1 and results.ids() == ["n"]
    clock.advance(opens_at - 1.0 - clock.now())
    await pool.wait_idle()
    assert sink.ids() == ["n"]
    clock.advance(1.0)
    await pool.wait_idle()
    assert sink.ids() == ["n", "q"] and results.of("q").ok and pool.statistics().queued == 0
    assert [who for who, _ in asked] == ["q", "n", "q"] and asked[-1][1] == opens_at
    await pool.stop()


async def test_message_never_sent_to_invalidated_contact(clock, results, make_message):
    sink = SinkSender()
    sink.answers["dead@example.com"] = DeliveryResult.permanent("550 no such user", provider_status="550",
                                                                 invalidate_contact=True)
    pool = new_pool(sink, clock, results, concurrency=1)
    await pool.start()
    pool.offer(make_message(id="first", to="dead@example.com"))
    pool.offer(make_message(id="queued", to="dead@example.com"))
    pool.offer(make_message(id="other", to="alive@example.com"))
    await pool.wait_idle()
    pool.offer(make_message(id="later", to="dead@example.com"))
    pool.offer(make_message(id="elsewhere", to="dead@example.com", store="other-store"))
    await pool.wait_idle()
    assert [m.id for m in sink.sent if m.to == "dead@example.com"] == ["first", "elsewhere"]
    assert results.of("first").invalidate_contact and results.of("first").outcome == "failed"
    for mid in ("queued", "later"):
        assert results.of(mid).outcome == "cancelled"
        assert "contact invalidated" in results.of(mid).detail
    assert results.of("other").ok
    assert pool.statistics().blocked_contacts == 2  # one per store: stores never share data
    await pool.stop()


async def test_opt_out_blocks_further_sends(clock, results, make_message):
    sink = SinkSender()
    sink.answers["+34600111221"] = DeliveryResult.permanent("21610", provider_status="21610", opt_out=True)
    pool = new_pool(sink, clock, results)
    await pool.start()
    pool.offer(make_message(id="one", to="+34600111221", channel="sms"))
    await pool.wait_idle()
    pool.offer(make_message(id="two", to="+34600111221", channel="sms"))
    await pool.wait_idle()
    assert sink.ids() == ["one"]
    assert results.of("one").opt_out and results.of("two").outcome == "cancelled"
    await pool.stop()


async def test_pair_interval_spaces_messages_to_one_recipient(clock, results, make_message):
    sink = SinkSender()
    pool = new_pool(sink, clock, results, pair_interval_s=6.0)
    await pool.start()
    pool.offer(make_message(id="a1", to="+34600000001"))
    pool.offer(make_message(id="a2", to="+34600000001"))
    pool.offer(make_message(id="b1", to="+34600000002"))
    pool.offer(make_message(id="a3", to="+34600000001"))
    await pool.wait_idle()
    assert sink.ids() == ["a1", "b1"]
    clock.advance(5.5)
    await pool.wait_idle()
    assert sink.ids() == ["a1", "b1"]
    clock.advance(0.5)
    await pool.wait_idle()
    assert sink.ids() == ["a1", "b1", "a2"]
    clock.advance(6.0)
    await pool.wait_idle()
    assert sink.ids() == ["a1", "b1", "a2", "a3"]
    await pool.stop()


async def test_store_rate_limit_isolates_stores(clock, results, make_message):
    sink = SinkSender()
    pool = new_pool(sink, clock, results, store_rate_per_s=1, store_burst=1)
    await pool.start()
    for i in range(3):
        pool.offer(make_message(id=f"a{i}", store="a"))
    pool.offer(make_message(id="b0", store="b"))
    await pool.wait_idle()
    assert sorted(sink.ids()) == ["a0", "b0"]
    clock.advance(1.0)
    await pool.wait_idle()
    assert sink.ids()[-1] == "a1" and len(sink.sent) == 3
    clock.advance(1.0)
    await pool.wait_idle()
    assert sink.ids()[-1] == "a2"
    await pool.stop()


async def test_back_pressure_offer_and_submit(clock, results, make_message):
    sink = SinkSender()
    pool = new_pool(sink, clock, results, max_queue=2)
    await pool.start()
    pool.pause()
    assert pool.offer(make_message(id="m1"))
    assert pool.offer(make_message(id="m2"))
    assert not pool.offer(make_message(id="m3"))  # full
    entered = asyncio.Event()
    submitted = asyncio.Event()

    async def producer() -> None:
        entered.set()
        await pool.submit(make_message(id="m4"))
        submitted.set()

    task = asyncio.create_task(producer())
    await entered.wait()  # the producer ran up to its first suspension: blocked in submit()
    assert not submitted.is_set()
    assert pool.statistics().blocked_submitters == 1 and pool.statistics().queued == 2
    pool.resume()
    await task
    await pool.wait_idle()
    assert sink.ids() == ["m1", "m2", "m4"]
    await pool.stop()
    with pytest.raises(PoolClosed):
        await pool.submit(make_message())
    assert not pool.offer(make_message())


async def test_transient_failure_honours_retry_after_then_gives_up(clock, results, make_message):
    busy = DeliveryResult.transient("429", retry_after_s=7.0)
    sink = SinkSender([busy, busy])
    pool = new_pool(sink, clock, results, retry=RetryPolicy(max_attempts=2, base_s=1.0, jitter=0.0))
    await pool.start()
    pool.offer(make_message(id="r"))
    await pool.wait_idle()
    clock.advance(6.5)
    await pool.wait_idle()
    assert len(sink.sent) == 1 and pool.statistics().delayed == 1
    clock.advance(0.5)
    await pool.wait_idle()
    assert len(sink.sent) == 2
    result = results.of("r")
    assert result.outcome == "failed" and result.retryable and result.attempts == 2
    assert result.detail.startswith("gave up after 2 attempts")
    assert pool.statistics().retried == 1
    await pool.stop()


async def test_channel_throttle_holds_every_message(clock, results, make_message):
    sink = SinkSender([DeliveryResult.transient("rate limit", retry_after_s=5.0, throttled=Throttle.CHANNEL)])
    pool = new_pool(sink, clock, results, concurrency=1)
    await pool.start()
    pool.offer(make_message(id="t1"))
    await pool.wait_idle()
    pool.offer(make_message(id="t2"))
    clock.advance(4.0)
    await pool.wait_idle()
    assert sink.ids() == ["t1"]
    clock.advance(1.0)
    await pool.wait_idle()
    assert sink.ids() == ["t1", "t1", "t2"]
    await pool.stop()


async def test_uncertain_is_not_retried_unless_resend(clock, results, make_message):
    sink = SinkSender([DeliveryResult.uncertain("lost after DATA")])
    pool = new_pool(sink, clock, results)
    await pool.start()
    pool.offer(make_message(id="u"))
    await pool.wait_idle()
    clock.advance(100.0)
    await pool.wait_idle()
    assert sink.ids() == ["u"] and results.of("u").outcome == "uncertain"
    await pool.stop()

    sink2 = SinkSender([DeliveryResult.uncertain("lost after DATA")])
    pool2 = new_pool(sink2, clock, results, on_uncertain="resend")
    await pool2.start()
    pool2.offer(make_message(id="v"))
    await pool2.wait_idle()
    clock.advance(1.0)
    await pool2.wait_idle()
    assert sink2.ids() == ["v", "v"] and results.of("v").ok
    await pool2.stop()


async def test_stop_drains_within_the_timeout_and_reports_the_rest(clock, results, make_message):
    sink = SinkSender()
    pool = new_pool(sink, clock, results, rate_per_s=1, burst=1)
    await pool.start()
    for i in range(5):
        pool.offer(make_message(id=f"d{i}"))
    await pool.wait_idle()
    stop_called = asyncio.Event()

    async def stopper() -> None:
        stop_called.set()
        await pool.stop(timeout_s=2.5)  # drain until t0 + 2.5 s

    stopping = asyncio.create_task(stopper())
    await stop_called.wait()  # stop() has run up to its first suspension: no more admissions
    assert not pool.offer(make_message())
    await pool.wait_idle()
    clock.advance(1.0)
    await pool.wait_idle()
    clock.advance(1.0)
    await pool.wait_idle()
    clock.advance(0.5)
    await stopping
    assert sink.ids() == ["d0", "d1", "d2"]
    assert results.ids("failed") == ["d3", "d4"]
    assert all(results.of(m).retryable and "pool stopped" in results.of(m).detail for m in ("d3", "d4"))
    assert sink.closed


async def test_statistics_and_repr_show_live_counters(clock, results, make_message):
    sink = SinkSender([DeliveryResult.permanent("bad"), DeliveryResult.transient("later")])
    pool = new_pool(sink, clock, results, rate_per_s=2, burst=2)
    await pool.start()
    for _ in range(3):
        pool.offer(make_message())
    await pool.wait_idle()
    stats = pool.statistics()
    assert (stats.sent, stats.failed, stats.retried, stats.queued, stats.delayed) == (0, 1, 1, 2, 1)
    assert stats.rate_per_s == 2 and stats.breaker == "closed" and not stats.paused
    assert repr(pool) == (
        "<Pool test queued=2 in_flight=0 sent=0 failed=1 uncertain=0 cancelled=0 retried=1 "
        "breaker=closed paused=False>"
    )
    with pytest.raises(AttributeError):
        stats.sent = 5  # frozen
    await asyncio.gather(pool.stop(drain=False), pool.stop())  # a second stop waits for the first
    assert pool.statistics().closed and sink.closed
    assert len(results.items) == 3 and len(set(results.ids())) == 3  # one final outcome per message
    assert [r.detail for _, r in results.items[1:]] == ["not sent: pool stopped"] * 2


async def test_a_raising_sender_is_a_permanent_failure(clock, results, make_message):
    class Broken(SinkSender):
        async def send(self, message: Message) -> DeliveryResult:
            raise RuntimeError("bug")

    pool = new_pool(Broken(), clock, results)
    await pool.start()
    pool.offer(make_message(id="b"))
    await pool.wait_idle()
    assert results.of("b").outcome == "failed" and not results.of("b").retryable
    await pool.stop()


async def test_logs_never_carry_a_full_contact(clock, results, make_message, caplog):
    sink = SinkSender()
    sink.answers["jane.doe@example.com"] = DeliveryResult.permanent(
        "550 5.1.1 <jane.doe@example.com>: Recipient address rejected", invalidate_contact=True
    )
    sink.answers["+34600111221"] = DeliveryResult.transient("busy")
    pool = new_pool(sink, clock, results, retry=RetryPolicy(max_attempts=2, base_s=1.0, jitter=0.0))
    await pool.start()
    with caplog.at_level(logging.DEBUG, logger="cartwheel.channels"):
        pool.offer(make_message(to="jane.doe@example.com"))
        pool.offer(make_message(to="+34600111221", channel="sms"))
        await pool.wait_idle()
        clock.advance(1.0)
        await pool.wait_idle()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "j***@example.com" in text and "+34*****21" in text
    assert "jane.doe@example.com" not in text and "+34600111221" not in text
    assert [r.detail for _, r in results.items][0] == "550 5.1.1 <j***@example.com>: Recipient address rejected"
    await pool.stop()


def test_a_long_back_off_does_not_end_other_recipients_spacing_early() -> None:
    """The recipient table is swept when it doubles; a hold hours ahead (a provider's back-off) must not
    sweep away holds that are still running (they used to be measured from the new hold, not from now)."""
    from types import SimpleNamespace

    from channels._scheduler import Scheduler

    sched = Scheduler(pair_interval_s=6.0)
    now = 1_000_000.0
    sched.hold_recipient("s", "victim", now + 1800, now)  # 30 min to go
    for i in range(1100):  # enough to sweep; each held for 2 h
        sched.hold_recipient("s", f"r{i}", now + 7200, now)
    assert sched.pair_free_at(SimpleNamespace(store="s", to="victim"), now) == now + 1800  # type: ignore[arg-type]
    sched.hold_recipient("s", "late", now + 60, now + 7300)  # later: the ended holds go in the next sweep
    for i in range(3000):
        sched.hold_recipient("s", f"q{i}", now + 7400, now + 7300)
    assert sched.pair_free_at(SimpleNamespace(store="s", to="victim"), now + 7300) is None  # type: ignore[arg-type]
    assert len(sched._pair_next) < 4200


async def test_before_attempt_holds_the_first_call_only_and_a_refusal_sends_nothing(clock, results, make_message):
    """``before_attempt`` is asked once per message, before its first provider call (a retry is not asked
    again); the call waits until its awaitable says True; False: never sent, reported failed and
    retryable (not sent)."""
    sink = SinkSender()
    asked: list[str] = []
    gates: dict[str, asyncio.Future[bool]] = {}

    def before_attempt(message: Message) -> asyncio.Future[bool] | None:
        asked.append(message.id)
        if message.id == "direct":
            return None
        gates[message.id] = asyncio.get_running_loop().create_future()
        return gates[message.id]

    pool = new_pool(sink, clock, results, before_attempt=before_attempt)
    await pool.start()
    for mid in ("retried", "refused", "direct"):
        pool.offer(make_message(id=mid))
    await asyncio.sleep(0.01)
    assert asked == ["retried", "refused", "direct"]
    assert sink.ids() == ["direct"]  # the other two wait for their marks
    assert pool.statistics().in_flight == 2  # (holding their concurrency slots)
    sink.script.append(DeliveryResult.transient("HTTP 503"))  # the next answer
    gates["retried"].set_result(True)
    gates["refused"].set_result(False)
    await pool.wait_idle()
    assert sink.ids() == ["direct", "retried"]  # 503: retried later
    refused = results.of("refused")
    assert str(refused.outcome) == "failed" and refused.retryable and refused.detail.startswith("not sent")
    clock.advance(1.0)
    await pool.wait_idle()
    assert sink.ids() == ["direct", "retried", "retried"]
    assert asked == ["retried", "refused", "direct"]  # the retry was not asked about
    assert str(results.of("retried").outcome) == "sent"
    await pool.stop()
