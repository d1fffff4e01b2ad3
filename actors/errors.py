"""Config errors that name the exact key at fault (DESIGN.md principle 5: a rejection names the field).

``str(error)`` is ``"<path>: <reason>"``, e.g. ``flows.vip.steps[2].after: expected a duration like "90m",
got -5``; ``path`` and ``reason`` are also kept apart so that the engine's config loader can re-prefix or
collect them.
"""
from __future__ import annotations

__all__ = ["ConfigError", "FlowConfigError", "StoreConfigError"]


class ConfigError(ValueError):
    """A config value was rejected.

    Attributes:
        path: dotted TOML path of the offending key (``stores.demo.whatsapp_window.start``).
        reason: what is wrong with it, without the path.
        messages: every problem found in the same table, this one first (a parser that goes on after
            the first problem fills it; ``cartwheel run --check`` prints them all).
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.messages: list[str] = [f"{path}: {reason}"]


class FlowConfigError(ConfigError):
    """A ``[flows.NAME]`` table is invalid."""


class StoreConfigError(ConfigError):
    """A ``[stores.NAME]`` table is invalid."""


def describe(value: object) -> str:
    """Render a rejected value as TOML would show it (strings in double quotes), shortened to 60 chars."""
    if isinstance(value, str):
        text = '"' + value.replace('"', '\\"') + '"'
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
