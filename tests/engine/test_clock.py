"""Clocks: manual time moves only when told to; scaled time runs N times faster."""
from __future__ import annotations

import asyncio

import pytest

from engine.clock import Clock, ManualClock, RealClock, ScaledClock, clock_from_spec, parse_time, wait_event


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(1000.0)
    assert clock.now() == 1000.0
    assert clock.advance(3600) == 4600.0
    assert clock.set(5000.0) == 5000.0
    with pytest.raises(ValueError):
        clock.set(10.0)
    with pytest.raises(ValueError):
        clock.advance(-1)
    assert isinstance(clock, Clock)


async def test_manual_sleep_returns_when_advanced_past_deadline() -> None:
    clock = ManualClock(0.0)
    woke: list[float] = []

    async def sleeper() -> None:
        while clock.now() < 10:
            await clock.sleep_until(10)
        woke.append(clock.now())

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    clock.advance(5)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(5)
    await asyncio.wait_for(task, 5)
    assert woke == [10.0]


def test_scaled_clock_runs_faster_than_real_time() -> None:
    clock = ScaledClock(3600, start=0.0)
    first = clock.now()
    # busy-wait a few real milliseconds: the simulated clock must move about 3600 times as far
    real = RealClock()
    t0 = real.now()
    while real.now() - t0 < 0.01:
        pass
    assert clock.now() - first >= 0.01 * 3600 * 0.9
    with pytest.raises(ValueError):
        ScaledClock(0)


def test_clock_from_spec_and_parse_time() -> None:
    assert clock_from_spec("real").kind == "real"
    assert clock_from_spec("manual", 5.0).now() == 5.0
    scaled = clock_from_spec("scaled:60")
    assert isinstance(scaled, ScaledClock) and scaled.factor == 60
    for bad in ("fast", "scaled:x", "scaled:-1"):
        with pytest.raises(ValueError):
            clock_from_spec(bad)
    assert parse_time("2026-03-06T10:00:00Z") == 1772791200.0
    assert parse_time("2026-03-06T11:00:00+01:00") == 1772791200.0
    assert parse_time(12.5) == 12.5
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_only_clock_module_reads_system_time() -> None:
    """DESIGN.md principle 2: nothing but engine/clock.py reads the system clock."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    pattern = re.compile(r"\btime\.time\(|datetime\.now\(|datetime\.utcnow\(|\.today\(\)")
    offenders = []
    for package in ("engine", "actors", "timing_wheel", "channels"):
        for path in (root / package).rglob("*.py"):
            if path.name == "clock.py" and path.parent.name == "engine":
                continue
            if pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_wait_event_lets_a_cancellation_through_when_the_event_is_set_as_well(turns: int) -> None:
    """A loop stopped by cancelling its task must stop, whenever the cancel lands. On Python 3.11,
    ``asyncio.wait_for(event.wait(), t)`` returns instead when the event is set just before the cancel
    (with one loop turn between them), and such a loop then waited for another whole interval."""
    event = asyncio.Event()
    task = asyncio.get_running_loop().create_task(wait_event(event, 3600))
    await asyncio.sleep(0)
    event.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    if not task.done():
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:  # the wait ended before the cancel: it saw the event
        assert task.result() is True


async def test_wait_event_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True
    assert await wait_event(event, None) is True
