"""Masking contact data for logs: a shopper's full email address, phone number or push token never
reaches a log line.

``mask_contact("jane@example.com") == "j***@example.com"``, ``mask_contact("+34600111221") ==
"+34*****21"``, ``mask_contact("fcm-token-abcdef") == "fcm-***"``. The shape stays recognisable
enough to correlate log lines with a support ticket, not enough to contact anyone.
"""
from __future__ import annotations

import re

__all__ = ["mask_contact", "mask_text"]

_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_RE = re.compile(r"\+?\d[\d -]{6,}\d")


def mask_contact(value: str) -> str:
    """Return ``value`` with everything but a few identifying characters replaced by ``*``.

    Emails keep the first character of the local part and the domain; phone numbers keep the
    country prefix (``+`` and two digits) and the last two digits; anything else (push tokens,
    webhook ids) keeps its first four characters.
    """
    if not value:
        return ""
    if "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    digits = value.lstrip("+").replace(" ", "").replace("-", "")
    if digits.isdigit() and len(digits) >= 6:
        head = "+" + digits[:2] if value.startswith("+") else digits[:2]
        return head + "*" * 5 + digits[-2:]
    return value[:4] + "***"


def mask_text(text: str, contact: str = "") -> str:
    """``text`` (a provider's error message) with ``contact`` and anything shaped like an email
    address or a phone number masked: providers echo the recipient in their errors ("550 5.1.1
    <jane@example.com>: Recipient address rejected", "The 'To' number +34600111221 is not valid")."""
    if contact and contact in text:
        text = text.replace(contact, mask_contact(contact))
    text = _EMAIL_RE.sub(lambda m: mask_contact(m.group(0)), text)
    return _PHONE_RE.sub(lambda m: mask_contact(m.group(0)), text)
