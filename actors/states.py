"""Cart states, in their own module so that the cart and the step runner can both name them."""
from __future__ import annotations

from enum import StrEnum

__all__ = ["CartState", "FINAL_STATES", "IN_RUN"]


class CartState(StrEnum):
    """Where a cart is in its life (the admin ``stats`` reply counts carts by these names)."""

    ACTIVE = "active"  #: shopping; an inactivity timer watches non-empty carts
    ABANDONED = "abandoned"  #: a flow run started; no message issued yet in this run
    RECOVERING = "recovering"  #: the run has issued at least one message
    RECOVERED = "recovered"  #: bought after a message, within the attribution window
    CONVERTED = "converted"  #: bought with no message credited
    EXPIRED = "expired"  #: the run ended without a purchase
    CLEARED = "cleared"  #: emptied by the shop; contents forgotten


#: states a cart only leaves through a new ``cart.updated`` (or, for *expired*, a late order)
FINAL_STATES = frozenset({CartState.RECOVERED, CartState.CONVERTED, CartState.EXPIRED, CartState.CLEARED})
#: states of a cart inside a flow run
IN_RUN = frozenset({CartState.ABANDONED, CartState.RECOVERING})
