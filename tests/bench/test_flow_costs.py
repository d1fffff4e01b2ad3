"""``python -m bench.flow_costs``: the probe of what firing and sending cost, at a tiny size."""
from __future__ import annotations

import re


def test_flow_costs_reports_cpu_per_timer_and_per_message() -> None:
    from bench.flow_costs import flow_costs

    report = flow_costs(carts=600)
    fired = re.search(r"firing: ([\d,]+) step-1 timers, ([\d.]+) us per timer", report)
    sending = re.search(r"sending: ([\d,]+) messages \(email ([\d,]+), push ([\d,]+)\), ([\d.]+) us per message", report)
    assert fired and sending, report
    assert int(fired[1].replace(",", "")) == 600  # every cart's step-1 timer
    messages, email, push = (int(sending[i].replace(",", "")) for i in (1, 2, 3))
    assert messages == email + push and email > 0 and push > 0
    assert float(fired[2]) > 0 and float(sending[4]) > 0
