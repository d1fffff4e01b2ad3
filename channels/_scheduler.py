"""The pool's waiting room: which held message may go next, and when the others may.

A message the pool holds (not in flight) is in exactly one of three places:

* the **ready heap**, ordered by ``(-priority, seq)``: highest priority first, FIFO among equals
  (``seq`` is the admission order, kept across retries so a retried message does not fall behind
  newer ones of the same priority);
* the **delayed heap**, ordered by due time: retries waiting out their back-off, and messages to a
  recipient that was messaged less than ``pair_interval_s`` ago;
* a **store gate**'s pending heap, when a per-store rate limit is configured.

Store gates. A per-store token bucket cannot simply be checked at the head of the ready heap: one busy
store would then be popped and re-deferred once per token, O(n) work per message. Instead each store's
messages wait in the store's own heap and are *released* into the ready heap only while the store's
bucket has a token for them (``released <= floor(tokens)``); the token itself is taken at dispatch,
so bunching in the ready heap cannot exceed the store's rate. When the gate runs dry, one marker in
the delayed heap wakes it when the next token is due. Messages of a rate-limited store therefore
compete on priority only with the store's own messages until released — the price of O(log n).

Pair spacing. ``pair_next[(store, to)]`` is the earliest time the next message to that recipient may
go; a message at the head of the ready heap whose pair is not free yet moves to the delayed heap until
then (WhatsApp allows about one message per 6 s to the same user).

Nothing here reads a clock or touches asyncio: the pool passes ``now`` (unix seconds) everywhere.
"""
from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

from channels.ratelimit import EPSILON, TokenBucket

if TYPE_CHECKING:
    from channels.message import Message

__all__ = ["Entry", "Scheduler"]

#: sweep idle per-store gates and expired pair marks when their tables pass this size
_SWEEP_MIN = 1024


class Entry:
    """A held message plus the pool's bookkeeping for it."""

    __slots__ = ("message", "seq", "attempts")

    def __init__(self, message: Message, seq: int) -> None:
        self.message = message
        self.seq = seq
        #: attempts handed to the sender so far
        self.attempts = 0


class _Gate:
    """A store's rate limit: its bucket and the messages waiting for a token."""

    __slots__ = ("store", "bucket", "pending", "released", "scheduled")

    def __init__(self, store: str, bucket: TokenBucket) -> None:
        self.store = store
        self.bucket = bucket
        self.pending: list[tuple[float, int, Entry]] = []
        #: messages released into the ready heap and not yet dispatched or dropped
        self.released = 0
        #: a wake-up marker for this gate sits in the delayed heap
        self.scheduled = False


