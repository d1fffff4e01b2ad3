"""``python -m bench.NAME``: the scenario's command line, parsed before anything runs."""
from __future__ import annotations

import argparse

import pytest

from bench.harness import scenario_main


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
