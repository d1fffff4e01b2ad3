"""Configuration: one TOML file, every key defaulted, every bad value named.

``cartwheel run --config FILE`` reads a TOML file (:func:`load_config`); without ``--config`` the
embedded default :data:`DEFAULT_TOML` is used, so the engine starts with no file at all. The file is
untrusted input like any event: a bad value never gets as far as a socket or a timer. Parsing collects
*every* problem and raises one :class:`ConfigError` whose messages each name the key and say what was
expected, e.g.::

    engine.tick: expected a duration like "100ms", got "fast"
    engine.bogus: unknown key (known: ingest_tcp, ingest_unix, ...)
    cartwheel.toml:3:8: invalid TOML: Invalid value

so ``cartwheel run --check`` can report everything in one go.

Sections
--------
``[engine]`` is parsed here into :class:`EngineSettings`. ``[stores.NAME]``, ``[flows.NAME]`` and
``[channels.NAME]`` are checked here only for their shape (each is a table, each NAME made of ASCII
letters, digits, ``_``, ``-`` and ``.``, not starting with ``-`` or ``.``, at most 64 characters) and kept as raw dicts
in :class:`Config`; their contents belong to the packages that own them (``actors.stores``,
``actors.flows``, ``channels``). :func:`check_sections` runs those packages' parsers over the raw
tables and returns their messages, and :func:`parse_config` adds them to the same error list.
Custom flows are data: a ``[flows.NAME]`` table defines a flow that a store selects with
``flow = "NAME"`` next to the built-in ``revenue_recovery`` and ``four_touch``.

``[engine]`` keys (durations are strings like ``"100ms"``, ``"45s"``, ``"90m"``, ``"1h30m"``, ``"5d"``
or plain numbers of seconds; in :class:`EngineSettings` they become float seconds with an ``_s`` name):

=====================  =====================  ===========================================================
key                    default                meaning
=====================  =====================  ===========================================================
``ingest_tcp``         ``"127.0.0.1:7780"``   ingest listener ``HOST:PORT`` (``[::1]:7780`` for IPv6;
                                              port 0 picks a free port); ``""`` disables it
``ingest_unix``        ``"run/ingest.sock"``  ingest UNIX socket path (< 108 bytes); ``""`` disables it
``admin_unix``         ``"run/admin.sock"``   admin UNIX socket path (mode 0600); ``""`` disables it
``admin_tcp``          ``""`` (off)           optional admin listener ``HOST:PORT``, loopback hosts only;
                                              requires a token
``admin_token``        ``""`` (none)          token for ``admin_tcp``; the environment variable
                                              ``CARTWHEEL_ADMIN_TOKEN``, when set and non-empty, wins
                                              over the file (secrets stay out of config files)
``store``              ``"file:state"``       snapshot store: ``"file:DIR"`` or
                                              ``"redis://HOST:PORT/DB"`` (``rediss://`` for TLS)
``durability``         ``"snapshot"``         ``"snapshot"`` (periodic) or ``"journal"`` (every accepted
                                              batch appended before it is acknowledged)
``snapshot_interval``  ``"5s"``               time between snapshots (duration > 0)
``tick``               ``"100ms"``            timing-wheel tick: the resolution of every deadline
                                              (1 ms to 1 min)
``clock``              ``"real"``             ``"real"``, ``"scaled:N"`` (N simulated seconds per real
                                              second, N > 0) or ``"manual"``
``clock_start``        unset                  start time of a manual or scaled clock: unix seconds or an
                                              ISO 8601 time *with* a zone (``2026-03-06T10:00:00Z``);
                                              unset = the real time at start; an error with ``real``
``log_retention``      ``"5d"``               how long the message log is kept
``log_max_records``    ``1000000``            most message-log records kept (1 000 to 100 000 000; when
                                              full the oldest go first, counted in ``stats``
                                              ``message_log_dropped``)
``metrics_http``       ``""`` (off)           ``HOST:PORT`` serving Prometheus ``/metrics``
``partitions``         ``16``                 cart partitions (1 to 16384, the Redis Cluster slot count)
``sync_timeout``       ``"10s"``              longest wait for a ``sync`` control frame to become durable
``max_frame_bytes``    ``1048576`` (1 MiB)    largest ingest frame in bytes (1 KiB to 256 MiB)
``max_batch``          ``10000``              most events in one frame
``max_items``          ``200``                most items in one cart
``max_string``         ``2048``               longest string field, in characters (16 to 1 MiB)
``dedup_window``       ``"24h"``              how long a repeated event ``id`` is ignored
``dedup_capacity``     ``1000000``            most event ids remembered (bounded memory; when full the
                                              oldest are forgotten first, see ``engine.validate.Deduper``)
``apply_queue``        ``50000``              events decoded but not yet applied; when full, ingest stops
                                              reading sockets. At least ``max_batch``: a frame must fit.
=====================  =====================  ===========================================================
"""
from __future__ import annotations

