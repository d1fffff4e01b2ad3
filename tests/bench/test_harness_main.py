"""``python -m bench.NAME``: the scenario's command line, parsed before anything runs."""
from __future__ import annotations

import argparse
import gc

import pytest

from bench import harness
from bench.e2e import E2E_BYTES_PER_CART
from bench.harness import BenchSetupError, GcWatch, check_memory, parse_sizes, run_scenario, scenario_main


def test_help_prints_the_options_and_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        scenario_main("ingest", ["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "python -m bench.ingest" in out and "--quick" in out and "--json" in out


def test_options_and_a_module_s_own_modes() -> None:
    def modes(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--stages", action="store_true")

    args, run = scenario_main("ingest", ["--quick", "--stages", "--out", "x"], extra=modes)
    assert (args.quick, args.json, args.out, args.stages) == (True, False, "x", True)
    assert callable(run)


def test_an_unknown_option_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        scenario_main("wheel", ["--carts", "5"])
    assert exit_.value.code == 2
    assert "--carts" in capsys.readouterr().err


def test_sizes_read_counts_with_suffixes_in_the_order_given() -> None:
    assert parse_sizes("250k,1M,1.5M,10_000_000,2m,250k") == (250_000, 1_000_000, 1_500_000, 10_000_000, 2_000_000)
    args, _ = scenario_main("e2e", ["--sizes", "10M"])
    assert args.sizes == (10_000_000,)
    assert scenario_main("e2e", [])[0].sizes is None


@pytest.mark.parametrize(("text", "says"), [
    ("10x", "'10x' is not a count"), ("", "'' is not a count"), ("1M,,2M", "'' is not a count"),
    ("0", "from 1,000 to 100,000,000"), ("999", "from 1,000"), ("-5k", "from 1,000"), ("101M", "to 100,000,000"),
    ("1.0000005M", "a whole number"), ("inf", "not a count"),
])
def test_a_bad_size_is_refused_by_what_is_wrong(text: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=says):
        parse_sizes(text)
    with pytest.raises(SystemExit) as exit_:
        scenario_main("e2e", ["--sizes", text])
    assert exit_.value.code == 2
    assert "--sizes" in capsys.readouterr().err


def test_a_scenario_without_sizes_refuses_them_before_running(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_scenario("wheel", sizes=(10_000,), out_dir=None) == 2
    err = capsys.readouterr().err
    assert "--sizes applies to" in err and "e2e" in err and "wheel takes no sizes" in err
    assert run_scenario("all", sizes=(10_000,), out_dir=None) == 2
    assert "snapshot" in capsys.readouterr().err


def test_a_size_that_does_not_fit_in_memory_is_refused(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    what = "with its profile"
    check_memory(10_000_000, E2E_BYTES_PER_CART, what, available=10_000_000 * E2E_BYTES_PER_CART)  # fits exactly
    with pytest.raises(BenchSetupError, match=r"10,000,000 carts need about 13.0 GB \(1300 B per cart with its "
                                              r"profile\) and this machine has 8.0 GB available; "
                                              r"at most about 6,000,000 fit"):
        check_memory(10_000_000, 1_300, what, available=8_000_000_000)
    with pytest.raises(BenchSetupError, match=r"at most about 500,000 fit"):
        check_memory(1_000_000, 1_300, what, available=650_000_000)
    # through the command line, each sized scenario: status 2 and the reason, no traceback, nothing run
    monkeypatch.setattr(harness, "available_memory_bytes", lambda: 2_000_000_000)  # a 2 GB machine
    for name in ("e2e", "ingest", "peers"):
        assert run_scenario(name, sizes=(10_000_000,), out_dir=None) == 2
        err = capsys.readouterr().err
        assert f"cartwheel bench {name}: 10,000,000 carts need about" in err and "2.0 GB available" in err, err
        assert "Traceback" not in err


def test_gc_watch_counts_young_and_full_collections_apart_until_closed() -> None:
    watch = GcWatch()
    gc.disable()  # only the collections asked for below
    try:
        watch.reset()
        gc.collect(0)
        gc.collect(1)
        gc.collect(2)
        assert (watch.young, watch.full) == (2, 1)
        assert 0 < watch.max_full_s <= watch.total_s and 0 < watch.max_young_s <= watch.total_s
        assert watch.max_s == max(watch.max_young_s, watch.max_full_s)
    finally:
        watch.close()
        gc.enable()
    gc.collect(2)
    assert watch.full == 1  # unhooked
    watch.close()  # twice is harmless
