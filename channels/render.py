"""Rendering a :class:`Message` into what each channel sends: an email, an SMS text, a push
notification, WhatsApp template parameters.

Every rendering carries the store's identity (``store_name``, optional header, footer and logo), the
cart's items (name, quantity, unit price in the cart's currency), the cart total, the resume link and
the step's incentive. The resume link is ``checkout_url`` plus ``cw_mid=<message id>`` (other query
parameters kept as they are), which is how a click is attributed to a message.

Language: the shopper's ``locale`` picks (``es-MX`` → ``es``), else the store's default
(``extra["locale"]``), else the renderer's ``default_locale``, else English; a language is usable when
built in (``en``, ``es``) or when a template override for it exists.

Overrides. A directory (the store's ``extra["templates_dir"]``, then the renderer's
``templates_dir``) may hold files named ``{medium}_{template}.{language}.{part}``:

=========  =====================================================
medium     parts
=========  =====================================================
email      ``subject``, ``txt``, ``html`` — e.g. ``email_reminder.es.html``
sms        ``txt``
push       ``title``, ``txt``
=========  =====================================================

Files are :class:`string.Template` text using the variables below; a file naming any other variable
is rejected when the directory is first read (read once per directory and process: restart to pick
up edits). In HTML every variable is HTML-escaped except the ones ending in ``_html``, which are
built here from escaped parts — so nothing a shopper or a shop typed reaches the HTML unescaped.

Variables: ``store_name``, ``language``, ``subject``, ``headline``, ``intro``, ``cta``,
``item_count``, ``items_text``, ``items_html``, ``total``, ``total_label``, ``resume_url``,
``incentive_text``, ``incentive_html``, ``header_text``, ``header_html``, ``footer_text``,
``footer_html``, ``logo_html``, ``unsubscribe_url``, ``unsubscribe_label``, ``message_id``, ``cart``.

Per-store keys read from ``Message.extra``: ``locale``, ``templates_dir``, ``email_header``,
``email_footer`` (plain text), ``logo_url``, ``unsubscribe_url`` (may contain ``{message_id}``, replaced
by the percent-encoded id;
default: ``<checkout origin>/cartwheel/unsubscribe?cw_mid=<id>``), ``unsubscribe_mailto``.
"""
from __future__ import annotations

import difflib
import html
import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote, urlsplit

from channels import _mime, _templates
from channels._format import ascii_address, ascii_url, format_money, language_of, one_line, safe_url, tracked_url, uses_decimal_comma
from channels._substitute import substitute
from channels.message import Message

__all__ = [
    "Renderer",
    "RenderError",
    "RenderedEmail",
    "RenderedPush",
    "RenderedWhatsApp",
    "TEMPLATE_VARIABLES",
    "TRACKING_PARAM",
]

log = logging.getLogger("cartwheel.channels.render")

#: the query parameter carrying the message id on every link
TRACKING_PARAM = "cw_mid"

TEMPLATE_VARIABLES = frozenset(
    "store_name language subject headline intro cta item_count items_text items_html total total_label "
    "resume_url incentive_text incentive_html header_text header_html footer_text footer_html logo_html "
    "unsubscribe_url unsubscribe_label message_id cart".split()
)

_PARTS = {"email": ("subject", "txt", "html"), "sms": ("txt",), "push": ("title", "txt")}
_FILE_RE = re.compile(r"^(email|sms|push)_([a-z0-9][a-z0-9_-]*)\.([a-z]{2,3})\.(subject|txt|html|title)$")
#: items shown in full; the rest are summarised as "and N more"
_MAX_ITEMS = 20

_OverrideKey = tuple[str, str, str, str]  # medium, template, language, part


#: Twilio's longest body (characters); longer ones are refused, not split
_SMS_MAX = 1600


class RenderError(ValueError):
    """A message cannot be rendered (bad template file, unusable checkout URL); never retryable."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """The two bodies and the links of one email."""

    subject: str
    text: str
    html: str
    resume_url: str
    unsubscribe_url: str
    language: str


@dataclass(frozen=True, slots=True)
class RenderedPush:
    """A push notification's visible text and its link."""

    title: str
    body: str
    url: str
    language: str


