"""A hierarchical timing wheel (Varghese & Lauck, scheme 7) over flat arrays.

Definitions
-----------
Time is counted in integer *ticks* (the caller picks the tick length; the engine uses 100 ms). ``now``
is the last tick the wheel has processed: every timer due at or before ``now`` has fired.

The wheel has ``LEVELS = 8`` levels of ``SLOTS = 256`` slots. A slot of level ``l`` covers ``256**l``
consecutive ticks: level 0 has one slot per tick (25.6 s of 100 ms ticks in all), level 1 one per 256
ticks (so 30-minute abandonment timers sit there and cascade once), level 2 one per 65 536 ticks
(1.8 h), level 3 one per 16.8 M ticks (19 days). Eight levels cover every 64-bit tick, so there is no
overflow list and no clamping of far-future timers. 256 rather than Kafka's 20 or Linux's 64 slots:
in Python the per-timer cascade (a few cache misses) costs more than scanning a wider bitmap, and a
256-bit integer's lowest set bit is still one ``x & -x``.

Placement (the Linux "XOR" rule). A timer due at tick ``d > now`` goes to the lowest level ``l`` at
which ``d`` and ``now`` agree on every bit above that level's six slot bits, i.e.
``l = (bit_length(d ^ now) - 1) // 8``, in slot ``(d >> 8*l) & 255``. Its slot is then strictly
after ``now``'s slot at that level, inside the same level-``l+1`` block. Worked example, ``now = 300``:

======  ========  =====  ====  ===============================================
due     d ^ now   level  slot  what happens
======  ========  =====  ====  ===============================================
301     1         0      45    fires when now reaches 301
600     884       1      2     cascades at tick 512 to level 0, fires at 600
70000   69 724    2      1     cascades at 65 536 to level 1, at 69 888 to 0
======  ========  =====  ====  ===============================================

Advancing. ``advance(to)`` repeatedly finds the earliest *event tick*: the lowest occupied level-0 slot
after ``now`` (a firing), or for a higher level the first tick of its lowest occupied slot (a cascade:
that slot's timers are placed again, now on lower levels). Occupancy is one 256-bit integer per level,
so the next occupied slot is a bit trick, not a scan (the Linux wheel's bitmap). ``now`` then jumps
straight to that tick, so a jump over days costs time proportional to the timers fired and cascaded
(each timer cascades at most once per level), never to the ticks skipped. Timers in a level-0 slot are
all due at exactly that tick and sit in schedule order: a slot only ever receives timers from the one
higher slot that cascades into it, at the instant its block starts, before any timer can be placed
there directly. So ties fire in schedule order without sorting.

Timers scheduled at or before ``now`` (past due: a restore after downtime, or a zero delay) go to a
*ready* list that the next advance fires first, stably sorted by due tick.

Storage. A Python object per timer would put millions of GC-tracked objects in the heap (CPython's
cyclic collector then dominates: DESIGN.md principle 4), so a timer is an index into flat storage:
``_next``/``_prev`` (lists of indices), ``_due`` (``array('q')``) and ``_kt`` (one list, key at
``2*i``, tag at ``2*i + 1``, so one cache line serves both). The lists hold exactly one int object per
index (made when the index is first used, then only ever copied between list slots, never recomputed),
so a timer costs about 75 bytes and no GC-tracked object. Each bucket is a circular doubly-linked list
through ``_next``/``_prev`` with a sentinel index, so cancel is O(1) unlinking. Freed indices go on a
free list threaded through ``_next`` and are reused, so memory stays flat under churn.

Handles. A handle *is* the timer's index, the very int object the lists hold: arming a timer allocates
nothing for its owner to keep (a separate handle object would cost 32 bytes per cart). A fired or
cancelled timer's key slot is cleared, so cancelling twice or after firing is refused. An index is
reused, though, so a handle kept after its timer ended may name a later timer: :meth:`cancel`,
:meth:`reschedule` and :meth:`due_of` take the ``key`` the timer was armed with and refuse a handle
whose slot holds another key's timer (the engine always passes the cart). Keys therefore must not be
None.

Two ways to fire. :meth:`TimingWheel.expire` returns the due timers in batches (a level-0 slot at a
time) and is what the engine's tick loop uses: cheapest per timer, and its ``limit`` lets the loop
interleave firing with ingest. :meth:`TimingWheel.advance` is a generator yielding one timer at a time;
while it is suspended the caller may ``schedule`` and ``cancel`` freely (a fired cart re-arming
itself), a timer scheduled due at or before ``to`` fires within the same advance, and a timer
cancelled before the generator reaches it never fires.

Concurrency contract: single-threaded; no locking.

Costs. schedule, cancel: O(1). advance/expire: O(fired + cascaded + levels per event tick).
``next_event``: O(levels). ``next_due``: O(levels) plus one scan of the earliest bucket.
"""
from __future__ import annotations

