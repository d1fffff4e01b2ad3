"""Admin ``cancel``: once it has answered, a crash does not bring the run back."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.admin import AdminCommands
from tests.persistence.conftest import crash, engine_config, outbox_lines, start_engine
from tests.persistence.helpers import HOUR, cart_event, feed


@pytest.mark.parametrize("durability", ["journal", "snapshot"])
async def test_a_cancelled_run_stays_cancelled_after_a_crash(durability: str, store_url: str, tmp_path: Path,
                                                           engines: list) -> None:
    """The operator stops a run (a complaint, a wrong price); the reply says it is cancelled. A kill -9
    right after must not resurrect the run and send its 4 h, 24 h and 40 h emails: in journal durability
    every accepted event survives, and so must the operator's stop; in snapshot durability the reply
    comes once a cut holds it, as a ``sync`` frame's does."""
    config = engine_config(tmp_path, store_url, durability=durability)
    a = await start_engine(engines, config, tmp_path)
    await feed(a, cart_event("c1", id="e1"))
    await a.sync()
    await a.runtime.advance_clock(2 * HOUR)  # the 1 h email is out
    assert [m["key"] for m in outbox_lines(tmp_path)] == ["shop1:c1:1:1:email"]
    reply = await AdminCommands(a).cmd_cancel(["shop1", "c1"])
    assert reply["cancelled"] is True
    await crash(a)

    b = await start_engine(engines, config, tmp_path)
    await b.runtime.advance_clock(50 * HOUR)
    assert [m["key"] for m in outbox_lines(tmp_path)] == ["shop1:c1:1:1:email"]
    actor = b.registry.cart("shop1", "c1")
    assert actor is not None and actor.state.value == "expired" and actor.run == 1, actor
