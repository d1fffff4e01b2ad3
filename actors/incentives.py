"""Incentives: free shipping, or a discount code unique per cart and reproducible from a store secret.

A discount code is ``PREFIX-XXXXXXXXXX``: the prefix from config and ten characters of the base32
HMAC-SHA256 of ``store NUL cart`` under the store's secret (50 bits). The same store, cart and secret give
the same code after a restart (the engine needs no table of issued codes and a shop can verify a code
offline); different carts get different codes; a shopper who does not know the secret cannot forge
another cart's code. One cart keeps its code across runs, so a second abandonment re-offers it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

__all__ = ["Incentive", "discount_code", "default_secret"]

_CODE_CHARS = 10


def default_secret(store: str) -> bytes:
    """The secret used when a store sets none: derived from its id, so stable but *not* secret."""
    return hashlib.sha256(b"cartwheel incentive secret\x00" + store.encode()).digest()


def discount_code(secret: bytes, store: str, cart: str, prefix: str) -> str:
    """The discount code of one cart: ``PREFIX-`` plus 10 base32 characters of an HMAC."""
    digest = hmac.new(secret, store.encode() + b"\x00" + cart.encode(), hashlib.sha256).digest()
    return f"{prefix}-{base64.b32encode(digest).decode()[:_CODE_CHARS]}"


@dataclass(frozen=True, slots=True)
class Incentive:
    """A store's incentive offer (``kind`` is ``"discount"`` or ``"free_shipping"``)."""

    kind: str
    percent: float | None = None
    code_prefix: str = "BACK"

    def for_cart(self, secret: bytes, store: str, cart: str) -> dict[str, Any]:
        """The incentive as it goes into a :class:`~actors.effects.SendIntent` (a plain dict)."""
        if self.kind == "free_shipping":
            return {"kind": "free_shipping"}
        code = discount_code(secret, store, cart, self.code_prefix)
        return {"kind": "discount", "percent": self.percent, "code": code}
