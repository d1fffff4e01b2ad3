"""Stopping background tasks that talk to Redis.

``task.cancel()`` once, then ``await task``, is not enough on Python 3.11: ``asyncio.wait_for``
swallows a cancellation that arrives in the loop turn in which the operation it waits for completes
(it returns the result instead; fixed in 3.12). redis-py sends every command through ``wait_for``
(``socket_timeout``), so a loop that talks to Redis can take the cancel, carry on, and wait for its next
interval, or for ever: a stop that awaits it hangs (the crash fuzzing found the journal writer doing so).
:func:`cancel_and_wait` cancels again until the task has ended.
"""
from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any] | None, *, every_s: float = 0.1) -> None:
    """Cancel ``task`` and return once it has ended, cancelling it again every ``every_s`` seconds (real
    time) while it runs on. Its exception, if it ended with one, is retrieved and dropped: the caller is
    stopping it."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every_s)
    if not task.cancelled():
        task.exception()
