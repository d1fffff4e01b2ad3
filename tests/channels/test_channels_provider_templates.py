"""WhatsApp template names per step: DESIGN.md's ``template`` key, by step number or step template."""
from __future__ import annotations

from channels import ChannelSettings, Renderer, WhatsAppSender


def test_the_whatsapp_template_key_names_templates_per_step(make_message) -> None:  # type: ignore[no-untyped-def]
    settings = ChannelSettings.from_table("whatsapp", {
        "kind": "whatsapp", "api_version": "v19.0",
        "template": {"2": "cart_step_two", "incentive": "cart_offer"},
    })
    options = settings.options
    sender = WhatsAppSender(options, renderer=Renderer(), timeout_s=5.0)  # type: ignore[arg-type]
    extra = {"whatsapp": {"phone_number_id": "1055501", "token": "t"}}

    def name(**fields: object) -> str:
        message = make_message(channel="whatsapp", to="+34600111221", extra=extra, **fields)
        return str(sender.payload(message)["template"]["name"])

    assert name(step=2, template="reminder") == "cart_step_two"  # a step number wins
    assert name(step=3, template="incentive", incentive={"kind": "free_shipping"}) == "cart_offer"
    assert name(step=4, template="reminder") == "cart_reminder"  # the built-in default
