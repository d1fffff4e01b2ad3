"""Counters, gauges and latency histograms, kept cheaply on the hot path, and the ``stats`` document.

Cost model. The hot path (ingest → actor → wheel) only ever does plain attribute increments on
:class:`Stats` (``stats.events_accepted += n`` once per frame, ``stats.frames += 1``) — no timestamps, no
dicts, no calls per event. Everything derived is computed when somebody asks, on the cold path:

* **rates** (events/s, sends/s over the last 1 s, 10 s and 60 s): a task of ``engine.ops`` calls
  :meth:`Stats.sample` once per second; it copies two running totals into a ring buffer of
  :data:`RATE_SAMPLES` slots. A rate over ``w`` seconds is the difference between the newest sample and
  the one ``w`` slots older, divided by their real-time distance. Worked example: totals 100, 160, 400
  sampled at t = 0, 1, 2 → the 1 s rate is (400 - 160) / 1 = 240/s, the 10 s rate (only two seconds
  known) is (400 - 100) / 2 = 150/s.
* **latencies** are HDR histograms (``hdrhistogram``) of seconds recorded in microseconds: ingest-to-apply
  (per frame), timer lag (fire time minus due time, per fired timer), time in a channel's dispatch queue
  and provider latency (per send, per channel). Percentiles come from the histogram; Prometheus buckets
  are read from it at scrape time (:meth:`LatencyHistogram.cumulative`).
* **timers per wheel level**: ``TimingWheel.pending_per_level()`` walks every pending timer, so
  :class:`StatsView` computes it only on request and caches it for ``levels_ttl_s`` (5 s).
* **recovery metrics** arrive as the actors' ``METRIC`` effects (``abandoned``, ``recovered``,
  ``converted``, ``expired``, ``cleared``, ``revenue``, their ``.step.N`` / ``.channel.C`` variants and
  ``opened`` / ``clicked`` from ``message.*`` events): one dict add each, grouped only in the document.

:class:`StatsView` builds the JSON-ready document of the admin ``stats`` command (DESIGN.md's fixed keys
plus rates, per-channel latencies, memory, timers per level); ``engine.metrics_http`` renders the same
document as Prometheus text, so both always agree.
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from engine.clock import monotonic

__all__ = [
    "RATE_SAMPLES",
    "RATE_WINDOWS_S",
    "LatencyHistogram",
    "Stats",
    "StatsStatistics",
    "StatsView",
    "rss_bytes",
]

#: recovery metrics the actors emit (METRIC effects) that the ``recovery`` block reports
RECOVERY_METRICS = ("abandoned", "resumed", "recovered", "converted", "expired", "stopped", "cleared", "revenue")
#: engagement metrics from ``message.opened`` / ``message.clicked``
ENGAGEMENT_METRICS = ("opened", "clicked")
#: rate windows in seconds, as reported (``"1s"``, ``"10s"``, ``"60s"``)
RATE_WINDOWS_S = (1, 10, 60)
#: ring-buffer slots: one sample per second for the longest window, plus the sample it is measured from
RATE_SAMPLES = max(RATE_WINDOWS_S) + 1

_MAX_US = 3_600_000_000  # 1 h: longer durations are recorded as 1 h


class LatencyHistogram:
    """An HDR histogram of durations given in seconds, stored in microseconds (1 µs .. 1 h).

    Args:
        digits: significant decimal digits kept (3: 0.1 % error, 184 KiB; 2: 1 %, 26 KiB).
    """

    __slots__ = ("_h", "sum_s")

    def __init__(self, digits: int = 3) -> None:
        self._h = HdrHistogram(1, _MAX_US, digits)
        #: exact sum of the recorded seconds (Prometheus ``_sum``)
        self.sum_s = 0.0

    def record(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)  # a clock step backwards: count it, as "no lag"
        self.sum_s += seconds
        us = int(seconds * 1e6)
        self._h.record_value(1 if us < 1 else min(us, _MAX_US))

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    def percentile_s(self, percentile: float) -> float:
        """The value at ``percentile`` (0..100) in seconds; 0.0 when empty."""
        if not self._h.get_total_count():
            return 0.0
        return float(self._h.get_value_at_percentile(percentile)) / 1e6

    def summary(self) -> dict[str, float | int]:
        """Count and percentiles in milliseconds (the ``stats`` reply's shape)."""
        h = self._h
        if not h.get_total_count():
            return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "p999_ms": 0.0, "max_ms": 0.0}
        return {
            "count": h.get_total_count(),
            "p50_ms": h.get_value_at_percentile(50) / 1000,
            "p99_ms": h.get_value_at_percentile(99) / 1000,
            "p999_ms": h.get_value_at_percentile(99.9) / 1000,
            "max_ms": h.get_max_value() / 1000,
        }

    def cumulative(self, bounds_s: tuple[float, ...]) -> list[int]:
        """How many recordings were at most each bound (seconds, ascending): Prometheus ``le`` buckets.

        One pass over the histogram's non-empty buckets (cold path: a scrape).
        """
        limits_us = [b * 1e6 for b in bounds_s]
        out = [0] * len(limits_us)
        for item in self._h.get_recorded_iterator():
            value_us = self._h.get_lowest_equivalent_value(item.value_iterated_to)
            n = item.count_added_in_this_iter_step
            for i, limit in enumerate(limits_us):
                if value_us <= limit:
                    out[i] += n
        return out

    def __repr__(self) -> str:
        return f"<LatencyHistogram count={self.count} p99={self.percentile_s(99) * 1000:.3f}ms>"


