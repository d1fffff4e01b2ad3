"""Small, locale-aware formatting for rendered messages: money, tracked links, safe URLs, whitespace.

No Babel on purpose: a handful of currencies and two number conventions cover what recovery messages
show (a unit price and a cart total). ``format_money(1234.5, "EUR", "en") == "€1,234.50"`` and
``format_money(1234.5, "EUR", "es") == "1.234,50 €"``; an unknown currency is written by its code
(``"1,234.50 CHF"``).
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from functools import lru_cache
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = ["format_money", "tracked_url", "safe_url", "one_line", "language_of", "uses_decimal_comma", "ascii_address"]

_SYMBOLS = {
    "EUR": "€",
    "USD": "$",
    "GBP": "£",
    "JPY": "¥",
    "MXN": "$",
    "ARS": "$",
    "COP": "$",
    "CLP": "$",
    "BRL": "R$",
    "INR": "₹",
    "CAD": "$",
    "AUD": "$",
}
_ZERO_DECIMALS = {"JPY", "KRW", "CLP", "COP", "VND", "ISK", "HUF"}
_THREE_DECIMALS = {"KWD", "BHD", "OMR", "JOD", "TND", "IQD", "LYD"}
#: languages writing "1.234,50 €" (decimal comma, symbol after)
_COMMA_LANGUAGES = {"es", "de", "fr", "it", "pt", "nl"}
#: ... except in these regions, which write "$1,234.50" like English
_POINT_LOCALES = {"es-mx", "es-us", "es-pr", "es-gt", "es-hn", "es-sv", "es-ni", "es-pa", "es-do"}


def language_of(locale: str) -> str:
    """``"es-MX"`` / ``"es_MX"`` / ``"ES"`` → ``"es"``; empty stays empty."""
    return re.split(r"[-_]", locale.strip(), maxsplit=1)[0].lower() if locale else ""


def uses_decimal_comma(locale: str) -> bool:
    """Whether readers of ``locale`` (``"es"``, ``"es-MX"``, ``"de_DE"``) write ``1.234,50``."""
    if not locale:
        return False
    return language_of(locale) in _COMMA_LANGUAGES and locale.strip().replace("_", "-").lower() not in _POINT_LOCALES


def format_money(amount: object, currency: str, language: str) -> str:
    """Format ``amount`` of ``currency`` (ISO 4217 code) the way ``language`` readers expect
    (a language, ``"es"``, or a locale, ``"es-MX"``: Mexico writes ``$1,234.50``)."""
    if type(amount) is float or type(amount) is int:
        return _money_cached(amount, currency, language)  # prices repeat from message to message
    return _format_money(amount, currency, language)


def _format_money(amount: object, currency: str, language: str) -> str:
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return str(amount)
    if not value.is_finite():
        return str(amount)
    code = (currency or "").upper()
    places = 0 if code in _ZERO_DECIMALS else 3 if code in _THREE_DECIMALS else 2
    with localcontext() as ctx:  # enough digits for any finite amount ingest accepts (1e300 included)
        ctx.prec = max(28, value.adjusted() + places + 2)
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    digits = f"{abs(value):,.{places}f}"  # "1,234.50"
    symbol = _SYMBOLS.get(code)
    if uses_decimal_comma(language):
        digits = digits.replace(",", "\0").replace(".", ",").replace("\0", ".")
        return f"{sign}{digits} {symbol or code}".rstrip()
    if symbol:
        return f"{sign}{symbol}{digits}"
    return f"{sign}{digits} {code}".rstrip()


_money_cached = lru_cache(maxsize=4096, typed=True)(_format_money)


def safe_url(url: object) -> str:
    """``url`` if it is an absolute http(s) URL, else "" (no ``javascript:`` in a shopper's inbox)."""
    if not isinstance(url, str):
        return ""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    if any(c in url for c in "\r\n\t\0 "):
        return ""
    return url


def tracked_url(url: str, param: str, value: str) -> str:
    """``url`` with ``param=value`` added to its query, every other parameter kept byte for byte.

    An existing ``param`` is replaced (a shopper forwarding an old link must not mix ids); the
    fragment stays last. Returns "" when ``url`` is not an http(s) URL.
    """
    url = safe_url(url)
    if not url:
        return ""
    parts = urlsplit(url)
    kept = [seg for seg in parts.query.split("&") if seg and seg.split("=", 1)[0] != param]
    kept.append(f"{param}={quote(value, safe='')}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), parts.fragment))


def ascii_url(url: str) -> str:
    """``url`` as ASCII, for a mail header (``List-Unsubscribe``): an internationalised host in IDNA
    (punycode), other non-ASCII characters percent-encoded as UTF-8. The same link; "" when it cannot
    be written so (a host IDNA refuses)."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except UnicodeError:
        return ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    keep = "/?#[]@!$&'()*+,;=:%~-._"
    return urlunsplit((parts.scheme, netloc, quote(parts.path, safe=keep), quote(parts.query, safe=keep),
                       quote(parts.fragment, safe=keep)))


def ascii_address(address: str) -> str:
    """``address`` with an internationalised domain in IDNA: ``kunde@müller.de`` →
    ``kunde@xn--mller-kva.de``, which needs no SMTPUTF8. Unchanged when already ASCII, when the local
    part is not ASCII (that needs SMTPUTF8, which cartwheel does not use) or when IDNA refuses the domain."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address


_SPACES = re.compile(r"\s+")
#: format characters text needs: zero-width non-joiner and joiner (Persian words, emoji sequences),
#: left-to-right and right-to-left marks. The other format characters (bidi overrides and isolates
#: that can reorder a line, invisible separators) are dropped.
_KEPT_FORMAT = frozenset("\u200c\u200d\u200e\u200f")


def one_line(text: object, limit: int = 200) -> str:
    """Collapse whitespace and control characters; cut to ``limit`` characters (for headers, SMS)."""
    s = _SPACES.sub(" ", str(text or "")).strip()
    if not s.isprintable():  # rare: one C call decides for the whole string
        s = "".join(ch for ch in s if ch.isprintable() or ch in _KEPT_FORMAT)
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"