from array import array
from collections.abc import Hashable, Iterator
from typing import Any

__all__ = ["TimingWheel", "SLOT_BITS", "SLOTS", "LEVELS", "MAX_TICK"]

SLOT_BITS = 8
SLOTS = 1 << SLOT_BITS
_MASK = SLOTS - 1
#: Due ticks are stored as signed 64-bit integers.
MAX_TICK = (1 << 63) - 1
_NIL = -1  # end of the free list
_INITIAL_CAPACITY = 1024
#: Levels needed for any 64-bit tick: 8 * 8 = 64 bits. All are allocated up front (2 048 sentinels),
#: so scheduling never checks whether a level exists.
LEVELS = 8
_READY = LEVELS * SLOTS  # sentinel index of the ready (past-due) list
_FIRST_TIMER = _READY + 1  # indices below are sentinels
#: One int object per sentinel index: the lists hold these, never fresh copies (see "Storage").
_SENTINEL = tuple(range(_FIRST_TIMER))
#: level of a timer from ``bit_length(due ^ now)``, and the shift of each level: table lookups are
#: cheaper than the arithmetic on the hot path.
_LEVEL_OF_BITS = tuple(max(b - 1, 0) // SLOT_BITS for b in range(65))
_SHIFT_OF_LEVEL = tuple(SLOT_BITS * level for level in range(LEVELS))


class TimingWheel:
    """All pending timers of a process, each a ``(due_tick, key, tag)``.

    Args:
        start_tick: the tick considered already processed (timers due at or before it are past due).
        tick_s: the tick length in seconds; kept for callers converting times (:meth:`to_tick`).
    """

    __slots__ = (
        "tick_s", "_now", "_next", "_prev", "_due", "_kt", "_free", "_top", "_count",
        "_occ", "_ready_sorted",
    )

    def __init__(self, start_tick: int = 0, *, tick_s: float = 0.1) -> None:
        if start_tick < 0:
            raise ValueError(f"start_tick must be >= 0, got {start_tick}")
        self.tick_s = tick_s
        self._now = start_tick
        self._next: list[int] = []
        self._prev: list[int] = []
        self._due = array("q")
        self._kt: list[Any] = []  # key of index i at 2*i, its tag at 2*i + 1
        self._free = _NIL
        self._count = 0
        # Indices 0 .. LEVELS*SLOTS-1 are the bucket sentinels (level l, slot s at l*64 + s), then
        # the ready list's sentinel; timers come after.
        self._new_sentinels(LEVELS * SLOTS + 1)
        self._occ = [0] * LEVELS  # occupancy bitmap per level (a bit may be stale after cancels)
        self._ready_sorted = True
        self._top = len(self._due)  # indices at or above it were never used
        self._extend(_INITIAL_CAPACITY)

    # ------------------------------------------------------------------ storage
    def _extend(self, n: int) -> int:
        """Append ``n`` fresh indices to every array; return the first of them."""
        first = len(self._due)
        self._next.extend([0] * n)
        self._prev.extend([0] * n)
        self._due.frombytes(bytes(8 * n))
        self._kt.extend([None] * (2 * n))
        return first

    def _new_sentinels(self, n: int) -> int:
        """Allocate ``n`` empty circular buckets; returns the index of the first sentinel."""
        base = self._extend(n)
        nxt, prv = self._next, self._prev
        for i in range(base, base + n):
            nxt[i] = i
            prv[i] = i
        return base


    # ------------------------------------------------------------------ public API
    def __len__(self) -> int:
        """The number of pending timers."""
        return self._count

    @property
    def now(self) -> int:
        """The last processed tick."""
        return self._now

    def to_tick(self, seconds: float) -> int:
        """The first tick at or after ``seconds`` (same origin as the ticks, in seconds)."""
        t = int(seconds / self.tick_s)
        return t if t * self.tick_s >= seconds else t + 1

    def schedule(self, due_tick: int, key: Hashable, tag: Any = 0) -> int:
        """Arm a timer; returns its handle (an int). O(1).

        Args:
            due_tick: absolute tick at which it fires (an int, at most ``MAX_TICK``); at or before
                ``now`` means at the next advance.
            key: what the caller wants back when it fires (a cart actor, an id); not None. Never a
                closure.
            tag: a small value telling the key which of its timers this is (a small int is best).

        Raises:
            TypeError: ``due_tick`` is not an int.
            OverflowError: ``due_tick`` does not fit in 64 bits.
            ValueError: ``key`` is None.
        """
        if key is None:
            raise ValueError("a timer's key must not be None")
        idx = self._free
        nxt = self._next
        if idx == _NIL:
            # No recycled index: take a fresh one. Storage grows by a quarter at a time (amortised
            # O(1), at most 25 % slack), and an index's int object is only made when it is first used.
            idx = self._top
            if idx == len(self._due):
                self._extend(max(_INITIAL_CAPACITY, idx >> 2))
            # Written first: a bad due_tick raises here, before any state has changed.
            self._due[idx] = due_tick
            self._top = idx + 1
        else:
            self._due[idx] = due_tick
            self._free = nxt[idx]
        kt = self._kt
        kt[idx + idx] = key
        kt[idx + idx + 1] = tag
        now = self._now
        if due_tick > now:
            level = _LEVEL_OF_BITS[(due_tick ^ now).bit_length()]
            slot = (due_tick >> _SHIFT_OF_LEVEL[level]) & _MASK
            sentinel = _SENTINEL[(level << SLOT_BITS) | slot]
            self._occ[level] |= 1 << slot
        else:
            sentinel = _READY
            last = self._prev[sentinel]
            if last != sentinel and self._due[last] > due_tick:
                self._ready_sorted = False  # appended after a later-due timer: sort before firing
        prv = self._prev
        tail = prv[sentinel]
        nxt[tail] = idx
        prv[idx] = tail
        nxt[idx] = sentinel
        prv[sentinel] = idx
        self._count += 1
        return idx

    def schedule_many(self, due_ticks: list[int], keys: list[Any], tags: list[Any]) -> list[int]:
        """Arm many timers at once; returns their handles. The same as :meth:`schedule` for each
        triple, in order, at about a third of the cost per timer: no call per timer, the indices taken
        in one go (recycled ones first, then a run of fresh ones), the occupancy bitmaps updated once per
        slot rather than once per timer. The path of a restore, which re-arms millions of timers.

        Raises:
            ValueError: the lists differ in length, or a key is None.
            TypeError, OverflowError: a due tick is not an int that fits in 64 bits.
            Nothing is armed when it raises.
        """
        n = len(keys)
        if len(due_ticks) != n or len(tags) != n:
            raise ValueError(f"schedule_many: {len(due_ticks)} ticks, {n} keys and {len(tags)} tags")
        if any(k is None for k in keys):
            raise ValueError("a timer's key must not be None")
        array("q", due_ticks)  # every tick checked (in C) before anything changes
        due, kt, nxt, prv = self._due, self._kt, self._next, self._prev
        # indices: recycled ones first (as schedule would take them), then fresh ones from the top
        idxs: list[int] = []
        free = self._free
        while free != _NIL and len(idxs) < n:
            idxs.append(free)
            free = nxt[free]
        self._free = free
        fresh = n - len(idxs)
        if fresh:
            top = self._top
            short = top + fresh - len(due)
            if short > 0:
                self._extend(max(short, _INITIAL_CAPACITY, top >> 2))
            idxs.extend(range(top, top + fresh))
            self._top = top + fresh
        now = self._now
        level_of, shift_of, sentinels = _LEVEL_OF_BITS, _SHIFT_OF_LEVEL, _SENTINEL
        slots_of: list[set[int]] = [set() for _ in range(LEVELS)]
        for idx, due_tick, key, tag in zip(idxs, due_ticks, keys, tags):
            due[idx] = due_tick
            kt[idx + idx] = key
            kt[idx + idx + 1] = tag
            if due_tick > now:
                level = level_of[(due_tick ^ now).bit_length()]
                slot = (due_tick >> shift_of[level]) & _MASK
                sentinel = sentinels[(level << SLOT_BITS) | slot]
                slots_of[level].add(slot)
            else:
                sentinel = _READY
                last = prv[sentinel]
                if last != sentinel and due[last] > due_tick:
                    self._ready_sorted = False
            tail = prv[sentinel]
            nxt[tail] = idx
            prv[idx] = tail
            nxt[idx] = sentinel
            prv[sentinel] = idx
        occ = self._occ
        for level, slots in enumerate(slots_of):
            bits = 0
            for slot in slots:
                bits |= 1 << slot
            occ[level] |= bits
        self._count += n
        return idxs  # the handles: the indices themselves

    def _live(self, handle: int, key: Any = None) -> bool:
        """Whether ``handle`` names a pending timer (armed with ``key``, when one is given)."""
        if type(handle) is not int or handle < _FIRST_TIMER or handle >= self._top:
            return False
        held = self._kt[handle + handle]
        return held is not None and (key is None or held is key)

    def cancel(self, handle: int, key: Any = None) -> bool:
        """Disarm a timer. O(1). Returns False (and does nothing) if it already fired or was cancelled,
        or, given the ``key`` it was armed with, if its slot now holds another key's timer."""
        kt = self._kt
        # _live(), inline: the engine cancels on every purchase
        try:
            held = kt[handle + handle]
        except (IndexError, TypeError):
            return False
        if held is None or handle < _FIRST_TIMER or (key is not None and held is not key):
            return False
        idx = handle
        nxt, prv = self._next, self._prev
        before = prv[idx]
        after = nxt[idx]
        canonical = nxt[before]  # the one int object for this index (see "Storage")
        nxt[before] = after
        prv[after] = before
        nxt[idx] = self._free
        self._free = canonical
        kt[idx + idx] = None
        self._count -= 1
        return True

    def reschedule(self, handle: int, due_tick: int, tag: Any = None, key: Any = None) -> bool:
        """Move a pending timer to ``due_tick``, keeping its handle and key (and its tag unless a new
        ``tag`` is given). O(1).

        What a cart update costs without the idle-timer trick, in one call and without freeing and
        re-allocating the slot (the Linux wheel's ``mod_timer``). Returns False, and does nothing, when
        the handle is no longer pending (or, given ``key``, holds another key's timer). The moved timer
        counts as scheduled now for tie order.
        """
        kt = self._kt
        try:
            held = kt[handle + handle]
        except (IndexError, TypeError):
            return False
        if held is None or handle < _FIRST_TIMER or (key is not None and held is not key):
            return False
        idx = handle
        self._due[idx] = due_tick  # first: a bad due_tick raises before anything moved
        if tag is not None:
            kt[idx + idx + 1] = tag
        nxt, prv = self._next, self._prev
        before = prv[idx]
        after = nxt[idx]
        canonical = nxt[before]
        nxt[before] = after
        prv[after] = before
        # Placement as in schedule(), inlined on purpose: a shared helper costs a method call (about
        # a tenth of the operation) on the engine's most frequent timer operation.
        now = self._now
        if due_tick > now:
            level = _LEVEL_OF_BITS[(due_tick ^ now).bit_length()]
            slot = (due_tick >> _SHIFT_OF_LEVEL[level]) & _MASK
            sentinel = _SENTINEL[(level << SLOT_BITS) | slot]
            self._occ[level] |= 1 << slot
        else:
            sentinel = _READY
            last = prv[sentinel]
            if last != sentinel and self._due[last] > due_tick:
                self._ready_sorted = False
        tail = prv[sentinel]
        nxt[tail] = canonical
        prv[canonical] = tail
        nxt[canonical] = sentinel
        prv[sentinel] = canonical
        return True

    def due_of(self, handle: int, key: Any = None) -> int | None:
        """The due tick of a pending timer, or None if the handle is no longer pending."""
        return self._due[handle] if self._live(handle, key) else None

    def _release(self, idx: int) -> None:
        """Unlink ``idx`` from its bucket and put it on the free list."""
        nxt, prv = self._next, self._prev
        before = prv[idx]
        after = nxt[idx]
        canonical = nxt[before]
        nxt[before] = after
        prv[after] = before
        nxt[idx] = self._free
        self._free = canonical
        self._kt[idx + idx] = None
        self._count -= 1

    def next_due(self) -> int | None:
        """The due tick of the earliest pending timer (None when there is none). Exact.

        Past-due timers report their own (past) due tick. When the earliest timer sits above level 0
        this scans its bucket; an idle loop that only needs to know when to wake should call the O(1)
        :meth:`next_event` instead.
        """
        nxt, due = self._next, self._due
        best: int | None = None
        ready = _READY
        i = nxt[ready]
        while i != ready:
            if best is None or due[i] < best:
                best = due[i]
            i = nxt[i]
        if best is not None:
            return best
        # Every timer on level l is due before every timer on level l + 1 (same higher bits, later
        # slot), so the earliest sits in the lowest occupied slot of the lowest occupied level.
        for level in range(LEVELS):
            slot = self._lowest_slot(level)
            if slot < 0:
                continue
            sentinel = (level << SLOT_BITS) | slot
            i = nxt[sentinel]
            best = due[i]
            while i != sentinel:
                if due[i] < best:
                    best = due[i]
                i = nxt[i]
            return best
        return None

    def next_event(self) -> int | None:
        """The earliest tick at which :meth:`advance` has work: a firing or a cascade. O(levels).

        Never later than :meth:`next_due`; ``now`` (or earlier) when past-due timers wait. None when
        nothing is pending. This is what an idle loop sleeps until.
        """
        if self._next[_READY] != _READY:
            return self._now
        return self._next_event_tick()

    def _lowest_slot(self, level: int) -> int:
        """The lowest non-empty slot of ``level`` after ``now``'s slot, or -1; clears stale bits."""
        occ = self._occ[level]
        nxt = self._next
        base = level << SLOT_BITS
        while occ:
            low = occ & -occ
            slot = low.bit_length() - 1
            if nxt[base | slot] != base | slot:
                return slot
            occ ^= low  # stale bit: its bucket emptied through cancels
            self._occ[level] = occ
        return -1

    def _next_event_tick(self) -> int | None:
        """The earliest tick at which a level-0 slot fires or a higher slot cascades."""
        best: int | None = None
        now = self._now
        for level, occ in enumerate(self._occ):
            if not occ:
                continue
            slot = self._lowest_slot(level)
            if slot < 0:
                continue
            shift = SLOT_BITS * level
            block = ((now >> (shift + SLOT_BITS)) << (shift + SLOT_BITS)) | (slot << shift)
            if best is None or block < best:
                best = block
        return best

    def _sort_ready(self) -> None:
        """Relink the ready list in due order (stable, so ties keep schedule order)."""
        nxt, prv, due = self._next, self._prev, self._due
        ready = _READY
        order = []
        i = nxt[ready]
        while i != ready:
            order.append(i)
            i = nxt[i]
        order.sort(key=due.__getitem__)
        last = ready
        for i in order:
            nxt[last] = i
            prv[i] = last
            last = i
        nxt[last] = ready
        prv[ready] = last
        self._ready_sorted = True

    def _cascade(self, level: int, slot: int) -> None:
        """Empty one higher-level bucket, placing each timer again (always on a lower level)."""
        nxt, prv, due, occ = self._next, self._prev, self._due, self._occ
        sentinel = (level << SLOT_BITS) | slot
        occ[level] &= ~(1 << slot)
        now = self._now
        i = nxt[sentinel]
        if level == 1:
            # The common case (timers due within 1.8 h of 100 ms ticks sit on level 1): every timer
            # lands on level 0 in slot ``due & 255``, so skip the level arithmetic.
            bits = 0
            while i != sentinel:
                following = nxt[i]
                s = due[i] & _MASK
                target = _SENTINEL[s]
                bits |= 1 << s
                tail = prv[target]
                nxt[tail] = i
                prv[i] = tail
                nxt[i] = target
                prv[target] = i
                i = following
            occ[0] |= bits
            nxt[sentinel] = sentinel
            prv[sentinel] = sentinel
            return
        level_of, shift_of = _LEVEL_OF_BITS, _SHIFT_OF_LEVEL
        while i != sentinel:
            following = nxt[i]
            d = due[i]
            # d >= now here; d == now (due exactly at the block start) lands in level 0, slot now.
            lvl = level_of[(d ^ now).bit_length()]
            s = (d >> shift_of[lvl]) & _MASK
            target = _SENTINEL[(lvl << SLOT_BITS) | s]
            occ[lvl] |= 1 << s
            tail = prv[target]
            nxt[tail] = i
            prv[i] = tail
            nxt[i] = target
            prv[target] = i
            i = following
        nxt[sentinel] = sentinel
        prv[sentinel] = sentinel

    def _next_firing(self, to_tick: int) -> int:
        """Cascade up to the next level-0 firing tick at or before ``to_tick``; return its sentinel.

        Returns -1 (with ``now`` moved to ``to_tick``) when nothing fires up to ``to_tick``.
        """
        occ = self._occ
        while True:
            event = self._next_event_tick()
            if event is None or event > to_tick:
                if to_tick > self._now:
                    self._now = to_tick
                return -1
            self._now = event
            for level in range(LEVELS - 1, 0, -1):
                if occ[level]:
                    shift = SLOT_BITS * level
                    if event & ((1 << shift) - 1) == 0:
                        slot = (event >> shift) & _MASK
                        if occ[level] >> slot & 1:
                            self._cascade(level, slot)
            sentinel = event & _MASK
            if occ[0] >> sentinel & 1:
                occ[0] &= ~(1 << sentinel)
                if self._next[sentinel] != sentinel:
                    return sentinel

    def advance(self, to_tick: int) -> Iterator[tuple[Any, Any]]:
        """Move time to ``to_tick``, yielding ``(key, tag)`` of every timer due up to it, in due order.

        Past-due timers come first (by due tick), then each tick's timers in schedule order. The
        generator must be consumed for time to move; ``now`` ends at ``max(now, to_tick)``.
        """
        nxt, prv, kt = self._next, self._prev, self._kt
        while True:
            # 1. Past-due timers (and those scheduled at <= now while we were suspended).
            while nxt[_READY] != _READY:
                if not self._ready_sorted:
                    self._sort_ready()
                i = nxt[_READY]
                key, tag = kt[i + i], kt[i + i + 1]
                self._release(i)
                yield key, tag
            # 2. Jump to the next tick where something fires (cascading on the way).
            sentinel = self._next_firing(to_tick)
            if sentinel < 0:
                return
            # 3. Fire that level-0 bucket head first, so that a cancel from the caller between two
            #    yields still takes effect. _release is inlined: this is a hot loop.
            while True:
                i = nxt[sentinel]
                if i == sentinel:
                    break
                after = nxt[i]
                nxt[sentinel] = after
                prv[after] = sentinel
                nxt[i] = self._free
                self._free = i
                key = kt[i + i]
                kt[i + i] = None
                self._count -= 1
                yield key, kt[i + i + 1]

    def expire(self, to_tick: int, limit: int = 1 << 62) -> list[Any]:
        """Remove and return due timers as a flat list ``[key, tag, key, tag, ...]``, in due order.

        Fires everything due up to ``to_tick`` unless ``limit`` timers were taken first; then ``now``
        stays at the tick being fired and the next call continues from there (call again while
        ``next_event() <= to_tick``). Whole level-0 buckets are taken at once, so the batch may exceed
        ``limit`` by up to one bucket. The returned timers are already fired: cancelling them returns
        False. This is the engine's firing path: no generator, no per-timer unlinking.
        """
        out: list[Any] = []
        nxt, prv, kt = self._next, self._prev, self._kt
        if nxt[_READY] != _READY:
            if not self._ready_sorted:
                self._sort_ready()
            while nxt[_READY] != _READY and len(out) < 2 * limit:
                i = nxt[_READY]
                out.append(kt[i + i])
                out.append(kt[i + i + 1])
                self._release(i)
        append = out.append
        while len(out) < 2 * limit:
            sentinel = self._next_firing(to_tick)
            if sentinel < 0:
                break
            first = i = nxt[sentinel]
            n = 0
            while i != sentinel:
                j = i + i
                append(kt[j])
                append(kt[j + 1])
                kt[j] = None
                last = i
                i = nxt[i]
                n += 1
            # Splice the whole bucket onto the free list at once.
            nxt[last] = self._free
            self._free = first
            nxt[sentinel] = sentinel
            prv[sentinel] = sentinel
            self._count -= n
        return out

    def pending_per_level(self) -> list[int]:
        """Pending timers on each level (index 0 = level 0), then the ready list. O(pending)."""
        nxt = self._next
        counts = []
        for level in range(LEVELS + 1):
            n = 0
            for s in range(level << SLOT_BITS, min((level + 1) << SLOT_BITS, _READY + 1)):
                i = nxt[s]
                while i != s:
                    n += 1
                    i = nxt[i]
            counts.append(n)
        while len(counts) > 2 and counts[-2] == 0:
            del counts[-2]
        return counts

    def memory_bytes(self) -> int:
        """Bytes held by the wheel's arrays and lists (not the keys and tags they point to)."""
        import sys

        return sum(sys.getsizeof(a) for a in (self._next, self._prev, self._due, self._kt))

    def __repr__(self) -> str:
        return f"<TimingWheel now={self._now} pending={self._count} capacity={len(self._due)}>"
