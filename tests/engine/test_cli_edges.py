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
