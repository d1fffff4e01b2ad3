"""Recovery flows as data: an abandonment rule plus timed steps, built in or parsed from config.

A :class:`Flow` says when an idle cart counts as abandoned (``abandon_after_s``), which messages go out
how long after abandonment (:class:`Step`), when the run gives up (``expire_after_s``, the cart becomes
*expired*), how long after the last message an order is still credited to it (``attribution_window_s``)
and how the per-profile frequency cap behaves (``frequency_cap_s``, ``on_cap``). Flows hold no state:
one ``Flow`` object is shared by every cart of every store that uses it.

Built-in flows (DESIGN.md "Flows"):

``revenue_recovery`` (default)::

    step  after   channels       notes
    1     1h      email, push
    2     1h30m   whatsapp       window "whatsapp"; the store's whatsapp_delay (90m, 2h, 6h) replaces 1h30m
    3     4h      email, push    carries the store's incentive
    4     24h     email, push    resend
    5     40h     email, push    final attempt
          48h     -              run ends: expired

``four_touch`` (the classic day-based workflow)::

    step  after   channels  template
    1     1d      sms       reminder
    2     3d      email     reminder
    3     7d      email     urgency ("items may sell out")
    4     10d     sms       final
          11d     -         run ends: one day after the final SMS, so the last touch gets a day of its own
                            before the cart counts as expired (an order later on is still attributed
                            within the attribution window)

Config (``[flows.NAME]``) keys, all durations as accepted by :func:`actors.durations.parse_duration`:
``abandon_after`` (default ``"30m"``), ``expire_after`` (default: last step + ``1d``),
``attribution_window`` (``"5d"``), ``frequency_cap`` (``"12h"``; ``0`` disables it), ``on_cap``
(``"postpone"`` or ``"drop"``), ``steps`` (a non-empty list of tables with ``after``, ``channels`` and the
optional ``incentive``, ``window``, ``template``, ``send_in``, ``min_value``, ``max_value``,
``high_intent``, ``currency``). Steps are numbered from 1 in config order (the ``step`` of idempotency
keys and log records) and must be listed in non-decreasing ``after`` order.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from actors.durations import format_duration, parse_duration
from actors.errors import FlowConfigError, describe

_T = TypeVar("_T")

__all__ = [
    "CHANNELS", "WINDOWS", "Step", "Flow", "parse_flow", "flows_from_config", "BUILTIN_FLOWS",
    "REVENUE_RECOVERY", "FOUR_TOUCH", "DEFAULT_FLOW", "MAX_STEPS",
]

#: Channel names a step may use; they are the names of the ``[channels.*]`` tables.
CHANNELS = ("email", "push", "whatsapp", "sms", "webhook")
#: Send windows a step may name; each store defines them (``whatsapp_window``).
WINDOWS = ("whatsapp",)
DEFAULT_FLOW = "revenue_recovery"
#: Most steps a flow may have: a cart records the steps its run handled as one bit each, stored as a
#: msgpack int64 (``actors.cart``).
MAX_STEPS = 63

_DAY_S = 86400.0
_FLOW_KEYS = ("abandon_after", "expire_after", "attribution_window", "frequency_cap", "on_cap", "steps")
_STEP_KEYS = (
    "after", "channels", "incentive", "window", "template", "send_in", "min_value", "max_value",
    "high_intent", "currency",
)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a flow: which channels, how long after abandonment, and under which conditions.

    Attributes:
        after_s: delay from abandonment, seconds.
        channels: channel names, in the order they are tried (the first sent one gets the credit when
            one step's messages are attributed).
        incentive: carry the store's incentive (free shipping or a discount code).
        window: name of a store send window the step must fall into (``"whatsapp"``), or None.
        template: template name handed to the channel (``"reminder"``, ``"urgency"``, ...).
        send_in: ``"store"`` or ``"profile"``: the time zone in which ``window`` and the store's quiet
            hours are evaluated (the shopper's own, when the profile has one).
        min_value, max_value: the step only runs for carts whose value is within these bounds.
        high_intent: True: only carts that reached checkout; False: only carts that did not.
        currency: only carts in this currency (upper-case ISO code).
    """

    after_s: float
    channels: tuple[str, ...]
    incentive: bool = False
    window: str | None = None
    template: str | None = None
    send_in: str = "store"
    min_value: float | None = None
    max_value: float | None = None
    high_intent: bool | None = None
    currency: str | None = None

    @property
    def has_condition(self) -> bool:
        """Whether :meth:`unmet` needs the cart's contents at all (saves an unpack when not)."""
        return not (
            self.min_value is None and self.max_value is None and self.high_intent is None and self.currency is None
        )

    def unmet(self, value: float, currency: str | None, high_intent: bool) -> str | None:
        """The reason this step does not apply to a cart, or None when it does."""
        if self.min_value is not None and value < self.min_value:
            return f"condition: value {value:.2f} below min_value {self.min_value:g}"
        if self.max_value is not None and value > self.max_value:
            return f"condition: value {value:.2f} above max_value {self.max_value:g}"
        if self.high_intent is not None and high_intent != self.high_intent:
            return "condition: cart is not high-intent" if self.high_intent else "condition: cart is high-intent"
        if self.currency is not None and currency != self.currency:
            return f"condition: currency {currency} is not {self.currency}"
        return None


