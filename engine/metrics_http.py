"""Prometheus ``/metrics`` plus ``/healthz`` and ``/readyz`` over HTTP (aiohttp), when ``metrics_http`` is set.

Everything comes from the same :class:`~engine.stats.StatsView` document as the admin ``stats`` reply,
rendered in the Prometheus text exposition format 0.0.4 by :func:`render_metrics` (no client library at
run time). Names follow the Prometheus conventions: a ``cartwheel_`` prefix, base units (seconds, bytes),
``_total`` on counters, and labels only of bounded cardinality (state, channel, outcome, step, window,
level) — never a cart, profile or store id.

Latency histograms are exported as Prometheus histograms whose cumulative ``le`` buckets are read from
the HDR histograms at scrape time (:data:`BUCKETS_S`); ``_sum`` is exact, ``_count`` is the HDR count.

Probes: ``/healthz`` answers 200 while the event loop runs (the answer itself is the proof) and the tick
driver is alive, else 503; ``/readyz`` answers 503 while the engine restores a snapshot, else 200.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable

from aiohttp import web

from engine.stats import LatencyHistogram, StatsView

__all__ = ["BUCKETS_S", "MetricsServer", "render_metrics"]

log = logging.getLogger("cartwheel.metrics")

#: histogram bucket upper bounds in seconds (``le``), from 100 µs to 10 min
BUCKETS_S = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
             30.0, 60.0, 300.0, 600.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_WINDOWS = ("1s", "10s", "60s")


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float | None) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Writer:
    """Accumulates metric families: HELP and TYPE once per name, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float | None, labels: dict[str, object] | None = None) -> None:
        if labels:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{text}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")

    def one(self, name: str, kind: str, help_text: str, value: float | None) -> None:
        self.family(name, kind, help_text)
        self.sample(name, value)

    def labelled(self, name: str, kind: str, help_text: str,
                 samples: Iterable[tuple[dict[str, object], float | int | None]]) -> None:
        self.family(name, kind, help_text)
        for labels, value in samples:
            self.sample(name, value, labels)

    def histograms(self, name: str, help_text: str,
                   series: Iterable[tuple[dict[str, object], LatencyHistogram]]) -> None:
        self.family(name, "histogram", help_text)
        for labels, h in series:
            counts = h.cumulative(BUCKETS_S)
            for bound, n in zip(BUCKETS_S, counts):
                self.sample(f"{name}_bucket", n, {**labels, "le": _number(bound)})
            self.sample(f"{name}_bucket", h.count, {**labels, "le": "+Inf"})
            self.sample(f"{name}_sum", h.sum_s, labels or None)
            self.sample(f"{name}_count", h.count, labels or None)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_metrics(view: StatsView) -> str:
    """The engine's metrics in the Prometheus text format (one scrape)."""
    doc = view.document()
    stats = view.engine.stats
    w = _Writer()
    ev = doc["events"]
    w.labelled("cartwheel_events_total", "counter",
               "Ingest events by result (accepted: applied; duplicate: repeated id, acknowledged and ignored).",
               [({"result": "accepted"}, ev["accepted"] - ev["duplicate"]), ({"result": "rejected"}, ev["rejected"]),
                ({"result": "duplicate"}, ev["duplicate"])])
    w.one("cartwheel_frames_total", "counter", "Ingest frames handled.", ev["frames"])
    w.one("cartwheel_connections_total", "counter", "Ingest connections opened.", ev["connections"])
    rates = doc["rates"]
    w.labelled("cartwheel_events_per_second", "gauge", "Accepted events per second over a trailing window.",
               [({"window": k}, rates["events_per_s"].get(k, 0.0)) for k in _WINDOWS])
    w.labelled("cartwheel_sends_per_second", "gauge", "Messages sent per second over a trailing window.",
               [({"window": k}, rates["sends_per_s"].get(k, 0.0)) for k in _WINDOWS])
    w.labelled("cartwheel_sends_total", "counter",
               "Message outcomes by channel (- for a whole skipped step) and outcome.",
               [({"channel": ch, "outcome": out}, n) for ch, outs in sorted(doc["sends"].items())
                for out, n in sorted(outs.items())])
    w.one("cartwheel_send_intents_total", "counter", "Send intents handed to the channel pools.", doc["queued"])
    w.one("cartwheel_timers_fired_total", "counter", "Wheel timers fired.", doc["timers_fired"])

    w.labelled("cartwheel_carts", "gauge", "Live carts by state.", [({"state": s}, n) for s, n in doc["carts"].items()])
    w.one("cartwheel_timers_pending", "gauge", "Timers pending in the timing wheel.", doc["timers"])
    levels = doc["timers_per_level"]
    w.labelled("cartwheel_timers_pending_level", "gauge",
               "Timers pending per wheel level (the last one is the ready list); refreshed every few seconds.",
               [({"level": "ready" if i == len(levels) - 1 else str(i)}, n) for i, n in enumerate(levels)])
    w.one("cartwheel_message_log_records", "gauge", "Records held in the message log.", doc["message_log"])
    w.one("cartwheel_message_log_dropped_total", "counter",
          "Message-log records pushed out by newer ones because the log held log_max_records (since start).",
          doc["message_log_dropped"])

    rec = doc["recovery"]
    w.labelled("cartwheel_recovery_carts_total", "counter",
               "Carts by recovery milestone: abandoned (a run started), resumed (a paused run went on), recovered, "
               "converted, expired, stopped (by an operator), cleared.",
               [({"milestone": k}, rec[k])
                for k in ("abandoned", "resumed", "recovered", "converted", "expired", "stopped", "cleared")])
    w.one("cartwheel_recovered_revenue_total", "counter", "Order value attributed to recovery messages.", rec["revenue"])
    w.labelled("cartwheel_recovered_revenue_by_currency_total", "counter",
               "Order value attributed to recovery messages, per the cart's currency (XXX: none given).",
               [({"currency": k}, v) for k, v in rec["revenue_by_currency"].items()])
    w.one("cartwheel_recovery_rate", "gauge", "Recovered carts divided by abandoned carts.", rec["rate"])
    w.labelled("cartwheel_recovered_by_step_total", "counter", "Recovered carts by the flow step credited.",
               [({"step": k}, v["recovered"]) for k, v in rec["by_step"].items()])
    w.labelled("cartwheel_recovered_by_channel_total", "counter", "Recovered carts by the channel credited.",
               [({"channel": k}, v["recovered"]) for k, v in rec["by_channel"].items()])
    w.labelled("cartwheel_recovered_revenue_by_step_total", "counter", "Recovered revenue by the flow step credited.",
               [({"step": k}, v["revenue"]) for k, v in rec["by_step"].items()])
    w.labelled("cartwheel_recovered_revenue_by_channel_total", "counter", "Recovered revenue by the channel credited.",
               [({"channel": k}, v["revenue"]) for k, v in rec["by_channel"].items()])
    eng = doc["engagement"]
    w.labelled("cartwheel_message_engagement_total", "counter", "Message opens and clicks by channel.",
               [({"channel": ch, "action": action}, v[action]) for ch, v in eng["by_channel"].items()
                for action in ("opened", "clicked")])

    w.histograms("cartwheel_timer_lag_seconds", "Timer fire time minus due time.", [({}, stats.timer_lag)])
    w.histograms("cartwheel_ingest_apply_seconds", "From an ingest frame's arrival to its events applied.",
                 [({}, stats.ingest_latency)])
    w.histograms("cartwheel_dispatch_queue_seconds", "Time a message waited in its channel's queue.",
                 [({"channel": ch}, h) for ch, h in sorted(stats.queue_time.items())])
    w.histograms("cartwheel_provider_latency_seconds", "From dispatch to the provider's final answer.",
                 [({"channel": ch}, h) for ch, h in sorted(stats.provider_latency.items())])

    channels = doc["channels"]
    w.labelled("cartwheel_channel_queue_depth", "gauge", "Messages held by a channel's pool.",
               [({"channel": ch}, c.get("queued")) for ch, c in sorted(channels.items())])
    w.labelled("cartwheel_channel_in_flight", "gauge", "Sends under way per channel.",
               [({"channel": ch}, c.get("in_flight")) for ch, c in sorted(channels.items())])
    w.labelled("cartwheel_channel_paused", "gauge", "1 while a channel is paused by an operator.",
               [({"channel": ch}, bool(c.get("paused"))) for ch, c in sorted(channels.items())])
    w.labelled("cartwheel_channel_breaker_open", "gauge", "1 while a channel's circuit breaker is not closed.",
               [({"channel": ch}, str(c.get("breaker", "closed")) != "closed") for ch, c in sorted(channels.items())])
    w.labelled("cartwheel_channel_breaker_opened_total", "counter", "Times a channel's breaker opened.",
               [({"channel": ch}, c.get("breaker_opened", 0)) for ch, c in sorted(channels.items())])

    pers = doc["persistence"]
    w.one("cartwheel_store_up", "gauge", "1 when the last snapshot write succeeded.", bool(pers["up"]))
    w.one("cartwheel_snapshot_age_seconds", "gauge", "Seconds since the last snapshot (NaN: none yet).",
          pers["snapshot_age_s"])
    w.one("cartwheel_snapshot_duration_seconds", "gauge", "Duration of the last snapshot (NaN: none yet).",
          pers["snapshot_duration_s"])
    w.one("cartwheel_process_resident_memory_bytes", "gauge", "Resident memory of the engine process.",
          doc["memory"]["rss_bytes"])
    w.one("cartwheel_uptime_seconds", "gauge", "Seconds since the engine started.", doc["uptime_s"])
    w.one("cartwheel_clock_seconds", "gauge", "The engine clock, unix seconds.", doc["clock"]["now"])
    w.one("cartwheel_restoring", "gauge", "1 while a snapshot is being restored.", doc["restoring"])
    return w.text()


class MetricsServer:
    """The HTTP listener: ``/metrics``, ``/healthz``, ``/readyz``.

    Args:
        view: the engine's stats view (its ``engine`` gives ``restoring`` and the runtime for the probes).
    """

    def __init__(self, view: StatsView) -> None:
        self.view = view
        self.address: tuple[str, int] | None = None
        self.scrapes = 0
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        sockname = runner.addresses[0]
        self.address = (sockname[0], sockname[1])

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        body = render_metrics(self.view).encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        task = getattr(self.view.engine.runtime, "_task", None)
        if task is not None and task.done():
            return web.Response(status=503, text="tick driver stopped\n")
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.view.engine.restoring:
            return web.Response(status=503, text="restoring\n")
        return web.Response(text="ready\n")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __repr__(self) -> str:
        return f"<MetricsServer address={self.address} scrapes={self.scrapes}>"
