"""Outbox: the embedded default channel — messages are appended to JSON-lines files instead of sent.

One file per channel name, ``{dir}/{channel}.jsonl``; each line is one message:
``{"message": {...Message fields...}, "rendered": {...}}`` (see
:meth:`channels.render.Renderer.preview`). Lines are appended and flushed to the OS before the send
counts as ``sent``; a demo, a staging set-up or a shop's own mailer reads them.

Never blocking the loop for long: file writes run on one dedicated thread (which also keeps lines in
order), and sends that arrive while a write is under way are grouped into the next one (group
commit), so a burst of N messages costs a handful of ``write``+``flush`` calls, not N.

Rotation: a reader may take a file by moving it aside or deleting it; the next write finds the path no
longer names the open file and starts a new one there.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from channels._config import TableReader
from channels.message import DeliveryResult, Message
from channels.render import Renderer, RenderError

__all__ = ["OutboxOptions", "OutboxSender"]

log = logging.getLogger("cartwheel.channels.outbox")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxOptions:
    """The ``outbox`` kind's keys."""

    dir: str = "outbox"

    @classmethod
    def from_reader(cls, r: TableReader) -> OutboxOptions:
        """Read and validate the kind's keys."""
        return cls(dir=r.str("dir", "outbox", hint="a directory path") or "outbox")


def _same_file(path: Path, handle: IO[bytes]) -> bool:
    """Whether ``path`` still names the file ``handle`` writes to (one ``stat`` per grouped write)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(handle.fileno())
    return (st.st_ino, st.st_dev) == (opened.st_ino, opened.st_dev)


class OutboxSender:
    """Appends each message as one JSON line; see the module docstring."""

    kind = "outbox"

    def __init__(self, options: OutboxOptions, *, renderer: Renderer) -> None:
        self.options = options
        self.renderer = renderer
        self.dir = Path(options.dir)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[tuple[str, bytes, asyncio.Future[str | None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._files: dict[str, IO[bytes]] = {}  # touched only on the writer thread
        self._closed = False

    def path_for(self, channel: str) -> Path:
        """The file a channel's messages go to."""
        return self.dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', channel) or 'channel'}.jsonl"

    async def send(self, message: Message) -> DeliveryResult:
        """Append one line and wait until it has been written and flushed."""
        if self._closed:
            return DeliveryResult.transient("outbox closed")
        try:
            line = orjson.dumps({"message": message.to_dict(), "rendered": self.renderer.preview(message)}) + b"\n"
        except RenderError as exc:
            return DeliveryResult.permanent(f"render: {exc}")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str | None] = loop.create_future()
        self._pending.append((message.channel, line, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_loop())
        error = await done
        if error is not None:
            return DeliveryResult.transient(f"outbox write failed: {error}")
        return DeliveryResult.sent(message.id)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cartwheel-outbox")
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await loop.run_in_executor(self._executor, self._write_batch, [(c, line) for c, line, _ in batch])
                error = None
            except OSError as exc:
                log.error("outbox %s: write failed: %s", self.dir, exc)
                error = str(exc)
            for _, _, done in batch:
                if not done.done():
                    done.set_result(error)

    def _write_batch(self, batch: list[tuple[str, bytes]]) -> None:
        by_channel: dict[str, list[bytes]] = {}
        for channel, line in batch:
            by_channel.setdefault(channel, []).append(line)
        for channel, lines in by_channel.items():
            path = self.path_for(channel)
            handle = self._files.get(channel)
            if handle is not None and not _same_file(path, handle):
                handle.close()  # moved away or deleted by a reader (rotation): start the file again
                handle = None
            if handle is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = self._files[channel] = open(path, "ab")  # noqa: SIM115 - kept open across batches
            handle.write(b"".join(lines))
            handle.flush()

    def _close_files(self) -> None:
        files, self._files = self._files, {}
        for handle in files.values():
            handle.close()

    async def close(self) -> None:
        """Finish pending writes and close the files."""
        self._closed = True
        if self._writer is not None:
            await self._writer
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_files)
            self._executor.shutdown(wait=True)
            self._executor = None
