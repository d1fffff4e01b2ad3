"""The ingest server: msgpack frames in, one reply per frame out (DESIGN.md "Wire protocol").

Layers, as aiohttp stacks them: :class:`IngestProtocol` frames bytes and handles flow control;
:class:`FrameHandler` turns one decoded frame into a reply (validation, de-duplication, applying to the
runtime) and knows nothing of transports.

Per connection a streaming ``msgpack.Unpacker`` cuts frames (msgpack is self-delimiting). Each frame is
one map (an event), one array of maps (a batch) or the control frame ``{"type": "sync"}``. Replies go
out in frame order: ``{"seq": n, "accepted": k, "rejected": [[index, "field: reason"], ...]}``. A sync
frame's reply waits until everything accepted before it is durable; replies to later frames queue
behind it (their events are applied at once). Bytes that are not msgpack get
``{"seq": n, "error": ...}`` and that connection (only) is closed; earlier frames stay accepted.

Back-pressure, never unbounded buffers: when a client does not read its replies the transport's write
buffer fills, ``pause_writing`` fires and we stop reading from that client; when the engine as a whole
falls behind (the send queue is over its bound) the server pauses reading on every connection until it
drains. A frame may not exceed ``max_frame_bytes``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import msgspec

from engine.schema import frame_kind, split_batch
from engine.unix_path import take_unix_path
from engine.validate import Deduper, Validator, is_control

__all__ = ["FrameHandler", "IngestProtocol", "IngestServer", "NotMsgpack"]

log = logging.getLogger("cartwheel.ingest")

_packb = msgspec.msgpack.Encoder().encode  # replies: msgpack.packb's bytes, without a Packer per call
_unpackb = msgpack.unpackb
#: the fast path refused an event: a rule broken, bytes msgspec reads differently from msgpack, a
#: known string field whose bytes are not UTF-8 (msgspec raises UnicodeDecodeError, not one of its own
#: errors, for those), or nesting deeper than msgspec's recursion limit (msgpack goes to 1 024 levels).
#: msgpack, on the slow path, has the last word on whether the bytes are msgpack at all, as it had
#: before msgspec came in.
_Invalid = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)
#: what msgpack raises for bytes that are not msgpack (TypeError: a map key that cannot be a dict key;
#: ValueError covers bad UTF-8 and extra data)
_NOT_MSGPACK = (msgpack.UnpackValueError, msgpack.FormatError, msgpack.StackError, ValueError, TypeError)


class _FrameTooLarge(Exception):
    """A frame (complete, or still arriving) is over ``max_frame_bytes``: error reply, connection closed."""


class NotMsgpack(ValueError):
    """A frame's bytes are not msgpack: the connection gets an error reply and is closed.

    Its own type, so that a bug elsewhere raising ValueError is not reported to a client as bad bytes.
    """


def _decode(data: Any) -> Any:
    """msgpack's reading of one value (the slow path's, and the authority on what is msgpack)."""
    try:
        return _unpackb(data, raw=False, strict_map_key=False)
    except _NOT_MSGPACK as exc:
        raise NotMsgpack(str(exc)) from exc
_perf = time.perf_counter

#: events handled per loop turn, all connections together, before ingest yields (fairness with the
#: tick driver and the sends)
EVENTS_PER_TURN = 2000
#: the longest ingest holds the loop in one turn (seconds), all connections together: timers fire and
#: sends progress in between
SLICE_S = 0.005


class FrameHandler:
    """Validates and applies frames; shared by every connection.

    Args:
        apply: ``apply(event, now)`` — the runtime's hot-path entry.
        now: the engine clock's ``now``.
        validator: event validation.
        deduper: duplicate-id filter (``None`` disables it).
        stats: the engine's counters (``events_accepted`` ...).
        sync: a coroutine function returning once earlier events are durable (raises on failure).
        max_batch: the most events in one frame.
        barrier: journal durability: called after each frame, returns a future the frame's reply must
            wait for (its events appended to the journal), or None to reply at once.
    """

    def __init__(
        self, *, apply: Callable[[dict[str, Any], float], None], now: Callable[[], float],
        validator: Validator, deduper: Deduper | None, stats: Any,
        sync: Callable[[], Awaitable[None]], max_batch: int = 10_000,
        barrier: Callable[[], asyncio.Future[None] | None] | None = None,
    ) -> None:
        self.apply = apply
        self.now = now
        self.validator = validator
        self.deduper = deduper
        self.stats = stats
        self.sync = sync
        self.max_batch = max_batch
        self.barrier = barrier

    def handle(self, seq: int, frame: Any) -> dict[str, Any]:
        """The reply to one decoded (non-control) frame: a map, a list of maps, or anything (untrusted).

        The general path (tests, tools, and frames the byte path below does not take). Never raises on
        bad input.
        """
        t0 = _perf()
        now = self.now()
        if type(frame) is dict:
            events: Any = (frame,)
        elif type(frame) is list:
            if len(frame) > self.max_batch:
                return self._too_big(seq, len(frame))
            events = frame
        else:
            self.stats.frames += 1
            self.stats.events_rejected += 1
            return {"seq": seq, "accepted": 0, "rejected": [[0, "frame: must be a map (an event) or an array of maps"]]}
        validate = self.validator.validate
        checked = [event if (reason := validate(event, now)) is None else reason for event in events]
        return self._apply(seq, checked, now, t0)

    def handle_bytes(self, seq: int, data: bytes | bytearray) -> dict[str, Any] | None:
        """The reply to one frame given as its msgpack bytes (hot path), or None for a ``sync`` frame.

        Each event is decoded and type-checked in one go by the validator's msgspec decoder
        (``engine.schema``); one that fails it is decoded by msgpack and given to
        :meth:`Validator.validate`, which names the bad field. Every event of the frame is decoded
        before any is applied, so bytes that turn out not to be msgpack reject the frame as a whole.

        Raises:
            NotMsgpack: ``data`` is not valid msgpack (the caller closes the connection, as for a frame
            the stream decoder cannot cut).
        """
        t0 = _perf()
        now = self.now()
        kind = frame_kind(data[0])
        if kind == 2:
            try:
                raws = split_batch(data)
            except _Invalid:
                return self.handle(seq, _decode(data))
            if len(raws) > self.max_batch:
                return self._too_big(seq, len(raws))
            event = self._event
            checked: Any = [event(raw, now) for raw in raws]
        elif kind == 1:
            one = self._event(data, now, single=True)
            if one is None:
                return None
            checked = (one,)
        else:  # not a map or an array: the general path says so (or raises for bytes that are not msgpack)
            return self.handle(seq, _decode(data))
        return self._apply(seq, checked, now, t0)

    def _event(self, raw: Any, now: float, single: bool = False) -> Any:
        """One event's bytes -> the event (a dict, valid and normalised) or its rejection reason (str).

        None for the ``sync`` control frame when ``single`` (the frame is that one event).
        """
        validator = self.validator
        try:
            event = validator.decoder.decode(raw)
        except _Invalid:  # a rule broken (or a control frame): the validator says which, exactly
            event = _decode(raw)
            if single and is_control(event):
                return None
            reason = validator.validate(event, now)
            return event if reason is None else reason
        reason = validator.check_decoded(event, now)
        return event if reason is None else reason

    def _too_big(self, seq: int, events: int) -> dict[str, Any]:
        self.stats.frames += 1
        self.stats.events_rejected += events
        return {"seq": seq, "accepted": 0,
                "rejected": [[0, f"frame: more than {self.max_batch} events in one batch"]]}

    def _apply(self, seq: int, checked: Any, now: float, t0: float) -> dict[str, Any]:
        """Apply a frame's checked events (dicts; a str is that event's rejection reason) and reply."""
        stats = self.stats
        stats.frames += 1
        apply = self.apply
        deduper = self.deduper
        accepted = 0
        rejected: list[list[Any]] | None = None
        for index, event in enumerate(checked):
            if type(event) is str:
                if rejected is None:
                    rejected = []
                rejected.append([index, event])
                continue
            event_id = event.get("id")
            if event_id is not None and deduper is not None and deduper.seen(event["store"], event_id, now):
                stats.events_duplicate += 1
                accepted += 1
                continue
            try:
                apply(event, now)
            except Exception as exc:  # an actor bug must not take the connection or the batch down
                log.exception("applying event %d of frame %d failed", index, seq)
                if event_id is not None and deduper is not None:
                    deduper.forget(event["store"], event_id)  # "not applied": a retry must not be a duplicate
                if rejected is None:
                    rejected = []
                rejected.append([index, f"event: internal error ({type(exc).__name__}); not applied"])
                continue
            accepted += 1
        stats.events_accepted += accepted
        if rejected:
            stats.events_rejected += len(rejected)
        stats.ingest_latency.record(_perf() - t0)  # once per frame, never per event
        return {"seq": seq, "accepted": accepted, "rejected": rejected or []}


class IngestProtocol(asyncio.Protocol):
    """One client connection: frames in, ordered replies out, with flow control."""

    def __init__(self, server: IngestServer) -> None:
        self.server = server
        self.handler = server.handler
        limits = server.max_frame_bytes
        # The frame limit is checked on each frame's bytes as it is cut (_process); the unpacker's own
        # bound only caps what one connection may buffer: a frame in progress plus a read or two (uvloop
        # reads up to 256 KiB at a time, and valid frames may share a read with an oversize one).
        self.unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=False, max_buffer_size=limits + (1 << 20),
            max_bin_len=limits, max_str_len=limits, max_array_len=max(server.handler.max_batch, 1024),
            max_map_len=1 << 16, max_ext_len=limits,
        )
        #: the bytes fed to the unpacker that are not yet a handled frame; ``offset`` is the stream
        #: position of ``buffer[0]``, the start of the next frame. The unpacker only finds frame ends
        #: (``skip``, then ``tell``); the frames themselves are decoded from here by
        #: ``FrameHandler.handle_bytes``.
        self.buffer = bytearray()
        self.offset = 0
        self.transport: asyncio.Transport | None = None
        self.seq = 0
        self.pending: deque[bytes | asyncio.Future[bytes]] = deque()
        self.write_paused = False
        self.over_budget = False  # paused until the next loop turn (see _process)
        self.closed = False
        self.eof = False  # the client half-closed: close once the pending replies are written

    # -- connection lifecycle
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes
        self.server.connections.add(self)
        self.server.stats.connections += 1
        if self.server.paused:
            transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for item in self.pending:
            if isinstance(item, asyncio.Future):
                item.cancel()
        self.pending.clear()

    # -- flow control: a client that does not read its replies stops being read
    def pause_writing(self) -> None:
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self.server.paused and len(self.pending) < 1024 and not self.over_budget:
            self.transport.resume_reading()

    # -- frames
    def data_received(self, data: bytes) -> None:
        if self.closed:  # after an error reply: nothing more is read (see _fail)
            return
        try:
            self.unpacker.feed(data)
        except msgpack.BufferFull:
            self._process()  # the complete frames buffered so far get their replies first
            if self.closed:
                return
            try:
                self.unpacker.feed(data)
            except msgpack.BufferFull:
                self.seq += 1  # the frame in progress gets the error reply
                self._fail(self._too_large)
                return
        self.buffer += data
        self._process()

    @property
    def _too_large(self) -> str:
        return f"frame: larger than {self.server.max_frame_bytes} bytes"

    def _process(self) -> None:
        """Handle buffered frames within the turn's ingest slice (:meth:`IngestServer.open_slice`).

        Fairness: one read can hold thousands of events, and many connections can be readable in the
        same loop turn; without a budget the tick driver (and the timers it fires) would wait for all
        of them. The budget is the turn's, not the call's: uvloop (libuv) reads a busy socket up to 32
        times in one turn, calling ``data_received`` each time, and a fresh budget per call let one
        turn run 32 slices (~150 ms measured under saturated ingest: timers fired and sends progressed
        once per such turn). Past the budget the connection stops reading and continues on the next
        turn. Replies produced in one go are written with one ``transport.write`` (a batch-1 client
        would otherwise cost a system call per event).
        """
        unpacker = self.unpacker
        handler = self.handler
        barrier = handler.barrier
        buf = self.buffer
        out: list[bytes] = []
        server = self.server
        deadline, budget = server.open_slice()
        if _perf() > deadline:
            budget = 0  # this turn's slice is spent: wait for the next turn
        spent_before = budget <= 0  # then another connection spent it (and fired the timers)
        start = self.offset  # where the next frame starts (``tell`` is not that after an incomplete skip)
        limit = server.max_frame_bytes
        try:
            while budget > 0:
                try:
                    unpacker.skip()  # finds where the frame ends without building it (C)
                except msgpack.OutOfData:
                    if self.offset + len(buf) - start > limit:  # the frame in progress is already too large
                        self.seq += 1
                        raise _FrameTooLarge from None
                    break
                except _NOT_MSGPACK as exc:
                    self.seq += 1  # the frame that could not be cut gets the error reply
                    raise NotMsgpack(str(exc)) from exc
                end = unpacker.tell()
                if end - start > limit:
                    self.seq += 1
                    raise _FrameTooLarge
                frame = buf[start - self.offset:end - self.offset]
                start = end
                self.seq += 1
                reply = handler.handle_bytes(self.seq, frame)
                if reply is None:  # the sync control frame
                    self._write_replies(out)
                    self._sync(self.seq)
                    continue
                budget -= (reply["accepted"] + len(reply["rejected"])) or 1
                if _perf() > deadline:
                    budget = 0  # this frame is the slice's last
                wait = barrier() if barrier is not None else None
                if wait is None:
                    out.append(_packb(reply))
                else:
                    self._write_replies(out)
                    self._after(wait, reply)
                if self.closed:
                    self._write_replies(out)
                    return
        except NotMsgpack as exc:
            self._write_replies(out)
            self._fail(f"invalid msgpack: {exc}"[:200])
            return
        except _FrameTooLarge:
            self._write_replies(out)
            self._fail(self._too_large)
            return
        finally:
            used = start - self.offset
            if used:
                del buf[:used]  # what is left is the start of the next frame
                self.offset = start
            server.slice_events = budget
        self._write_replies(out)
        if budget <= 0 and self.transport is not None and not self.closed:
            # Frames may remain buffered: let the rest of the loop run, then continue. Timers that fell
            # due meanwhile fire first, so a saturated ingest never starves the tick driver.
            between = self.server.between_slices
            if between is not None and not spent_before:
                between()
            self.over_budget = True
            self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._continue)

    def _continue(self) -> None:
        self.over_budget = False
        if self.closed or self.transport is None:
            return
        self._process()
        if not self.over_budget and not self.write_paused and not self.server.paused and len(self.pending) < 1024:
            self.transport.resume_reading()

    def _write_replies(self, out: list[bytes]) -> None:
        if out:
            self._reply(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def eof_received(self) -> bool | None:
        # A client that half-closes still gets the replies to what it sent; then we close (here, or in
        # _flush once the replies still waiting for a sync or the journal are written).
        self.eof = True
        if not self.pending and self.transport is not None:
            self.transport.close()
        return True

    def _fail(self, message: str) -> None:
        self._reply(_packb({"seq": self.seq, "error": message}))
        self.closed = True
        if self.transport is not None:
            if self.pending:
                self.pending.append(b"")  # close after the queued replies are written
                self.transport.pause_reading()  # and read (and apply) nothing more meanwhile
            else:
                self.transport.close()

    def _reply(self, payload: bytes) -> None:
        if self.pending:
            self.pending.append(payload)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(payload)

    def _sync(self, seq: int) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self.pending.append(future)
        if len(self.pending) >= 1024 and self.transport is not None:
            self.transport.pause_reading()  # a slow store must not let replies pile up

        async def wait() -> None:
            try:
                await self.handler.sync()
                reply = {"seq": seq, "synced": True}
            except Exception as exc:  # never claim durability falsely
                reply = {"seq": seq, "synced": False, "error": str(exc) or type(exc).__name__}
            if not future.done():
                future.set_result(_packb(reply))
            self._flush()

        task = loop.create_task(wait())
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    def _after(self, wait: asyncio.Future[None], reply: dict[str, Any]) -> None:
        """Journal durability: the reply goes out once ``wait`` (its events appended) is done, in order."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        if len(self.pending) >= 1024 and self.transport is not None:
            self.transport.pause_reading()

        def done(w: asyncio.Future[None]) -> None:
            if future.done():
                return  # the connection went away meanwhile
            exc = None if w.cancelled() else w.exception()
            if w.cancelled() or exc is not None:  # never claim durability falsely
                reply["durable"] = False
                reply["error"] = str(exc) if exc is not None else "journal append cancelled"
            future.set_result(_packb(reply))
            self._flush()

        wait.add_done_callback(done)

    def _flush(self) -> None:
        transport = self.transport
        pending = self.pending
        while pending:
            head = pending[0]
            if isinstance(head, asyncio.Future):
                if not head.done():
                    return
                head = head.result()
            pending.popleft()
            if transport is None or transport.is_closing():
                continue
            if head == b"" and self.closed:
                transport.close()
                return
            transport.write(head)
        if self.eof:
            if transport is not None:
                transport.close()
            return
        if (transport is not None and not self.write_paused and not self.server.paused and not self.closed
                and not self.over_budget):
            transport.resume_reading()


