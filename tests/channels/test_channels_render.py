"""Rendering: languages, escaping, tracked links, incentives, money and per-store template files."""
from __future__ import annotations

import gc

import pytest

from channels import Renderer, RenderError
from channels._format import format_money, tracked_url
from channels.mask import mask_contact


def test_spanish_locale_renders_spanish(make_message):
    message = make_message(locale="es-MX", template="incentive",
                           incentive={"kind": "discount", "percent": 15, "code": "VUELVE-15"})
    rendered = Renderer().email(message)
    assert rendered.language == "es"
    assert rendered.subject == "Un regalo para completar tu pedido en Demo Shop"
    for body in (rendered.text, rendered.html):
        assert "Volver a tu carrito" in body
        assert "15 % de descuento con el código VUELVE-15" in body
        assert "€12.50" in body and "€45.00" in body  # Mexico writes a decimal point (Spain: "12,50 €")
        assert "Darse de baja" in body
    assert "Cant.: 2" in rendered.html
    renderer = Renderer()
    assert "carrito" in renderer.sms(message)
    assert renderer.push(message).title == "Demo Shop: una oferta para tu carrito"


def test_language_falls_back_to_the_store_default_then_english(make_message):
    renderer = Renderer()
    assert renderer.email(make_message(locale="fr-FR", extra={"locale": "es"})).language == "es"
    assert renderer.email(make_message(locale="")).language == "en"
    assert renderer.email(make_message(locale="de")).subject == "You left something in your cart at Demo Shop"
    assert Renderer(default_locale="es").email(make_message(locale="")).language == "es"


def test_shop_and_shopper_strings_are_escaped(make_message):
    message = make_message(
        store_name='Evil "Shop" <script>',
        items=[{"name": "<img src=x onerror=alert(1)>", "qty": 1, "price": 5, "url": "javascript:alert(1)",
                "image": "data:text/html,boom"}],
        incentive={"kind": "discount", "percent": 5, "code": "<b>X</b>"},
        extra={"email_header": "<h1>hi</h1>", "email_footer": "a & b"},
    )
    html = Renderer().email(message).html
    assert "<script>" not in html and "<img src=x" not in html and "<b>X</b>" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "javascript:" not in html and "data:text" not in html
    assert "&lt;h1&gt;hi&lt;/h1&gt;" in html and "a &amp; b" in html


def test_tracked_link_keeps_existing_parameters():
    assert tracked_url("https://s.example/c?a=1%202&b=&cw_mid=old#frag", "cw_mid", "m 1") == (
        "https://s.example/c?a=1%202&b=&cw_mid=m%201#frag"
    )
    assert tracked_url("https://s.example/cart", "cw_mid", "m1") == "https://s.example/cart?cw_mid=m1"
    assert tracked_url("javascript:alert(1)", "cw_mid", "m1") == ""


def test_a_message_without_a_usable_checkout_url_cannot_be_rendered(make_message):
    with pytest.raises(RenderError, match="checkout_url"):
        Renderer().email(make_message(checkout_url="ftp://nope"))


@pytest.mark.parametrize(
    ("amount", "currency", "language", "expected"),
    [
        (1234.5, "EUR", "en", "€1,234.50"),
        (1234.5, "EUR", "es", "1.234,50 €"),
        (19.999, "USD", "en", "$20.00"),
        (1500, "JPY", "en", "¥1,500"),
        (7, "CHF", "en", "7.00 CHF"),
    ],
)
def test_money(amount, currency, language, expected):
    assert format_money(amount, currency, language) == expected


def test_free_shipping_incentive_and_final_step(make_message):
    rendered = Renderer().email(make_message(template="final", incentive={"kind": "free_shipping"}))
    assert rendered.subject.startswith("Last chance")
    assert "Free shipping on this order." in rendered.text


def test_store_template_files_override_builtins(tmp_path, make_message):
    (tmp_path / "email_reminder.es.html").write_text("<p>Hola de $store_name: $items_html $resume_url</p>")
    (tmp_path / "email_reminder.es.subject").write_text("¡Tu carrito en $store_name!")
    (tmp_path / "sms_reminder.fr.txt").write_text("$store_name: votre panier $resume_url")
    renderer = Renderer()
    message = make_message(locale="es", store_name="A&B", extra={"templates_dir": str(tmp_path)})
    rendered = renderer.email(message)
    assert rendered.subject == "¡Tu carrito en A&B!"
    assert rendered.html.startswith("<p>Hola de A&amp;B: <table")
    assert "Volver a tu carrito" in rendered.text  # parts without a file stay built in
    french = make_message(locale="fr", channel="sms", extra={"templates_dir": str(tmp_path)})
    assert renderer.sms(french).startswith("Demo Shop: votre panier https://")