import importlib
import ipaddress
import math
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from difflib import get_close_matches
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from actors.durations import parse_duration  # one duration syntax for flows and engine alike

__all__ = [
    "Config", "ConfigError", "EngineSettings", "DEFAULT_TOML", "ENV_ADMIN_TOKEN",
    "load_config", "parse_config", "check_sections", "check_config_file", "parse_duration",
]

#: Environment variable that supplies (and overrides) ``engine.admin_token``.
ENV_ADMIN_TOKEN = "CARTWHEEL_ADMIN_TOKEN"

#: The configuration used when no file is given: DESIGN.md's ``[engine]`` defaults, no stores, no custom
#: flows, and no channel tables (every channel then defaults to the ``outbox`` kind).
DEFAULT_TOML = """\
[engine]
ingest_tcp = "127.0.0.1:7780"
ingest_unix = "run/ingest.sock"
admin_unix = "run/admin.sock"
admin_tcp = ""
admin_token = ""
store = "file:state"
durability = "snapshot"
snapshot_interval = "5s"
tick = "100ms"
clock = "real"
log_retention = "5d"
log_max_records = 1000000
metrics_http = ""
partitions = 16
sync_timeout = "10s"
max_frame_bytes = 1048576
max_batch = 10000
max_items = 200
max_string = 2048
dedup_window = "24h"
dedup_capacity = 1000000
apply_queue = 50000
"""

SECTIONS = ("engine", "stores", "flows", "channels")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")  # store ids are the shop's own: "shop-17", "eu.main"
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes on Linux including the NUL; macOS allows 103.


class ConfigError(ValueError):
    """The configuration is invalid; ``messages`` lists every problem, one per bad key.

    Attributes:
        messages: ``"path.to.key: what was expected, got what"`` strings: ``[engine]`` first, then the
            sections' shapes, then what the sections' owners found (:func:`check_sections`).
        source: the file name (or ``"<default>"``).
    """

    def __init__(self, messages: list[str], *, source: str = "<config>") -> None:
        self.messages = list(messages)
        self.source = source
        super().__init__(self.__str__())

    def __str__(self) -> str:
        n = len(self.messages)
        head = f"{self.source}: {n} configuration error{'s' if n != 1 else ''}"
        return head + "".join(f"\n  {m}" for m in self.messages)


# ------------------------------------------------------------------------------------------------ helpers


class _Bad(Exception):
    """One key's value is wrong; ``expected`` completes "KEY: expected ..., got VALUE"."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def _show(value: object) -> str:
    """A short, TOML-looking rendering of a bad value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key_path(*parts: str) -> str:
    """``engine.tick``; keys that are not bare TOML keys are quoted: ``stores."my shop"``."""
    return ".".join(p if _BARE_KEY_RE.match(p) else _show(p) for p in parts)


def _closest(word: str, known: list[str]) -> str:
    match = get_close_matches(word, known, n=1, cutoff=0.75)
    return f'; did you mean "{match[0]}"?' if match else ""


def _duration(example: str, *, low_s: float = 0.0, high_s: float = math.inf) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            seconds = parse_duration(value)
        except (ValueError, TypeError):
            raise _Bad(f'a duration like "{example}"') from None
        if not (low_s < seconds <= high_s):
            bounds = "greater than 0" if high_s == math.inf else f"from {_fmt_s(low_s)} to {_fmt_s(high_s)}"
            raise _Bad(f"a duration {bounds}")
        return seconds

    return parse


def _fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if type(value) is not int or not (low <= value <= high):
            raise _Bad(f"an integer from {low} to {high}")
        return value

    return parse


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options or not isinstance(value, str):
            raise _Bad(" or ".join(f'"{o}"' for o in options))
        return value

    return parse


