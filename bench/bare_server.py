"""The ingest ceiling: a bare uvloop msgpack server that decodes frames, replies and discards.

It speaks the engine's wire protocol (DESIGN.md "Wire protocol") and does nothing else: per frame it
decodes the msgpack value, counts the events (one map, or an array of maps) and answers
``{"seq": n, "accepted": k, "rejected": []}`` (``{"seq": n, "synced": true}`` to ``{"type": "sync"}``).
No validation, no actors, no timers. Whatever the engine does on top of this costs throughput, so
``engine / bare`` in ``bench/ingest.py`` is the share of the achievable rate that the engine keeps.

The replies to all frames cut from one ``data_received`` chunk go out in one ``write`` (one syscall),
the cheapest framing a server can do; the engine writes once per frame.

Run it as a process (``python -m bench.bare_server --tcp 127.0.0.1:0 --unix /tmp/x.sock``): it prints
``ready tcp=HOST:PORT unix=PATH`` on stdout once listening; on SIGTERM or SIGINT it prints one JSON line
of statistics (frames, events, arrival times, events per second of arrival) and exits 0. The pacing
test reads those per-second counts to check the load generator's open loop from the receiving side.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

__all__ = ["BareProtocol", "BareStats", "serve"]

_perf = time.perf_counter


class BareStats:
    """Counters shared by every connection; ``per_second[k]``: events arriving in second k after the first."""

    __slots__ = ("connections", "events", "first_s", "frames", "last_s", "per_second")

    def __init__(self) -> None:
        self.frames = 0
        self.events = 0
        self.connections = 0
        self.first_s: float | None = None
        self.last_s = 0.0
        self.per_second: list[int] = []

    def arrived(self, events: int, now: float) -> None:
        if self.first_s is None:
            self.first_s = now
        self.last_s = now
        k = int(now - self.first_s)
        per = self.per_second
        while len(per) <= k:
            per.append(0)
        per[k] += events

    def document(self) -> dict[str, Any]:
        span = 0.0 if self.first_s is None else self.last_s - self.first_s
        return {"frames": self.frames, "events": self.events, "connections": self.connections,
                "span_s": span, "per_second": self.per_second}


class BareProtocol(asyncio.Protocol):
    """Decode, count, reply; nothing else."""

    def __init__(self, stats: BareStats) -> None:
        self.stats = stats
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=256 << 20)
        self.transport: asyncio.Transport | None = None
        self.seq = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        packb = msgpack.packb
        out = []
        events = 0
        seq = self.seq
        try:
            for frame in self.unpacker:
                seq += 1
                if type(frame) is list:
                    n = len(frame)
                elif type(frame) is dict and frame.get("type") == "sync":
                    out.append(packb({"seq": seq, "synced": True}))
                    continue
                else:
                    n = 1
                events += n
                out.append(packb({"seq": seq, "accepted": n, "rejected": []}))
        except ValueError as exc:  # not msgpack: answer like the engine and hang up
            out.append(packb({"seq": seq + 1, "error": f"invalid msgpack: {exc}"[:200]}))
            self.transport.write(b"".join(out))  # type: ignore[union-attr]
            self.transport.close()  # type: ignore[union-attr]
            return
        self.seq = seq
        stats = self.stats
        stats.frames += len(out)
        stats.events += events
        stats.arrived(events, _perf())
        if out:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]

    def eof_received(self) -> bool | None:
        return False  # close our side too


async def serve(*, tcp: tuple[str, int] | None, unix: str | None, ready: Any = print) -> BareStats:
    """Listen until SIGTERM/SIGINT; returns the statistics."""
    loop = asyncio.get_running_loop()
    stats = BareStats()
    servers = []
    where = []
    if tcp is not None:
        server = await loop.create_server(lambda: BareProtocol(stats), tcp[0], tcp[1], backlog=1024)
        host, port = server.sockets[0].getsockname()[:2]
        servers.append(server)
        where.append(f"tcp={host}:{port}")
    if unix:
        Path(unix).unlink(missing_ok=True)
        servers.append(await loop.create_unix_server(lambda: BareProtocol(stats), unix, backlog=1024))
        where.append(f"unix={unix}")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready("ready " + " ".join(where))
    await stop.wait()
    for server in servers:
        server.close()
        await server.wait_closed()
    if unix:
        Path(unix).unlink(missing_ok=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_server", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tcp", metavar="HOST:PORT", help="TCP address (port 0: any free port)")
    parser.add_argument("--unix", metavar="PATH", help="UNIX socket path")
    args = parser.parse_args(argv)
    if not args.tcp and not args.unix:
        parser.error("give --tcp and/or --unix")
    tcp = None
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        tcp = (host.strip("[]") or "127.0.0.1", int(port))
    import uvloop

    stats = uvloop.run(serve(tcp=tcp, unix=args.unix, ready=lambda line: print(line, flush=True)))
    print(json.dumps(stats.document()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
