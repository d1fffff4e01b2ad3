"""The cart actor: one slotted object per cart, a deterministic state machine returning effects.

Lifecycle::

                cart.updated / checkout.started: new contents, no timer operation
                    .---.
                    |   v
   first event --> [ active ] --- idle for abandon_after, or session.ended / ---> [ abandoned ]
                    ^ ^   |        payment.failed, while not empty                     |
                    | |   |                                              first intent   |
                    | |   |                                              issued         v
                    | +---|--- cart.updated: the run pauses (also from abandoned) - [ recovering ]
                    |     |                                                            |
                    |     +--- order.completed, no message credited ----> [ converted ] <--+ (from abandoned
                    |                                                                    |    or recovering)
                    |          order.completed within the attribution   --> [ recovered ] <-+
                    |          window of the last message sent                  ^          |
                    |                                                           | late     |
                    |          expire_after since abandonment ------------> [ expired ] <--+
                    |                                                       order within
                    +------- cart.updated, from any final state: a new session  the window

   cart.cleared, from any state ----------------------------------------------> [ cleared ]
   (so does an active cart left empty for abandon_after, without the "cleared" metric)

============  =================================================  ===========================================
from          event or timer                                     to
============  =================================================  ===========================================
active        update (contents; timer left alone)                active
active        idle timer, ``seen + abandon_after`` passed        abandoned (run n+1, resuming a paused run),
                                                                 or cleared if empty
active        session.ended / payment.failed, not empty          the same, at the event's time
abandoned     a step issues its first intent                     recovering
in a run      update                                             active (the run pauses; held sends dropped)
in a run      ``expire_after`` since abandonment                 expired
any but final order.completed, a sent message within the window  recovered, else converted
expired,      order.completed, a sent message within the window  recovered, else converted (a shop that
cleared                                                          clears the cart before sending the order)
final         update                                             active (run numbers keep growing)
any           cart.cleared                                       cleared
final         tombstone timer (``attribution_window`` later)     dropped from memory (run 0: at once)
============  =================================================  ===========================================

States: ``active`` (shopping), ``abandoned`` (a run started, nothing sent yet), ``recovering`` (the run
issued at least one message), ``recovered`` (bought after a message, within the attribution window),
``converted`` (bought, no message credited), ``expired`` (the run ran out), ``cleared`` (emptied by the
shop). A *run* is one pass through the flow; run numbers are part of every idempotency key
``store:cart:run:step:channel``; each abandonment starts a new run, so its keys are fresh. A shopper who
comes back during a run *pauses* it (DESIGN.md: "a cart that was in recovery returns to active (the flow
pauses)"): when the cart is abandoned again before that run would have expired, the new run resumes the
sequence after the last message that went out, spaced from it as the flow spaces them, so nobody gets
the same reminder twice (see :meth:`CartActor._abandon`).

Time. ``now`` is the engine clock (unix seconds); events carry ``ts``. An event's effective time is
``t = max(seen, min(ts, now))``: an event cannot be later than the engine's now (a skewed shop clock is
clamped), and an event older than what the cart already saw (out of order) is still applied — its
contents replace the cart's, an order still converts — but at the cart's current time ``seen``, which
never moves backwards. One exception: a cart update stamped in the past (``ts < now``) and no newer
than ``seen`` does not reopen a cart that is in a run or final. It reports activity the cart already
knew of, from before the abandonment or the purchase (a late event, or one a client sends again after a
restart, possibly after the engine forgot its id), so it is ignored there instead of cancelling the
run and starting a new one. Abandonment and flow steps are anchored at those times (abandoned at
``seen + abandon_after``, step ``k`` at ``abandoned_at + after_k``), not at when a timer happens to fire,
so a late timer (100 ms ticks, or a restart after downtime) sends late but never shifts the schedule.

Empty carts are never abandoned; an active cart that stays empty for ``abandon_after`` is forgotten as
if it had been cleared (without counting it as cleared), so carts emptied by ``cart.updated`` do not
stay in memory forever.

One timer per cart (the idle-timer trick, DESIGN.md principle 3). ``due`` holds the due time of the one
pending wheel timer (None: no timer). A cart update on an active cart that already has a timer only
records ``seen`` and returns None: no wheel operation, no allocation. When that timer fires early, the
cart computes its real deadline and re-arms for the remainder. Any firing is treated as "re-evaluate
now", so a timer firing late, early or twice never breaks the machine. The runtime keeps the wheel handle
in ``timer``; the actor never reads it.

Memory (DESIGN.md principle 4): 10 slots and no per-cart containers on the hot path. The contents
(items, value, currency, checkout_url) are one msgpack ``bytes`` (``blob``; bytes are not tracked by the
collector) unpacked only when a step fires or the admin asks. The run attributes (``run``, ``done``,
``since``, ``held`` postponed sends, ``touch`` attribution data) are one more ``bytes``
(``packed_run``), None until the cart first abandons (see :class:`CartActor`).

Progress through the flow. A run records the step *numbers* it has handled (``done``, bit ``k - 1`` for
step ``k``: sent, postponed or skipped), not a position in ``store.schedule``: the schedule's order
depends on the store's config (``whatsapp_delay`` moves the WhatsApp step after the 4 h one), which may
change across a restart, and a position would then point at another step (one already sent, while the
one after it is never sent). The next step is the first schedule entry not in ``done``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from actors.effects import CANCEL, METRIC, SCHEDULE
from actors.packing import packb as _packb
from actors.packing import unpackb as _unpackb
from actors.states import FINAL_STATES, IN_RUN, CartState
from actors.steps import log_record, run_channel, run_step_conditions

if TYPE_CHECKING:
    from actors.stores import StoreRules

__all__ = ["CartActor", "CartState", "FINAL_STATES", "STOP_EVENT", "TAG_IDLE", "TAG_STEP", "TAG_PURGE"]


_INF = math.inf
#: A due time within this many seconds of ``now`` counts as reached. The wheel converts seconds to 100 ms
#: ticks and back; at unix-time magnitudes that rounding can fire a timer a fraction of a microsecond
#: before its due time, and re-arming for such a remainder would fire again at once, forever (on a manual
#: clock). One microsecond is far below any tick and far above float resolution (~0.2 us at 1.7e9 s).
_EPS_S = 1e-6


ACTIVE, ABANDONED, RECOVERING = CartState.ACTIVE, CartState.ABANDONED, CartState.RECOVERING
RECOVERED, CONVERTED, EXPIRED, CLEARED = CartState.RECOVERED, CartState.CONVERTED, CartState.EXPIRED, CartState.CLEARED
_IN_RUN = IN_RUN
_STATE_OF: dict[str, CartState] = {s.value: s for s in CartState}

#: The event type of an operator's "stop this run" (admin ``cancel``). Internal: ingest rejects it as an
#: unknown type, so only the engine itself can apply it.
STOP_EVENT = "run.stopped"

#: Timer tags (informational: the cart's state says what a firing means).
TAG_IDLE = 1  #: inactivity check of an active cart
TAG_STEP = 2  #: next step, postponed send or expiry of a run
TAG_PURGE = 3  #: a final cart's tombstone may be dropped

# flag bits
NONEMPTY = 1  #: the cart has at least one item
HIGH_INTENT = 2  #: checkout.started was seen
PAYMENT_FAILED = 4  #: payment.failed was seen
#: the current run resumed a paused one (:meth:`CartActor._abandon`): its last message may be an earlier
#: run's of the same recovery attempt, which a further pause and abandonment resumes after as well
RESUMED = 8

_EMPTY_BLOB = _packb([[], 0.0, None, None])


def _value_of(items: list[Any]) -> float:
    """Cart value from its items when the event carries none: sum of qty * price."""
    total = 0.0
    for item in items:
        try:
            total += float(item.get("qty", 1)) * float(item.get("price", 0.0))
        except (TypeError, ValueError, AttributeError):
            continue
    return total


#: the run attributes' initial values: ``[run, -done, since, held, touch]`` (see :class:`CartActor`)
NO_RUN: tuple[Any, ...] = (0, 0, None, None, None)
_NO_RUN_LIST = list(NO_RUN)


def _thaw(i: int, value: Any) -> Any:
    """A run attribute as the actor uses it: held sends and the last message as tuples (msgpack gives lists)."""
    if value is None:
        return None
    if i == 3:
        return tuple(tuple(h) for h in value)
    if i == 4:
        return tuple(value)
    return value


def pack_run(fields: list[Any]) -> bytes | None:
    """``packed_run`` for ``[run, -done, since, held, touch]``: None when they are the initial values.

    ``done`` is stored negated: snapshots written before it existed hold a position in the store's
    schedule there (0 or more), which :func:`stored_done` tells apart and converts.
    """
    return None if fields == _NO_RUN_LIST else _packb(fields)


def position_dones(schedule: tuple[tuple[float, int, Any], ...]) -> list[int]:
    """The stored (negated) ``done`` of each old schedule position ``0..len(schedule)``: the step numbers
    of the entries before it, in the current schedule (the best available: the old one is not known)."""
    dones = [0]
    mask = 0
    for _, step_no, _ in schedule:
        mask |= 1 << (step_no - 1)
        dones.append(-mask)
    return dones


def stored_done(value: int, schedule: tuple[tuple[float, int, Any], ...]) -> int:
    """The stored ``done`` field of a snapshot's run: as is when it is one (0 or negative), else (an older
    snapshot's position in the schedule) converted by :func:`position_dones`."""
    if value <= 0:
        return value
    return position_dones(schedule)[min(value, len(schedule))]


