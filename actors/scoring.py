"""The urgency score of an abandoned cart: the send priority when a channel is rate-limited.

``priority = ln(1 + value) * intent * freshness`` where

* ``ln(1 + value)``: higher-value carts first, with diminishing returns (a 1 000 cart is not worth ten
  100 carts of attention: 6.9 against 4.6);
* ``intent``: 1.5 when the shopper reached checkout (``checkout.started``), 1.25 after a failed payment
  (they tried to pay), 1.0 otherwise; both flags multiply (1.875);
* ``freshness = 1 / (1 + elapsed_h / 24)``: recovery odds fall with the time since abandonment, so the
  first reminder of a fresh cart beats the fourth of a two-day-old one of equal value.

Values are compared as plain numbers whatever their currency (no exchange rates in the actor layer).
A zero-value cart scores 0; the score is always >= 0. Pure function, no state.
"""
from __future__ import annotations

import math

__all__ = ["urgency"]


def urgency(value: float, *, high_intent: bool, payment_failed: bool, elapsed_s: float) -> float:
    """Send priority of a cart (higher goes first).

    Args:
        value: cart value in its currency's units.
        high_intent: the cart reached checkout.
        payment_failed: a payment attempt failed.
        elapsed_s: seconds since abandonment (negative values count as 0).
    """
    score = math.log1p(max(value, 0.0))
    if high_intent:
        score *= 1.5
    if payment_failed:
        score *= 1.25
    return score / (1.0 + max(elapsed_s, 0.0) / 86400.0)
