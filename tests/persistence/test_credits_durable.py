"""An operator's credit adjustment (admin ``credits STORE +N``) survives a crash right after its reply."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.admin import AdminCommands
from tests.persistence.conftest import crash, engine_config, start_engine


@pytest.mark.parametrize("durability", ["snapshot", "journal"])
async def test_a_credit_adjustment_is_durable_when_answered(store_url: str, durability: str, tmp_path: Path,
                                                            engines: list) -> None:
    stores = {"shop1": {"name": "Acme", "timezone": "UTC", "credits": 100}}
    config = engine_config(tmp_path, store_url, durability=durability, stores=stores)
    a = await start_engine(engines, config, tmp_path)
    reply = await AdminCommands(a).run("credits shop1 +25")
    assert reply["ok"] is True and reply["credits"] == 125, reply
    await crash(a)  # right after the reply: nothing else made it durable
    b = await start_engine(engines, config, tmp_path)
    assert b.registry.stores["shop1"].credits == 125
