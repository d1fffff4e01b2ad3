"""What the engine reports, at its edges: the message log's order and time filters, recovery figures."""
from __future__ import annotations

from pathlib import Path

from engine.app import Engine
from tests.engine.conftest import engine_config, start_engine
from tests.engine.conftest_ops import HOUR, START, Admin, Ingest, cart_event, ops_engine, workload

__all__ = ["ops_engine"]  # the fixture, imported for pytest

STORES = {"shop1": {"name": "Acme", "timezone": "UTC"},
          "quiet": {"name": "Hush", "timezone": "UTC", "quiet_hours": {"start": "12:00", "end": "20:00"}}}


async def test_logs_stay_oldest_first_and_since_finds_everything_after_a_late_order(tmp_path: Path) -> None:
    """A purchase reported late (stamped before now) cancels a postponed send at the purchase's time: that
    record must not hide newer ones from ``logs since=`` nor break the oldest-first order."""
    engine = await start_engine(engine_config(tmp_path, ingest_unix="", stores=STORES), tmp_path)
    ingest = await Ingest.open(engine)
    admin = await Admin.unix(engine)
    try:
        # quiet/c1: abandoned at 10:00, email at 11:00; its 14:00 step waits for the end of the quiet hours
        assert (await ingest.frame([cart_event("c1", "quiet"),
                                    {"type": "session.ended", "store": "quiet", "cart": "c1"}]))["accepted"] == 2
        assert (await admin("clock advance 2h"))["ok"]
        # shop1/c2: abandoned at 12:00, email at 13:00, step 3 at 16:00
        assert (await ingest.frame([cart_event("c2"), {"type": "session.ended", "store": "shop1", "cart": "c2"}]))["accepted"] == 2
        assert (await admin("clock advance 4h"))["ok"]  # 16:00
        assert (await admin("cart quiet c1"))["held"], "c1's 14:00 step is postponed to 20:00"
        # c1's order, placed at 14:30, reaches the engine at 16:00
        order = {"type": "order.completed", "store": "quiet", "cart": "c1", "order": "o1", "value": 10.0,
                 "ts": START + 4.5 * HOUR}
        assert (await ingest.frame(order))["accepted"] == 1
        every = (await admin("logs"))["records"]
        assert [r["at"] for r in every] == sorted(r["at"] for r in every), [(r["id"], r["outcome"], (r["at"] - START) / HOUR) for r in every]
        since = START + 5 * HOUR
        after = (await admin(f"logs since={since}"))["records"]
        assert [r["id"] for r in after] == [r["id"] for r in every if r["at"] >= since] != []
    finally:
        await admin.close()
        await ingest.close()
        await engine.stop()


async def test_an_order_after_an_operator_cancel_still_counts(ops_engine: Engine) -> None:
    await workload(ops_engine)  # c2: abandoned at +30 min, its email sent at +1 h 30; now +2 h
    admin = await Admin.unix(ops_engine)
    ingest = await Ingest.open(ops_engine)
    try:
        assert (await admin("cancel shop1 c2"))["cancelled"] is True
        order = {"type": "order.completed", "store": "shop1", "cart": "c2", "order": "o2", "value": 25.0}
        assert (await ingest.frame(order))["accepted"] == 1
        rec = (await admin("stats"))["recovery"]
    finally:
        await ingest.close()
        await admin.close()
    # before: recovered 1 (c1, 10.0), converted 1 (c3), cleared 0
    assert rec["recovered"] + rec["converted"] == 3, rec  # the purchase is counted somewhere
    assert (rec["recovered"], rec["revenue"]) == (2, 35.0), rec  # credited to the email sent before the cancel
    assert rec["cleared"] == 0, rec  # nobody emptied the cart


async def test_revenue_in_two_currencies_is_not_one_sum(ops_engine: Engine) -> None:
    admin = await Admin.unix(ops_engine)
    ingest = await Ingest.open(ops_engine)
    try:
        carts = [cart_event("eur"), {**cart_event("usd"), "currency": "USD"}]
        exits = [{"type": "session.ended", "store": "shop1", "cart": c} for c in ("eur", "usd")]
        assert (await ingest.frame(carts + exits))["accepted"] == 4
        assert (await admin("clock advance 1h"))["ok"]  # both emails sent
        orders = [{"type": "order.completed", "store": "shop1", "cart": c, "order": f"o-{c}", "value": 10.0}
                  for c in ("eur", "usd")]
        assert (await ingest.frame(orders))["accepted"] == 2
        rec = (await admin("stats"))["recovery"]
    finally:
        await ingest.close()
        await admin.close()
    assert rec["recovered"] == 2
    assert rec.get("revenue_by_currency") == {"EUR": 10.0, "USD": 10.0}, rec