class Scheduler:
    """Holds the pool's waiting messages; see the module docstring.

    Args:
        pair_interval_s: minimum seconds between two messages to the same ``(store, to)``; 0 = off.
        store_rate_per_s: per-store rate limit (messages/s), or None for none.
        store_burst: per-store bucket capacity (messages).
    """

    __slots__ = (
        "pair_interval_s",
        "store_rate_per_s",
        "store_burst",
        "_ready",
        "_delayed",
        "_delayed_entries",
        "_gates",
        "_gate_sweep_at",
        "_gated",
        "_pair_next",
        "_pair_sweep_at",
        "_marker_seq",
    )

    def __init__(
        self,
        *,
        pair_interval_s: float = 0.0,
        store_rate_per_s: float | None = None,
        store_burst: float = 1.0,
    ) -> None:
        self.pair_interval_s = pair_interval_s
        self.store_rate_per_s = store_rate_per_s
        self.store_burst = store_burst
        self._ready: list[tuple[float, int, Entry]] = []
        self._delayed: list[tuple[float, int, Entry | _Gate]] = []
        self._delayed_entries = 0
        self._gates: dict[str, _Gate] = {}
        self._gate_sweep_at = _SWEEP_MIN
        self._gated = 0
        self._pair_next: dict[tuple[str, str], float] = {}
        self._pair_sweep_at = _SWEEP_MIN
        # Markers need unique, increasing tie-breakers that never collide with entry seqs' ordering
        # needs; negative numbers keep them apart and ordered among themselves.
        self._marker_seq = 0

    # -- sizes -------------------------------------------------------------------------------
    @property
    def ready_count(self) -> int:
        """Messages that may go as soon as the rate limit and concurrency allow (incl. store-gated)."""
        return len(self._ready) + self._gated

    @property
    def delayed_count(self) -> int:
        """Messages waiting for a time: back-off or pair spacing."""
        return self._delayed_entries

    def __len__(self) -> int:
        return len(self._ready) + self._gated + self._delayed_entries

    # -- admission ---------------------------------------------------------------------------
    def push(self, entry: Entry, now: float) -> None:
        """Make ``entry`` eligible now (through its store's gate when per-store limits are on)."""
        if self.store_rate_per_s is None:
            heapq.heappush(self._ready, (-entry.message.priority, entry.seq, entry))
            return
        store = entry.message.store
        gate = self._gates.get(store)
        if gate is None:
            if len(self._gates) >= self._gate_sweep_at:
                self._sweep_gates(now)
            gate = self._gates[store] = _Gate(store, TokenBucket(self.store_rate_per_s, self.store_burst, now))
        heapq.heappush(gate.pending, (-entry.message.priority, entry.seq, entry))
        self._gated += 1
        self._release(gate, now)

    def defer(self, entry: Entry, due: float) -> None:
        """Hold ``entry`` until ``due`` (unix seconds), then make it eligible again."""
        heapq.heappush(self._delayed, (due, entry.seq, entry))
        self._delayed_entries += 1

    def promote(self, now: float) -> None:
        """Move everything due at ``now`` out of the delayed heap."""
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, _, item = heapq.heappop(delayed)
            if isinstance(item, _Gate):
                item.scheduled = False
                self._release(item, now)
            else:
                self._delayed_entries -= 1
                self.push(item, now)

    def next_due(self) -> float | None:
        """When the earliest delayed item falls due (unix seconds), or None."""
        return self._delayed[0][0] if self._delayed else None

    # -- the head of the queue ----------------------------------------------------------------
    def peek(self) -> Entry | None:
        """The entry that would go next, without removing it."""
        return self._ready[0][2] if self._ready else None

    def pop(self) -> Entry:
        """Remove and return the head entry; follow with :meth:`on_dispatched` or :meth:`on_dropped`."""
        return heapq.heappop(self._ready)[2]

    def on_dispatched(self, entry: Entry, now: float) -> None:
        """The popped ``entry`` goes out at ``now``: spend its store token, mark its recipient pair."""
        message = entry.message
        if self.pair_interval_s > 0:
            self.hold_recipient(message.store, message.to, now + self.pair_interval_s, now)
        if self.store_rate_per_s is not None:
            gate = self._gates[message.store]
            gate.bucket.try_take(now)
            gate.released -= 1
            self._release(gate, now)

    def on_dropped(self, entry: Entry, now: float) -> None:
        """The popped ``entry`` did not go out (cancelled, or deferred): give back its release slot."""
        if self.store_rate_per_s is not None:
            gate = self._gates[entry.message.store]
            gate.released -= 1
            self._release(gate, now)

    # -- recipient pairs ----------------------------------------------------------------------
    def pair_free_at(self, message: Message, now: float) -> float | None:
        """When the next message to ``message``'s recipient may go, if that is later than ``now``."""
        if not self._pair_next:
            return None
        at = self._pair_next.get((message.store, message.to))
        return at if at is not None and at > now else None

    def hold_recipient(self, store: str, to: str, until: float, now: float) -> None:
        """Send nothing more to ``(store, to)`` before ``until`` (unix seconds; ``now`` is the time)."""
        pair_next = self._pair_next
        key = (store, to)
        if pair_next.get(key, -math.inf) < until:
            pair_next[key] = until
        if len(pair_next) >= self._pair_sweep_at:
            # Amortised O(1): the table is rebuilt only after it doubles. Only holds that have ended go:
            # ``until`` may be a provider's back-off hours ahead, which must not end the others early.
            self._pair_next = {k: v for k, v in pair_next.items() if v > now}
            self._pair_sweep_at = max(_SWEEP_MIN, 2 * len(self._pair_next))

    # -- shutdown -----------------------------------------------------------------------------
    def drain_all(self) -> list[Entry]:
        """Remove and return every held entry (in no particular order); the scheduler is empty after."""
        entries = [item for _, _, item in self._ready]
        for gate in self._gates.values():
            entries.extend(item for _, _, item in gate.pending)
        entries.extend(item for _, _, item in self._delayed if isinstance(item, Entry))
        self._ready.clear()
        self._delayed.clear()
        self._gates.clear()
        self._gated = 0
        self._delayed_entries = 0
        return entries

    # -- store gates --------------------------------------------------------------------------
    def _release(self, gate: _Gate, now: float) -> None:
        tokens = gate.bucket.tokens(now)
        available = math.floor(tokens + EPSILON) - gate.released
        while available > 0 and gate.pending:
            item = heapq.heappop(gate.pending)
            heapq.heappush(self._ready, item)
            self._gated -= 1
            gate.released += 1
            available -= 1
        if gate.pending and not gate.scheduled and gate.released + 1 <= gate.bucket.burst:
            # Wake when one more token than is already promised to released messages exists. When
            # every token up to burst is promised, a dispatch or drop calls back here instead.
            due = now + gate.bucket.delay_s(now, gate.released + 1)
            self._marker_seq -= 1
            heapq.heappush(self._delayed, (due, self._marker_seq, gate))
            gate.scheduled = True

    def _sweep_gates(self, now: float) -> None:
        self._gates = {
            store: gate
            for store, gate in self._gates.items()
            if gate.pending or gate.released or gate.scheduled or not gate.bucket.is_full(now)
        }
        self._gate_sweep_at = max(_SWEEP_MIN, 2 * len(self._gates))