@dataclass(frozen=True, slots=True)
class RenderedWhatsApp:
    """Parameters for an approved WhatsApp template: body texts in order, and the URL button suffix."""

    body_parameters: tuple[str, ...]
    button_suffix: str
    resume_url: str
    language: str


def check_templates_dir(directory: Path, templates: Collection[str] | None = None) -> int:
    """How many override files ``directory`` holds; raises :class:`RenderError` naming what is wrong
    (unreadable directory, unknown part or variable). For the config check, before any message.

    Also a file that would silently never be used: a name not of the form
    ``MEDIUM_TEMPLATE.LANG.PART`` (hidden files and ``README*`` aside), or, given the ``templates``
    the store's flow steps use, a TEMPLATE none of them uses (a typo such as ``email_remindr``).
    """
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError as exc:
        raise RenderError(f"template directory {directory}: {exc.strerror or exc}") from None
    for name in names:
        if name.startswith(".") or name.upper().startswith("README"):
            continue
        match = _FILE_RE.match(name)
        if match is None:
            raise RenderError(
                f"template {directory / name}: not a template file name, so never used (expected "
                "MEDIUM_TEMPLATE.LANG.PART, e.g. email_reminder.en.subject; MEDIUM email, sms or push)"
            )
        if templates is not None and match.group(2) not in templates:
            known = sorted(templates)
            close = difflib.get_close_matches(match.group(2), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RenderError(
                f"template {directory / name}: no step of the store's flow uses template {match.group(2)!r}, "
                f"so it is never used{hint}; the flow's templates: {', '.join(known)}"
            )
    return len(Renderer()._load_dir(directory))


class Renderer:
    """Renders messages; cheap to share between channels (it only caches override directories).

    Args:
        default_locale: used when neither the shopper nor the store names a usable language.
        templates_dir: a directory of override files used for every store (a store's own
            ``extra["templates_dir"]`` wins over it).
    """

    def __init__(self, *, default_locale: str = "en", templates_dir: str | Path | None = None) -> None:
        self.default_locale = default_locale
        self.templates_dir = Path(templates_dir) if templates_dir else None
        self._dirs: dict[Path, dict[_OverrideKey, Template]] = {}

    # -- public renderings ---------------------------------------------------------------------
    def resume_url(self, message: Message) -> str:
        """The checkout link with this message's tracking parameter; "" if the URL is unusable."""
        return tracked_url(message.checkout_url, TRACKING_PARAM, message.id)

    def email(self, message: Message) -> RenderedEmail:
        """Subject, text and HTML bodies of ``message`` as an email."""
        lang, sources = self._choose(message, "email")
        values = self._values(message, lang)
        subject = one_line(substitute(self._part(sources, lang, "email", message.template, "subject"), values))
        values["subject"] = subject
        text = substitute(self._part(sources, lang, "email", message.template, "txt"), values)
        body_html = substitute(self._part(sources, lang, "email", message.template, "html"), _HtmlEscaped(values))
        return RenderedEmail(
            subject=subject,
            text=_tidy_text(text),
            html=body_html,
            resume_url=values["resume_url"],
            unsubscribe_url=values["unsubscribe_url"],
            language=lang,
        )

    def email_bytes(self, message: Message, *, from_addr: str, reply_to: str | None = None) -> bytes:
        """The complete ``multipart/alternative`` email (text + HTML) as bytes, ready for DATA.

        Headers: ``From`` shows the store's name with ``from_addr`` (the store's
        ``extra["email_from"]`` overrides the address), ``To``, ``Subject``, ``Date`` (from
        ``created_at``), ``Message-ID`` embedding the message id (so bounces can be matched),
        ``List-Unsubscribe`` and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058).

        Raises:
            RenderError: unusable checkout URL, bad template, or a header value carrying line breaks.
        """
        rendered = self.email(message)
        address = ascii_address(str(message.extra.get("email_from") or from_addr))  # an IDN domain in IDNA
        domain = address.rpartition("@")[2] or "cartwheel.invalid"
        unsubscribe = [f"<{ascii_url(rendered.unsubscribe_url)}>"]
        mailto = message.extra.get("unsubscribe_mailto")
        if isinstance(mailto, str) and "@" in mailto and not any(c in mailto for c in "<>\r\n "):
            unsubscribe.append(f"<mailto:{mailto}?subject=unsubscribe%20{_token(message.id)}>")
        try:
            headers = [
                ("From", _mime.address(one_line(message.store_name, 100), address)),
                ("To", _mime.address("", ascii_address(message.to))),
                ("Subject", _mime.header_value(rendered.subject)),
            ]
            reply = message.extra.get("reply_to") or reply_to
            if reply:
                headers.append(("Reply-To", _mime.address("", str(reply))))
            if message.created_at:
                headers.append(("Date", formatdate(message.created_at, usegmt=True)))
            headers += [
                ("Message-ID", f"<{_token(message.id)}@{_token(domain)}>"),
                ("List-Unsubscribe", ", ".join(unsubscribe)),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                ("X-Cartwheel-Message", _token(message.id)),
            ]
        except _mime.HeaderError as exc:
            raise RenderError(str(exc)) from None
        return _mime.build_alternative(headers, rendered.text, rendered.html, seed=message.id)

    def sms(self, message: Message) -> str:
        """The SMS body (one line)."""
        lang, sources = self._choose(message, "sms")
        values = self._values(message, lang)
        text = substitute(self._part(sources, lang, "sms", message.template, "txt"), values)
        body = one_line(text, _SMS_MAX)
        resume = values["resume_url"]
        if len(body) < _SMS_MAX or resume in body:
            return body
        # Too long: cut the words around the resume link, never the link (a cut link is a dead one).
        if len(resume) > _SMS_MAX // 2:
            raise RenderError(f"checkout_url is too long for an SMS ({len(resume)} characters with its tracking "
                              f"parameter; at most {_SMS_MAX // 2})")
        before, found, after = one_line(text, 1 << 30).partition(resume)
        if not found:  # a template without the link
            return body
        room = _SMS_MAX - len(resume) - 2
        after = after if len(after) <= room // 2 else after[: room // 2 - 1].rstrip() + "…"
        before = before if len(before) <= room - len(after) else before[: room - len(after) - 1].rstrip() + "… "
        return before + resume + after

    def push(self, message: Message) -> RenderedPush:
        """A push notification's title and body, and the link it opens."""
        lang, sources = self._choose(message, "push")
        values = self._values(message, lang)
        title = one_line(substitute(self._part(sources, lang, "push", message.template, "title"), values), 120)
        body = one_line(substitute(self._part(sources, lang, "push", message.template, "txt"), values), 400)
        return RenderedPush(title=title, body=body, url=values["resume_url"], language=lang)

    def whatsapp(self, message: Message) -> RenderedWhatsApp:
        """Parameters for the step's approved template.

        Body parameters, in order: store name, items summary ("Blue mug and 2 more item(s)"), cart
        total, and — only when the step has an incentive — the incentive text. The URL button gets
        the resume link's path and query (the template's button URL is ``https://<shop>/{{1}}``).
        """
        lang = self._language(message, "whatsapp")
        values = self._values(message, lang)
        common = _templates.PHRASES.get(lang, _templates.PHRASES["en"])["_common"]
        # the Cloud API refuses an empty parameter: an item without a name is named by its sku
        names = [one_line(item.get("name") or item.get("sku"), 60) or "-" for item in _items(message)]
        if not names:
            summary = values["store_name"]
        elif len(names) == 1:
            summary = names[0]
        else:
            summary = Template(common["more_items"]).safe_substitute(first=names[0], n=str(len(names) - 1))
        params = [values["store_name"] or message.store, summary, values["total"]]
        if values["incentive_text"]:
            params.append(values["incentive_text"])
        resume = values["resume_url"]
        parts = urlsplit(resume)
        suffix = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
        suffix += f"#{parts.fragment}" if parts.fragment else ""  # a hash-routed checkout needs it
        return RenderedWhatsApp(
            body_parameters=tuple(one_line(p, 1000) or "-" for p in params),
            button_suffix=suffix,
            resume_url=resume,
            language=lang,
        )

    def preview(self, message: Message) -> dict[str, Any]:
        """A JSON-ready rendering by the message's channel name (for the outbox and webhooks)."""
        medium = message.channel
        if medium == "email":
            e = self.email(message)
            return {"subject": e.subject, "text": e.text, "html": e.html, "url": e.resume_url, "language": e.language}
        if medium == "push":
            p = self.push(message)
            return {"title": p.title, "body": p.body, "url": p.url, "language": p.language}
        if medium == "whatsapp":
            w = self.whatsapp(message)
            return {"parameters": list(w.body_parameters), "button": w.button_suffix, "url": w.resume_url, "language": w.language}
        return {"text": self.sms(message), "url": self.resume_url(message), "language": self._language(message, "sms")}

    # -- language and template sources ---------------------------------------------------------
    def _sources(self, message: Message) -> list[dict[_OverrideKey, Template]]:
        sources = []
        store_dir = message.extra.get("templates_dir")
        for directory in (store_dir, self.templates_dir):
            if directory:
                sources.append(self._load_dir(Path(directory)))
        return sources

    def _language(self, message: Message, medium: str, sources: list[dict[_OverrideKey, Template]] | None = None) -> str:
        if sources is None:
            sources = self._sources(message)
        candidates = (
            language_of(message.locale),
            language_of(str(message.extra.get("locale") or "")),
            language_of(self.default_locale),
        )
        for lang in candidates:
            if not lang:
                continue
            if lang in _templates.PHRASES:
                return lang
            if any(key[0] == medium and key[1] == message.template and key[2] == lang for src in sources for key in src):
                return lang
        return "en"

    def _choose(self, message: Message, medium: str) -> tuple[str, list[dict[_OverrideKey, Template]]]:
        sources = self._sources(message)
        return self._language(message, medium, sources), sources

    def _part(
        self, sources: list[dict[_OverrideKey, Template]], lang: str, medium: str, template: str, part: str
    ) -> Template:
        key = (medium, template, lang, part)
        for source in sources:
            found = source.get(key)
            if found is not None:
                return found
        return _builtin(medium, template, lang, part)

    def _load_dir(self, directory: Path) -> dict[_OverrideKey, Template]:
        cached = self._dirs.get(directory)
        if cached is not None:
            return cached
        found: dict[_OverrideKey, Template] = {}
        try:
            paths = sorted(directory.iterdir())
        except OSError as exc:
            raise RenderError(f"template directory {directory}: {exc.strerror or exc}") from None
        for path in paths:
            match = _FILE_RE.match(path.name)
            if not match:
                continue
            medium, template, lang, part = match.groups()
            if part not in _PARTS[medium]:
                raise RenderError(f"template {path}: a {medium} template has no part {part!r} (expected one of {_PARTS[medium]})")
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise RenderError(f"template {path}: cannot read: {exc}") from None
            tpl = Template(text)
            if not tpl.is_valid():
                raise RenderError(f"template {path}: invalid placeholder (use $name or ${{name}}, $$ for a dollar)")
            unknown = set(tpl.get_identifiers()) - TEMPLATE_VARIABLES
            if unknown:
                raise RenderError(
                    f"template {path}: unknown variable(s) {', '.join(sorted(unknown))}; "
                    f"expected some of {', '.join(sorted(TEMPLATE_VARIABLES))}"
                )
            found[(medium, template, lang, part)] = tpl
        self._dirs[directory] = found
        log.info("loaded %d template override(s) from %s", len(found), directory)
        return found

    # -- variables -------------------------------------------------------------------------------
    def _values(self, message: Message, lang: str) -> _Values:
        """The template variables of ``message`` in ``lang``. The costly ones (the items as text and as
        HTML, header, footer, logo, unsubscribe link) are built only when a template asks for them:
        a push or an SMS with the built-in templates needs none, and skipping them made those renders
        several times cheaper (every send of the outbox renders a preview)."""
        phrases = _templates.PHRASES.get(lang, _templates.PHRASES["en"])
        step = phrases.get(message.template) or phrases["reminder"]
        common = phrases["_common"]
        resume = self.resume_url(message)
        if not resume:
            raise RenderError(f"checkout_url {message.checkout_url[:80]!r} is not an http(s) URL")
        store_name = one_line(message.store_name or message.store, 100)
        items = _items(message)
        currency = message.currency
        # numbers as the shopper's region writes them: es-MX "$1,234.50", es "1.234,50 €"
        numbers = message.locale if message.locale and language_of(message.locale) == lang else lang
        total = format_money(message.value, currency, numbers)
        base = {"store_name": store_name, "item_count": str(sum(_qty(i) for i in items) or len(items)), "total": total}
        incentive_text = _incentive_text(message.incentive, common, currency, numbers)
        base["incentive_text"] = incentive_text
        return _Values({
            **base,
            "language": lang,
            "subject": "",
            "headline": substitute(step["headline"], base),
            "intro": substitute(step["intro"], base),
            "cta": common["cta"],
            "total_label": common["total"],
            "resume_url": resume,
            "unsubscribe_label": common["unsubscribe"],
            "message_id": message.id,
            "cart": message.cart,
        }, message=message, items=items, common=common, currency=currency, numbers=numbers, base=base)


class _Values(dict):  # type: ignore[type-arg]
    """Template variables: a dict whose costly entries are built on first use (``__missing__``, which
    :func:`~channels._substitute.substitute` reaches through ``mapping[name]``).

    What the builders need is kept in slots and the builders are module functions (:data:`_LAZY`), not
    closures: a closure that reads the variables back (``header_html`` from ``header_text``) made every
    rendering a reference cycle, garbage that only the cyclic collector frees, and that the engine's
    periodic ``gc.freeze()`` could put out of its reach for good (measured before: ~30 objects in cycles
    per rendering, 290 k in one 8-second benchmark phase).
    """

    __slots__ = ("message", "items", "common", "currency", "numbers", "base")

    def __init__(self, ready: dict[str, str], *, message: Message, items: list[Any], common: dict[str, str],
                 currency: str, numbers: str, base: dict[str, str]) -> None:
        super().__init__(ready)
        self.message = message
        self.items = items
        self.common = common
        self.currency = currency
        self.numbers = numbers  # the language or locale amounts are written for
        self.base = base

    def __missing__(self, key: str) -> str:
        build = _LAZY.get(key)
        if build is None:
            raise KeyError(key)
        value = self[key] = build(self)
        return value


def _footer_text(v: _Values) -> str:
    return one_line(v.message.extra.get("email_footer") or "", 500) or substitute(v.common["footer"], v.base)


def _logo_html(v: _Values) -> str:
    logo = safe_url(v.message.extra.get("logo_url"))
    if not logo:
        return ""
    return (f'<img src="{html.escape(logo, quote=True)}" alt="{html.escape(v.base["store_name"], quote=True)}" '
            'style="max-height:48px;display:block">')


def _incentive_html(v: _Values) -> str:
    text = v.base["incentive_text"]
    if not text:
        return ""
    return ('<tr><td style="padding:8px 24px"><div style="background:#fef3c7;padding:12px;border-radius:6px;'
            f'font-size:15px"><strong>{html.escape(text)}</strong></div></td></tr>')


#: the variables built on first use, each from the :class:`_Values` that asks for it
_LAZY: dict[str, Callable[[_Values], str]] = {
    "items_text": lambda v: _items_text(v.items, v.common, v.currency, v.numbers),
    "items_html": lambda v: _items_html(v.items, v.common, v.currency, v.numbers),
    "incentive_html": _incentive_html,
    "header_text": lambda v: one_line(v.message.extra.get("email_header") or "", 300),
    "header_html": lambda v: html.escape(v["header_text"]),
    "footer_text": _footer_text,
    "footer_html": lambda v: html.escape(v["footer_text"]),
    "logo_html": _logo_html,
    "unsubscribe_url": lambda v: _unsubscribe_url(v.message, v["resume_url"]),
}


class _HtmlEscaped:
    """The variables as the HTML body sees them: HTML-escaped, except the ``*_html`` ones (built as
    HTML). Escaped on use, so only the variables the template names are built and escaped."""

    __slots__ = ("values",)

    def __init__(self, values: _Values) -> None:
        self.values = values

    def __getitem__(self, key: str) -> str:
        value = self.values[key]
        return value if key.endswith("_html") else html.escape(value, quote=True)


# -- helpers ----------------------------------------------------------------------------------------
@lru_cache(maxsize=512)  # a handful of media, steps, languages and parts; every rendering asks
def _builtin(medium: str, template: str, lang: str, part: str) -> Template:
    phrases = _templates.PHRASES.get(lang, _templates.PHRASES["en"])
    step = phrases.get(template) or phrases["reminder"]
    if medium == "email":
        if part == "subject":
            return Template(step["subject"])
        return Template(_templates.EMAIL_HTML if part == "html" else _templates.EMAIL_TEXT)
    if medium == "push":
        return Template(step["push_title"] if part == "title" else step["push_body"])
    return Template(step["sms"])


def _items(message: Message) -> list[dict[str, Any]]:
    items = message.items if isinstance(message.items, list) else []
    return [item for item in items if isinstance(item, dict)]


def _qty(item: dict[str, Any]) -> int:
    try:
        return max(0, int(item.get("qty") or 0))
    except (TypeError, ValueError):
        return 0


def _items_text(items: list[dict[str, Any]], common: dict[str, str], currency: str, lang: str) -> str:
    lines = []
    for item in items[:_MAX_ITEMS]:
        name = one_line(item.get("name") or item.get("sku") or "?", 120)
        lines.append(f"- {name} × {_qty(item)}  {format_money(item.get('price', 0), currency, lang)}")
    if len(items) > _MAX_ITEMS:
        lines.append(f"  (+{len(items) - _MAX_ITEMS})")
    return "\n".join(lines)


def _items_html(items: list[dict[str, Any]], common: dict[str, str], currency: str, lang: str) -> str:
    rows = []
    qty_label = html.escape(common["qty"])
    for item in items[:_MAX_ITEMS]:
        name = html.escape(one_line(item.get("name") or item.get("sku") or "?", 120))
        url = safe_url(item.get("url"))
        if url:
            name = f'<a href="{html.escape(url, quote=True)}" style="color:#18181b">{name}</a>'
        image = safe_url(item.get("image"))
        image_cell = (
            f'<img src="{html.escape(image, quote=True)}" alt="" width="64" height="64" '
            'style="display:block;border-radius:4px;object-fit:cover">'
            if image
            else ""
        )
        price = html.escape(format_money(item.get("price", 0), currency, lang))
        rows.append(
            f'<tr><td width="72" style="padding:6px 0">{image_cell}</td>'
            f'<td style="padding:6px 8px;font-size:15px">{name}<br>'
            f'<span style="color:#71717a;font-size:13px">{qty_label}: {_qty(item)}</span></td>'
            f'<td align="right" style="padding:6px 0;font-size:15px">{price}</td></tr>'
        )
    if len(items) > _MAX_ITEMS:
        rows.append(f'<tr><td></td><td colspan="2" style="font-size:13px">+{len(items) - _MAX_ITEMS}</td></tr>')
    return '<table role="presentation" width="100%" cellpadding="0" cellspacing="0">' + "".join(rows) + "</table>"


def _incentive_text(incentive: dict[str, Any] | None, common: dict[str, str], currency: str, lang: str) -> str:
    if not isinstance(incentive, dict):
        return ""
    kind = incentive.get("kind")
    code = one_line(incentive.get("code") or "", 40)
    if kind == "free_shipping":
        text = common["free_shipping"]
        if code:
            text += " " + Template(common["code_only"]).safe_substitute(code=code)
        return text
    if kind == "discount" and code:
        if incentive.get("percent") is not None:
            percent = incentive["percent"]
            if isinstance(percent, (int, float)):
                percent_s = f"{percent:g}"
                if uses_decimal_comma(lang):
                    percent_s = percent_s.replace(".", ",")
            else:
                percent_s = one_line(percent, 8)
            return Template(common["discount"]).safe_substitute(percent=percent_s, code=code)
        if incentive.get("amount") is not None:
            amount = format_money(incentive["amount"], currency, lang)
            return Template(common["amount_off"]).safe_substitute(amount=amount, code=code)
    if code:
        return Template(common["code_only"]).safe_substitute(code=code)
    return ""


def _unsubscribe_url(message: Message, resume: str) -> str:
    configured = message.extra.get("unsubscribe_url")
    if isinstance(configured, str) and configured:
        if "{message_id}" in configured:
            return safe_url(configured.replace("{message_id}", quote(message.id, safe=""))) or resume
        return tracked_url(configured, TRACKING_PARAM, message.id) or resume
    parts = urlsplit(resume)
    return tracked_url(f"{parts.scheme}://{parts.netloc}/cartwheel/unsubscribe", TRACKING_PARAM, message.id)


def _token(text: str) -> str:
    """``text`` reduced to characters safe inside a header token or an addr-spec local part."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)[:128] or "-"


def _tidy_text(text: str) -> str:
    """Drop the blank lines an empty variable leaves behind (at most one blank line in a row)."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    return "\n".join(out).strip() + "\n"