def test_unknown_template_variables_are_rejected(tmp_path, make_message):
    (tmp_path / "email_reminder.en.html").write_text("<p>$shopper_password</p>")
    with pytest.raises(RenderError, match="shopper_password"):
        Renderer(templates_dir=tmp_path).email(make_message())


def test_whatsapp_parameters(make_message):
    rendered = Renderer().whatsapp(make_message(locale="es", items=[{"name": "Taza\tazul\n", "qty": 1, "price": 3}],
                                                value=3, checkout_url="https://s.example/c?x=1"))
    assert rendered.body_parameters == ("Demo Shop", "Taza azul", "3,00 €")
    assert rendered.button_suffix.startswith("c?x=1&cw_mid=m")


def test_masking():
    assert mask_contact("jane@example.com") == "j***@example.com"
    assert mask_contact("+34600111221") == "+34*****21"
    assert mask_contact("dGhpcy1pcy1hLXRva2Vu") == "dGhp***"


def test_a_short_template_may_still_use_every_variable(tmp_path, make_message):
    """Push and SMS build the costly variables (items, footer, unsubscribe link) only when their
    template names them; an override that does gets exactly what the email gets."""
    (tmp_path / "push_reminder.en.txt").write_text("$items_text|$footer_text|$unsubscribe_url|$header_html|$logo_html")
    (tmp_path / "push_reminder.en.title").write_text("$store_name: $item_count")
    extra = {"templates_dir": str(tmp_path), "email_header": "Sale <now>", "logo_url": "https://l.example/x.png"}
    message = make_message(channel="push", extra=extra)
    push = Renderer().push(message)
    email = Renderer().email(make_message(id=message.id, extra=extra))
    items_line = "- Blue mug × 2 €12.50 - Logo tee × 1 €20.00"
    assert push.body.startswith(items_line + "|")
    assert email.unsubscribe_url in push.body and "Sale &lt;now&gt;" in push.body and '<img src="https://l.example/x.png"' in push.body
    assert push.title == "Demo Shop: 3"
    assert push.body.split("|")[1] in email.text  # the same footer as the email's


def test_one_line_and_cached_money():
    from channels._format import one_line

    assert one_line("  a\tb\n\nc  ") == "a b c"
    assert one_line("bell\x07 and\x00nul") == "bell andnul"
    assert one_line("x" * 10, 5) == "xxxx…"
    assert one_line(None) == ""
    for _ in range(2):  # the second round comes from the cache
        assert format_money(12, "EUR", "en") == "€12.00" and format_money(12.0, "EUR", "de") == "12,00 €"
        assert format_money(0.005, "USD", "en") == "$0.01" and format_money(1234.5, "JPY", "en") == "¥1,235"
    assert format_money("7", "EUR", "en") == "€7.00"  # not cached, same rule


def test_rendering_leaves_no_reference_cycles(tmp_path, make_message):
    """Every outbox send renders, and the engine freezes long-lived objects out of the collector's reach
    every few seconds (``engine.runtime``): garbage in reference cycles would be freed late, or never.
    Renders must be freed by reference counting alone, lazy variables (header, footer, items) included."""
    (tmp_path / "push_reminder.en.txt").write_text("$items_text|$footer_html|$unsubscribe_url|$header_html|$logo_html")
    extra = {"templates_dir": str(tmp_path), "email_header": "Sale", "logo_url": "https://l.example/x.png"}
    renderer = Renderer()
    renderer.email(make_message(extra=extra))  # template files read and cached before counting
    renderer.push(make_message(channel="push", extra=extra))
    for _ in range(10):  # earlier tests' garbage, and what finalizers free on a first pass
        if not gc.collect():
            break
    gc.disable()
    try:
        for _ in range(50):
            renderer.email(make_message(extra=extra))
            renderer.preview(make_message(channel="push", extra=extra))
            renderer.sms(make_message(channel="sms"))
            renderer.whatsapp(make_message(channel="whatsapp"))
    finally:
        found = gc.collect()
        gc.enable()
    assert found == 0
