"""Running one flow step for one cart: conditions, eligibility, windows, frequency cap, credits, intent.

Called by :class:`~actors.cart.CartActor` when a step (or a send postponed earlier) falls due; never on the
cart-update hot path. For each channel of a step, in the step's order, the checks run in this order and
the first that fails decides (each outcome is one :class:`~actors.effects.LogRecord`):

1. a send still held for the same channel from an earlier step is replaced (*skipped*, "superseded");
2. the store can use the channel (WhatsApp configured), the profile has consent and a usable contact
   (*skipped*, with the reason; reasons never contain the contact);
3. send window and quiet hours, in the store's time zone or, with ``send_in = "profile"``, the shopper's:
   outside them the send is *postponed* to the next allowed instant, or *skipped* when that is after the
   run ends;
4. the per-profile frequency cap (another cart of the same shopper got this channel recently): per the
   flow's ``on_cap``, *skipped* ("drop") or *postponed* until the cap allows ("postpone");
5. email credits: an email with no credit left is *skipped* (never queued); a credit is spent here;
6. the :class:`~actors.effects.SendIntent` is issued (the frequency cap is recorded, the cart becomes
   *recovering*). Whether it went out is logged later from the delivery result.

Postponed sends are kept on the cart (``held``) and re-run through steps 2-6 when they fall due, so an
opt-out or a purchase in between is honoured.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgpack

from actors.durations import format_duration
from actors.effects import LOG, SEND, LogRecord, Outcome, SendIntent
from actors.scoring import urgency
from actors.states import CartState
from actors.windows import next_send_time

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from actors.cart import CartActor
    from actors.flows import Step
    from actors.profiles import Profile
    from actors.stores import StoreRules

__all__ = ["run_channel", "run_step_conditions", "log_record", "message_key", "send_allowed_at", "send_zone"]

_HIGH_INTENT = 2
_PAYMENT_FAILED = 4


def message_key(store: str, cart: str, run: int, step_no: int, channel: str) -> str:
    """The idempotency key ``store:cart:run:step:channel`` (also the message id of that message)."""
    return f"{store}:{cart}:{run}:{step_no}:{channel}"


def log_record(
    actor: CartActor, step_no: int | None, channel: str | None, outcome: str, reason: str, at: float,
) -> tuple[Any, LogRecord]:
    """A ``(LOG, LogRecord)`` effect about this cart's current run.

    The record id is the message key, or ``store:cart:run:step`` for a record about a whole step.
    """
    store = actor.store.id
    if channel is None:
        rid = f"{store}:{actor.cart}:{actor.run}:{step_no}"
    else:
        rid = message_key(store, actor.cart, actor.run, step_no or 0, channel)
    return (LOG, LogRecord(
        id=rid, at=at, store=store, cart=actor.cart, profile=actor.profile,
        run=actor.run, step=step_no, channel=channel, outcome=outcome, reason=reason,
    ))


def run_step_conditions(
    actor: CartActor, step_no: int, step: Step, contents: tuple[Any, ...], now: float, effects: list[Any],
) -> bool:
    """Whether the step applies to the cart; if not, logs one *skipped* record for the whole step."""
    _, value, currency, _ = contents
    reason = step.unmet(float(value or 0.0), currency, bool(actor.flags & _HIGH_INTENT))
    if reason is None:
        return True
    effects.append(log_record(actor, step_no, None, Outcome.SKIPPED, reason, now))
    return False


def _local(at: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(at, tz).isoformat(timespec="minutes")


def _skip(
    actor: CartActor, step_no: int, channel: str, reason: str, now: float, effects: list[Any],
) -> None:
    effects.append(log_record(actor, step_no, channel, Outcome.SKIPPED, reason, now))


def send_zone(store: StoreRules, step: Step, profile: Profile | None) -> ZoneInfo:
    """The time zone a step's send window and the store's quiet hours are read in."""
    if step.send_in == "profile" and profile is not None:
        return profile.zone() or store.tz
    return store.tz


def send_allowed_at(store: StoreRules, step: Step, profile: Profile | None, now: float) -> float | None:
    """The earliest time at or after ``now`` when the step's window and the store's quiet hours let a
    message go (``now`` itself when nothing restricts it); None when they never do."""
    window = store.windows[step.window] if step.window is not None else None
    quiet = store.quiet_hours
    if window is None and quiet is None:
        return now
    return next_send_time(now, send_zone(store, step, profile), window, quiet)


def run_channel(
    actor: CartActor, step_no: int, step: Step, channel: str, now: float, expire_at: float, effects: list[Any],
) -> None:
    """Try to send ``channel`` of step ``step_no`` now; appends the resulting effects (see module doc)."""
    store = actor.store
    flow = store.flow
    held = actor.held
    if held is not None:
        for entry in held:
            if entry[2] == channel:
                actor.held = tuple(h for h in held if h is not entry) or None
                reason = f"superseded by step {step_no}"
                effects.append(log_record(actor, entry[1], channel, Outcome.SKIPPED, reason, now))
                break

    # 2. may we use the channel at all?
    profile = None if actor.profile is None else store.profiles.get(actor.profile)
    if channel == "whatsapp" and not store.has_whatsapp:
        return _skip(actor, step_no, channel, "store has no WhatsApp configured", now, effects)
    if channel == "webhook":
        contact: str | None = ""
    elif profile is None:
        return _skip(actor, step_no, channel, "no profile", now, effects)
    else:
        contact, reason = profile.reach(channel)
        if contact is None:
            return _skip(actor, step_no, channel, reason, now, effects)
    # 3. send window and quiet hours
    at = send_allowed_at(store, step, profile, now)
    if at is None:
        return _skip(actor, step_no, channel, "the send window never falls outside the quiet hours", now, effects)
    if at > now:
        tz = send_zone(store, step, profile)
        window = store.windows[step.window] if step.window is not None else None
        outside = window is not None and window.next_open(now, tz) > now
        why = f"outside the {step.window} window" if outside else "quiet hours"
        if at >= expire_at:
            return _skip(actor, step_no, channel, f"{why}; the next send time is after the run ends", now, effects)
        actor.hold(at, step_no, channel)
        effects.append(log_record(actor, step_no, channel, Outcome.POSTPONED, f"{why} until {_local(at, tz)}", now))
        return None
    # 4. frequency cap across the shopper's carts
    if profile is not None:
        until = profile.cap_until(channel, actor.cart, now, flow.frequency_cap_s)
        if until is not None:
            cap = format_duration(flow.frequency_cap_s)
            if flow.on_cap == "drop":
                reason = f"frequency cap: a {channel} message for another cart within {cap}"
                return _skip(actor, step_no, channel, reason, now, effects)
            if until >= expire_at:
                return _skip(actor, step_no, channel, "frequency cap: lifts after the run ends", now, effects)
            actor.hold(until, step_no, channel)
            effects.append(log_record(
                actor, step_no, channel, Outcome.POSTPONED, f"frequency cap ({cap}) until {_local(until, store.tz)}",
                now,
            ))
            return None
    # 5. email credits (spent now, given back if the intent is cancelled before it goes out)
    if channel == "email" and not store.spend_credit():
        return _skip(actor, step_no, channel, "no email credits left", now, effects)
    # 6. the intent
    items, value, currency, url = actor.contents()
    value = float(value or 0.0)
    since = actor.since if actor.since is not None else now
    flags = actor.flags
    incentive = None
    template = step.template
    if step.incentive and store.incentive is not None:
        incentive = store.incentive.for_cart(store.secret, store.id, actor.cart)
    elif template == "incentive":  # a store without an offer: the texts must not promise one
        template = "reminder"
    key = message_key(store.id, actor.cart, actor.run, step_no, channel)
    intent = SendIntent(
        key=key, message_id=key, store=store.id, cart=actor.cart, profile=None if profile is None else profile.id,
        run=actor.run, step=step_no, channel=channel,
        priority=urgency(
            value, high_intent=bool(flags & _HIGH_INTENT), payment_failed=bool(flags & _PAYMENT_FAILED),
            elapsed_s=now - since,
        ),
        contact=contact or "", locale=None if profile is None else profile.locale, items=msgpack.packb(items),
        value=value, currency=currency, checkout_url=url, incentive=incentive, template=template, created_at=now,
    )
    if profile is not None and channel != "webhook":
        profile.record_send(channel, actor.cart, now)
        store.profiles.put(profile)
    if actor.state is CartState.ABANDONED:
        actor.state = CartState.RECOVERING
    effects.append((SEND, intent))
    return None