def _next_step(schedule: tuple[tuple[float, int, Any], ...], done: int) -> int:
    """Index of the first entry of ``schedule`` whose step is not in ``done`` (``len(schedule)``: none)."""
    if not done:
        return 0  # the run's first step (or a schedule with nothing handled yet): no scan
    i = 0
    for _, step_no, _ in schedule:
        if not done >> (step_no - 1) & 1:
            return i
        i += 1
    return i


#: the last ``packed_run`` unpacked, and its fields thawed: ``[packed, fields]``. A timer's firing reads
#: the run attributes about twenty times (``_advance``, ``run_channel``, log records), each read used to
#: unpack the bytes again (~0.5 us; 10 us of a firing's 27). Bytes are immutable, so the same object
#: always means the same fields, whichever cart holds it: the cache cannot go stale, only miss.
_LAST_RUN: list[Any] = [None, list(NO_RUN)]


def _run_fields(packed: bytes) -> list[Any]:
    """The thawed ``[run, -done, since, held, touch]`` of ``packed`` (shared: callers must not mutate it)."""
    last = _LAST_RUN
    if packed is last[0]:
        return last[1]  # type: ignore[no-any-return]
    raw = _unpackb(packed)
    fields = [raw[0], raw[1], raw[2], _thaw(3, raw[3]), _thaw(4, raw[4])]
    last[0] = packed
    last[1] = fields
    return fields