def _host_port(example: str, *, loopback_only: bool = False) -> Callable[[Any], tuple[str, int] | None]:
    expected = f'"HOST:PORT" like "{example}" or "" to disable'

    def parse(value: Any) -> tuple[str, int] | None:
        if not isinstance(value, str):
            raise _Bad(expected)
        if value == "":
            return None
        host, sep, port_text = value.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            if ":" not in host or _ip(host) is None:
                raise _Bad(expected)
        elif ":" in host:  # an IPv6 address without brackets: "::1:7780" is ambiguous
            raise _Bad(f"{expected} (write IPv6 addresses in brackets: [::1]:PORT)")
        if not sep or not host or not port_text.isascii() or not port_text.isdigit():
            raise _Bad(expected)
        port = int(port_text)
        if port > 65535 or " " in host or not host.isprintable():
            raise _Bad(expected)
        if loopback_only and not _is_loopback(host):
            raise _Bad(f'a loopback address like "{example}" (127.0.0.1, [::1] or localhost)')
        return host, port

    return parse


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    address = _ip(host)
    return host == "localhost" or (address is not None and address.is_loopback)


def _socket_path(value: Any) -> str | None:
    expected = f'a socket path shorter than {_UNIX_PATH_MAX + 1} bytes, or "" to disable'
    if not isinstance(value, str) or "\x00" in value:
        raise _Bad(expected)
    if value == "":
        return None
    if len(os.fsencode(value)) > _UNIX_PATH_MAX:
        raise _Bad(expected)
    return value


def _store(value: Any) -> str:
    expected = '"file:DIR" or "redis://HOST:PORT/DB"'
    if not isinstance(value, str):
        raise _Bad(expected)
    if value.startswith("file:"):
        if not value[5:].strip() or "\x00" in value:
            raise _Bad(f"{expected} (DIR must not be empty)")
        return value
    if value.startswith(("redis://", "rediss://")):
        try:
            url = urlsplit(value)
            url.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        except ValueError:
            raise _Bad(expected) from None
        db = url.path.lstrip("/")
        if not url.hostname or (db and not (db.isascii() and db.isdigit())):
            raise _Bad(expected)
        if url.query:
            _redis_query(value)
        return value
    raise _Bad(expected)


def _show_secretless(key: str, value: Any) -> str:
    """``_show(value)`` without the secrets a value may hold: a token, a store URL's password."""
    if key == "admin_token":
        return "a value (not shown: it is a secret)"
    if key == "store" and isinstance(value, str):
        value = re.sub(r"(://[^/@]*?:)[^/@]*@", r"\1***@", value)
    return _show(value)


def _redis_query(value: str) -> None:
    """A redis URL's query parameters as redis-py reads them (``?socket_timeout=5``): a value it cannot
    read, or a parameter it does not know, is a config error here rather than a traceback at start."""
    from urllib.parse import parse_qs

    from redis.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url

    for name in parse_qs(urlsplit(value).query, keep_blank_values=True):
        if name not in URL_QUERY_ARGUMENT_PARSERS:
            raise _Bad(f"a redis URL parameter redis-py knows ({', '.join(sorted(URL_QUERY_ARGUMENT_PARSERS))}), "
                       f"not {name!r}")
    try:
        parse_url(value)
    except ValueError as exc:
        raise _Bad(f"a redis URL redis-py can read ({str(exc).rstrip('.')})") from None


def _clock(value: Any) -> str:
    expected = '"real", "scaled:N" with N > 0, or "manual"'
    if value in ("real", "manual") and isinstance(value, str):
        return value
    if isinstance(value, str) and value.startswith("scaled:"):
        try:
            factor = float(value[7:])
        except ValueError:
            raise _Bad(expected) from None
        if 0.0 < factor < math.inf:
            return value
    raise _Bad(expected)


def _clock_start(value: Any) -> float | None:
    expected = 'unix seconds or an ISO 8601 time with a zone like "2026-03-06T10:00:00Z"'
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (0.0 <= value <= sys.float_info.max):  # also rejects NaN, and ints too big for a float
            raise _Bad(expected)
        return float(value)
    if value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Bad(expected) from None
    if isinstance(value, datetime):  # a TOML offset date-time arrives already parsed
        if value.tzinfo is None:
            raise _Bad(expected + " (this one has no zone)")
        return value.timestamp()
    raise _Bad(expected)


