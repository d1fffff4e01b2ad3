"""``cartwheel send FILE``: stream a file of events to a running engine and summarise the replies.

The file is JSON lines (one event, or one array of events, per line; blank lines and ``#`` comments
skipped) or msgpack (a stream of frames), told apart by its first byte. Events go out pipelined in
frames of ``--batch`` events; replies are matched to frames by ``seq``. A line that is not valid JSON is
reported with its line number and skipped: it never stops the rest.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack

__all__ = ["Problems", "read_events", "send_file"]


_BOM = b"\xef\xbb\xbf"
_JSON_SUFFIXES = {".jsonl", ".json", ".ndjson"}
_MSGPACK_SUFFIXES = {".msgpack", ".mpk", ".mp"}


class Problems(list[str]):
    """The problems of one run, the first ``limit`` kept: a file of millions of bad lines (a CSV named
    .jsonl) must not hold, nor print, millions of messages. :meth:`close` adds how many were left out."""

    def __init__(self, limit: int = 100) -> None:
        super().__init__()
        self.limit = limit
        self.more = 0

    def append(self, message: str) -> None:
        if len(self) < self.limit:
            super().append(message)
        else:
            self.more += 1

    def always(self, message: str) -> None:
        """A problem of the whole run (the connection, missing replies): kept whatever the count."""
        super().append(message)

    def close(self) -> Problems:
        if self.more:
            super().append(f"... and {self.more:,} more problems like these")
            self.more = 0
        return self


def _is_json_lines(path: Path, head: bytes) -> bool:
    """The file's format: its suffix says, else its first byte. msgpack events start with a map or an
    array (bytes 0x80-0x9f, 0xdc-0xdf), JSON lines with text: so a file whose first line is not valid
    JSON is still read as JSON lines, and that line is reported by number (not read as msgpack)."""
    suffix = path.suffix.lower()
    if suffix in _JSON_SUFFIXES:
        return True
    if suffix in _MSGPACK_SUFFIXES:
        return False
    head = head[len(_BOM):] if head.startswith(_BOM) else head
    return not head or head[0] in b"\t\n\r" or 0x20 <= head[0] < 0x7F


def read_events(path: Path, problems: list[str]) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, event)`` from a JSON-lines or msgpack file; bad lines go to ``problems``."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if _is_json_lines(path, head):
            for number, raw in enumerate(f, 1):
                line = raw.strip()
                if number == 1 and line.startswith(_BOM):
                    line = line[len(_BOM):].strip()
                if not line or line.startswith(b"#"):
                    continue
                try:
                    value = json.loads(line)
                except (ValueError, RecursionError) as exc:  # (RecursionError: nested too deeply)
                    problems.append(f"{path}:{number}: not valid JSON ({exc})")
                    continue
                if isinstance(value, list):  # a batch on one line: its events are named by index
                    for index, event in enumerate(value):
                        yield f"{path}:{number}[{index}]", event
                else:
                    yield f"{path}:{number}", value
        else:
            unpacker = msgpack.Unpacker(f, raw=False, strict_map_key=False)
            number = 0
            try:
                for value in unpacker:
                    number += 1
                    if isinstance(value, list):
                        for index, event in enumerate(value):
                            yield f"{path}: frame {number}[{index}]", event
                    else:
                        yield f"{path}: frame {number}", value
            except (ValueError, msgpack.UnpackException) as exc:
                problems.append(f"{path}: invalid msgpack after frame {number} ({exc})")
            else:
                # The unpacker stops quietly at the end of the file, also inside a frame: a file cut short
                # (a copy interrupted, a writer killed) must not lose its last frame without a word.
                left = os.fstat(f.fileno()).st_size - unpacker.tell()
                if left > 0:
                    problems.append(f"{path}: truncated: the last {left} bytes are an incomplete frame "
                                    f"(frame {number + 1}); its events were not sent")


def _pack(events: list[Any], origin: list[str], problems: list[str]) -> bytes:
    """One frame of ``events``. A value JSON allows but msgpack cannot carry (an integer beyond 64 bits,
    nesting deeper than msgpack's limit) is reported by where it came from and left out; the frame's
    other events go (``origin`` is trimmed to match)."""
    try:
        return msgpack.packb(events)
    except (OverflowError, ValueError, TypeError):
        pass
    good: list[Any] = []
    kept: list[str] = []
    for event, where in zip(events, origin):
        try:
            msgpack.packb(event)
        except (OverflowError, ValueError, TypeError) as exc:
            problems.append(f"{where}: cannot be sent as msgpack ({exc}); not sent")
            continue
        good.append(event)
        kept.append(where)
    events[:] = good
    origin[:] = kept
    return msgpack.packb(good)


def _frames(events: list[Any], origin: list[str], problems: list[str],
            limit: int) -> list[tuple[bytes, int, list[str]]]:
    """``events`` as frames of at most ``limit`` bytes: ``(bytes, events, where)`` each. The engine closes
    the connection on a frame over its ``max_frame_bytes``, so a batch that packs larger is halved until
    it fits; one event alone over the limit is reported and left out."""
    data = _pack(events, origin, problems)
    if not events:
        return []
    if len(data) <= limit:
        return [(data, len(events), origin)]
    if len(events) == 1:
        problems.append(f"{origin[0]}: {len(data):,} bytes as msgpack, over the engine's frame limit of "
                        f"{limit:,} bytes (engine.max_frame_bytes); not sent")
        return []
    mid = len(events) // 2
    return (_frames(events[:mid], origin[:mid], problems, limit)
            + _frames(events[mid:], origin[mid:], problems, limit))


async def _connect(tcp: tuple[str, int] | None, unix: str | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if unix:
        return await asyncio.open_unix_connection(unix)
    if tcp:
        return await asyncio.open_connection(*tcp)
    raise ValueError("no ingest address: give --unix PATH or --tcp HOST:PORT, or a config with one")


async def send_file(path: Path, *, tcp: tuple[str, int] | None, unix: str | None, batch: int = 100,
                    progress: bool = True, out: Any = None, max_frame_bytes: int = 1 << 20,
                    reply_timeout_s: float = 60.0) -> dict[str, Any]:
    """Send every event of ``path``; returns the summary (also printed by the CLI).

    ``max_frame_bytes`` is the engine's (``engine.max_frame_bytes``): no frame sent is larger. After the
    last frame, replies are awaited as long as one comes at least every ``reply_timeout_s``.
    """
    out = sys.stderr if out is None else out  # (not a default: sys.stderr may be replaced)
    problems = Problems()
    reader, writer = await _connect(tcp, unix)
    frames: dict[int, list[str]] = {}
    summary: dict[str, Any] = {"sent": 0, "accepted": 0, "rejected": 0, "frames": 0}
    reasons: Counter[str] = Counter()
    examples: list[str] = []
    done = asyncio.Event()
    sent_all = False
    started = time.perf_counter()
    last_print = 0.0

    async def read_replies() -> None:
        try:
            await read_all()
        except OSError as exc:  # ConnectionResetError, BrokenPipeError: the engine went away
            lost.append(exc)
        done.set()

    async def read_all() -> None:
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            data = await reader.read(65536)
            if not data:
                break
            unpacker.feed(data)
            for reply in unpacker:
                where = frames.pop(reply.get("seq"), [])
                if "error" in reply:
                    problems.always(f"engine closed the connection: {reply['error']}")
                    return
                summary["accepted"] += reply.get("accepted", 0)
                rejected = reply.get("rejected", [])
                if len(rejected) == 1 and rejected[0][1].startswith("frame:") and not reply.get("accepted"):
                    # the frame as a whole (more than the engine's max_batch events): each of its events
                    # is rejected, though the engine names only index 0
                    summary["rejected"] += len(where)
                    reasons["frame"] += len(where)
                    if len(examples) < 20:
                        span = f"{where[0]} to {where[-1]}" if len(where) > 1 else where[0] if where else "?"
                        examples.append(f"{span} ({len(where)} events): {rejected[0][1]} (try a smaller --batch)")
                    continue
                for index, reason in rejected:
                    summary["rejected"] += 1
                    reasons[reason.split(":", 1)[0]] += 1
                    if len(examples) < 20:
                        examples.append(f"{where[index] if index < len(where) else '?'}: {reason}")
            if sent_all and not frames:
                break

    async def send_frames(events: list[Any], where: list[str]) -> bool:
        """Write ``events`` (one frame, or more when one would be too large); False when the connection
        is gone (the engine stopped or closed it)."""
        nonlocal seq
        for data, n, names in _frames(events, where, problems, max_frame_bytes):
            if done.is_set():  # the engine closed the connection: what is written now is lost
                return False
            seq += 1
            frames[seq] = names
            try:
                writer.write(data)
                summary["sent"] += n
                await writer.drain()
            except OSError as exc:  # ConnectionResetError, BrokenPipeError
                lost.append(exc)
                return False
        return True

    lost: list[BaseException] = []
    replies = asyncio.create_task(read_replies())
    seq = 0
    pending: list[Any] = []
    origin: list[str] = []
    connected = True
    for where, event in read_events(path, problems):
        pending.append(event)
        origin.append(where)
        if len(pending) >= batch:
            connected = await send_frames(pending, origin)
            pending, origin = [], []
            if not connected:
                break
            now = time.perf_counter()
            if progress and now - last_print >= 0.5:
                last_print = now
                rate = summary["sent"] / max(now - started, 1e-9)
                print(f"\rsent {summary['sent']:,} events, accepted {summary['accepted']:,}, "
                      f"rejected {summary['rejected']:,} ({rate:,.0f}/s)", end="", file=out, flush=True)
    if pending and connected:
        connected = await send_frames(pending, origin)
    sent_all = True
    summary["frames"] = seq
    if not frames:  # nothing sent, or every reply already read (the reader checks sent_all after a read)
        done.set()
    while True:  # the replies may trail far behind the writes (an engine under back-pressure): wait as
        before = len(frames)  # long as they keep coming, give up after reply_timeout_s without one
        try:
            await asyncio.wait_for(done.wait(), reply_timeout_s)
        except TimeoutError:
            if len(frames) < before:
                continue
            why = f" for {reply_timeout_s:g} s"
        else:
            why = ": the engine closed the connection"  # (stopped, or refused a frame) before answering them
        if frames:
            events = sum(len(where) for where in frames.values())
            problems.always(f"no reply to {len(frames)} frames ({events} events){why}; whether they were "
                            "applied is unknown")
        break
    if not connected:
        problems.always(f"connection to the engine lost ({lost[0] if lost else 'closed by the engine'}) "
                        f"after {summary['sent']:,} events; the rest of the file was not sent")
    elif lost:
        problems.always(f"connection to the engine lost ({lost[0]})")
    replies.cancel()
    await asyncio.gather(replies, return_exceptions=True)
    writer.close()
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["reasons"] = dict(reasons.most_common())
    summary["examples"] = examples
    summary["problems"] = list(problems.close())
    if progress:
        print("", file=out)
    return summary


def print_summary(summary: dict[str, Any], out: Any = sys.stdout) -> None:
    print(f"sent {summary['sent']:,} events in {summary['frames']:,} frames ({summary['seconds']} s): "
          f"{summary['accepted']:,} accepted, {summary['rejected']:,} rejected", file=out)
    if summary["reasons"]:
        print("rejections by field:", file=out)
        for field, n in summary["reasons"].items():
            print(f"  {field:<24} {n:>8,}", file=out)
    for line in summary["examples"]:
        print(f"  {line}", file=out)
    for line in summary["problems"]:
        print(f"problem: {line}", file=out)