@dataclass(frozen=True, slots=True)
class Flow:
    """A recovery flow. All durations in seconds; see the module docstring for the meaning of each."""

    name: str
    steps: tuple[Step, ...]
    abandon_after_s: float = 1800.0
    expire_after_s: float = 48 * 3600.0
    attribution_window_s: float = 5 * _DAY_S
    frequency_cap_s: float = 12 * 3600.0
    on_cap: str = "postpone"

    def describe(self) -> list[dict[str, Any]]:
        """The steps as plain dicts with readable durations (for the admin ``flows`` command)."""
        return [
            {"step": i, "after": format_duration(s.after_s), "channels": list(s.channels),
             "incentive": s.incentive, "window": s.window, "template": s.template, "send_in": s.send_in,
             "min_value": s.min_value, "max_value": s.max_value, "high_intent": s.high_intent, "currency": s.currency}
            for i, s in enumerate(self.steps, 1)
        ]


REVENUE_RECOVERY = Flow(
    name="revenue_recovery",
    steps=(
        Step(3600.0, ("email", "push"), template="reminder"),
        Step(5400.0, ("whatsapp",), window="whatsapp", template="reminder"),
        Step(4 * 3600.0, ("email", "push"), incentive=True, template="incentive"),
        Step(24 * 3600.0, ("email", "push"), template="resend"),
        Step(40 * 3600.0, ("email", "push"), template="final"),
    ),
    expire_after_s=48 * 3600.0,
)

FOUR_TOUCH = Flow(
    name="four_touch",
    steps=(
        Step(1 * _DAY_S, ("sms",), template="reminder"),
        Step(3 * _DAY_S, ("email",), template="reminder"),
        Step(7 * _DAY_S, ("email",), template="urgency"),
        Step(10 * _DAY_S, ("sms",), template="final"),
    ),
    expire_after_s=11 * _DAY_S,
)

#: The flows every engine knows, by name.
BUILTIN_FLOWS: dict[str, Flow] = {REVENUE_RECOVERY.name: REVENUE_RECOVERY, FOUR_TOUCH.name: FOUR_TOUCH}


