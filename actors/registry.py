"""The registry: every cart actor and profile of a process, and the one object the runtime talks to.

API (all times are unix seconds on the engine clock; calls return effects or None, see
:mod:`actors.effects`)::

    reg = Registry(stores, flows, default_store=None)
    reg.apply(event, now)                 # one validated event (DESIGN.md "Events")
    reg.fire(actor, tag, now)             # the actor's wheel timer fired (the runtime cleared actor.timer)
    reg.still_wanted(intent, now)         # right before sending: None, or why it is cancelled
    reg.delivered(intent, outcome, now, detail="", invalidate_contact=False)   # -> [(LOG, record)]
    reg.cart(store, cart) / reg.profile(store, pid) / reg.rules(store)
    len(reg) / iter(reg) / reg.profiles() / reg.carts_by_state() / reg.statistics()
    reg.load_profile(store, state) / reg.load_cart(state)    # restore from to_state() snapshots

Stores. Events for a store that has no ``[stores.NAME]`` table get a copy of ``default_store`` (or, when
none is given, UTC, ``revenue_recovery``, no WhatsApp, unlimited credits, no incentive), made once per
store id and kept in :attr:`stores` while the store has carts or profiles (or credits other than the
default's, spent or adjusted): a copy is about 1 KB, and made-up store ids must not keep one each
forever. The engine should reject unknown stores at ingest if it does not want them at all.

Profiles live in their store's :class:`~actors.profiles.ProfileBook` (``reg.stores[s].profiles``);
carts hold the profile id. A profile map in a cart event or in ``profile.updated`` is merged in at once,
so an opt-out reaches every cart of the shopper before their next send. ``reg.profile`` returns an
unpacked copy.

Forgetting. A cart in a final state without a pending timer is removed from memory: at once when it never
ran a flow (run 0: bought or cleared while active), otherwise when its tombstone timer fires,
``attribution_window`` after it became final (the tombstone keeps the run counter so that a reused cart id
never repeats an idempotency key, and an expired cart's last message for a late attribution), or later,
when the cart is the last of its shopper and their frequency cap holds longer. Bought and
cleared carts drop their contents and their profile link at once (unless the cap holds). A profile known
only from carts' maps is forgotten when its last cart is; one the shop stated in a ``profile.updated``
stays (:data:`~actors.profiles.KEPT`): later events may cite it by id alone, and its consents must not
turn into an empty profile's "no consent" after the shopper's first cart is bought.

Events for an unknown cart other than ``cart.updated`` / ``checkout.started`` are ignored (there is
nothing to stop or attribute).

Counting. ``carts_by_state`` is kept incrementally: every call that hands an actor to the state machine
compares its state before and after (two attribute reads), so ``stats`` costs O(1) at millions of carts.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from actors.cart import TAG_IDLE, TAG_PURGE, TAG_STEP, CartActor
from actors.effects import LOG, METRIC, SCHEDULE, LogRecord, Outcome, SendIntent
from actors.flows import BUILTIN_FLOWS, CHANNELS, MAX_STEPS, Flow
from actors.profiles import Profile
from actors.states import FINAL_STATES, IN_RUN, CartState
from actors.steps import send_allowed_at
from actors.stores import StoreRules

__all__ = ["Registry", "redact"]

_intern = sys.intern
_CART_EVENTS = frozenset({"cart.updated", "checkout.started"})
_UNLINK = frozenset({CartState.CONVERTED, CartState.RECOVERED, CartState.CLEARED})
_STATE_NAMES = tuple(s.value for s in CartState)
_EMAIL = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")
_DIGITS = re.compile(r"\+?\d[\d\s().-]{6,}\d")
#: a step number as this engine writes it in a message id -> the number ("01" is not one: no int() of a
#: client's string, and no metric series per spelling)
_STEP_OF: dict[str, int] = {str(k): k for k in range(1, MAX_STEPS + 1)}
#: a message asked a hair before its window opens goes (a wheel's rounding fires timers up to a few float
#: ulps early; the actor counts that as due, and so does this check)
_EARLY_S = 1e-3
_CANCEL_REASON = {
    CartState.ACTIVE: "cart active again", CartState.CONVERTED: "cart converted", CartState.RECOVERED: "cart recovered",
    CartState.EXPIRED: "run ended", CartState.CLEARED: "cart cleared",
}


def _event_time(event: Mapping[str, Any], now: float) -> float:
    """An event's time at engine time ``now``: its ``ts``, never later than ``now`` (the clock's time
    when it has none)."""
    ts = event.get("ts")
    return now if ts is None or ts > now else ts


def _place(schedule: tuple[tuple[float, int, Any], ...], step_no: int) -> int:
    """Where step ``step_no`` fires in a store's schedule (0: first); a step the flow no longer has (it
    changed across a restart) after all of them, by number."""
    for i, entry in enumerate(schedule):
        if entry[1] == step_no:
            return i
    return len(schedule) + step_no


def redact(text: str) -> str:
    """Mask email addresses and phone-like digit runs in a provider's error text (it goes to the log)."""
    text = _EMAIL.sub("<email>", text)
    return _DIGITS.sub("<number>", text)


