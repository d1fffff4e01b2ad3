"""Counters, gauges and latency histograms, kept cheaply on the hot path.

Counters are plain integer attributes (an increment is one attribute store); histograms are HDR
histograms (``hdrhistogram``) recorded in microseconds. :meth:`Stats.snapshot` builds the JSON-ready
document the admin socket's ``stats`` command serves.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["Stats", "LatencyHistogram"]

#: recovery metrics the actors emit (METRIC effects); anything else is kept under "metrics"
_RECOVERY = ("abandoned", "recovered", "converted", "expired", "revenue")


class LatencyHistogram:
    """An HDR histogram of durations given in seconds, stored in microseconds (1 µs .. 1 h, 3 digits)."""

    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h = HdrHistogram(1, 3_600_000_000, 3)

    def record(self, seconds: float) -> None:
        us = int(seconds * 1e6)
        self._h.record_value(1 if us < 1 else min(us, 3_600_000_000))

    def summary(self) -> dict[str, float | int]:
        """Count and percentiles in milliseconds."""
        h = self._h
        return {
            "count": h.get_total_count(),
            "p50_ms": h.get_value_at_percentile(50) / 1000,
            "p99_ms": h.get_value_at_percentile(99) / 1000,
            "p999_ms": h.get_value_at_percentile(99.9) / 1000,
            "max_ms": h.get_max_value() / 1000,
        }


class Stats:
    """Everything the engine counts. Attribute increments only on the hot path."""

    def __init__(self) -> None:
        self.events_accepted = 0
        self.events_rejected = 0
        self.events_duplicate = 0
        self.frames = 0
        self.connections = 0
        self.queued = 0
        self.timers_fired = 0
        self.sends: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.metrics: defaultdict[str, float] = defaultdict(float)
        self.timer_lag = LatencyHistogram()
        self.ingest_latency = LatencyHistogram()

    def outcome(self, channel: str | None, outcome: str) -> None:
        self.sends[channel or "-"][outcome] += 1

    def metric(self, name: str, amount: float) -> None:
        self.metrics[name] += amount

    def recovery(self) -> dict[str, float]:
        m = self.metrics
        abandoned = m.get("abandoned", 0)
        recovered = m.get("recovered", 0)
        return {
            "abandoned": int(abandoned),
            "recovered": int(recovered),
            "converted": int(m.get("converted", 0)),
            "expired": int(m.get("expired", 0)),
            "rate": round(recovered / abandoned, 4) if abandoned else 0.0,
            "revenue": round(m.get("revenue", 0.0), 2),
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "events": {"accepted": self.events_accepted, "rejected": self.events_rejected,
                       "duplicate": self.events_duplicate, "frames": self.frames},
            "sends": {ch: dict(v) for ch, v in self.sends.items()},
            "recovery": self.recovery(),
            "metrics": {k: v for k, v in self.metrics.items() if k not in _RECOVERY},
            "latency": {"timer_lag": self.timer_lag.summary(), "ingest": self.ingest_latency.summary()},
            "timers_fired": self.timers_fired,
        }

    def __repr__(self) -> str:
        return (f"<Stats accepted={self.events_accepted} rejected={self.events_rejected} "
                f"fired={self.timers_fired} queued={self.queued}>")