def _token(value: Any) -> str | None:
    if not isinstance(value, str) or any(c.isspace() or not c.isprintable() for c in value):
        raise _Bad("a token string without spaces")
    return value or None


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The ``[engine]`` table, parsed: see the module docstring for each key, default and unit.

    ``None`` means "disabled" for listeners and "unset" for ``clock_start``/``admin_token``.
    Build one from a TOML table with :meth:`from_table`; ``EngineSettings()`` is the embedded default.
    """

    ingest_tcp: tuple[str, int] | None = ("127.0.0.1", 7780)
    ingest_unix: str | None = "run/ingest.sock"
    admin_unix: str | None = "run/admin.sock"
    admin_tcp: tuple[str, int] | None = None
    admin_token: str | None = field(default=None, repr=False)  # a secret: never in logs or reprs
    store: str = "file:state"
    durability: str = "snapshot"
    snapshot_interval_s: float = 5.0
    tick_s: float = 0.1
    clock: str = "real"
    clock_start: float | None = None
    log_retention_s: float = 5 * 86400.0
    log_max_records: int = 1_000_000
    metrics_http: tuple[str, int] | None = None
    partitions: int = 16
    sync_timeout_s: float = 10.0
    max_frame_bytes: int = 1 << 20
    max_batch: int = 10_000
    max_items: int = 200
    max_string: int = 2048
    dedup_window_s: float = 86400.0
    dedup_capacity: int = 1_000_000
    apply_queue: int = 50_000

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, env: Mapping[str, str] | None = None) -> EngineSettings:
        """Parse an ``[engine]`` table (missing keys take their defaults).

        Args:
            table: the TOML table as ``tomllib`` returns it.
            env: where ``CARTWHEEL_ADMIN_TOKEN`` is looked up; default ``os.environ``.

        Raises:
            ConfigError: with one message per bad or unknown key.
        """
        errors: list[str] = []
        settings = _parse_engine(table, errors, os.environ if env is None else env)
        if errors or settings is None:
            raise ConfigError(errors, source="[engine]")
        return settings


#: TOML key → (EngineSettings field, parser). Durations carry their example for the error message.
_ENGINE_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "ingest_tcp": ("ingest_tcp", _host_port("127.0.0.1:7780")),
    "ingest_unix": ("ingest_unix", _socket_path),
    "admin_unix": ("admin_unix", _socket_path),
    "admin_tcp": ("admin_tcp", _host_port("127.0.0.1:7781", loopback_only=True)),
    "admin_token": ("admin_token", _token),
    "store": ("store", _store),
    "durability": ("durability", _choice("snapshot", "journal")),
    "snapshot_interval": ("snapshot_interval_s", _duration("5s")),
    "tick": ("tick_s", _duration("100ms", low_s=0.0009999, high_s=60.0)),
    "clock": ("clock", _clock),
    "clock_start": ("clock_start", _clock_start),
    "log_retention": ("log_retention_s", _duration("5d")),
    "log_max_records": ("log_max_records", _integer(1000, 100_000_000)),
    "metrics_http": ("metrics_http", _host_port("127.0.0.1:9108")),
    "partitions": ("partitions", _integer(1, 16384)),
    "sync_timeout": ("sync_timeout_s", _duration("10s")),
    "max_frame_bytes": ("max_frame_bytes", _integer(1024, 256 << 20)),
    "max_batch": ("max_batch", _integer(1, 1_000_000)),
    "max_items": ("max_items", _integer(1, 100_000)),
    "max_string": ("max_string", _integer(16, 1 << 20)),
    "dedup_window": ("dedup_window_s", _duration("24h")),
    "dedup_capacity": ("dedup_capacity", _integer(1, 100_000_000)),
    "apply_queue": ("apply_queue", _integer(1, 100_000_000)),
}


def _parse_engine(table: Mapping[str, Any], errors: list[str], env: Mapping[str, str]) -> EngineSettings | None:
    """Parse ``[engine]`` into settings, appending one message per problem to ``errors``."""
    values: dict[str, Any] = {}
    known = list(_ENGINE_KEYS)
    for key, value in table.items():
        spec = _ENGINE_KEYS.get(key)
        if spec is None:
            errors.append(f"{_key_path('engine', key)}: unknown key{_closest(key, known)} (known: {', '.join(known)})")
            continue
        name, parse = spec
        try:
            values[name] = parse(value)
        except _Bad as bad:
            errors.append(f"{_key_path('engine', key)}: expected {bad.expected}, got {_show_secretless(key, value)}")
    token = env.get(ENV_ADMIN_TOKEN)
    if token:
        try:
            values["admin_token"] = _token(token)
        except _Bad as bad:
            errors.append(f"{ENV_ADMIN_TOKEN} (environment): expected {bad.expected}")
    settings = EngineSettings(**values)
    # Cross-key rules, checked only on values that parsed (a bad key is reported once, above).
    if settings.admin_tcp is not None and not settings.admin_token and "admin_tcp" in values:
        errors.append(f"engine.admin_token: required when admin_tcp is set (or set {ENV_ADMIN_TOKEN})")
    if settings.clock_start is not None and settings.clock == "real" and "clock" not in _failed(table, values):
        errors.append('engine.clock_start: only used with a "manual" or "scaled:N" clock, and clock is "real"')
    # Two listeners on one address: the second to start fails (or, for a UNIX socket, took the first's path).
    seen: dict[Any, str] = {}
    failed = _failed(table, values)
    for key in ("ingest_unix", "admin_unix", "ingest_tcp", "admin_tcp", "metrics_http"):
        address = getattr(settings, key)  # (a default counts: admin_unix = "run/ingest.sock" collides)
        if key in failed or address is None or (isinstance(address, tuple) and address[1] == 0):
            continue
        where = os.path.normpath(address) if isinstance(address, str) else address
        if where in seen:
            errors.append(f"engine.{key}: the same address as engine.{seen[where]} "
                          f"({_show(address) if isinstance(address, str) else '%s:%d' % address}): "
                          "each listener needs its own")
        else:
            seen[where] = key
    if settings.apply_queue < settings.max_batch and not _failed(table, values) & {"apply_queue", "max_batch"}:
        errors.append(
            f"engine.apply_queue: expected at least max_batch ({settings.max_batch}) so that one frame "
            f"always fits, got {settings.apply_queue}"
        )
    return settings


def _failed(table: Mapping[str, Any], values: Mapping[str, Any]) -> set[str]:
    """The TOML keys present in ``table`` whose value did not parse."""
    return {k for k, (name, _) in _ENGINE_KEYS.items() if k in table and name not in values}


# ----------------------------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration: parsed ``[engine]`` settings plus the other sections as raw tables.

    ``stores``, ``flows`` and ``channels`` map a section NAME to its TOML table, unparsed beyond its
    shape; their owners (``actors.stores``, ``actors.flows``, ``channels``) parse them. ``source`` is the
    file the configuration came from, or ``"<default>"``.
    """

    engine: EngineSettings = field(default_factory=EngineSettings)
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "<default>"


