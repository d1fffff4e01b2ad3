"""The built-in message texts (English and Spanish) and the email layouts.

Texts are :class:`string.Template` strings (``$store_name``, ``${total}``); the variables are listed
in :mod:`channels.render`. A store replaces any of them with files (see ``render.py``); these are what
a store gets without configuring anything. Steps (``Message.template``): ``reminder`` (first nudge),
``incentive`` (carries the store's offer), ``urgency`` (items may sell out), ``final`` (last call).
"""
from __future__ import annotations

__all__ = ["PHRASES", "EMAIL_HTML", "EMAIL_TEXT", "LANGUAGES", "TEMPLATES"]

TEMPLATES = ("reminder", "incentive", "urgency", "final")

PHRASES: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        "reminder": {
            "subject": "You left something in your cart at $store_name",
            "headline": "Still thinking it over?",
            "intro": "You left these items in your cart at $store_name. We saved them for you.",
            "push_title": "$store_name: your cart is waiting",
            "push_body": "You left $item_count item(s) in your cart ($total). Tap to pick up where you left off.",
            "sms": "$store_name: you left $item_count item(s) in your cart ($total). $incentive_text Resume: $resume_url",
        },
        "incentive": {
            "subject": "A little something to complete your order at $store_name",
            "headline": "Here's a thank-you for coming back",
            "intro": "Your cart at $store_name is waiting, and we've added an offer for you.",
            "push_title": "$store_name: an offer for your cart",
            "push_body": "$incentive_text Your $item_count item(s) are still in your cart.",
            "sms": "$store_name: $incentive_text Your cart ($total) is waiting: $resume_url",
        },
        "urgency": {
            "subject": "Items in your cart at $store_name may sell out",
            "headline": "Don't miss out",
            "intro": "The items in your cart are popular and may sell out soon.",
            "push_title": "$store_name: items may sell out",
            "push_body": "The items in your cart are selling fast. Complete your order now.",
            "sms": "$store_name: items in your cart may sell out soon. $incentive_text Order now: $resume_url",
        },
        "final": {
            "subject": "Last chance: your cart at $store_name expires soon",
            "headline": "Last chance",
            "intro": "We can only hold your cart at $store_name a little longer.",
            "push_title": "$store_name: last chance",
            "push_body": "Your cart ($total) expires soon.",
            "sms": "$store_name: last chance, your cart ($total) expires soon. $incentive_text $resume_url",
        },
        "_common": {
            "cta": "Return to your cart",
            "qty": "Qty",
            "total": "Total",
            "unsubscribe": "Unsubscribe",
            "footer": "You are receiving this email because you left items in your cart at $store_name.",
            "more_items": "$first and $n more item(s)",
            "discount": "$percent% off with code $code.",
            "amount_off": "$amount off with code $code.",
            "free_shipping": "Free shipping on this order.",
            "code_only": "Use code $code at checkout.",
        },
    },
    "es": {
        "reminder": {
            "subject": "Olvidaste algo en tu carrito de $store_name",
            "headline": "¿Todavía lo estás pensando?",
            "intro": "Dejaste estos artículos en tu carrito de $store_name. Los hemos guardado para ti.",
            "push_title": "$store_name: tu carrito te espera",
            "push_body": "Dejaste $item_count artículo(s) en tu carrito ($total). Toca para continuar donde lo dejaste.",
            "sms": "$store_name: dejaste $item_count artículo(s) en tu carrito ($total). $incentive_text Continúa aquí: $resume_url",
        },
        "incentive": {
            "subject": "Un regalo para completar tu pedido en $store_name",
            "headline": "Gracias por volver",
            "intro": "Tu carrito de $store_name te espera, y te hemos preparado una oferta.",
            "push_title": "$store_name: una oferta para tu carrito",
            "push_body": "$incentive_text Tus $item_count artículo(s) siguen en tu carrito.",
            "sms": "$store_name: $incentive_text Tu carrito ($total) te espera: $resume_url",
        },
        "urgency": {
            "subject": "Los artículos de tu carrito de $store_name podrían agotarse",
            "headline": "Que no se te escapen",
            "intro": "Los artículos de tu carrito son populares y podrían agotarse pronto.",
            "push_title": "$store_name: podrían agotarse",
            "push_body": "Los artículos de tu carrito se están vendiendo rápido. Completa tu pedido ahora.",
            "sms": "$store_name: los artículos de tu carrito podrían agotarse pronto. $incentive_text Compra ahora: $resume_url",
        },
        "final": {
            "subject": "Última oportunidad: tu carrito de $store_name caduca pronto",
            "headline": "Última oportunidad",
            "intro": "Solo podemos guardar tu carrito de $store_name un poco más.",
            "push_title": "$store_name: última oportunidad",
            "push_body": "Tu carrito ($total) caduca pronto.",
            "sms": "$store_name: última oportunidad, tu carrito ($total) caduca pronto. $incentive_text $resume_url",
        },
        "_common": {
            "cta": "Volver a tu carrito",
            "qty": "Cant.",
            "total": "Total",
            "unsubscribe": "Darse de baja",
            "footer": "Recibes este correo porque dejaste artículos en tu carrito de $store_name.",
            "more_items": "$first y $n artículo(s) más",
            "discount": "$percent % de descuento con el código $code.",
            "amount_off": "$amount de descuento con el código $code.",
            "free_shipping": "Envío gratis en este pedido.",
            "code_only": "Usa el código $code al pagar.",
        },
    },
}

LANGUAGES = tuple(PHRASES)

#: the HTML part of every built-in email; all variables are already HTML-escaped except *_html
EMAIL_HTML = """<!DOCTYPE html>
<html lang="$language">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>$subject</title></head>
<body style="margin:0;padding:0;background:#f4f4f5;font-family:Helvetica,Arial,sans-serif;color:#18181b">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center" style="padding:24px">
<table role="presentation" width="600" cellpadding="0" cellspacing="0" style="background:#ffffff;border-radius:8px">
<tr><td style="padding:24px 24px 8px 24px">$logo_html<div style="font-size:14px;color:#52525b">$header_html</div>
<h1 style="font-size:22px;margin:12px 0">$headline</h1><p style="font-size:15px;line-height:1.5">$intro</p></td></tr>
<tr><td style="padding:0 24px">$items_html</td></tr>
<tr><td style="padding:8px 24px;font-size:16px"><strong>$total_label: $total</strong></td></tr>
$incentive_html
<tr><td align="center" style="padding:16px 24px 24px 24px"><a href="$resume_url" style="background:#18181b;color:#ffffff;padding:12px 20px;border-radius:6px;text-decoration:none;font-weight:bold">$cta</a></td></tr>
<tr><td style="padding:16px 24px;font-size:12px;color:#71717a;border-top:1px solid #e4e4e7">$footer_html<br>
<a href="$unsubscribe_url" style="color:#71717a">$unsubscribe_label</a></td></tr>
</table></td></tr></table>
</body>
</html>
"""

#: the plain-text part of every built-in email
EMAIL_TEXT = """$header_text
$headline

$intro

$items_text

$total_label: $total
$incentive_text

$cta: $resume_url

--
$footer_text
$unsubscribe_label: $unsubscribe_url
"""
