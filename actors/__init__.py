"""The domain rules of cart recovery: cart actors, profiles, stores, flows and the registry.

Pure and deterministic: no asyncio, no I/O, no clock (time is always a ``now`` argument in unix seconds),
nothing imported from ``engine`` or ``channels``. The runtime applies the effects these objects return
(:mod:`actors.effects`).
"""
from actors.cart import (
    FINAL_STATES,
    TAG_IDLE,
    TAG_PURGE,
    TAG_STEP,
    CartActor,
    CartState,
)
from actors.durations import format_duration, parse_duration
from actors.effects import (
    CANCEL,
    LOG,
    METRIC,
    SCHEDULE,
    SEND,
    LogRecord,
    Op,
    Outcome,
    SendIntent,
)
from actors.errors import ConfigError, FlowConfigError, StoreConfigError
from actors.flows import (
    BUILTIN_FLOWS,
    CHANNELS,
    DEFAULT_FLOW,
    FOUR_TOUCH,
    REVENUE_RECOVERY,
    Flow,
    Step,
    flows_from_config,
    parse_flow,
)
from actors.incentives import Incentive, discount_code
from actors.profiles import Profile, ProfileBook
from actors.registry import Registry, redact
from actors.scoring import urgency
from actors.stores import StoreRules, parse_store
from actors.windows import Window, next_send_time, parse_window

__all__ = [
    "CartActor", "CartState", "FINAL_STATES", "TAG_IDLE", "TAG_STEP", "TAG_PURGE",
    "parse_duration", "format_duration",
    "Op", "SCHEDULE", "CANCEL", "SEND", "LOG", "METRIC", "Outcome", "SendIntent", "LogRecord",
    "ConfigError", "FlowConfigError", "StoreConfigError",
    "Flow", "Step", "parse_flow", "flows_from_config", "BUILTIN_FLOWS", "REVENUE_RECOVERY", "FOUR_TOUCH",
    "DEFAULT_FLOW", "CHANNELS",
    "Incentive", "discount_code",
    "Profile", "ProfileBook",
    "Registry", "redact",
    "urgency",
    "StoreRules", "parse_store",
    "Window", "parse_window", "next_send_time",
]
