"""The timing wheel against a heap oracle, plus its edge cases."""
from __future__ import annotations

import heapq
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timing_wheel import MAX_TICK, SLOTS, TimingWheel


class Oracle:
    """The obviously-correct scheduler: a heap of (due, seq) with eager cancel via a live set."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.heap: list[tuple[int, int, Any, Any]] = []
        self.live: set[int] = set()
        self.seq = itertools.count()

    def schedule(self, due: int, key: Any, tag: Any) -> int:
        s = next(self.seq)
        heapq.heappush(self.heap, (due, s, key, tag))
        self.live.add(s)
        return s

    def cancel(self, s: int) -> bool:
        if s in self.live:
            self.live.remove(s)
            return True
        return False

    def advance(self, to: int) -> list[tuple[Any, Any]]:
        out = []
        # Past-due entries (due <= now) fire regardless of `to`; then everything due up to `to`.
        limit = max(to, self.now)
        while self.heap and self.heap[0][0] <= limit:
            due, s, key, tag = heapq.heappop(self.heap)
            if s in self.live:
                self.live.remove(s)
                out.append((key, tag))
        self.now = max(self.now, to)
        return out


ops = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), st.integers(-5, 300)),
        st.tuples(st.just("schedule_far"), st.integers(0, 10**12)),
        st.tuples(st.just("cancel"), st.integers(0, 10_000)),
        st.tuples(st.just("advance"), st.integers(0, 400)),
        st.tuples(st.just("jump"), st.integers(0, 10**12)),
        st.tuples(st.just("expire"), st.integers(0, 400)),
    ),
    max_size=120,
)


@settings(max_examples=400, deadline=None)
@given(start=st.integers(0, 10**9), script=ops)
def test_wheel_fires_exactly_what_a_heap_oracle_fires(start: int, script: list[tuple[str, int]]) -> None:
    wheel = TimingWheel(start)
    oracle = Oracle(start)
    handles: list[tuple[int, int, Any]] = []
    n = 0
    for op, arg in script:
        if op in ("schedule", "schedule_far"):
            due = max(0, wheel.now + arg) if op == "schedule" else arg
            key = ("k", n)
            n += 1
            handles.append((wheel.schedule(due, key, n % 3), oracle.schedule(due, key, n % 3), key))
        elif op == "cancel" and handles:
            h, s, key = handles[arg % len(handles)]
            assert wheel.cancel(h, key) == oracle.cancel(s)  # stale handles included: the key tells
        elif op in ("advance", "jump", "expire"):
            to = wheel.now + arg
            expected = oracle.advance(to)
            if op == "expire":
                flat = wheel.expire(to)
                got = list(zip(flat[::2], flat[1::2]))
            else:
                got = list(wheel.advance(to))
            assert got == expected
            assert wheel.now == oracle.now
        assert len(wheel) == len(oracle.live)
        due = wheel.next_due()
        live = [e[0] for e in oracle.heap if e[1] in oracle.live]
        assert due == (min(live) if live else None)
        event = wheel.next_event()
        assert (event is None) == (due is None)
        if event is not None:
            assert event <= max(due, wheel.now)


@settings(max_examples=150, deadline=None)
@given(script=st.lists(st.tuples(st.integers(1, 5000), st.booleans()), max_size=60),
       steps=st.lists(st.integers(1, 3000), min_size=1, max_size=10))
def test_rescheduling_inside_the_advance_loop_matches_the_oracle(script: list[tuple[int, bool]], steps: list[int]) -> None:
    """A fired key re-arms itself (the idle-timer trick) while the generator is suspended."""
    wheel = TimingWheel(0)
    heap: list[tuple[int, int, int, int]] = []
    seq = itertools.count()
    for i, (delay, _) in enumerate(script):
        wheel.schedule(delay, i, 0)
        heapq.heappush(heap, (delay, next(seq), i, 0))
    rearm = {i: flag for i, (_, flag) in enumerate(script)}
    oracle_now = 0
    for step in steps:
        to = wheel.now + step
        fired_w = []
        for key, tag in wheel.advance(to):
            fired_w.append((key, tag, wheel.now))
            if rearm[key] and tag < 2:
                wheel.schedule(wheel.now + 7 * (tag + 1), key, tag + 1)
        fired_o = []
        while heap and heap[0][0] <= to:
            due, _, key, tag = heapq.heappop(heap)
            oracle_now = max(oracle_now, due)
            fired_o.append((key, tag, oracle_now))
            if rearm[key] and tag < 2:
                heapq.heappush(heap, (oracle_now + 7 * (tag + 1), next(seq), key, tag + 1))
        oracle_now = max(oracle_now, to)
        assert fired_w == fired_o
        assert len(wheel) == len(heap)


def test_ties_fire_in_schedule_order_across_levels() -> None:
    wheel = TimingWheel(0)
    due = SLOTS * SLOTS + 5  # two levels up at schedule time
    wheel.schedule(due, "first", 0)
    for _ in wheel.advance(due - 3):
        pass
    wheel.schedule(due, "second", 0)  # placed on level 0 directly
    wheel.schedule(due - 10, "past", 0)  # already past: fires at the next advance, first
    assert list(wheel.advance(due)) == [("past", 0), ("first", 0), ("second", 0)]


def test_cancel_twice_and_after_fire() -> None:
    wheel = TimingWheel(10)
    h1 = wheel.schedule(12, "a", 1)
    h2 = wheel.schedule(15, "b", 2)
    assert wheel.cancel(h1) is True
    assert wheel.cancel(h1) is False
    assert list(wheel.advance(20)) == [("b", 2)]
    assert wheel.cancel(h2) is False
    # the freed index is reused: an old handle, with the key it was armed with, must not cancel the new timer
    h3 = wheel.schedule(30, "c", 3)
    assert h3 in (h1, h2)  # a handle is the index: no object per timer
    assert wheel.cancel(h1, "a") is False and wheel.cancel(h2, "b") is False
    assert wheel.reschedule(h3, 31, key="a") is False and wheel.due_of(h3, "b") is None
    assert wheel.due_of(h3) == 30 and wheel.due_of(h3, "c") == 30
    assert list(wheel.advance(30)) == [("c", 3)]
    assert len(wheel) == 0


def test_cancel_between_yields_prevents_firing() -> None:
    wheel = TimingWheel(0)
    handles = [wheel.schedule(5, i, 0) for i in range(4)]
    got = []
    for key, _ in wheel.advance(5):
        got.append(key)
        if key == 0:
            assert wheel.cancel(handles[2]) is True
    assert got == [0, 1, 3]


def test_timer_scheduled_at_now_during_advance_fires_in_same_advance() -> None:
    wheel = TimingWheel(0)
    wheel.schedule(3, "a", 0)
    got = []
    for key, _ in wheel.advance(10):
        got.append((key, wheel.now))
        if key == "a":
            wheel.schedule(wheel.now, "again", 0)
            wheel.schedule(9, "later", 0)
            wheel.schedule(11, "beyond", 0)
    assert got == [("a", 3), ("again", 3), ("later", 9)]
    assert len(wheel) == 1 and wheel.next_due() == 11


def test_tick_zero_and_past_due_in_due_order() -> None:
    wheel = TimingWheel(0)
    wheel.schedule(0, "zero", 0)
    assert list(wheel.advance(0)) == [("zero", 0)]
    wheel = TimingWheel(1000)
    wheel.schedule(900, "b", 0)
    wheel.schedule(100, "a", 0)
    wheel.schedule(900, "b2", 0)
    assert wheel.next_due() == 100
    assert wheel.next_event() == 1000
    assert list(wheel.advance(1000)) == [("a", 0), ("b", 0), ("b2", 0)]


def test_very_large_ticks_and_bad_values() -> None:
    wheel = TimingWheel(0)
    wheel.schedule(MAX_TICK, "end", 0)
    wheel.schedule(2**40, "mid", 0)
    assert wheel.next_due() == 2**40
    assert list(wheel.advance(2**41)) == [("mid", 0)]
    assert list(wheel.advance(MAX_TICK)) == [("end", 0)]
    with pytest.raises(OverflowError):
        wheel.schedule(MAX_TICK + 1, "x", 0)
    with pytest.raises(TypeError):
        wheel.schedule(1.5, "x", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        wheel.schedule(5, None, 0)
    assert len(wheel) == 0


def test_delay_of_400_days_in_100ms_ticks() -> None:
    wheel = TimingWheel(17_640_000_000, tick_s=0.1)
    due = wheel.now + wheel.to_tick(400 * 86400)
    wheel.schedule(due, "late", 0)
    assert list(wheel.advance(due - 1)) == []
    assert list(wheel.advance(due)) == [("late", 0)]


def test_jump_cost_follows_timers_not_ticks() -> None:
    """A 30-day jump over 10 000 pending timers visits at most a few event ticks per timer."""
    class Counting(TimingWheel):
        calls = 0

        def _next_event_tick(self) -> int | None:
            Counting.calls += 1
            return super()._next_event_tick()

    wheel = Counting(0)
    day = 864_000
    for i in range(10_000):
        wheel.schedule(31 * day + i, i, 0)
    assert list(wheel.advance(30 * day)) == []
    assert Counting.calls <= 8  # at most a few cascades, never one step per skipped tick
    assert len(wheel) == 10_000
    Counting.calls = 0
    fired = sum(1 for _ in wheel.advance(32 * day))
    assert fired == 10_000
    assert Counting.calls <= fired + 16  # one event per firing tick plus a few cascades


def test_expire_limit_and_memory_reuse() -> None:
    wheel = TimingWheel(0)
    for i in range(1000):
        wheel.schedule(1 + i % 10, i, 0)
    first = wheel.expire(100, limit=250)
    assert 250 <= len(first) // 2 <= 350
    rest = wheel.expire(100)
    keys = first[::2] + rest[::2]
    assert sorted(keys) == list(range(1000))
    assert [k % 10 for k in keys] == sorted(k % 10 for k in keys)
    capacity = len(wheel._due)
    for round_ in range(20):
        hs = [wheel.schedule(wheel.now + 1 + i, i, 0) for i in range(1000)]
        for h in hs[::2]:
            wheel.cancel(h)
        wheel.expire(wheel.now + 2000)
    assert len(wheel._due) == capacity  # freed indices are reused, nothing grows under churn


def test_repr_and_per_level_counts() -> None:
    wheel = TimingWheel(0)
    wheel.schedule(1, "a", 0)
    wheel.schedule(SLOTS + 1, "b", 0)
    wheel.schedule(SLOTS * SLOTS + 1, "c", 0)
    assert wheel.pending_per_level()[:3] == [1, 1, 1]
    assert "pending=3" in repr(wheel)


@settings(max_examples=200, deadline=None)
@given(script=st.lists(st.tuples(st.sampled_from(["schedule", "move", "cancel", "advance"]), st.integers(0, 3000)), max_size=80))
def test_reschedule_moves_like_cancel_plus_schedule(script: list[tuple[str, int]]) -> None:
    """reschedule(h, due) behaves as cancel + schedule of the same key and tag, keeping the handle."""
    wheel = TimingWheel(100)
    oracle = Oracle(100)
    live: list[list[Any]] = []  # [wheel handle, oracle seq, key, tag]
    for n, (op, arg) in enumerate(script):
        if op == "schedule":
            due = wheel.now + arg - 50
            key = ("k", n)  # one object: a handle is checked against the very key it was armed with
            live.append([wheel.schedule(max(due, 0), key, n % 4), oracle.schedule(max(due, 0), key, n % 4), key, n % 4])
        elif op == "move" and live:
            entry = live[arg % len(live)]
            due = max(wheel.now + arg % 700 - 100, 0)
            moved = wheel.reschedule(entry[0], due, key=entry[2])
            assert moved == oracle.cancel(entry[1])
            if moved:
                entry[1] = oracle.schedule(due, entry[2], entry[3])
        elif op == "cancel" and live:
            entry = live[arg % len(live)]
            assert wheel.cancel(entry[0], entry[2]) == oracle.cancel(entry[1])
        elif op == "advance":
            to = wheel.now + arg
            assert list(wheel.advance(to)) == oracle.advance(to)
        assert len(wheel) == len(oracle.live)
    assert list(wheel.advance(wheel.now + 10**6)) == oracle.advance(wheel.now + 10**6)


def test_reschedule_of_a_fired_or_cancelled_timer_is_refused() -> None:
    wheel = TimingWheel(0)
    h = wheel.schedule(5, "a", 1)
    assert wheel.reschedule(h, 9) is True and wheel.due_of(h) == 9
    assert list(wheel.advance(8)) == []
    assert list(wheel.advance(9)) == [("a", 1)]
    assert wheel.reschedule(h, 20) is False and len(wheel) == 0
    h2 = wheel.schedule(30, "b", 1)
    assert wheel.cancel(h2) and wheel.reschedule(h2, 40) is False
    assert wheel.reschedule(12345678, 40) is False and wheel.cancel(-3) is False and wheel.cancel(2.5) is False  # type: ignore[arg-type]
    assert wheel.cancel(0) is False and wheel.due_of(-1) is None  # sentinel indices are not timers


def test_reschedule_can_change_the_tag() -> None:
    wheel = TimingWheel(0)
    h = wheel.schedule(5, "a", 1)
    assert wheel.reschedule(h, 7, 2)
    assert list(wheel.advance(10)) == [("a", 2)]


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 10**9), before=st.lists(st.integers(-5, 5000), max_size=40),
       cancel=st.lists(st.integers(0, 39), max_size=20), dues=st.lists(st.integers(-5, 10**7), max_size=80))
def test_schedule_many_is_schedule_in_a_loop(start: int, before: list[int], cancel: list[int], dues: list[int]) -> None:
    """Same handles' behaviour, same firing order, free indices reused: against a wheel fed one by one."""
    one, many = TimingWheel(start), TimingWheel(start)
    for wheel in (one, many):
        handles = [wheel.schedule(max(0, start + d), ("old", i), 0) for i, d in enumerate(before)]
        for c in cancel:  # leaves recycled indices on the free list
            if handles:
                wheel.cancel(handles[c % len(handles)])
    ticks = [max(0, start + d) for d in dues]
    keys = [("new", i) for i in range(len(dues))]
    tags = [i % 3 for i in range(len(dues))]
    singles = [one.schedule(t, k, g) for t, k, g in zip(ticks, keys, tags)]
    bulk = many.schedule_many(ticks, keys, tags)
    assert len(bulk) == len(singles) and len(one) == len(many)
    for i in range(0, len(bulk), 3):  # the handles cancel what they name
        assert one.cancel(singles[i]) and many.cancel(bulk[i])
        assert not many.cancel(bulk[i])
    end = start + 10**7 + 10
    assert one.expire(end) == many.expire(end)
    assert len(many) == 0


def test_schedule_many_refuses_bad_input_before_arming() -> None:
    wheel = TimingWheel(100)
    with pytest.raises(ValueError, match="key must not be None"):
        wheel.schedule_many([101, 102], ["a", None], [0, 0])
    with pytest.raises(ValueError, match="2 ticks, 1 keys"):
        wheel.schedule_many([101, 102], ["a"], [0])
    assert len(wheel) == 0 and wheel.next_due() is None
    with pytest.raises(TypeError):
        wheel.schedule_many([101, "x"], ["a", "b"], [0, 0])  # type: ignore[list-item]
    with pytest.raises(OverflowError):
        wheel.schedule_many([101, 1 << 64], ["a", "b"], [0, 0])
    assert len(wheel) == 0 and wheel.next_due() is None
    assert wheel.schedule_many([], [], []) == []
    handles = wheel.schedule_many([101, 100, 99], ["a", "b", "c"], [1, 2, 3])  # the last two are past due
    assert wheel.expire(101) == ["c", 3, "b", 2, "a", 1] and not wheel.cancel(handles[0])