class IngestServer:
    """TCP and UNIX listeners sharing one :class:`FrameHandler`."""

    def __init__(self, handler: FrameHandler, stats: Any, *, max_frame_bytes: int = 1 << 20) -> None:
        self.handler = handler
        self.stats = stats
        self.max_frame_bytes = max_frame_bytes
        self.connections: set[IngestProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.paused = False
        self.stopping = False  #: a graceful stop began: reading never resumes
        #: called when a connection has used its per-turn budget (the engine fires due timers here)
        self.between_slices: Callable[[], Any] | None = None
        #: this turn's ingest slice: its deadline (``perf_counter`` seconds; 0.0: none open) and the
        #: events it has left (see :meth:`open_slice`)
        self.slice_end = 0.0
        self.slice_events = 0
        self.unix_path: str | None = None
        self.tcp_address: tuple[str, int] | None = None

    def open_slice(self) -> tuple[float, int]:
        """The current turn's ingest slice as ``(deadline, events left)``, opening one if none is.

        Opening one schedules its end for the next loop turn (``call_soon`` from inside this turn runs
        in the next), so every connection read in this turn shares it: ``SLICE_S`` seconds and
        ``EVENTS_PER_TURN`` events in all.
        """
        if self.slice_end == 0.0:
            self.slice_end = _perf() + SLICE_S
            self.slice_events = EVENTS_PER_TURN
            asyncio.get_running_loop().call_soon(self._close_slice)
        return self.slice_end, self.slice_events

    def _close_slice(self) -> None:
        self.slice_end = 0.0

    async def start(self, *, tcp: tuple[str, int] | None, unix: str | None) -> None:
        """Listen on ``tcp`` and/or the UNIX socket ``unix``.

        Raises:
            OSError: an address in use (for the UNIX socket: another process answers on it).
        """
        loop = asyncio.get_running_loop()
        if tcp is not None:
            server = await loop.create_server(lambda: IngestProtocol(self), tcp[0], tcp[1], backlog=2048)
            self.servers.append(server)
            self.tcp_address = server.sockets[0].getsockname()[:2]
        if unix:
            path = Path(unix)
            take_unix_path(path)  # a stale socket from an earlier run is replaced; a live one refused
            server = await loop.create_unix_server(lambda: IngestProtocol(self), str(path), backlog=2048)
            self.servers.append(server)
            self.unix_path = str(path)

    def pause_all(self) -> None:
        """Stop reading from every client (the engine is behind)."""
        if not self.paused:
            self.paused = True
            for conn in self.connections:
                if conn.transport is not None:
                    conn.transport.pause_reading()

    def resume_all(self) -> None:
        """Read from every client again (unless the engine is stopping)."""
        if self.paused and not self.stopping:
            self.paused = False
            for conn in self.connections:
                if conn.transport is not None and not conn.write_paused and not conn.closed and not conn.over_budget:
                    conn.transport.resume_reading()

    async def stop_accepting(self) -> None:
        """No new connections, and no more frames read from open ones (a graceful stop's first step:
        every event answered as accepted before this point is in the final snapshot)."""
        self.stopping = True
        self.pause_all()
        for server in self.servers:
            server.close()
        if self.unix_path and os.path.exists(self.unix_path):
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass

    async def close(self) -> None:
        """Stop accepting, let pending sync replies finish, close every connection."""
        await self.stop_accepting()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        self.servers.clear()