@dataclass(frozen=True, slots=True)
class StatsStatistics:
    """A consistent copy of :class:`Stats`' counters (see :meth:`Stats.statistics`)."""

    #: events acknowledged as accepted (duplicates included, as the ingest reply counts them)
    events_accepted: int
    #: events rejected (bad fields, oversize batches, bad frames)
    events_rejected: int
    #: of the accepted, events whose ``id`` was seen before (ignored)
    events_duplicate: int
    #: ingest frames handled
    frames: int
    #: ingest connections opened since start
    connections: int
    #: wheel timers fired
    timers_fired: int
    #: send intents handed to the channel pools
    queued: int
    #: message-log outcomes per channel (``"-"``: a record about a whole step) and outcome
    sends: Mapping[str, Mapping[str, int]]
    #: every METRIC effect's running total
    metrics: Mapping[str, float]
    #: accepted events per second over the last 1 s / 10 s / 60 s
    events_per_s: Mapping[str, float]
    #: messages sent per second over the last 1 s / 10 s / 60 s
    sends_per_s: Mapping[str, float]


class Stats:
    """Everything the engine counts. Attribute increments only on the hot path.

    Writers: the ingest handler (``events_*``, ``frames``, ``connections``), the runtime (``queued``,
    ``timers_fired``, :meth:`outcome`, :meth:`metric`, ``timer_lag``), the dispatcher
    (:meth:`record_queue_time`, :meth:`record_provider_latency`), the ops sampler (:meth:`sample`).
    """

    def __init__(self) -> None:
        self.events_accepted = 0
        self.events_rejected = 0
        self.events_duplicate = 0
        self.frames = 0
        self.connections = 0
        self.queued = 0
        self.timers_fired = 0
        self.timer_errors = 0  # timers whose cart raised (a bug: logged with its traceback)
        self.sends: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.metrics: defaultdict[str, float] = defaultdict(float)
        #: fire time minus due time of each fired timer
        self.timer_lag = LatencyHistogram()
        #: from a frame's arrival to its events being applied
        self.ingest_latency = LatencyHistogram()
        #: per channel: from a send intent's submission to its dispatch to the provider
        self.queue_time: dict[str, LatencyHistogram] = {}
        #: per channel: from dispatch to the provider's final answer
        self.provider_latency: dict[str, LatencyHistogram] = {}
        # rate ring buffer: sample times (monotonic s) and running totals, RATE_SAMPLES slots
        self._sample_t = [0.0] * RATE_SAMPLES
        self._sample_events = [0] * RATE_SAMPLES
        self._sample_sends = [0] * RATE_SAMPLES
        self._samples = 0  # samples taken so far; the newest sits at (_samples - 1) % RATE_SAMPLES

    # ------------------------------------------------------------------ writers
    def outcome(self, channel: str | None, outcome: str) -> None:
        self.sends[channel or "-"][outcome] += 1

    def metric(self, name: str, amount: float) -> None:
        self.metrics[name] += amount

    def record_queue_time(self, channel: str, seconds: float) -> None:
        """A message of ``channel`` waited ``seconds`` between submission and dispatch."""
        h = self.queue_time.get(channel)
        if h is None:
            h = self.queue_time[channel] = LatencyHistogram(2)
        h.record(seconds)

    def record_provider_latency(self, channel: str, seconds: float) -> None:
        """The provider of ``channel`` took ``seconds`` to give a message its final answer."""
        h = self.provider_latency.get(channel)
        if h is None:
            h = self.provider_latency[channel] = LatencyHistogram(2)
        h.record(seconds)

    # ------------------------------------------------------------------ rates
    def sends_total(self) -> int:
        """Messages sent so far (outcome ``sent``, every channel). O(channels)."""
        return sum(outcomes.get("sent", 0) for outcomes in self.sends.values())

    def sample(self, now_s: float) -> None:
        """Copy the running totals into the rate ring buffer; call once per second (monotonic ``now_s``)."""
        i = self._samples % RATE_SAMPLES
        self._sample_t[i] = now_s
        self._sample_events[i] = self.events_accepted
        self._sample_sends[i] = self.sends_total()
        self._samples += 1

    def rates(self) -> tuple[dict[str, float], dict[str, float]]:
        """``(events_per_s, sends_per_s)``, each ``{"1s": x, "10s": x, "60s": x}`` from the ring buffer.

        A window longer than the history known so far uses the oldest sample; with fewer than two
        samples every rate is 0.0.
        """
        events: dict[str, float] = {}
        sends: dict[str, float] = {}
        n = self._samples
        newest = (n - 1) % RATE_SAMPLES
        for window in RATE_WINDOWS_S:
            key = f"{window}s"
            back = min(window, n - 1, RATE_SAMPLES - 1)
            if back <= 0:
                events[key] = sends[key] = 0.0
                continue
            old = (n - 1 - back) % RATE_SAMPLES
            dt = self._sample_t[newest] - self._sample_t[old]
            if dt <= 0.0:
                events[key] = sends[key] = 0.0
                continue
            events[key] = round((self._sample_events[newest] - self._sample_events[old]) / dt, 3)
            sends[key] = round((self._sample_sends[newest] - self._sample_sends[old]) / dt, 3)
        return events, sends

    # ------------------------------------------------------------------ readers
    def statistics(self) -> StatsStatistics:
        """A frozen copy of every counter (cold path)."""
        events_per_s, sends_per_s = self.rates()
        return StatsStatistics(
            events_accepted=self.events_accepted, events_rejected=self.events_rejected,
            events_duplicate=self.events_duplicate, frames=self.frames, connections=self.connections,
            timers_fired=self.timers_fired, queued=self.queued,
            sends={ch: dict(v) for ch, v in self.sends.items()}, metrics=dict(self.metrics),
            events_per_s=events_per_s, sends_per_s=sends_per_s,
        )

    def recovery(self) -> dict[str, Any]:
        """DESIGN.md's ``recovery`` block plus ``cleared`` and the per-step / per-channel split."""
        m = self.metrics
        abandoned = m.get("abandoned", 0)
        recovered = m.get("recovered", 0)
        doc: dict[str, Any] = {
            "abandoned": int(abandoned),
            "recovered": int(recovered),
            "converted": int(m.get("converted", 0)),
            "expired": int(m.get("expired", 0)),
            "cleared": int(m.get("cleared", 0)),
            "resumed": int(m.get("resumed", 0)),
            "stopped": int(m.get("stopped", 0)),
            "payment_failed": int(m.get("abandoned.payment_failed", 0)),
            "rate": round(recovered / abandoned, 4) if abandoned else 0.0,
            "revenue": round(m.get("revenue", 0.0), 2),
        }
        # order values per the cart's currency ("XXX": a cart without one); "revenue" above sums them all,
        # which means something only for a shop that sells in one currency
        doc["revenue_by_currency"] = {k: v["revenue"] for k, v in _split(m, ("revenue",), "currency").items()}
        doc["by_step"] = _split(m, ("recovered", "revenue"), "step")
        doc["by_channel"] = _split(m, ("recovered", "revenue"), "channel")
        return doc

    def engagement(self) -> dict[str, Any]:
        """Opens and clicks (``message.*`` events), in total and per step and channel."""
        m = self.metrics
        return {
            "opened": int(m.get("opened", 0)), "clicked": int(m.get("clicked", 0)),
            "by_step": _split(m, ENGAGEMENT_METRICS, "step"), "by_channel": _split(m, ENGAGEMENT_METRICS, "channel"),
        }

    def latency(self) -> dict[str, Any]:
        return {
            "ingest": self.ingest_latency.summary(), "timer_lag": self.timer_lag.summary(),
            "queue": {ch: h.summary() for ch, h in sorted(self.queue_time.items())},
            "provider": {ch: h.summary() for ch, h in sorted(self.provider_latency.items())},
        }

    def snapshot(self) -> dict[str, Any]:
        """The counters' part of the ``stats`` document (JSON-ready)."""
        events_per_s, sends_per_s = self.rates()
        known = (*RECOVERY_METRICS, *ENGAGEMENT_METRICS)
        return {
            "events": {"accepted": self.events_accepted, "rejected": self.events_rejected,
                       "duplicate": self.events_duplicate, "frames": self.frames, "connections": self.connections},
            "rates": {"events_per_s": events_per_s, "sends_per_s": sends_per_s},
            "sends": {ch: dict(v) for ch, v in self.sends.items()},
            "recovery": self.recovery(),
            "engagement": self.engagement(),
            "metrics": {k: v for k, v in self.metrics.items() if k.split(".", 1)[0] not in known},
            "latency": self.latency(),
            "timers_fired": self.timers_fired,
            "timer_errors": self.timer_errors,
            "queued": self.queued,
        }

    def __repr__(self) -> str:
        return (f"<Stats accepted={self.events_accepted} rejected={self.events_rejected} "
                f"duplicate={self.events_duplicate} fired={self.timers_fired} queued={self.queued} "
                f"sent={self.sends_total()}>")