def _put_run_field(actor: CartActor, i: int, value: Any) -> None:
    """Write the stored run field ``i`` of ``actor`` (packs ``packed_run`` again)."""
    packed = actor.packed_run
    if packed is None:
        if value is NO_RUN[i] or (i < 2 and value == 0):
            return  # still all initial
        fields = list(NO_RUN)
    else:
        fields = list(_run_fields(packed))
    fields[i] = _thaw(i, value)
    packed = actor.packed_run = pack_run(fields)
    if packed is not None:
        _LAST_RUN[0] = packed
        _LAST_RUN[1] = fields


def _run_field(i: int, name: str) -> property:
    def get(self: CartActor) -> Any:
        packed = self.packed_run
        return NO_RUN[i] if packed is None else _run_fields(packed)[i]

    def put(self: CartActor, value: Any) -> None:
        _put_run_field(self, i, value)

    return property(get, put, doc=f"The run attribute ``{name}`` (packed in ``packed_run``).")


def _get_done(self: CartActor) -> int:
    packed = self.packed_run
    return 0 if packed is None else -_run_fields(packed)[1]  # type: ignore[no-any-return]


def _put_done(self: CartActor, value: int) -> None:
    _put_run_field(self, 1, -value)


_DONE = property(_get_done, _put_done, doc="The run attribute ``done`` (stored negated in ``packed_run``).")


