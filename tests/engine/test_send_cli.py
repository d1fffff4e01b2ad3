"""`cartwheel send` against ingest servers that misbehave."""
from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import msgpack

from engine.send import send_file


async def test_send_reports_frames_left_unanswered_when_the_engine_hangs_up(tmp_path: Path) -> None:
    """An engine that stops (or crashes) after answering the first frame: the second frame's events were
    never acknowledged, so the summary must say so (a problem, hence exit 1), not report a clean run
    with fewer events accepted than sent and no word why."""
    async def one_reply_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(msgpack.packb({"seq": 1, "accepted": 1, "rejected": []}))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(one_reply_then_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps({"type": "cart.cleared", "store": "s", "cart": f"c{i}"}) for i in range(2)))
    try:
        summary = await asyncio.wait_for(
            send_file(path, tcp=("127.0.0.1", port), unix=None, batch=1, out=io.StringIO()), 30)
    finally:
        server.close()
        await server.wait_closed()
    assert summary["sent"] == 2 and summary["accepted"] == 1
    assert summary["problems"], summary
    assert "1 frame" in " ".join(summary["problems"])
