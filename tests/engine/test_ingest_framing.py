"""IngestProtocol cuts frames out of a byte stream however the bytes arrive (``Unpacker.skip`` finds
each frame's end, the frame's bytes are decoded from the protocol's own buffer): the replies and the
applied events are the same whether a stream comes in one piece or in random small reads."""
from __future__ import annotations

import asyncio
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import EngineSettings
from engine.ingest import IngestProtocol, IngestServer
from engine.stats import Stats
from engine.validate import Validator
from tests.engine.test_schema import _handler


class _Transport:
    """Collects what the protocol writes; never blocks."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _feed(stream: bytes, cuts: list[int]) -> tuple[list[Any], list[dict[str, Any]], bool]:
    handler, applied = _handler(Validator(EngineSettings(max_items=3, max_string=16)))
    proto = IngestProtocol(IngestServer(handler, Stats()))
    transport = _Transport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    at = 0
    for cut in sorted(set(c for c in cuts if 0 < c < len(stream))) + [len(stream)]:
        proto.data_received(stream[at:cut])
        at = cut
        for _ in range(3):  # a slice over budget continues on a later loop turn
            await asyncio.sleep(0)
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(bytes(transport.data))
    replies = list(unpacker)
    return replies, applied, transport.closed


ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack can carry
good = st.fixed_dictionaries({"type": st.just("cart.updated"), "store": st.just("s"),
                              "cart": st.sampled_from(["a", "b", "c"]), "value": st.floats(0, 100)})
bad = st.fixed_dictionaries({"type": st.sampled_from(["cart.updated", "nope"]), "store": st.just(""),
                             "cart": ints})
frames = st.lists(good | bad | st.lists(good | bad | ints, max_size=5) | ints, min_size=1, max_size=12)


@settings(max_examples=120, deadline=None)
@given(frames=frames, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
       garbage=st.booleans())
def test_replies_do_not_depend_on_how_the_bytes_arrive(frames: list[Any], cuts: list[int], garbage: bool) -> None:
    stream = b"".join(msgpack.packb(f) for f in frames) + (b"\xc1" if garbage else b"")  # 0xc1: never msgpack

    whole = asyncio.run(_feed(stream, []))
    pieces = asyncio.run(_feed(stream, cuts))
    assert pieces == whole
    replies, applied, closed = whole
    answered = [r for r in replies if "accepted" in r]
    assert [r["seq"] for r in answered] == list(range(1, len(frames) + 1))
    assert len(applied) == sum(r["accepted"] for r in answered)
    assert closed is garbage and (("error" in replies[-1]) is garbage)