def _split(metrics: Mapping[str, float], names: tuple[str, ...], axis: str) -> dict[str, dict[str, float]]:
    """``{"1": {"recovered": 2, "revenue": 80.0}, ...}`` from metrics named ``NAME.AXIS.KEY``."""
    out: dict[str, dict[str, float]] = {}
    for full, value in metrics.items():
        name, sep, rest = full.partition(".")
        if not sep or name not in names:
            continue
        kind, sep, key = rest.partition(".")
        if kind != axis or not sep:
            continue
        slot = out.setdefault(key, {n: 0 for n in names})
        slot[name] = round(value, 2) if name == "revenue" else int(value)
    return dict(sorted(out.items(), key=lambda kv: (len(kv[0]), kv[0])))


def rss_bytes() -> int | None:
    """Resident set size of this process from ``/proc/self/statm`` (None where there is no /proc)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


class StatsView:
    """The full ``stats`` document of one engine: counters plus the gauges read from its components.

    Args:
        engine: an :class:`engine.app.Engine` (read only: ``registry``, ``runtime``, ``stats``, ``store``,
            ``clock``, ``config``, the snapshot attributes, ``channels_document()``).
        levels_ttl_s: how long the timers-per-level count is reused (it walks every pending timer).
    """

    def __init__(self, engine: Any, *, levels_ttl_s: float = 5.0) -> None:
        self.engine = engine
        self.levels_ttl_s = levels_ttl_s
        self._levels: list[int] = []
        self._levels_at = -math.inf

    def timers_per_level(self) -> list[int]:
        """Pending timers per wheel level (then the ready list), at most ``levels_ttl_s`` old."""
        now = monotonic()
        if now - self._levels_at >= self.levels_ttl_s:
            self._levels = list(self.engine.runtime.wheel.pending_per_level())
            self._levels_at = now
        return self._levels

    def persistence(self) -> dict[str, Any]:
        engine = self.engine
        full = getattr(engine, "persistence_document", None)
        if full is not None:  # the engine's own view: store up/down, cuts, journal and ledger figures
            return full()
        last = engine.last_snapshot_at
        error = engine.snapshot_error
        return {
            "store": engine.store.describe(),
            "durability": engine.config.engine.durability,
            "up": error is None,
            "snapshot_age_s": None if last is None else round(monotonic() - last, 3),
            "snapshot_duration_s": engine.last_snapshot_s,
            "error": error,
        }

    def document(self) -> dict[str, Any]:
        """The admin ``stats`` reply without ``ok`` (DESIGN.md's fixed keys and more)."""
        engine = self.engine
        stats = engine.stats
        doc: dict[str, Any] = stats.snapshot()
        doc["carts"] = dict(engine.registry.carts_by_state())
        doc["live_carts"] = len(engine.registry)
        doc["timers"] = len(engine.runtime.wheel)
        doc["timers_per_level"] = self.timers_per_level()
        doc["clock"] = {"now": engine.clock.now(), "kind": engine.clock.kind}
        doc["persistence"] = self.persistence()
        doc["memory"] = {"rss_bytes": rss_bytes()}
        doc["message_log"] = len(engine.runtime.msglog)
        doc["message_log_dropped"] = engine.runtime.msglog.dropped
        doc["channels"] = engine.channels_document()
        doc["restoring"] = bool(engine.restoring)
        doc["uptime_s"] = round(monotonic() - engine.started_at, 3)
        return doc

    def __repr__(self) -> str:
        return f"<StatsView {self.engine.stats!r}>"