def _unknown_keys(path: str, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            raise FlowConfigError(f"{path}.{key}", f"unknown key (allowed: {', '.join(allowed)})")


#: the longest duration a flow may name (ten years): timers are int64 ticks, and nothing longer makes
#: sense for a cart
MAX_FLOW_DURATION_S = 3650 * _DAY_S


def _duration(path: str, value: object, *, positive: bool = False) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise FlowConfigError(path, str(exc)) from None
    if positive and seconds <= 0:
        raise FlowConfigError(path, f"must be longer than 0, got {describe(value)}")
    if seconds > MAX_FLOW_DURATION_S:
        raise FlowConfigError(path, f"must be at most 3650d, got {describe(value)}")
    return seconds


def _number(path: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise FlowConfigError(path, f"expected a number >= 0, got {describe(value)}")
    return float(value)


def _bool(path: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise FlowConfigError(path, f"expected true or false, got {describe(value)}")
    return value


def _choice(path: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(f'"{c}"' for c in choices)
        raise FlowConfigError(path, f"expected one of {options}, got {describe(value)}")
    return value


def _parse_step(path: str, table: object) -> Step:
    if not isinstance(table, Mapping):
        raise FlowConfigError(path, f"expected a table, got {describe(table)}")
    _unknown_keys(path, table, _STEP_KEYS)
    if "after" not in table:
        raise FlowConfigError(f"{path}.after", "missing (a delay from abandonment, like \"1h\")")
    after_s = _duration(f"{path}.after", table["after"])
    raw_channels = table.get("channels")
    if not isinstance(raw_channels, list) or not raw_channels:
        raise FlowConfigError(
            f"{path}.channels", f"expected a non-empty list of channel names, got {describe(raw_channels)}"
        )
    channels: list[str] = []
    for j, name in enumerate(raw_channels):
        _choice(f"{path}.channels[{j}]", name, CHANNELS)
        if name in channels:
            raise FlowConfigError(f"{path}.channels[{j}]", f'duplicate channel "{name}"')
        channels.append(sys.intern(name))
    window = table.get("window")
    if window is not None:
        window = _choice(f"{path}.window", window, WINDOWS)
    template = table.get("template")
    if template is not None and (not isinstance(template, str) or not template.strip()):
        raise FlowConfigError(f"{path}.template", f"expected a template name, got {describe(template)}")
    min_value = _number(f"{path}.min_value", table["min_value"]) if "min_value" in table else None
    max_value = _number(f"{path}.max_value", table["max_value"]) if "max_value" in table else None
    if min_value is not None and max_value is not None and max_value < min_value:
        raise FlowConfigError(f"{path}.max_value", f"must not be below min_value ({min_value:g}), got {max_value:g}")
    currency = table.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha() or not currency.isascii():
            raise FlowConfigError(
                f"{path}.currency", f'expected a 3-letter currency code like "EUR", got {describe(currency)}'
            )
        currency = sys.intern(currency.upper())
    return Step(
        after_s=after_s,
        channels=tuple(channels),
        incentive=_bool(f"{path}.incentive", table["incentive"]) if "incentive" in table else False,
        window=window,
        template=template,
        send_in=_choice(f"{path}.send_in", table["send_in"], ("store", "profile")) if "send_in" in table else "store",
        min_value=min_value,
        max_value=max_value,
        high_intent=_bool(f"{path}.high_intent", table["high_intent"]) if "high_intent" in table else None,
        currency=currency,
    )


def parse_flow(name: str, table: object) -> Flow:
    """Build a flow from its ``[flows.NAME]`` config table, validating every key.

    Args:
        name: the flow's name (the TOML table key).
        table: the table's contents as loaded from TOML.

    Returns:
        The validated :class:`Flow`.

    Raises:
        FlowConfigError: naming the exact path and the reason, e.g.
            ``flows.vip.steps[2].after: expected a duration like "90m", got -5``.
    """
    path = f"flows.{name}"
    if not isinstance(table, Mapping):
        raise FlowConfigError(path, f"expected a table, got {describe(table)}")
    problems: list[FlowConfigError] = []  # every problem of the table, not just the first

    def attempt(parse: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
        try:
            return parse(*args, **kwargs)
        except FlowConfigError as exc:
            problems.append(exc)
            return None

    attempt(_unknown_keys, path, table, _FLOW_KEYS)
    raw_steps = table.get("steps")
    steps: list[Step] = []
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(FlowConfigError(
            f"{path}.steps", f"expected a non-empty list of step tables, got {describe(raw_steps)}"))
        raw_steps = []
    elif len(raw_steps) > MAX_STEPS:  # a run records the steps it handled in an int64 bitmask
        problems.append(FlowConfigError(f"{path}.steps", f"at most {MAX_STEPS} steps, got {len(raw_steps)}"))
        raw_steps = []
    for i, raw in enumerate(raw_steps):
        step = attempt(_parse_step, f"{path}.steps[{i}]", raw)
        if step is None:
            continue
        if steps and step.after_s < steps[-1].after_s:
            problems.append(FlowConfigError(
                f"{path}.steps[{i}].after",
                f"steps must be in time order: {format_duration(step.after_s)} comes before the previous "
                f"step's {format_duration(steps[-1].after_s)}",
            ))
        steps.append(step)
    last_s = steps[-1].after_s if steps else 0.0
    expire_s: float | None = last_s + _DAY_S
    if "expire_after" in table:
        expire_s = attempt(_duration, f"{path}.expire_after", table["expire_after"])
        if expire_s is not None and steps and expire_s <= last_s:
            problems.append(FlowConfigError(
                f"{path}.expire_after",
                f"must be after the last step ({format_duration(last_s)}), got {describe(table['expire_after'])}",
            ))
    abandon_s = attempt(_duration, f"{path}.abandon_after", table.get("abandon_after", "30m"), positive=True)
    attribution_s = attempt(
        _duration, f"{path}.attribution_window", table.get("attribution_window", "5d"), positive=True
    )
    cap_s = attempt(_duration, f"{path}.frequency_cap", table.get("frequency_cap", "12h"))
    on_cap = attempt(_choice, f"{path}.on_cap", table.get("on_cap", "postpone"), ("drop", "postpone"))
    if problems:
        first = problems[0]
        first.messages = [m for p in problems for m in p.messages]
        raise first
    assert expire_s is not None and abandon_s is not None and attribution_s is not None
    assert cap_s is not None and on_cap is not None
    return Flow(
        name=sys.intern(name),
        steps=tuple(steps),
        abandon_after_s=abandon_s,
        expire_after_s=expire_s,
        attribution_window_s=attribution_s,
        frequency_cap_s=cap_s,
        on_cap=on_cap,
    )


def flows_from_config(tables: object) -> dict[str, Flow]:
    """The built-in flows plus every ``[flows.NAME]`` table (a config flow may replace a built-in one).

    Raises:
        FlowConfigError: for the first invalid table.
    """
    flows = dict(BUILTIN_FLOWS)
    if tables is None:
        return flows
    if not isinstance(tables, Mapping):
        raise FlowConfigError("flows", f"expected a table of flow tables, got {describe(tables)}")
    for name, table in tables.items():
        flows[name] = parse_flow(name, table)
    return flows
