"""The command line: simulate (exact timeline), send (to a live engine), demo (a tiny run), run --check."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import msgpack

from engine.app import Engine
from engine.cli import main

EXE = str(Path(sys.executable).parent / "cartwheel")
T0 = 1772791200  # Fri 2026-03-06 10:00 UTC

CART = {"type": "cart.updated", "store": "demo", "cart": "c1", "ts": T0,
        "profile": {"id": "p1", "email": "ana@example.test", "consent": {"email": True}},
        "items": [{"sku": "L1", "name": "Lamp", "qty": 1, "price": 40.0}], "value": 40.0, "currency": "EUR",
        "checkout_url": "https://shop.test/c/c1"}


def test_simulate_prints_the_exact_timeline(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    events = tmp_path / "events.jsonl"
    buyer = dict(CART, cart="c2", ts=T0 + 100, profile={"id": "p2", "email": "bo@example.test", "consent": {"email": True}})
    events.write_text("\n".join(json.dumps(e) for e in [
        CART, buyer, {"type": "order.completed", "store": "demo", "cart": "c2", "ts": T0 + 3 * 3600, "order": "o1", "value": 40.0},
        {"type": "cart.updated", "store": "demo"},  # invalid: reported, not fatal
    ]) + "\nnot json\n")
    assert main(["simulate", str(events)]) == 0
    out, err = capsys.readouterr()
    sent = [line for line in out.splitlines() if " sent" in line]
    # c1: 1 h, 4 h, 24 h, 40 h after abandonment at 10:30 (email; push skipped: no consent)
    assert [line.split()[1:3] for line in sent if "demo/c1" in line] == [
        ["2026-03-06", "11:30"], ["2026-03-06", "14:30"], ["2026-03-07", "10:30"], ["2026-03-08", "02:30"]]
    # c2 bought at 13:00 after its 1 h email (11:31): one message only
    assert len([line for line in sent if "demo/c2" in line]) == 1
    assert "no push consent" in out or "push" in out
    assert "events.jsonl:4: rejected: cart: required" in err
    assert "events.jsonl:5: not valid JSON" in err


async def test_send_streams_a_file_to_a_running_engine(engine: Engine, tmp_path: Path) -> None:
    events = tmp_path / "events.msgpack"
    good = [dict(CART, store="shop1", cart=f"s{i}") for i in range(250)]
    bad = {"type": "cart.updated", "store": "shop1", "cart": "x", "items": [{"sku": "A", "name": "a", "qty": -1, "price": 1.0}],
           "value": 1.0, "currency": "EUR", "checkout_url": "https://s.test/x"}
    events.write_bytes(msgpack.packb(good[:100]) + msgpack.packb(good[100:]) + msgpack.packb(bad))
    proc = await asyncio.create_subprocess_exec(
        EXE, "send", str(events), "--unix", engine.ingest.unix_path, "--batch", "64", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    summary = json.loads(out)
    assert summary["sent"] == 251 and summary["accepted"] == 250 and summary["rejected"] == 1
    assert summary["reasons"] == {"items[0].qty": 1}
    assert proc.returncode == 1  # a rejection makes the exit status non-zero
    assert len(engine.registry) == 250


def test_read_events_names_a_bad_first_json_line_and_reads_the_rest(tmp_path: Path) -> None:
    """The format comes from the suffix, else from the first byte: a file whose first line is not JSON
    is still JSON lines (it was read as msgpack: hundreds of bogus integer "events", line 1 never named)."""
    from engine.send import read_events

    lines = [json.dumps(dict(CART, cart=f"j{i}")) for i in range(2)]
    for name, text in (("events.jsonl", "oops, not json\n"), ("events.txt", "oops, not json\n"),
                       ("events", "\ufeff\toops\n")):
        path = tmp_path / name
        path.write_text(text + "\n".join(lines) + "\n", encoding="utf-8")
        problems: list[str] = []
        got = list(read_events(path, problems))
        assert [e["cart"] for _, e in got] == ["j0", "j1"], (name, got[:3])
        assert len(problems) == 1 and problems[0].startswith(f"{path}:1: not valid JSON"), problems
    bom = tmp_path / "bom.jsonl"
    bom.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # a BOM before valid JSON
    problems = []
    assert [e["cart"] for _, e in read_events(bom, problems)] == ["j0", "j1"] and problems == []
    packed = tmp_path / "events.bin"  # no telling suffix: msgpack by its first byte
    packed.write_bytes(msgpack.packb([dict(CART, cart="m0")]) + msgpack.packb(dict(CART, cart="m1")))
    assert [e["cart"] for _, e in read_events(packed, problems)] == ["m0", "m1"] and problems == []


async def test_send_reports_an_engine_that_is_not_running(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps(CART) + "\n")
    proc = await asyncio.create_subprocess_exec(
        EXE, "send", str(events), "--unix", str(tmp_path / "nope.sock"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and b"Is `cartwheel run` running?" in err


async def test_demo_runs_a_small_shop_to_a_summary(tmp_path: Path) -> None:
    # a relative --dir, as `make demo` uses (run/demo), resolved against the working directory
    proc = await asyncio.create_subprocess_exec(
        EXE, "demo", "--shoppers", "150", "--speed", "40000", "--hours", "50", "--dir", "demo",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "cartwheel demo — summary" in text
    summary = dict(line.split("  ", 1) for line in text.split("summary", 1)[1].splitlines()[2:] if "  " in line)
    assert int(summary["abandoned"].strip().replace(",", "")) > 50
    assert int(summary["recovered (bought after a message)"].strip().replace(",", "")) > 0
    outbox = list((tmp_path / "demo" / "outbox").glob("*.jsonl"))
    assert outbox, "the demo's messages land in the outbox"


def test_run_check_reports_every_bad_key(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[engine]\ntick = "fast"\nclock = "sundial"\n')
    assert main(["run", "--config", str(cfg), "--check"]) == 2
    out = capsys.readouterr().out
    assert "engine.tick" in out and "engine.clock" in out
    good = tmp_path / "good.toml"
    good.write_text('[stores.demo]\nname = "Demo"\n')
    assert main(["run", "--config", str(good), "--check"]) == 0


def test_simulate_places_events_without_ts_at_the_configured_clock_start(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """An event without ``ts`` is received when the preview's manual clock starts: ``clock_start``, not 1970."""
    import json

    from engine.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text('[engine]\nclock = "manual"\nclock_start = "2026-03-06T10:00:00Z"\n')
    events = tmp_path / "e.jsonl"
    event = {"type": "cart.updated", "store": "shop1", "cart": "c1", "value": 30.0, "currency": "EUR",
             "checkout_url": "https://shop.test/c/c1", "items": [{"sku": "A", "qty": 1, "price": 30.0}],
             "profile": {"id": "p1", "email": "a@example.test", "consent": {"email": True}}}
    events.write_text(json.dumps(event) + "\n")
    assert main(["simulate", str(events), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "1970" not in out and "Fri 2026-03-06 11:30" in out, out


def test_demo_refuses_speeds_and_hours_that_are_not_finite(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    for option, value in (("--speed", "nan"), ("--speed", "inf"), ("--hours", "nan"), ("--shoppers", "0")):
        assert main(["demo", "--shoppers", "2", "--hours", "1", option, value, "--dir", str(tmp_path / "d")]) == 2, option
        assert "must be positive finite numbers" in capsys.readouterr().err


def test_simulate_ignores_a_repeated_event_id_as_the_engine_does(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """DESIGN.md: a repeated id within 24 h is accepted once; the preview showed a second run."""
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        dict(CART, id="evt-1"), dict(CART, id="evt-1", ts=T0 + 2 * 3600)]) + "\n")
    assert main(["simulate", str(events), "--horizon", "6h"]) == 0
    out, err = capsys.readouterr()
    sent = [line.split() for line in out.splitlines() if " sent" in line]
    assert [(row[5], row[6]) for row in sent if row[0] == "Fri"] == [("1", "1"), ("1", "3")], out  # run 1: steps 1, 3
    assert "events.jsonl:2: ignored: id 'evt-1' was seen before" in err


def test_simulate_names_the_bad_event_of_a_batch_by_index(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    events = tmp_path / "events.msgpack"
    batch = [dict(CART, cart=f"c{i}") for i in range(100)]
    batch[57] = dict(batch[57], items=[{"sku": "A", "name": "a", "qty": -1, "price": 1.0}])
    events.write_bytes(msgpack.packb(batch))
    lines = tmp_path / "events.jsonl"
    lines.write_text(json.dumps(batch) + "\n")
    for path, where in ((events, "events.msgpack: frame 1[57]"), (lines, "events.jsonl:1[57]")):
        assert main(["simulate", str(path), "--horizon", "2h"]) == 0
        err = capsys.readouterr().err
        assert f"{where}: rejected: items[0].qty: must be a positive integer" in err, err
