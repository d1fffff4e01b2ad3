"""engine.config: defaults, one message per bad key, all errors at once, durations, TOML errors."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import (
    DEFAULT_TOML,
    ENV_ADMIN_TOKEN,
    Config,
    ConfigError,
    EngineSettings,
    check_config_file,
    check_sections,
    load_config,
    parse_config,
    parse_duration,
)


def engine_errors(**engine: Any) -> list[str]:
    """The messages for an ``[engine]`` table with these keys (shape-level only, no environment)."""
    with pytest.raises(ConfigError) as info:
        parse_config({"engine": engine}, source="test.toml", env={})
    return info.value.messages


def engine(**values: Any) -> EngineSettings:
    return parse_config({"engine": values}, source="test.toml", env={}).engine


# ------------------------------------------------------------------------------------------- defaults


def test_embedded_default_matches_design_md() -> None:
    config = load_config(None, env={})
    assert config.source == "<default>"
    assert config.stores == {} and config.flows == {} and config.channels == {}
    e = config.engine
    assert e == EngineSettings()
    # DESIGN.md's [engine] block and the limits, spelled out so a changed default fails here.
    assert e.ingest_tcp == ("127.0.0.1", 7780)
    assert e.ingest_unix == "run/ingest.sock"
    assert e.admin_unix == "run/admin.sock"
    assert e.admin_tcp is None and e.admin_token is None
    assert e.store == "file:state"
    assert e.durability == "snapshot"
    assert e.snapshot_interval_s == 5.0
    assert e.tick_s == 0.1
    assert e.clock == "real" and e.clock_start is None
    assert e.log_retention_s == 5 * 86400
    assert e.log_max_records == 1_000_000
    assert e.metrics_http is None
    assert e.partitions == 16
    assert e.sync_timeout_s == 10.0
    assert e.max_frame_bytes == 1024 * 1024
    assert e.max_batch == 10_000
    assert e.max_items == 200
    assert e.max_string == 2048
    assert e.dedup_window_s == 24 * 3600
    assert e.dedup_capacity == 1_000_000
    assert e.apply_queue == 50_000


def test_default_toml_lists_every_engine_key() -> None:
    keys = set(tomllib.loads(DEFAULT_TOML)["engine"])
    documented = {
        "ingest_tcp", "ingest_unix", "admin_unix", "admin_tcp", "admin_token", "store", "durability",
        "snapshot_interval", "tick", "clock", "log_retention", "log_max_records", "metrics_http", "partitions",
        "sync_timeout", "max_frame_bytes", "max_batch", "max_items", "max_string", "dedup_window",
        "dedup_capacity", "apply_queue",
    }
    assert keys == documented  # clock_start has no TOML spelling for "unset", so it is left out


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    config = load_config(path, env={})
    assert config == Config(source=str(path))


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        EngineSettings().tick_s = 1.0  # type: ignore[misc]


def test_admin_token_is_not_in_repr() -> None:
    assert "s3cret" not in repr(engine(admin_token="s3cret-token"))


# ------------------------------------------------------------------------------------------- good values


def test_good_values_parse_to_their_units() -> None:
    e = engine(
        ingest_tcp="[::1]:0", ingest_unix="", admin_unix="/tmp/a.sock", admin_tcp="localhost:7781",
        admin_token="tok", store="redis://127.0.0.1:6379/0", durability="journal",
        snapshot_interval="1h30m", tick="10ms", clock="scaled:3600", clock_start="2026-03-06T10:00:00Z",
        log_retention="90m", metrics_http="127.0.0.1:9108", partitions=64, sync_timeout=2.5,
        max_frame_bytes=4096, max_batch=5, max_items=10, max_string=64, dedup_window="5d",
        dedup_capacity=10, apply_queue=5,
    )
    assert e.ingest_tcp == ("::1", 0)
    assert e.ingest_unix is None
    assert e.admin_tcp == ("localhost", 7781)
    assert e.admin_token == "tok"
    assert e.snapshot_interval_s == 5400.0
    assert e.tick_s == pytest.approx(0.01)
    assert e.clock_start == 1772791200.0
    assert e.log_retention_s == 5400.0
    assert e.metrics_http == ("127.0.0.1", 9108)
    assert e.sync_timeout_s == 2.5
    assert e.dedup_window_s == 432000.0


@pytest.mark.parametrize(
    "value, expected",
    [(1772791200, 1772791200.0), ("2026-03-06T11:00:00+01:00", 1772791200.0), ("", None)],
)
def test_clock_start_forms(value: Any, expected: float | None) -> None:
    assert engine(clock="manual", clock_start=value).clock_start == expected


def test_clock_start_as_toml_datetime() -> None:
    data = tomllib.loads('[engine]\nclock = "manual"\nclock_start = 2026-03-06T10:00:00Z\n')
    assert parse_config(data, source="t", env={}).engine.clock_start == 1772791200.0


@pytest.mark.parametrize("store", ["file:state", "file:/var/lib/cartwheel", "rediss://h:6380", "redis://h/3",
                                   "redis://h/3?socket_timeout=5&health_check_interval=30"])
def test_good_stores(store: str) -> None:
    assert engine(store=store).store == store


# ------------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    "text, seconds",
    [("90m", 5400.0), ("1h30m", 5400.0), ("5d", 432000.0), ("100ms", 0.1), ("45s", 45.0), (30, 30.0),
     (2.5, 2.5), ("24h", 86400.0)],
)
def test_parse_duration(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["fast", "", "5x", "m", "-5m", "1h-30m", "h1", True, None, [1]])
def test_parse_duration_rejects(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


# ------------------------------------------------------------------------------------------- bad values

BAD_VALUES = [
    ("ingest_tcp", "nohost",
     'engine.ingest_tcp: expected "HOST:PORT" like "127.0.0.1:7780" or "" to disable, got "nohost"'),
    ("ingest_tcp", "127.0.0.1:99999", "engine.ingest_tcp: expected"),
    ("ingest_tcp", "::1:7780", "write IPv6 addresses in brackets"),
    ("ingest_tcp", 7780, "engine.ingest_tcp: expected"),
    ("ingest_unix", "x" * 200, "engine.ingest_unix: expected a socket path shorter than 108 bytes"),
    ("ingest_unix", 5, "engine.ingest_unix: expected"),
    ("admin_unix", False, "engine.admin_unix: expected a socket path"),
    ("admin_tcp", "0.0.0.0:7781", 'engine.admin_tcp: expected a loopback address like "127.0.0.1:7781"'),
    ("admin_tcp", "example.com:7781", "engine.admin_tcp: expected a loopback address"),
    ("admin_token", "has space", "engine.admin_token: expected a token string without spaces"),
    ("store", "postgres://x", 'engine.store: expected "file:DIR" or "redis://HOST:PORT/DB", got "postgres://x"'),
    ("store", "file:", "engine.store: expected"),
    ("store", "redis://h:port/0", "engine.store: expected"),
    ("store", "redis:///0", "engine.store: expected"),
    ("store", "redis://h/db", "engine.store: expected"),
    # query parameters as redis-py reads them (a bad one was a traceback at start), and no password shown
    ("store", "redis://:pw@h/0?db=x",
     "engine.store: expected a redis URL redis-py can read (Invalid value for 'db' in connection URL), "
     'got "redis://:***@h/0?db=x"'),
    ("store", "redis://h/0?socket_timeout=soon", "engine.store: expected a redis URL redis-py can read"),
    ("store", "redis://h/0?colour=red", "engine.store: expected a redis URL parameter redis-py knows"),
    ("store", "redis://u:pw@h:port/0", 'got "redis://u:***@h:port/0"'),
    ("admin_token", 5, "engine.admin_token: expected a token string without spaces, got a value (not shown"),
    ("durability", "always", 'engine.durability: expected "snapshot" or "journal", got "always"'),
    ("snapshot_interval", "soon", 'engine.snapshot_interval: expected a duration like "5s", got "soon"'),
    ("snapshot_interval", 0, "engine.snapshot_interval: expected a duration greater than 0, got 0"),
    ("tick", "fast", 'engine.tick: expected a duration like "100ms", got "fast"'),
    ("tick", "2m", "engine.tick: expected a duration from"),
    ("tick", "1us", 'engine.tick: expected a duration like "100ms"'),
    ("clock", "scaled:0", 'engine.clock: expected "real", "scaled:N" with N > 0, or "manual", got "scaled:0"'),
    ("clock", "scaled:x", "engine.clock: expected"),
    ("clock", "fake", "engine.clock: expected"),
    ("clock_start", "yesterday", "engine.clock_start: expected unix seconds or an ISO 8601 time with a zone"),
    ("clock_start", "2026-03-06T10:00:00", "(this one has no zone)"),
    ("clock_start", -1, "engine.clock_start: expected"),
    ("log_retention", "forever", 'engine.log_retention: expected a duration like "5d", got "forever"'),
    ("log_max_records", 0, "engine.log_max_records: expected an integer from 1000 to 100000000, got 0"),
    ("log_max_records", -1, "engine.log_max_records: expected an integer from 1000 to 100000000, got -1"),
    ("log_max_records", 999, "engine.log_max_records: expected an integer from 1000 to 100000000, got 999"),
    ("log_max_records", "many", 'engine.log_max_records: expected an integer from 1000 to 100000000, got "many"'),
    ("log_max_records", 10.5, "engine.log_max_records: expected an integer from 1000 to 100000000, got 10.5"),
    ("log_max_records", True, "engine.log_max_records: expected an integer from 1000 to 100000000, got true"),
    ("metrics_http", "9108", 'engine.metrics_http: expected "HOST:PORT" like "127.0.0.1:9108"'),
    ("partitions", 0, "engine.partitions: expected an integer from 1 to 16384, got 0"),
    ("partitions", "16", 'engine.partitions: expected an integer from 1 to 16384, got "16"'),
    ("partitions", True, "engine.partitions: expected an integer from 1 to 16384, got true"),
    ("sync_timeout", "-1s", 'engine.sync_timeout: expected a duration like "10s", got "-1s"'),
    ("max_frame_bytes", 10, "engine.max_frame_bytes: expected an integer from 1024 to"),
    ("max_batch", 0, "engine.max_batch: expected an integer from 1 to"),
    ("max_items", 1.5, "engine.max_items: expected an integer from 1 to 100000, got 1.5"),
    ("max_string", 8, "engine.max_string: expected an integer from 16 to"),
    ("dedup_window", [], 'engine.dedup_window: expected a duration like "24h", got an array'),
    ("dedup_capacity", -1, "engine.dedup_capacity: expected an integer from 1 to"),
    ("apply_queue", {}, "engine.apply_queue: expected an integer from 1 to 100000000, got a table"),
]


@pytest.mark.parametrize("key, value, message", BAD_VALUES, ids=[f"{k}={v!r}"[:40] for k, v, _ in BAD_VALUES])
def test_bad_value_names_the_key(key: str, value: Any, message: str) -> None:
    if key == "clock_start":
        messages = engine_errors(clock="manual", clock_start=value)
    else:
        messages = engine_errors(**{key: value})
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"engine.{key}: "), messages[0]
    assert message in messages[0]


def test_log_max_records_takes_an_integer_of_at_least_1000() -> None:
    assert engine(log_max_records=1000).log_max_records == 1000
    assert engine(log_max_records=50_000_000).log_max_records == 50_000_000


def test_every_key_has_a_bad_value_test() -> None:
    assert {k for k, _, _ in BAD_VALUES} == set(tomllib.loads(DEFAULT_TOML)["engine"]) | {"clock_start"}


def test_unknown_key_lists_the_known_ones() -> None:
    [message] = engine_errors(bogus=1)
    assert message.startswith("engine.bogus: unknown key (known: ingest_tcp, ingest_unix, admin_unix, ")
    assert "apply_queue" in message


def test_unknown_key_suggests_a_close_one() -> None:
    [message] = engine_errors(tik="1s")
    assert message.startswith('engine.tik: unknown key; did you mean "tick"?')


def test_engine_key_at_top_level_is_pointed_at_engine() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"tick": "1s"}, source="t", env={})
    assert info.value.messages == [
        'tick: unknown key; did you mean "engine.tick" under [engine]? '
        "(known sections: engine, stores, flows, channels)"
    ]


def test_unknown_section() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"engin": {}}, source="t", env={})
    assert info.value.messages[0].startswith('engin: unknown section; did you mean "engine"?')


def test_engine_must_be_a_table() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"engine": 5}, source="t", env={})
    assert info.value.messages == ["engine: expected a table ([engine]), got 5"]


def test_several_errors_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[engine]\ntick = "fast"\npartitions = 0\nbogus = 1\n'
        '[stores."my shop"]\nname = "x"\n[flows.ok]\n[channels]\nemail = 5\n[extra]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    err = info.value
    assert err.source == str(path)
    assert [m.split(":")[0] for m in err.messages] == [
        "engine.tick", "engine.partitions", "engine.bogus", "extra", 'stores."my shop"', "channels.email",
        "flows.ok.steps",  # from actors.flows.parse_flow, via check_sections
    ]
    text = str(err)
    assert text.startswith(f"{path}: 7 configuration errors\n  engine.tick: expected")


def test_cross_key_rules() -> None:
    assert engine_errors(admin_tcp="127.0.0.1:7781") == [
        f"engine.admin_token: required when admin_tcp is set (or set {ENV_ADMIN_TOKEN})"
    ]
    assert engine_errors(clock_start=0) == [
        'engine.clock_start: only used with a "manual" or "scaled:N" clock, and clock is "real"'
    ]
    assert engine_errors(max_batch=100, apply_queue=99) == [
        "engine.apply_queue: expected at least max_batch (100) so that one frame always fits, got 99"
    ]
    # A key already reported as bad does not also trigger a cross-key message.
    assert len(engine_errors(max_batch=0, apply_queue=0)) == 2


def test_section_names_must_be_identifiers_and_tables() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"stores": {"bad name!": {}, "ok-store.1": {"name": "x"}}, "flows": "x", "channels": {"sms": []}},
            source="t", env={}, deep=False,
        )
    assert info.value.messages == [
        'stores."bad name!": expected a name of ASCII letters, digits, _, - and . (not starting with - or ., at most 64 characters)',
        'flows: expected tables like [flows.NAME], got "x"',
        "channels.sms: expected a table ([channels.sms]), got an array",
    ]


def test_sections_are_kept_as_raw_tables() -> None:
    data = {"stores": {"demo": {"name": "Demo Shop", "credits": 10}}, "channels": {"email": {"kind": "outbox"}}}
    config = parse_config(data, source="t", env={}, deep=False)
    assert config.stores == {"demo": {"name": "Demo Shop", "credits": 10}}
    assert config.channels == {"email": {"kind": "outbox"}}
    assert config.flows == {}


# ------------------------------------------------------------------------------------------- files


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[engine]\ntick = "100ms"\nclock = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.messages == [f"{path}:3:9: invalid TOML: Invalid value"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.messages == [f"{path}: cannot read: No such file or directory"]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[engine]\nstore = "file:caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.messages == [f"{path}: not UTF-8 text (byte 26)"]


def test_check_config_file_reports_and_returns_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[engine]\ntick = "50ms"\n')
    assert check_config_file(good) == 0
    assert capsys.readouterr().out == f"{good}: ok\n"
    bad = tmp_path / "bad.toml"
    bad.write_text('[engine]\ntick = "fast"\nclock = "x"\n')
    assert check_config_file(bad) == 2
    out = capsys.readouterr().out
    assert "engine.tick: expected" in out and "engine.clock: expected" in out


def test_check_reports_every_bad_key_of_a_table_not_only_the_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The stores', flows' and channels' parsers stop at their first problem; --check reports them all."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[stores.demo]\nname = "Demo"\ntimezone = "Mars/Base"\ncredits = -5\n\n'
                   '[channels.email]\nkind = "smtp"\nport = "abc"\nconcurrency = 0\n\n'
                   '[flows.x]\nabandon_after = "zz"\nexpire_after = "2d"\nfrequency_cap = "often"\n'
                   'steps = [{after = "1h", channels = ["email"]}]\n')
    assert check_config_file(bad) == 2
    out = capsys.readouterr().out
    for key in ("stores.demo.timezone", "stores.demo.credits", "channels.email.port", "channels.email.concurrency",
                "flows.x.abandon_after", "flows.x.frequency_cap"):
        assert key in out, f"{key} not reported:\n{out}"
    assert "6 configuration errors" in out and "required" not in out, out


def test_check_reports_the_problems_of_every_step_of_a_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad step hid every other problem of its flow (dropping `steps` made the flow fail on `steps`)."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[flows.vip]\nabandon_after = "0s"\non_cap = "skip"\n'
                   'steps = [{after = "1h", channels = ["fax"]}, {after = "2h", channels = ["sms"], min_value = -1}]\n')
    assert check_config_file(bad) == 2
    out = capsys.readouterr().out
    for key in ("flows.vip.steps[0].channels[0]", "flows.vip.steps[1].min_value", "flows.vip.abandon_after",
                "flows.vip.on_cap"):
        assert key in out, f"{key} not reported:\n{out}"
    assert "4 configuration errors" in out, out


# ------------------------------------------------------------------------------------------- token


def test_admin_token_from_environment() -> None:
    config = parse_config({"engine": {"admin_tcp": "127.0.0.1:7781"}}, source="t", env={ENV_ADMIN_TOKEN: "from-env"})
    assert config.engine.admin_token == "from-env"


def test_environment_token_wins_over_the_file() -> None:
    e = parse_config({"engine": {"admin_token": "from-file"}}, source="t", env={ENV_ADMIN_TOKEN: "from-env"}).engine
    assert e.admin_token == "from-env"
    e = parse_config({"engine": {"admin_token": "from-file"}}, source="t", env={ENV_ADMIN_TOKEN: ""}).engine
    assert e.admin_token == "from-file"


def test_bad_environment_token_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({}, source="t", env={ENV_ADMIN_TOKEN: "two words"})
    assert info.value.messages == [f"{ENV_ADMIN_TOKEN} (environment): expected a token string without spaces"]


def test_load_config_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ADMIN_TOKEN, "env-token")
    assert load_config(None).engine.admin_token == "env-token"


def test_from_table_raises_with_all_messages() -> None:
    assert EngineSettings.from_table({"tick": "1s"}, env={}).tick_s == 1.0
    with pytest.raises(ConfigError) as info:
        EngineSettings.from_table({"tick": "x", "clock": "y"}, env={})
    assert len(info.value.messages) == 2


# ------------------------------------------------------------------------------------------- sections


DEMO_STORE = """
[stores.demo]
name = "Demo Shop"
timezone = "Europe/Madrid"
flow = "revenue_recovery"
credits = 1000
whatsapp_window = { days = "mon-sat", start = "09:00", end = "21:00" }
incentive = { kind = "discount", percent = 10, code_prefix = "BACK" }
whatsapp = { phone_number_id = "1055501", token = "..." }
"""


def test_design_md_store_example_is_valid() -> None:
    config = parse_config(tomllib.loads(DEMO_STORE), source="t", env={})
    assert config.stores["demo"]["name"] == "Demo Shop"


def test_section_owners_errors_join_the_same_list() -> None:
    doc = tomllib.loads(
        '[engine]\ntick = "fast"\n'
        '[flows.vip]\nsteps = [{after = "1h", channels = ["email"]}]\n'
        '[flows.broken]\nsteps = [{after = "-1h", channels = ["email"]}]\n'
        '[stores.a]\nflow = "vip"\n'  # a config flow: fine
        '[stores.b]\nflow = "nope"\n'
        '[stores.c]\nflow = "broken"\n'  # its flow is already reported: no second message
    )
    with pytest.raises(ConfigError) as info:
        parse_config(doc, source="t", env={})
    messages = info.value.messages
    assert [m.split(":")[0] for m in messages] == ["engine.tick", "flows.broken.steps[0].after", "stores.b.flow"]
    assert messages[2].startswith('stores.b.flow: unknown flow "nope" (known: ')
    assert "vip" in messages[2]


def test_deep_checks_can_be_skipped() -> None:
    doc = tomllib.loads('[stores.b]\nflow = "nope"\n')
    assert parse_config(doc, source="t", env={}, deep=False).stores == {"b": {"flow": "nope"}}
    assert check_sections(parse_config(doc, source="t", env={}, deep=False))[0].startswith("stores.b.flow: ")


# ------------------------------------------------------------------------------------------- fuzzing

toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["", "1h", "100ms", "real", "manual", "scaled:2", "127.0.0.1:1", "[::1]:0", "file:x",
                       "redis://h:1/2", "journal", "2026-03-06T10:00:00Z"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(table=st.dictionaries(st.sampled_from(sorted(tomllib.loads(DEFAULT_TOML)["engine"]) + ["clock_start", "x"]),
                             toml_values, max_size=6))
def test_random_engine_tables_give_settings_or_config_error(table: dict[str, Any]) -> None:
    try:
        result = parse_config({"engine": table}, source="t", env={}, deep=False)
    except ConfigError as exc:
        assert exc.messages and all(m.startswith(("engine.", "engine:")) for m in exc.messages)
    else:
        assert isinstance(result.engine, EngineSettings)


DESIGN_CHANNEL = """
[channels.email]
kind = "smtp"
host = "127.0.0.1"
port = 2525
rate = "50/s"
concurrency = 8
"""


def test_design_md_channel_example_is_valid() -> None:
    config = parse_config(tomllib.loads(DESIGN_CHANNEL), source="t", env={})
    assert config.channels["email"]["kind"] == "smtp"


def test_channel_errors_join_the_same_list() -> None:
    doc = tomllib.loads('[engine]\nclock = "x"\n[channels.sms]\nkind = "sms"\nrate = "fast"\n[channels.emial]\n')
    with pytest.raises(ConfigError) as info:
        parse_config(doc, source="t", env={})
    messages = info.value.messages
    assert [m.split(":")[0] for m in messages] == ["engine.clock", "channels.sms.rate", "channels.emial"]
    assert messages[2].startswith('channels.emial: unknown channel; did you mean "email"? (known: email, ')


def test_two_listeners_on_one_address_are_a_config_error() -> None:
    """`run --check` said ok; then `run` either failed ("address already in use", or "another process is
    listening" about its own admin socket) or, before ingest checked its socket, started with the ingest
    listener on the admin socket's path: the admin socket gone, `cartwheel stats` talking to ingest."""
    from engine.config import ConfigError, parse_config

    for table, key, other in (
        ({"ingest_unix": "run/x.sock", "admin_unix": "run/./x.sock"}, "admin_unix", "ingest_unix"),
        ({"admin_unix": "run/ingest.sock"}, "admin_unix", "ingest_unix"),  # against a default
        ({"ingest_tcp": "127.0.0.1:7791", "metrics_http": "127.0.0.1:7791"}, "metrics_http", "ingest_tcp"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config({"engine": table}, source="t", env={})
        assert any(m.startswith(f"engine.{key}: the same address as engine.{other}") for m in info.value.messages), info.value
    parse_config({"engine": {"ingest_tcp": "127.0.0.1:0", "metrics_http": "127.0.0.1:0"}}, source="t", env={})


def test_a_store_timezone_naming_a_directory_of_the_tz_database_is_reported(tmp_path: Path) -> None:
    """timezone = "Europe" (a region without its city) made ZoneInfo raise IsADirectoryError, which
    parse_store did not catch: `run --check` died with a traceback instead of naming the key."""
    import io

    from engine.config import check_config_file

    for zone in ("Europe", "America", "é" * 300):  # a directory; a name too long for the file system
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[stores.demo]\ntimezone = "{zone}"\n')
        out = io.StringIO()
        assert check_config_file(cfg, stream=out) == 2
        assert "stores.demo.timezone: unknown time zone" in out.getvalue(), out.getvalue()