def parse_config(
    data: Mapping[str, Any], *, source: str, env: Mapping[str, str] | None = None, deep: bool = True,
) -> Config:
    """Build a :class:`Config` from a parsed TOML document.

    Args:
        data: the document as ``tomllib`` returns it.
        source: where it came from, for messages (a file name or ``"<default>"``).
        env: environment for ``CARTWHEEL_ADMIN_TOKEN``; default ``os.environ``.
        deep: also run the section owners' parsers (:func:`check_sections`). Leave it on: it is what
            makes ``--check`` report a bad flow step together with a bad engine key.

    Raises:
        ConfigError: listing every problem found.
    """
    errors: list[str] = []
    engine_table = data.get("engine", {})
    engine: EngineSettings | None = None
    if isinstance(engine_table, dict):
        engine = _parse_engine(engine_table, errors, os.environ if env is None else env)
    else:
        errors.append(f"engine: expected a table ([engine]), got {_show(engine_table)}")
    for key, value in data.items():
        if key in SECTIONS:
            continue
        if key in _ENGINE_KEYS:
            hint = f'; did you mean "engine.{key}" under [engine]?'
        else:
            hint = _closest(key, list(SECTIONS))
        what = "unknown section" if isinstance(value, dict) else "unknown key"
        errors.append(f"{_key_path(key)}: {what}{hint} (known sections: {', '.join(SECTIONS)})")
    sections = {name: _named_tables(name, data.get(name, {}), errors) for name in SECTIONS[1:]}
    config = Config(
        engine=engine if engine is not None else EngineSettings(),
        stores=sections["stores"], flows=sections["flows"], channels=sections["channels"], source=source,
    )
    if deep:
        errors.extend(check_sections(config))
    if errors:
        raise ConfigError(errors, source=source)
    return config