class Registry:
    """All carts and profiles of one engine process.

    Args:
        stores: the configured stores' rules, by store id.
        flows: every flow by name (built-in plus config); kept for the admin ``flows`` command.
        default_store: template rules for stores that are not configured (see module docstring).
    """

    __slots__ = ("stores", "flows", "_default", "_made", "_carts", "_counts", "_size", "on_unlink")

    def __init__(
        self, stores: Mapping[str, StoreRules] | None = None, flows: Mapping[str, Flow] | None = None, *,
        default_store: StoreRules | None = None,
    ) -> None:
        self.stores: dict[str, StoreRules] = dict(stores or {})
        self.flows: dict[str, Flow] = dict(flows if flows is not None else BUILTIN_FLOWS)
        self._default = default_store if default_store is not None else StoreRules("_default")
        self._made: set[str] = set()  #: ids of the stores in :attr:`stores` copied from the default
        self._carts: dict[str, dict[str, CartActor]] = {}
        self._counts: dict[CartState, int] = {s: 0 for s in CartState}
        self._size = 0
        #: called with ``(store, profile id)`` when a cart stops pointing at that profile (bought, cleared,
        #: forgotten, or moved to another profile): the snapshotter writes it, since no dirty cart will
        #: (a profile a cart event changed, and the cart left before the next cut, was lost with it)
        self.on_unlink: Callable[[str, str], None] | None = None

    # ------------------------------------------------------------------ lookup
    def rules(self, store: str) -> StoreRules:
        """The rules of ``store``, creating default ones for an unconfigured store id."""
        rules = self.stores.get(store)
        if rules is None:
            rules = self._default.for_store(store)
            self.stores[rules.id] = rules
            self._made.add(rules.id)
        return rules

    def restore_credits(self, saved: Mapping[str, Any]) -> None:
        """Email credit balances from a snapshot, where the config still limits the store's credits.

        A store the config now leaves unlimited (``credits`` removed) stays unlimited: the saved balance
        (0, say) is the old limit's. The config's number is a starting balance: a restart keeps the
        balance spent down (or topped up with the admin ``credits`` command) instead."""
        for sid, credits in saved.items():
            if self.stores.get(sid) is None and self._default.credits is None:
                continue  # an unconfigured store whose default rules are unlimited
            rules = self.rules(sid)
            if rules.credits is not None and type(credits) is int and credits >= 0:
                rules.credits = credits

    def cart(self, store: str, cart: str) -> CartActor | None:
        """The live actor of ``(store, cart)``, or None."""
        carts = self._carts.get(store)
        return None if carts is None else carts.get(cart)

    def profile(self, store: str, profile: str) -> Profile | None:
        """The profile ``(store, profile)`` unpacked (a copy: changes go through events), or None."""
        rules = self.stores.get(store)
        return None if rules is None else rules.profiles.get(profile)

    def __len__(self) -> int:
        """Number of live cart actors (tombstones included)."""
        return self._size

    def __iter__(self) -> Iterator[CartActor]:
        """Every live cart actor (for snapshots); do not add or remove carts while iterating."""
        for carts in self._carts.values():
            yield from carts.values()

    def profiles(self) -> Iterator[tuple[str, Profile]]:
        """Every profile as ``(store id, profile)`` (for snapshots)."""
        for store, rules in self.stores.items():
            for profile in rules.profiles:
                yield store, profile

    def carts_by_state(self) -> dict[str, int]:
        """Live carts per state name (every state present, zeros included). O(1)."""
        return {s.value: n for s, n in self._counts.items()}

    # ------------------------------------------------------------------ profiles
    @staticmethod
    def _profile_for(rules: StoreRules, ref: Any, cart: str, at: float | None) -> str | None:
        """The id of the profile an event's ``profile`` field refers to, merging a map into the book.

        An id alone refers to a profile the engine knows (an unknown one is created empty: no contact, no
        consent, so nothing is sent until a ``profile.updated`` says more). ``at`` is the event's time: a
        map older than what the profile took into account may withdraw a consent but not grant one (a late
        copy of an old cart update must not undo an opt-out; see ``actors.profiles._merge``).
        """
        if isinstance(ref, str):
            return rules.profiles.upsert(ref, None) if ref else None
        if type(ref) is dict or isinstance(ref, Mapping):  # (the ABC check alone costs ~0.1 us)
            pid = ref.get("id")
            if not isinstance(pid, str) or not pid:
                pid = "~" + cart  # an anonymous profile, private to this cart
            return rules.profiles.upsert(pid, ref, at)
        return None

    def _link(self, actor: CartActor, pid: str | None) -> None:
        """Point ``actor`` at profile ``pid`` (or at none), keeping the profiles' cart counts right."""
        old = actor.profile
        if old is pid or old == pid:
            return
        book = actor.store.profiles
        if pid is not None:
            book.incref(pid)
        actor.profile = pid
        if old is not None:
            book.decref(old)
            if self.on_unlink is not None:
                self.on_unlink(actor.store.id, old)

    # ------------------------------------------------------------------ events and timers
    def apply(self, event: Mapping[str, Any], now: float) -> list[Any] | None:
        """Apply one validated event (a dict as in DESIGN.md "Events") at engine time ``now``.

        Returns:
            Effects for the runtime, or None (the common case of an update to an active cart).
        """
        etype = event["type"]
        store = event["store"]
        if etype in _CART_EVENTS:
            cart_id = event["cart"]
            carts = self._carts.get(store)
            actor = None if carts is None else carts.get(cart_id)
            if actor is None:
                rules = self.rules(store)
                store = rules.id
                if carts is None:
                    carts = self._carts[store] = {}
                actor = CartActor(rules, cart_id, None, _event_time(event, now))
                carts[cart_id] = actor
                self._size += 1
                self._counts[CartState.ACTIVE] += 1
            ref = event.get("profile")
            # The common case costs one comparison: the cart already points at this profile id (so it is
            # in the book, which the cart's reference keeps it in).
            if ref is not None and (type(ref) is not str or ref != actor.profile):
                self._link(actor, self._profile_for(actor.store, ref, cart_id, _event_time(event, now)))
        elif etype == "profile.updated":
            ref = event.get("profile")
            pid = ref.get("id") if isinstance(ref, Mapping) else None
            if isinstance(pid, str) and pid:
                # the shop's own word about the shopper: kept without carts, for later events citing the id
                self.rules(store).profiles.upsert(pid, ref, _event_time(event, now), keep=True)
            return None
        elif etype == "message.opened" or etype == "message.clicked":
            return self._engagement(etype, event.get("message"), store)
        else:
            actor = self.cart(store, event.get("cart", ""))
            if actor is None:
                return self._bought_unseen(event, now) if etype == "order.completed" else None
        before = actor.state
        effects = actor.handle(event, now)
        after = actor.state
        if after is not before:
            self._moved(actor, before, after, now)
        return effects

    def _bought_unseen(self, event: Mapping[str, Any], now: float) -> list[Any] | None:
        """An order for a cart this engine does not know: remember it (:meth:`CartActor.bought_unseen`)."""
        cart_id = event.get("cart")
        if not isinstance(cart_id, str) or not cart_id:
            return None
        actor, effects = CartActor.bought_unseen(self.rules(event["store"]), cart_id, _event_time(event, now))
        self._add(actor)
        return effects

    def _add(self, actor: CartActor) -> None:
        """Put a cart no other holds the id of in the registry, counted in its state."""
        self._carts.setdefault(actor.store.id, {})[actor.cart] = actor
        self._size += 1
        self._counts[actor.state] += 1

    def fire(self, actor: CartActor, tag: int, now: float) -> list[Any] | None:
        """The wheel timer of ``actor`` fired at ``now``; ignored for an actor that is no longer live."""
        if self.cart(actor.store.id, actor.cart) is not actor:
            return None
        before = actor.state
        effects = actor.on_timer(tag, now)
        after = actor.state
        if after is not before:
            self._moved(actor, before, after, now)
        elif after in FINAL_STATES and actor.due is None:
            until = self._cap_lifts_at(actor, now, last_cart=True)
            if until is None:
                self._drop(actor)
            else:  # the tombstone holds the shopper's profile, and so their cap, until the cap lifts
                actor.due = until
                effects = [(SCHEDULE, actor, until, TAG_PURGE)]
        return effects

    def _moved(self, actor: CartActor, before: CartState, after: CartState, now: float) -> None:
        counts = self._counts
        counts[before] -= 1
        counts[after] += 1
        if after in _UNLINK and actor.profile is not None and self._cap_lifts_at(actor, now) is None:
            self._link(actor, None)  # a bought or cleared cart's tombstone does not need its shopper
        if after in FINAL_STATES and actor.due is None:
            self._drop(actor)

    @staticmethod
    def _cap_lifts_at(actor: CartActor, now: float, *, last_cart: bool = False) -> float | None:
        """When the frequency cap of the cart's shopper lifts, if it still remembers a recent message
        (within the cap); else None. With ``last_cart``, only when this cart is the last one keeping the
        profile.

        While the cap holds, a bought or cleared cart's tombstone keeps its profile, and a final cart that
        is the profile's last outlives its tombstone time (a cap longer than the attribution window, a
        weekly one say): forgetting the profile would forget its cap, and the shopper's next cart could
        be messaged within it.
        """
        cap_s = actor.store.flow.frequency_cap_s
        if cap_s <= 0 or actor.run == 0 or actor.profile is None:
            return None
        profile = actor.store.profiles.get(actor.profile)
        if profile is None or not profile.caps or (last_cart and profile.refs > 1):
            return None
        until = max(last[0] for last in profile.caps.values()) + cap_s  # type: ignore[union-attr]
        return until if now < until else None

    def _drop(self, actor: CartActor, *, forget_store: bool = True) -> None:
        """Forget a cart; with ``forget_store``, also its store's default rules if nothing is left of it."""
        carts = self._carts.get(actor.store.id)
        if carts is None or carts.get(actor.cart) is not actor:
            return
        del carts[actor.cart]
        if not carts:
            del self._carts[actor.store.id]
        self._size -= 1
        self._counts[actor.state] -= 1
        if actor.profile is not None:
            self._link(actor, None)
        if not carts and forget_store:
            self._forget_store(actor.store)

    def _forget_store(self, rules: StoreRules) -> None:
        """Drop the rules of an unconfigured store that has no carts, no profiles and the default's credits:
        a new event for it gets the same copy again, so nothing is lost."""
        sid = rules.id
        if (sid in self._made and sid not in self._carts and not len(rules.profiles)
                and rules.credits == self._default.credits and self.stores.get(sid) is rules):
            del self.stores[sid]
            self._made.discard(sid)

    def _engagement(self, etype: str, message: Any, store: str) -> list[Any] | None:
        """``message.opened`` / ``message.clicked``: count per step and channel (the id is the key).

        The id comes from a client: only one shaped like an id this engine gives (``store:cart:run:step:
        channel``, this store, a step of its flow written as the engine writes it, a channel a flow can
        use) is counted per step and channel, so that made-up ids cannot add metric series and stats
        entries without bound.
        """
        if not isinstance(message, str):
            return None
        parts = message.rsplit(":", 3)
        what = "opened" if etype == "message.opened" else "clicked"
        effects: list[Any] = [(METRIC, what, 1)]
        rules = self.stores.get(store, self._default)  # (no rules made for a store id only an id names)
        if (len(parts) == 4 and parts[0].startswith(store + ":") and parts[1].isascii() and parts[1].isdigit()
                and parts[3] in CHANNELS and _STEP_OF.get(parts[2], MAX_STEPS + 1) <= len(rules.flow.steps)):
            effects.append((METRIC, f"{what}.step.{parts[2]}", 1))
            effects.append((METRIC, f"{what}.channel.{parts[3]}", 1))
        return effects

    # ------------------------------------------------------------------ sends
    def still_wanted(self, intent: SendIntent, now: float) -> str | float | None:
        """Asked right before a message goes out: None to send it, a str saying why it is cancelled, or a
        float: the engine time to ask again at (it is held back until then).

        Cancelled when the cart is gone, left the intent's run (converted, recovered, cleared, back to
        active, expired), or the shopper withdrew consent, or the contact was invalidated or changed.
        Held back while the store's quiet hours or the step's send window forbid sending: they were
        checked when the message was issued, but a message can wait in its channel's queue (a paused
        channel, a rate limit, a provider outage) until they close.
        """
        actor = self.cart(intent.store, intent.cart)
        if actor is None:
            return "cart forgotten"
        if actor.run != intent.run:
            return "superseded by a newer run"
        if actor.state not in IN_RUN:
            return _CANCEL_REASON.get(actor.state, actor.state.value)
        if intent.channel == "webhook":  # no consent or contact, but quiet hours (in the shopper's zone with
            # send_in = "profile", as when the step issued it)
            profile = None if actor.profile is None else actor.store.profiles.get(actor.profile)
            return self._send_time(actor, intent, profile, now)
        if actor.profile != intent.profile or actor.profile is None:
            return "profile changed"
        profile = actor.store.profiles.get(actor.profile)
        if profile is None:
            return "profile forgotten"
        contact, reason = profile.reach(intent.channel)
        if contact is None:
            return "consent withdrawn" if reason.endswith("consent") else reason
        if contact != intent.contact:
            return "contact changed"
        return self._send_time(actor, intent, profile, now)

    @staticmethod
    def _send_time(actor: CartActor, intent: SendIntent, profile: Profile | None, now: float) -> str | float | None:
        """:meth:`still_wanted` for the clock: None to send now, the time to try again at, or why never."""
        store = actor.store
        steps = store.flow.steps
        if not 0 < intent.step <= len(steps):
            return None  # the flow changed since (a restart with another config): nothing to hold it to
        at = send_allowed_at(store, steps[intent.step - 1], profile, now)
        if at is None:
            return "the send window never falls outside the quiet hours"
        return None if at <= now + _EARLY_S else at

    def delivered(
        self, intent: SendIntent, outcome: str, now: float, *, detail: str = "", invalidate_contact: bool = False,
    ) -> list[Any] | None:
        """Record a delivery result; returns the LOG record of the outcome (its one log line).

        Args:
            intent: the intent as issued.
            outcome: ``"sent"``, ``"failed"``, ``"uncertain"`` or ``"cancelled"``.
            now: when the outcome became known.
            detail: provider detail or cancel reason for the log (emails and numbers are masked).
            invalidate_contact: the provider said the contact is dead (bounced address, unregistered push
                token, undeliverable number): that channel's contact is marked unusable on the profile.

        ``sent`` makes this the cart's last message for attribution (an *uncertain* one is not credited).
        ``cancelled`` gives back an email credit and the frequency-cap slot; ``failed`` gives back the cap slot.
        A message sent later than it was issued moves the shopper's cap to when it went out.
        """
        actor = self.cart(intent.store, intent.cart)
        rules = self.stores.get(intent.store)
        if outcome == Outcome.SENT:
            if actor is not None:
                self._touch(actor, intent, now)
            if rules is not None and intent.profile is not None and now > intent.created_at:
                profile = rules.profiles.get(intent.profile)  # (only a message that waited gets here)
                if profile is not None and profile.record_sent(intent.channel, intent.cart, intent.created_at, now):
                    rules.profiles.put(profile)
        elif (outcome == Outcome.CANCELLED or outcome == Outcome.FAILED or invalidate_contact) and rules is not None:
            if outcome == Outcome.CANCELLED and intent.channel == "email":
                rules.refund_credit()
            profile = None if intent.profile is None else rules.profiles.get(intent.profile)
            if profile is not None:
                changed = profile.forget_send(intent.channel, intent.cart, intent.created_at)
                if invalidate_contact:
                    profile.mark_invalid(intent.channel)
                    changed = True
                if changed:
                    rules.profiles.put(profile)
        record = LogRecord(
            id=intent.key, at=now, store=intent.store, cart=intent.cart, profile=intent.profile, run=intent.run,
            step=intent.step, channel=intent.channel, outcome=str(outcome), reason=redact(detail) if detail else "",
        )
        return [(LOG, record)]

    @staticmethod
    def _touch(actor: CartActor, intent: SendIntent, now: float) -> None:
        """Make ``intent`` the cart's last message unless a later one (or an earlier channel of the same
        step, which gets the credit for the step) is already recorded. Later: of a later run, or of a step
        further in the store's schedule (with ``whatsapp_delay = "6h"`` step 2 comes after step 3).

        The last message of an earlier step is kept behind it (``CartActor.touch``): an order event that
        arrives after the next message went out, but was placed before it, is attributed to that one.
        """
        touch = actor.touch
        last = (intent.run, intent.step, _intern(intent.channel), now)
        if touch is None:
            actor.touch = last
            return
        t_run, t_step, t_channel = touch[0], touch[1], touch[2]
        schedule = actor.store.schedule
        mine = (intent.run, _place(schedule, intent.step))
        if (t_run, _place(schedule, t_step)) > mine:
            # An earlier step's message: it may still be the one before the last (a late delivery, or a
            # whatsapp_delay changed during the run, which reorders the steps; a resumed run needs to
            # know that it went out: CartActor._abandon).
            if len(touch) <= 4 or (touch[4], _place(schedule, touch[5])) < mine:
                actor.touch = touch[:4] + last
            return
        if (t_run, t_step) == (intent.run, intent.step):
            steps = actor.store.flow.steps
            channels = steps[intent.step - 1].channels if 1 <= intent.step <= len(steps) else ()
            if t_channel in channels and intent.channel in channels and (
                channels.index(t_channel) <= channels.index(intent.channel)
            ):
                return
            actor.touch = last + touch[4:]  # the same step: the message before it stays the one before
            return
        actor.touch = last + touch[:4]

    # ------------------------------------------------------------------ snapshots
    def load_profile(self, store: str, state: list[Any] | tuple[Any, ...]) -> Profile:
        """Restore a profile from :meth:`Profile.to_state` (load profiles before carts, which count refs)."""
        profile = Profile.from_state(state)
        profile.refs = 0
        self.rules(store).profiles.put(profile)
        return profile

    def load_cart(self, state: list[Any] | tuple[Any, ...]) -> list[Any] | None:
        """Restore a cart from :meth:`CartActor.to_state`; returns the SCHEDULE of its pending timer.

        A past-due timer is scheduled anyway: the wheel fires it at the next tick (DESIGN.md principle 3).
        """
        rules = self.rules(state[0])
        actor = CartActor.from_state(state, rules)
        pid = actor.profile
        actor.profile = None
        if pid is not None and pid not in rules.profiles:
            rules.profiles.upsert(pid, None)
        old = self._carts.get(rules.id, {}).get(actor.cart)
        if old is not None:
            self._drop(old, forget_store=False)  # (``rules`` is about to hold ``actor``)
        self._add(actor)
        self._link(actor, pid)
        if actor.due is None:
            return None
        tag = TAG_IDLE if actor.state is CartState.ACTIVE else TAG_PURGE if actor.state in FINAL_STATES else TAG_STEP
        return [(SCHEDULE, actor, actor.due, tag)]

    def statistics(self) -> dict[str, Any]:
        """Counts for the admin ``stats`` reply."""
        return {
            "carts": self.carts_by_state(), "live": self._size, "stores": len(self.stores),
            "profiles": sum(len(r.profiles) for r in self.stores.values()),
        }

    def __repr__(self) -> str:
        counts = " ".join(f"{s.value}={n}" for s, n in self._counts.items() if n)
        return f"<Registry carts={self._size} {counts}>".replace(" >", ">")