class CartActor:
    """One cart. Built by the registry; driven by :meth:`handle` and :meth:`on_timer`.

    Attributes:
        store: the store's :class:`~actors.stores.StoreRules` (shared).
        cart: the cart id.
        profile: the shopper's profile id (in ``store.profiles``), or None.
        blob: packed ``[items, value, currency, checkout_url]``.
        state: a :class:`CartState`.
        flags: bit set (non-empty, high intent, payment failed, the run resumed a paused one).
        seen: the cart's clock: the latest effective event time (unix seconds).
        due: due time of the pending timer (unix seconds), None when there is none.
        timer: the runtime's wheel handle; never read by the actor.
        run: the current (or last) run number, 0 before the first abandonment.
        done: bit set of the step numbers the run has handled (bit ``k - 1``: step ``k``), 0 when none.
        since: abandonment time of the current run (unix seconds), None when not in a run.
        held: None, or a sorted tuple of ``(due_s, step_no, channel)`` postponed sends.
        touch: None, or ``(run, step_no, channel, at_s)`` of the last message sent (for attribution),
            followed by the same four of the message of an earlier step sent before it, if any: an
            order placed before the last message went out (its event arrived late) is attributed to
            that one.

    The five run attributes (``run`` to ``touch``) live packed in one slot, ``packed_run``: None while
    they all have their initial values (a cart that never ran a flow: the common case among carts
    being filled), else msgpack bytes of ``[run, -done, since, held, touch]`` (see :func:`pack_run`).
    They are properties: reading one unpacks (~0.3 µs; the last bytes unpacked are remembered, so a
    firing that reads them twenty times unpacks once), writing one packs again; only the flow's paths
    (abandonment, steps, deliveries) use them, never a cart update. Measured: 32 bytes less per active cart (four slots), and
    for a cart in a run that has sent a message 64 bytes of ``packed_run`` instead of 152 of floats,
    tuples and slots.
    """

    __slots__ = ("store", "cart", "profile", "blob", "state", "flags", "seen", "due", "timer", "packed_run")

    def __init__(self, store: StoreRules, cart: str, profile: str | None, seen: float) -> None:
        self.store = store
        self.cart = cart
        self.profile = profile
        self.blob = _EMPTY_BLOB
        self.state = ACTIVE
        self.flags = 0
        self.seen = seen
        self.due: float | None = None
        self.timer: Any = None
        self.packed_run: bytes | None = None

    run: int = _run_field(0, "run")  # type: ignore[assignment]
    done: int = _DONE  # type: ignore[assignment]
    since: float | None = _run_field(2, "since")  # type: ignore[assignment]
    held: tuple[tuple[float, int, str], ...] | None = _run_field(3, "held")  # type: ignore[assignment]
    touch: tuple[Any, ...] | None = _run_field(4, "touch")  # type: ignore[assignment]

    # ------------------------------------------------------------------ contents
    def contents(self) -> tuple[list[dict[str, Any]], float, str | None, str | None]:
        """``(items, value, currency, checkout_url)`` unpacked from the blob."""
        items, value, currency, url = _unpackb(self.blob)
        return items, value, currency, url

    def _set_contents(self, event: Mapping[str, Any]) -> None:
        items = event.get("items")
        value = event.get("value")
        currency = event.get("currency")
        url = event.get("checkout_url")
        if items is None or value is None or currency is None or url is None:
            # A partial update: keep what the event does not say (rare; costs one unpack).
            old_items, old_value, old_currency, old_url = self.contents()
            if items is None:
                items = old_items
            if value is None:
                value = _value_of(items) if "items" in event else old_value
            if currency is None:
                currency = old_currency
            if url is None:
                url = old_url
        self.blob = _packb([items, value, currency, url])
        if items:
            self.flags |= NONEMPTY
        else:
            self.flags &= ~NONEMPTY

    # ------------------------------------------------------------------ events
    def handle(self, event: Mapping[str, Any], now: float) -> list[Any] | None:
        """Apply one validated event at engine time ``now``; returns effects or None.

        The registry has already linked the event's profile. Unknown event types are ignored.
        """
        ts = event.get("ts")
        t = now if ts is None or ts > now else ts
        # stale: stamped in the past and not newer than what the cart has already seen (a late event,
        # or one a client sends again after a restart)
        stale = t < now and t <= self.seen
        if t > self.seen:
            self.seen = t
        else:
            t = self.seen  # out of order (or same instant): applied at the cart's own time
        etype = event["type"]
        if etype == "cart.updated" or etype == "checkout.started":
            state = self.state
            if state is not ACTIVE:
                # A late or re-sent update reports activity from before the abandonment (or the purchase):
                # it does not bring the shopper back, so the run (or the final state) stands.
                return None if stale else self._reactivate(event, t, state, now)
            self._set_contents(event)
            if etype == "checkout.started":
                self.flags |= HIGH_INTENT
            if self.due is not None:
                return None  # the hot path: the pending timer re-arms itself when it fires
            return self._arm(t + self.store.flow.abandon_after_s, TAG_IDLE, [])
        if etype == "session.ended" or etype == "payment.failed":
            if etype == "payment.failed":
                self.flags |= PAYMENT_FAILED
            if self.state is not ACTIVE or not self.flags & NONEMPTY:
                return None  # already in a run, or final, or empty: nothing to abandon
            effects: list[Any] = []
            self._abandon(t, effects)
            self._advance(now, effects)
            return effects
        if etype == "order.completed":
            return self._order(event, t, now)
        if etype == "cart.cleared":
            return self._clear(t, now)
        if etype == STOP_EVENT:
            return self._stop(now)
        return None

    def _reactivate(self, event: Mapping[str, Any], t: float, state: CartState, now: float) -> list[Any] | None:
        """A cart update on a cart in a run or in a final state: back to active (the flow pauses).

        From a run, the run *pauses* (DESIGN.md): its postponed sends are cancelled, but it keeps its
        abandonment time (``since``, which marks an active cart as holding a paused run) and its last
        message, and the next abandonment resumes the sequence after that message (:meth:`_abandon`)
        instead of greeting the shopper with the first reminder again. Leaving a final state starts a new
        shopping session; other than from *expired*, flags and attribution data reset (an expired cart
        keeps its last message so that a later order is still attributed).
        """
        effects: list[Any] = []
        if state in _IN_RUN:
            self._drop_held(effects, "cancelled", "cart active again", now)
        elif state is not EXPIRED:
            self.touch = None  # an order consumed the attribution; a cleared cart forgot it
            self.flags = 0
        self._set_contents(event)
        if event["type"] == "checkout.started":
            self.flags |= HIGH_INTENT
        self.state = ACTIVE
        deadline = t + self.store.flow.abandon_after_s
        if self.due is None or self.due > deadline:
            self._arm(deadline, TAG_IDLE, effects)
        return effects or None

    def _abandon(self, at: float, effects: list[Any]) -> None:
        """The cart is abandoned at ``at``: run ``n + 1`` starts, resuming a paused run if there is one.

        A run paused by the shopper's return (:meth:`_reactivate`) and abandoned again before it would have
        expired (``since + expire_after``) *resumes*: the new run skips the steps up to the last one whose
        message went out in the paused run and goes on with the step after it, spaced from it as the flow
        spaces them (the run's start is ``at`` minus that step's ``after``). So the shopper gets the next
        message of the sequence, never the same reminder a second time. Steps after it run again, under the
        new run's keys: their messages did not go out (skipped, postponed, or cancelled in a channel's
        queue when the shopper came back). A resumed run counts as ``resumed``, not ``abandoned``: it is the
        same recovery attempt. A paused run older than that, or one that sent nothing, starts over.
        """
        since = self.since
        old_run = self.run
        self.run = old_run + 1
        self.state = ABANDONED
        if since is not None and at < since + self.store.flow.expire_after_s:  # a paused run resumes
            effects.append((METRIC, "resumed", 1))
            if self._resume(at, old_run):
                return
        else:
            effects.append((METRIC, "abandoned", 1))
            if self.flags & PAYMENT_FAILED:
                effects.append((METRIC, "abandoned.payment_failed", 1))
        self.flags &= ~RESUMED
        self.done = 0
        self.since = at

    def _resume(self, at: float, old_run: int) -> bool:
        """Set the new run (abandoned at ``at``) to go on after the paused run ``old_run``'s last messages;
        False when none went out in this recovery attempt (the caller starts the flow over).

        The last message went out in the paused run, or (a run that resumed one itself and was paused
        again before its next message) in the run it resumed. The steps sent: the last message's, and the
        one before it when it belongs to the same attempt (the same run, or the run the paused one
        resumed). Both count because a restart with another ``whatsapp_delay`` may have reordered the
        schedule since: 6 h -> 1 h 30 puts step 2, sent after step 3, before it. The run goes on after
        the later of them in the current order; of the steps before that, only those the paused run
        handled are skipped: a step the new order moved ahead (1 h 30 -> 6 h: step 3 now precedes step 2)
        was never reached, and goes next.
        """
        touch = self.touch
        if touch is None or (touch[0] != old_run and not self.flags & RESUMED):
            return False
        same_attempt = len(touch) > 4 and (touch[4] == touch[0] or (
            touch[0] == old_run and self.flags & RESUMED and touch[4] == old_run - 1))
        sent = (touch[1], touch[5]) if same_attempt else (touch[1],)
        schedule = self.store.schedule
        last = -1
        for i, entry in enumerate(schedule):
            if entry[1] in sent:
                last = i
        if last < 0:
            return False
        handled = self.done
        done = 0
        for _, step_no, _ in schedule[:last + 1]:
            bit = 1 << (step_no - 1)
            if handled & bit or step_no in sent:
                done |= bit
        self.done = done
        self.since = at - schedule[last][0]
        self.flags |= RESUMED
        return True

    def _order(self, event: Mapping[str, Any], t: float, now: float) -> list[Any] | None:
        state = self.state
        if state is CONVERTED or state is RECOVERED:
            return None  # a duplicate order: counted once
        effects: list[Any] = []
        self._drop_held(effects, "cancelled", "order completed", now)
        value = event.get("value")
        if value is None:
            value = self.contents()[1]
        touch = self.touch
        if touch is not None and t < touch[3] and len(touch) > 4:
            touch = touch[4:]  # bought before the last message went out (a late event): the one before it
        flow = self.store.flow
        if touch is not None and 0.0 <= t - touch[3] <= flow.attribution_window_s:
            step_no, channel = touch[1], touch[2]
            currency = self.contents()[2] or "XXX"  # the cart's (an order has none); ISO 4217 "no currency"
            self.state = RECOVERED
            effects += [
                (METRIC, "recovered", 1), (METRIC, "revenue", value),
                (METRIC, f"recovered.step.{step_no}", 1), (METRIC, f"recovered.channel.{channel}", 1),
                (METRIC, f"revenue.step.{step_no}", value), (METRIC, f"revenue.channel.{channel}", value),
                (METRIC, f"revenue.currency.{currency}", value),
            ]
        else:
            self.state = CONVERTED
            effects.append((METRIC, "converted", 1))
        self.blob = _EMPTY_BLOB  # a bought cart's contents are of no further use; the tombstone is small
        self._finish(t, effects)
        return effects

    def _stop(self, now: float) -> list[Any] | None:
        """An operator stopped the run (admin ``cancel``): it ends now as if it had run out, *expired*,
        which keeps its last message, so an order that follows is still attributed to it. Counted as
        ``stopped``, not ``expired``; the shop did not empty the cart, so not ``cleared`` either."""
        if self.state not in _IN_RUN:
            return None
        effects: list[Any] = []
        self._drop_held(effects, "cancelled", "cancelled by operator", now)
        self.state = EXPIRED
        effects.append((METRIC, "stopped", 1))
        self._finish(now, effects)
        return effects

    def _clear(self, t: float, now: float) -> list[Any] | None:
        if self.state is CLEARED or self.state is CONVERTED or self.state is RECOVERED:
            return None  # a shop clears a cart right after checkout: the purchase (and its record) stands
        effects: list[Any] = []
        self._drop_held(effects, "cancelled", "cart cleared", now)
        self.state = CLEARED
        self.blob = _EMPTY_BLOB
        self.flags = 0
        # ``touch`` stays: many shops clear the cart at checkout and send the order right after; the order
        # is still credited to the last message (a cart that ran a flow keeps its tombstone meanwhile)
        effects.append((METRIC, "cleared", 1))
        self._finish(t, effects, tombstone=False)  # DESIGN.md: "the cart is forgotten"
        return effects

    def _finish(self, t: float, effects: list[Any], *, tombstone: bool = True) -> None:
        """Enter a final state at ``t``: keep a tombstone until the attribution window has passed.

        The tombstone keeps the run counter (a reused cart id must never repeat a key), for expired carts
        the attribution data, and for every final cart the time it ended (``seen``): an event stamped
        before that and arriving late (a backlog, a client resending) finds the tombstone and is stale,
        instead of creating the cart afresh and running a flow after a purchase. A cart that never ran a
        flow and did not end in a purchase (``tombstone=False``: cleared, which DESIGN.md says forgets
        the cart, or idle and empty) is dropped at once.
        """
        self.since = None
        self.done = 0
        self.flags &= ~RESUMED  # the attempt is over: its last message is no later run's to resume after
        if self.run == 0 and not tombstone:
            self._disarm(effects)
        else:
            self._arm(t + self.store.flow.attribution_window_s, TAG_PURGE, effects)

    # ------------------------------------------------------------------ timers
    def _arm(self, due: float, tag: int, effects: list[Any]) -> list[Any]:
        self.due = due
        effects.append((SCHEDULE, self, due, tag))
        return effects

    def _disarm(self, effects: list[Any]) -> list[Any]:
        if self.due is not None:
            self.due = None
            effects.append((CANCEL, self))
        return effects

    def on_timer(self, tag: int, now: float) -> list[Any] | None:
        """The pending timer fired at ``now`` (maybe late, maybe early by design): re-evaluate.

        Returns effects, or None. After this call the cart has a pending timer only if the effects
        contain a SCHEDULE (the fired one is gone). A final cart returning no SCHEDULE is to be dropped.
        """
        fired_due = self.due
        self.due = None
        state = self.state
        if state is ACTIVE:
            deadline = self.seen + self.store.flow.abandon_after_s
            if now < deadline - _EPS_S:
                return self._arm(deadline, TAG_IDLE, [])  # fired early: the cart was updated meanwhile
            effects: list[Any] = []
            if not self.flags & NONEMPTY:
                # Idle and empty: never abandoned, but not kept forever either; forgotten like a cleared
                # cart (no metric: nobody cleared it).
                self.state = CLEARED
                self.touch = None
                self.flags = 0
                self._finish(deadline, effects, tombstone=False)
                return effects or None
            self._abandon(deadline, effects)
            self._advance(now, effects)
            return effects
        if state in _IN_RUN:
            effects = []
            self._advance(now, effects)
            return effects or None
        if fired_due is not None and now < fired_due - _EPS_S:
            return self._arm(fired_due, TAG_PURGE, [])
        return None  # a final cart's tombstone time is over: the registry drops it

    def _advance(self, now: float, effects: list[Any]) -> None:
        """Run everything of the current run that is due at ``now``, in due order, then re-arm.

        Order at equal times: postponed sends first, then the step, then expiry; but a send held for a
        channel of a step that is due now as well (at the same instant, or both overdue) is left to that
        step, which supersedes it: one message, not two at once. Each item is run at
        ``max(now, its due time)``, so that a timer fired a hair early (see ``_EPS_S``) still finds its
        window open and its frequency cap lifted.
        """
        store = self.store
        flow = store.flow
        schedule = store.schedule
        since = self.since
        assert since is not None
        expire_at = since + flow.expire_after_s
        contents = None
        horizon = now + _EPS_S
        n = len(schedule)
        done = self.done
        while True:
            held = self.held
            held_due = held[0][0] if held else _INF
            i = _next_step(schedule, done)
            step_due = since + schedule[i][0] if i < n else _INF
            if held_due <= step_due and held_due <= expire_at and not (
                step_due <= horizon and step_due <= expire_at and held[0][2] in schedule[i][2].channels  # type: ignore[index]
            ):
                if held_due > horizon:
                    break
                assert held is not None
                _, step_no, channel = held[0]
                self.held = held[1:] or None
                step = flow.steps[step_no - 1]
                run_channel(self, step_no, step, channel, max(now, held_due), expire_at, effects)
            elif step_due <= expire_at:
                if step_due > horizon:
                    break
                _, step_no, step = schedule[i]
                done |= 1 << (step_no - 1)
                self.done = done
                at = max(now, step_due)
                if step.has_condition:
                    if contents is None:
                        contents = self.contents()
                    if not run_step_conditions(self, step_no, step, contents, at, effects):
                        continue
                for channel in step.channels:
                    run_channel(self, step_no, step, channel, at, expire_at, effects)
            else:
                if expire_at > horizon:
                    break
                self._drop_held(effects, "skipped", "run ended", max(now, expire_at))
                self.state = EXPIRED
                effects.append((METRIC, "expired", 1))
                self._finish(expire_at, effects)
                return
        held = self.held
        held_due = held[0][0] if held else _INF
        i = _next_step(schedule, done)
        step_due = since + schedule[i][0] if i < n else _INF
        self._arm(min(held_due, step_due, expire_at), TAG_STEP, effects)

    def _drop_held(self, effects: list[Any], outcome: str, reason: str, at: float) -> None:
        """Forget every postponed send, logging each with ``outcome`` and ``reason`` at ``at``.

        ``at`` is never before the engine's ``now``: the message log is kept in time order (its expiry
        and its ``since`` queries rely on it), so a late event (stamped in the past) cancels at the
        time the engine learnt of it, as a queued message it cancels through ``still_wanted`` is.
        """
        held = self.held
        if held is None:
            return
        self.held = None
        for _, step_no, channel in held:
            effects.append(log_record(self, step_no, channel, outcome, reason, at))

    def hold(self, due: float, step_no: int, channel: str) -> None:
        """Add a postponed send; a held send of the same channel from an earlier step is replaced."""
        held = [h for h in (self.held or ()) if h[2] != channel]
        held.append((due, step_no, channel))
        held.sort()
        self.held = tuple(held)

    # ------------------------------------------------------------------ snapshots and introspection
    def to_state(self) -> list[Any]:
        """Plain msgpack-able values (the timer handle is not saved: ``due`` is enough to re-arm).

        ``[store, cart, profile, blob, state, flags, seen, due, run, -done, since, held, touch]``; the run
        fields in one unpack of ``packed_run`` (held sends and the last message come out as lists; ``done``
        negated, see :func:`pack_run`).
        """
        packed = self.packed_run
        return [
            self.store.id, self.cart, self.profile, self.blob, self.state.value, self.flags, self.seen, self.due,
            *(NO_RUN if packed is None else _unpackb(packed)),
        ]

    @classmethod
    def bought_unseen(cls, store: StoreRules, cart: str, t: float) -> tuple[CartActor, list[Any]]:
        """The tombstone of a cart bought at ``t`` before any of its own events arrived (the order overtook
        them), and the effects that arm its purge. A late update stamped before the order is then stale
        against it, instead of creating the cart and running a flow after the purchase. No metric: the
        engine never knew this cart as one to recover."""
        actor = cls(store, cart, None, t)
        actor.state = CONVERTED
        effects: list[Any] = []
        actor._finish(t, effects)
        return actor, effects

    @classmethod
    def from_state(cls, state: list[Any] | tuple[Any, ...], store: StoreRules) -> CartActor:
        """Rebuild a cart from :meth:`to_state`; ``store`` is the live shared rules object.

        The profile reference counts are the registry's business (:meth:`Registry.load_cart`).
        """
        _, cart, profile, blob, state_name, flags, seen, due, run, neg_done, since, held, touch = state
        actor = cls(store, cart, profile, seen)
        actor.blob = blob
        actor.state = _STATE_OF[state_name]  # a dict lookup: CartState(value) costs ~1.5 µs per cart
        actor.flags = flags
        actor.due = due
        actor.run = run
        actor.done = -stored_done(neg_done, store.schedule)  # a position, from an older snapshot: converted
        actor.since = since
        if held:
            n_steps = len(store.flow.steps)
            kept = tuple(sorted((d, s, c) for d, s, c in held if 1 <= s <= n_steps))  # the flow may have changed
            actor.held = kept or None
        actor.touch = None if touch is None else tuple(touch[:8])  # 4 values, or 8 with the message before
        return actor

    def describe(self) -> dict[str, Any]:
        """The cart for the admin ``cart STORE CART`` reply (cold path)."""
        items, value, currency, url = self.contents()
        return {
            "state": self.state.value, "run": self.run, "next_due": self.due, "store": self.store.id,
            "paused": self.state is ACTIVE and self.since is not None,
            "cart": self.cart, "profile": self.profile, "items": items,
            "value": value, "currency": currency, "checkout_url": url, "high_intent": bool(self.flags & HIGH_INTENT),
            "payment_failed": bool(self.flags & PAYMENT_FAILED), "seen": self.seen, "abandoned_at": self.since,
            "held": [list(h) for h in self.held or ()],
            "last_message": None if self.touch is None else dict(
                zip(("run", "step", "channel", "at"), self.touch[:4], strict=True)
            ),
        }

    def __repr__(self) -> str:
        return f"<CartActor {self.store.id}/{self.cart} {self.state.value} run={self.run} due={self.due}>"