def _named_tables(section: str, value: Any, errors: list[str]) -> dict[str, dict[str, Any]]:
    """Check that ``[section.NAME]`` tables are tables with identifier names; keep the good ones."""
    if not isinstance(value, dict):
        errors.append(f"{section}: expected tables like [{section}.NAME], got {_show(value)}")
        return {}
    good: dict[str, dict[str, Any]] = {}
    for name, table in value.items():
        path = _key_path(section, name)
        if not _NAME_RE.match(name):
            errors.append(
                f"{path}: expected a name of ASCII letters, digits, _, - and . (not starting with - or ., "
                f"at most 64 characters)"
            )
        elif not isinstance(table, dict):
            errors.append(f"{path}: expected a table ([{section}.{name}]), got {_show(table)}")
        else:
            good[name] = table
    return good


def load_config(path: str | Path | None, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file; ``None`` means the embedded :data:`DEFAULT_TOML`.

    Raises:
        ConfigError: the file cannot be read, is not valid TOML (message ``FILE:LINE:COL: invalid TOML:
            ...``), or has bad values (every one of them listed).
    """
    if path is None:
        source, text = "<default>", DEFAULT_TOML
    else:
        source = str(path)
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except OSError as exc:
            raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"], source=source) from None
        except UnicodeDecodeError as exc:
            raise ConfigError([f"{source}: not UTF-8 text (byte {exc.start})"], source=source) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_message(source, exc)], source=source) from None
    return parse_config(data, source=source, env=env)


def _toml_message(source: str, exc: tomllib.TOMLDecodeError) -> str:
    """``FILE:LINE:COL: invalid TOML: reason`` (the compiler format editors can jump to)."""
    msg = str(exc)
    m = _TOML_POS_RE.search(msg)
    if m is not None:
        return f"{source}:{m.group(1)}:{m.group(2)}: invalid TOML: {msg[:m.start()]}"
    return f"{source}: invalid TOML: {msg}"


# ------------------------------------------------------------------------------------- section owners


def _optional(module: str, name: str) -> Any:
    """``module.name`` if that module exists, else ``None``; a module that exists but fails to import
    is a bug and its error propagates (hiding it would silently skip validation)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise
    return getattr(mod, name, None)


def check_sections(config: Config) -> list[str]:
    """Run the section owners' parsers over ``config``'s raw tables and return their messages.

    * ``[flows.NAME]`` through ``actors.flows.parse_flow`` (first problem of each flow);
    * ``[stores.NAME]`` through ``actors.stores.parse_store``, given the built-in flows plus the config's
      (a store naming a flow that failed to parse is not reported again for that);
    * ``[channels.NAME]`` through ``channels.ChannelSettings.from_table``, after checking that NAME is
      one of ``actors.flows.CHANNELS`` (the only names a flow step can use).

    Each owner is used when its module exists; a missing owner is skipped and its tables stay checked
    for shape only. Messages name the key path, like ours. Built objects are thrown away: the runtime
    builds its own from the same tables, and this function only answers "is it valid?".
    """
    errors: list[str] = []
    parse_flow = _optional("actors.flows", "parse_flow")
    builtin: dict[str, Any] = _optional("actors.flows", "BUILTIN_FLOWS") or {}
    flows = dict(builtin)
    for name, table in config.flows.items():
        if parse_flow is None:
            flows[name] = None
            continue
        flows[name], found = _every_problem(lambda t, name=name: parse_flow(name, t), table, f"flows.{name}")
        errors.extend(found)
    parse_store = _optional("actors.stores", "parse_store")
    if parse_store is not None:
        fallback = next(iter(builtin.values()), None)
        # Stand-ins for flows that failed above: their errors are already reported.
        known = {name: flow if flow is not None else fallback for name, flow in flows.items()}
        for name, table in config.stores.items():
            errors.extend(_every_problem(lambda t, name=name: parse_store(name, t, known), table, f"stores.{name}")[1])
            flow = known.get(table.get("flow", "revenue_recovery")) if isinstance(table.get("flow", ""), str) else None
            errors.extend(_check_templates_dir(f"stores.{name}.templates_dir", table.get("templates_dir"), flow))
    errors.extend(_check_channels(config.channels))
    return errors


def _check_templates_dir(path: str, directory: object, flow: Any = None) -> list[str]:
    """A store's ``templates_dir`` must be readable, and its files valid templates (relative: to the
    working directory, as the engine resolves it), each for a template the store's ``flow`` uses.
    Checked here, not on each message's render."""
    load = _optional("channels.render", "check_templates_dir")
    if not isinstance(directory, str) or not directory.strip() or load is None:
        return []  # the store's parser reports a wrong type
    templates = None
    if flow is not None:  # a step without a template renders "reminder"; so does "incentive" without an offer
        templates = {step.template or "reminder" for step in flow.steps} | {"reminder"}
    try:
        load(Path(directory), templates)
    except ValueError as exc:  # RenderError
        return [f"{path}: {exc}"]
    return []


def _check_channels(tables: dict[str, dict[str, Any]]) -> list[str]:
    """``[channels.NAME]``: NAME must be a channel a flow step can use, the table must parse."""
    errors: list[str] = []
    usable: tuple[str, ...] | None = _optional("actors.flows", "CHANNELS")
    settings = _optional("channels", "ChannelSettings") or _optional("channels.settings", "ChannelSettings")
    build = getattr(settings, "from_table", None)
    for name, table in tables.items():
        if usable is not None and name not in usable:  # a typo'd table would silently never be used
            hint = _closest(name, list(usable))
            errors.append(f"channels.{name}: unknown channel{hint} (known: {', '.join(usable)})")
        elif build is not None:
            errors.extend(_every_problem(lambda t, name=name: build(name, t), table, f"channels.{name}")[1])
    return errors


def _every_problem(parse: Callable[[dict[str, Any]], Any], table: dict[str, Any], path: str) -> tuple[Any, list[str]]:
    """``(what parse built, [])`` for a valid table, else ``(None, every problem of it)``, though its
    owner's parser stops at the first: parse again without each key reported, until it parses or reports
    nothing new. (A message about a key already reported is the removal's doing, such as "required": not
    reported.) ``ValueError``s are the owners' errors."""
    errors: list[str] = []
    seen: set[str] = set()
    table = dict(table)
    while True:
        try:
            built = parse(table)
            return (None if errors else built), errors
        except ValueError as exc:  # FlowConfigError, StoreConfigError, ChannelConfigError
            messages = _messages(exc, path)
        keys = [_key_named(m, path) for m in messages]
        if not messages or any(k is None or k in seen or k not in table for k in keys):
            if not errors:  # (the first answer is reported whatever it says)
                errors.extend(messages)
            return None, errors
        errors.extend(messages)
        for key in keys:
            seen.add(key)  # type: ignore[arg-type]
            table.pop(key, None)  # type: ignore[arg-type]


def _key_named(message: str, path: str) -> str | None:
    """The table's own key a message is about: ``stores.demo.quiet_hours.start: ...`` -> ``quiet_hours``."""
    prefix = path + "."
    if not message.startswith(prefix):
        return None
    return re.split(r"[.:\[ ]", message[len(prefix):], maxsplit=1)[0] or None


def _messages(exc: BaseException, path: str) -> list[str]:
    """An owner's exception as messages that start with a key path (prefix ``path`` if missing)."""
    found = getattr(exc, "messages", None) or getattr(exc, "errors", None)
    texts = [str(m) for m in found] if isinstance(found, (list, tuple)) else [str(exc)]
    return [t if t.startswith(path) else f"{path}: {t}" for t in texts]


def check_config_file(path: str | Path | None, *, stream: TextIO | None = None) -> int:
    """``cartwheel run --check``: validate, print every problem (or "ok"), return the exit status.

    Args:
        path: the file, or ``None`` for the embedded default.
        stream: where to print; default ``sys.stdout``.

    Returns:
        0 when the configuration is valid, 2 otherwise (the usage-error status of argparse).
    """
    stream = sys.stdout if stream is None else stream
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=stream)
        return 2
    print(f"{config.source}: ok", file=stream)
    return 0
