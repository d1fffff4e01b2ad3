"""`cartwheel send` and `cartwheel simulate` on the inputs and failures a shop's developer meets:
truncated files, values JSON allows and msgpack does not, an engine that goes away mid-send, a FILE
that is a directory, a config that only names a UNIX socket."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgpack

from engine.cli import main
from engine.send import read_events, send_file
from tests.engine.test_cli import CART, T0


def _events(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [dict(CART, store="shop1", cart=f"c{i}", **extra) for i in range(n)]


def test_read_events_reports_a_truncated_last_msgpack_frame(tmp_path: Path) -> None:
    """A msgpack file cut short (a copy interrupted, a writer killed) lost its last frame silently:
    no problem reported, and `send` exited 0."""
    path = tmp_path / "events.msgpack"
    path.write_bytes(msgpack.packb(_events(2)) + msgpack.packb(_events(3))[:-10])
    problems: list[str] = []
    got = list(read_events(path, problems))
    assert len(got) == 2
    assert len(problems) == 1 and "frame 2" in problems[0] and "truncated" in problems[0], problems


class _FakeEngine:
    """An ingest endpoint that answers ``replies`` frames, then reads on and closes at ``close_after``
    frames (or at the end of the stream) without answering the rest: an engine stopped mid-send."""

    def __init__(self, replies: int, close_after: int | None = None) -> None:
        self.replies = replies
        self.close_after = close_after
        self.frames = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            data = await reader.read(65536)
            if not data:
                break
            unpacker.feed(data)
            for frame in unpacker:
                self.frames += 1
                if self.frames <= self.replies:
                    writer.write(msgpack.packb({"seq": self.frames, "accepted": len(frame), "rejected": []}))
                if self.close_after is not None and self.frames >= self.close_after:
                    writer.close()
                    return
        writer.close()


async def _send_to_fake(tmp_path: Path, fake: _FakeEngine, n: int, batch: int) -> dict[str, Any]:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in _events(n, pad="x" * 3000)))
    return await _send_file_to_fake(tmp_path, fake, path, batch)


async def _send_file_to_fake(tmp_path: Path, fake: _FakeEngine, path: Path, batch: int = 100) -> dict[str, Any]:
    sock = str(tmp_path / "fake.sock")
    server = await asyncio.start_unix_server(fake.handle, sock)
    try:
        return await asyncio.wait_for(send_file(path, tcp=None, unix=sock, batch=batch, progress=False), 30)
    finally:
        server.close()


async def test_send_reports_frames_the_engine_never_answered(tmp_path: Path) -> None:
    """The engine read every frame but closed the connection after answering two of five: the summary
    said 5 sent, 2 accepted, no problem, and the exit status was 0."""
    summary = await _send_to_fake(tmp_path, _FakeEngine(replies=2, close_after=5), n=5, batch=1)
    assert summary["sent"] == 5 and summary["accepted"] == 2
    assert any("3 frames (3 events)" in p and "no reply" in p for p in summary["problems"]), summary["problems"]


async def test_send_survives_an_engine_that_goes_away_mid_send(tmp_path: Path) -> None:
    """The connection dropped while frames were still being written: send_file raised, and the CLI said
    "cannot reach the engine ... Is `cartwheel run` running?" with nothing about the events it had
    already accepted."""
    summary = await _send_to_fake(tmp_path, _FakeEngine(replies=2, close_after=2), n=3000, batch=10)
    assert summary["accepted"] <= 20 and summary["sent"] < 3000  # (replies in flight die with the connection)
    problems = summary["problems"]
    assert any(p.startswith("connection to the engine lost") and "the rest of the file was not sent" in p
               for p in problems), problems
    unanswered = summary["sent"] - summary["accepted"]
    assert any(f"({unanswered} events)" in p and "whether they were applied is unknown" in p for p in problems), problems


async def test_send_waits_for_replies_as_long_as_they_keep_coming(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """After the last frame, send gave the engine 60 s in all for every reply: an engine under
    back-pressure (a slow channel's queue full) answering a long backlog steadily was reported as "no
    reply to N frames", exit 1, though it accepted everything."""

    class Slow(_FakeEngine):
        async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            unpacker = msgpack.Unpacker(raw=False)
            while self.frames < 10:
                unpacker.feed(await reader.read(65536))
                for frame in unpacker:
                    self.frames += 1
                    await asyncio.sleep(0.15)  # a reply every 0.15 s, 1.5 s in all
                    writer.write(msgpack.packb({"seq": self.frames, "accepted": len(frame), "rejected": []}))
            await reader.read()  # until the client closes
            writer.close()

    sock = str(tmp_path / "slow.sock")
    server = await asyncio.start_unix_server(Slow(replies=10).handle, sock)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in _events(10)))
    import types

    import engine.send

    async def wait_for(aw: Any, timeout: float | None) -> Any:  # send's 60 s become 0.5 s
        return await asyncio.wait_for(aw, None if timeout is None else timeout / 120)

    monkeypatch.setattr(engine.send, "asyncio", types.SimpleNamespace(**{**vars(asyncio), "wait_for": wait_for}))
    try:
        summary = await asyncio.wait_for(send_file(path, tcp=None, unix=sock, batch=1, progress=False), 30)
    finally:
        server.close()
    assert summary["accepted"] == 10 and summary["problems"] == [], summary


