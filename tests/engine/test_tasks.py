"""Stopping a background task whose loop may swallow one cancellation (as Python 3.11's asyncio.wait_for
inside redis-py does when the command completes in the same loop turn)."""
from __future__ import annotations

import asyncio

from engine.tasks import cancel_and_wait


async def _stubborn(swallow: int) -> None:
    """A loop like the journal writer's: a cancel that lands as an await completes is lost ``swallow`` times."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallow > 0:
                swallow -= 1
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                continue
            raise


async def test_a_swallowed_cancel_is_repeated_until_the_task_ends() -> None:
    task = asyncio.get_running_loop().create_task(_stubborn(swallow=2))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, every_s=0.01), 5)
    assert task.cancelled()


async def test_one_cancel_and_a_wait_would_hang_on_such_a_task() -> None:
    task = asyncio.get_running_loop().create_task(_stubborn(swallow=1))
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done  # what Snapshotter.stop and Journal.close did: they waited for ever
    await cancel_and_wait(task, every_s=0.01)
    assert task.cancelled()


async def test_a_task_that_ended_with_an_error_or_none_at_all() -> None:
    async def fails() -> None:
        raise RuntimeError("store down")

    task = asyncio.get_running_loop().create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # its exception is retrieved: no "never retrieved" warning
    assert isinstance(task.exception(), RuntimeError)
    await cancel_and_wait(None)
