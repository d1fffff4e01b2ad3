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


class _PausingTransport(_Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = 0

    def pause_reading(self) -> None:
        self.paused += 1


def test_every_read_of_one_loop_turn_shares_the_turn_s_slice(monkeypatch: Any) -> None:
    """uvloop reads a busy socket up to 32 times in one loop turn; each read must not get a fresh
    budget, or one turn runs 32 slices while timers and sends wait. Reads in the same turn share one
    ``EVENTS_PER_TURN``, across connections too; the next turn opens a new slice."""
    from engine import ingest

    monkeypatch.setattr(ingest, "EVENTS_PER_TURN", 150)
    monkeypatch.setattr(ingest, "SLICE_S", 60.0)  # only the event budget counts here

    async def run() -> tuple[list[int], int, int]:
        handler, applied = _handler(Validator(EngineSettings(max_items=3, max_string=16)))
        server = IngestServer(handler, Stats())
        fired: list[int] = []
        server.between_slices = lambda: fired.append(1)  # the engine fires due timers here
        protos, transports = [], []
        for _ in range(2):
            proto = IngestProtocol(server)
            transport = _PausingTransport()
            proto.connection_made(transport)  # type: ignore[arg-type]
            protos.append(proto)
            transports.append(transport)
        frame = msgpack.packb([{"type": "cart.updated", "store": "s", "cart": "a", "value": 1.0}] * 100)
        seen = []
        protos[0].data_received(frame * 3)  # one read: frames of 100 until the 150 are spent (2 frames)
        seen.append(len(applied))
        protos[0].data_received(frame)  # a second read in the same turn: nothing more
        protos[1].data_received(frame)  # another connection, same turn: nothing either
        seen.append(len(applied))
        assert len(fired) == 1  # timers fire once per spent slice, not once per connection that finds it spent
        await asyncio.sleep(0)  # the next turn: a new slice, the postponed frames continue
        seen.append(len(applied))
        for _ in range(6):
            await asyncio.sleep(0)
        seen.append(len(applied))
        return seen, transports[0].paused, transports[1].paused

    seen, paused0, paused1 = asyncio.run(run())
    assert seen[:2] == [200, 200]
    assert 200 < seen[2] <= 400 and seen[3] == 500  # everything lands, a slice per turn
    assert paused0 >= 1 and paused1 >= 1