def test_send_reports_a_json_number_msgpack_cannot_carry_and_sends_the_rest(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """JSON allows integers of any size; msgpack stops at 64 bits. One such line crashed the whole send
    with an OverflowError traceback (and a deeply nested line with a RecursionError)."""
    path = tmp_path / "events.jsonl"
    good = _events(3)
    path.write_text(json.dumps(good[0]) + "\n" + json.dumps(dict(good[1], value=10 ** 30)) + "\n"
                    + "[" * 100_000 + "]" * 100_000 + "\n" + json.dumps(good[2]) + "\n")

    summary = asyncio.run(_send_file_to_fake(tmp_path, _FakeEngine(replies=1000), path))
    assert summary["sent"] == 2 and summary["accepted"] == 2, summary
    assert any(p.startswith(f"{path}:2") for p in summary["problems"]), summary["problems"]
    assert any(p.startswith(f"{path}:3") for p in summary["problems"]), summary["problems"]


def test_send_and_simulate_name_a_file_that_is_a_directory(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """simulate crashed with an IsADirectoryError traceback; send blamed the engine ("cannot reach the
    engine ... Is `cartwheel run` running?") for a file it could not read."""
    directory = tmp_path / "events"
    directory.mkdir()
    assert main(["simulate", str(directory)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["send", str(directory), "--unix", str(tmp_path / "none.sock")]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "cannot reach" not in err


def test_send_with_a_config_naming_only_a_unix_socket_says_the_engine_is_not_running(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """With ingest_tcp disabled and the socket file absent (the engine is not running), send dropped the
    socket and crashed with a ValueError traceback ("no ingest address")."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[engine]\ningest_tcp = ""\ningest_unix = "{tmp_path / "ingest.sock"}"\n')
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(CART) + "\n")
    assert main(["send", str(path), "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "ingest.sock" in err and "Is `cartwheel run` running?" in err, err


def test_simulate_ignores_the_later_of_two_events_with_one_id_whatever_the_file_order(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Events are applied in ts order, but repeated ids were judged in file order: with the later copy
    first in the file, the preview kept the later one and dropped the first, and showed the flow two
    hours late (the engine, receiving them as they happen, keeps the first)."""
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        dict(CART, id="evt-1", ts=T0 + 2 * 3600), dict(CART, id="evt-1", ts=T0)]) + "\n")
    assert main(["simulate", str(events), "--horizon", "3h"]) == 0
    out, err = capsys.readouterr()
    sent = [line.split() for line in out.splitlines() if " sent" in line]
    assert [row[2] for row in sent if row[0] == "Fri"] == ["11:30"], out  # abandoned at 10:30, first email at 11:30
    assert "events.jsonl:1: ignored: id 'evt-1' was seen before" in err, err


async def test_send_splits_batches_that_would_exceed_the_engines_frame_limit(tmp_path: Path) -> None:
    """Valid carts of 100 items (~25 KB each) in the default batches of 100 made frames of ~2.5 MB: the
    engine refused the first as over max_frame_bytes (1 MiB) and closed the connection, and not one
    event of the file was accepted. A single event over the limit is named and left out."""
    from tests.engine.conftest import cart_event, engine_config, start_engine

    config = engine_config(tmp_path)
    engine = await start_engine(config, tmp_path)
    try:
        items = [{"sku": f"S{i}", "name": "A lamp " * 10, "qty": 1, "price": 1.0,
                  "image": "https://img.shop.test/" + "x" * 100} for i in range(100)]
        path = tmp_path / "events.jsonl"
        lines = [json.dumps(cart_event(f"c{i}", items=items)) for i in range(300)]
        lines.insert(150, json.dumps(cart_event("huge", items=items, note="x" * (1 << 20))))
        path.write_text("\n".join(lines) + "\n")
        assert config.engine.max_frame_bytes == 1 << 20  # send_file's default: the engine's
        summary = await send_file(path, tcp=None, unix=engine.ingest.unix_path, batch=100, progress=False)
        assert summary["accepted"] == 300 and len(engine.registry) == 300, summary
        assert len(summary["problems"]) == 1 and summary["problems"][0].startswith(f"{path}:151: "), summary["problems"]
        assert "frame limit" in summary["problems"][0]
    finally:
        await engine.stop()


def test_demo_never_deletes_a_directory_it_did_not_make(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A run starts by deleting its --dir: `cartwheel demo --dir .` (or any directory of one's own)
    deleted everything in it without a word. A --dir too long for the socket paths was deleted, then the
    demo crashed with a ConfigError traceback."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    assert main(["demo", "--shoppers", "2", "--hours", "1", "--dir", str(mine)]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "precious"
    long = tmp_path / ("d" * 120)
    long.mkdir()
    assert main(["demo", "--shoppers", "2", "--hours", "1", "--dir", str(long)]) == 2
    assert "ingest_unix" in capsys.readouterr().err and long.exists()
    earlier = tmp_path / "earlier"  # an earlier run's directory is still started afresh
    (earlier / "state").mkdir(parents=True)
    (earlier / "outbox").mkdir()
    (earlier / "outbox" / "email.jsonl").write_text("{}\n")
    assert main(["demo", "--shoppers", "2", "--hours", "1", "--speed", "36000", "--dir", str(earlier)]) == 0
    assert not (earlier / "outbox" / "email.jsonl").exists() or (earlier / "outbox" / "email.jsonl").read_text() != "{}\n"


async def test_send_takes_an_ipv6_tcp_address_as_the_config_writes_it(tmp_path: Path) -> None:
    """`--tcp [::1]:7780` (the syntax of engine.ingest_tcp) was split on its last colon and "[::1]"
    looked up as a host name: "cannot reach the engine ... Name or service not known"."""
    import sys

    from tests.engine.conftest import engine_config, start_engine

    engine = await start_engine(engine_config(tmp_path, ingest_tcp="[::1]:0"), tmp_path)
    try:
        host, port = engine.ingest.tcp_address  # type: ignore[misc]
        assert host == "::1"
        path = tmp_path / "e.jsonl"
        path.write_text(json.dumps(dict(CART, store="shop1")) + "\n")
        exe = str(Path(sys.executable).parent / "cartwheel")
        proc = await asyncio.create_subprocess_exec(exe, "send", str(path), "--tcp", f"[::1]:{port}", "--json",
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err
        assert json.loads(out)["accepted"] == 1
    finally:
        await engine.stop()


async def test_send_counts_every_event_of_a_frame_refused_whole(tmp_path: Path) -> None:
    """A frame over the engine's max_batch is refused whole, the reply naming index 0 only: the summary
    said "250 events sent: 50 accepted, 2 rejected", 200 events unaccounted for. With the engine's
    --config, send keeps its frames within max_batch."""
    import sys

    from tests.engine.conftest import engine_config, start_engine

    engine = await start_engine(engine_config(tmp_path, max_batch=50), tmp_path)
    try:
        path = tmp_path / "events.jsonl"
        path.write_text("".join(json.dumps({"type": "session.ended", "store": "shop1", "cart": f"c{i}"}) + "\n"
                                for i in range(250)))
        summary = await send_file(path, tcp=None, unix=engine.ingest.unix_path, batch=100, progress=False)
        assert (summary["sent"], summary["accepted"], summary["rejected"]) == (250, 50, 200), summary
        assert summary["reasons"] == {"frame": 200}
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[engine]\ningest_unix = "{engine.ingest.unix_path}"\nmax_batch = 50\n')
        exe = str(Path(sys.executable).parent / "cartwheel")
        proc = await asyncio.create_subprocess_exec(exe, "send", str(path), "--config", str(cfg), "--json",
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err
        assert json.loads(out)["accepted"] == 250
    finally:
        await engine.stop()


def test_simulate_names_a_ts_in_milliseconds_instead_of_crashing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A ts in milliseconds (JavaScript's Date.now()) is in the year 58000: the preview's clock started
    there and the table crashed with "ValueError: year 58147 is out of range" (at 1e18 the profile
    packing with an OverflowError). Such an event is now rejected by name; the others are previewed."""
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        dict(CART, cart="ms", ts=T0 * 1000), dict(CART, cart="big", ts=1e18), CART]) + "\n")
    assert main(["simulate", str(events), "--horizon", "2h"]) == 0
    out, err = capsys.readouterr()
    assert "events.jsonl:1: rejected: ts: 1772791200000 is after the year 3000 (milliseconds?" in err, err
    assert "events.jsonl:2: rejected: ts:" in err
    assert "demo/c1" in out and "Fri 2026-03-06 11:30" in out and "demo/ms" not in out


def test_a_file_of_bad_lines_keeps_a_bounded_list_of_problems(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Every bad line's message was kept and printed: a file of millions of lines in the wrong format
    (a CSV named .jsonl) held and printed millions of messages. The first 100 are kept, then a count;
    the problems of the run as a whole (the connection) are always kept."""
    path = tmp_path / "events.jsonl"
    path.write_text("sku,qty,price\n" * 5000 + json.dumps(dict(CART, store="shop1")) + "\n")

    problems = asyncio.run(_send_file_to_fake(tmp_path, _FakeEngine(replies=0, close_after=1), path))["problems"]
    assert len(problems) <= 103, len(problems)
    assert problems[-1] == "... and 4,900 more problems like these", problems[-3:]
    assert any(p.startswith("no reply to 1 frames (1 events)") for p in problems), problems[-3:]
    assert main(["simulate", str(path), "--horizon", "2h"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) <= 101 and err[-1] == "... and 4,900 more problems like these", err[-3:]
