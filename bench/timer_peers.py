"""Timer schedulers a user would otherwise pick, with the wheel's interface, for side-by-side runs.

* :class:`HeapScheduler` — ``heapq`` with lazy deletion (a cancelled entry stays in the heap as a
  tombstone until it reaches the top). Its best honest configuration: entries are lists so cancel is
  O(1), and the heap is compacted (rebuilt without tombstones) once tombstones outnumber live entries,
  which keeps memory at most about twice the live size under churn.
* :class:`AsyncioTimers` — the event loop's own ``loop.call_later`` / ``TimerHandle.cancel``, on
  uvloop or on the default asyncio loop. It cannot be advanced by hand: firing is measured by letting
  the real loop dispatch timers that are already due.
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterator
from typing import Any

__all__ = ["HeapScheduler"]

_REMOVED = object()


class HeapScheduler:
    """A ``heapq`` timer queue with lazy deletion; handles are the heap entries themselves."""

    __slots__ = ("_heap", "_seq", "_live", "now")

    def __init__(self, start_tick: int = 0) -> None:
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._live = 0
        self.now = start_tick

    def __len__(self) -> int:
        return self._live

    def schedule(self, due_tick: int, key: Hashable, tag: Any = 0) -> list[Any]:
        entry = [due_tick, next(self._seq), key, tag]
        heapq.heappush(self._heap, entry)
        self._live += 1
        return entry

    def cancel(self, entry: list[Any]) -> bool:
        if entry[2] is _REMOVED:
            return False
        entry[2] = _REMOVED
        self._live -= 1
        if len(self._heap) > 2 * self._live + 1024:
            self._heap = [e for e in self._heap if e[2] is not _REMOVED]
            heapq.heapify(self._heap)
        return True

    def advance(self, to_tick: int) -> Iterator[tuple[Any, Any]]:
        heap = self._heap
        while heap and heap[0][0] <= to_tick:
            entry = heapq.heappop(heap)
            key = entry[2]
            if key is not _REMOVED:
                entry[2] = _REMOVED
                self._live -= 1
                yield key, entry[3]
        if to_tick > self.now:
            self.now = to_tick
