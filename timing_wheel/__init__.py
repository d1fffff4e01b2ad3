"""The hierarchical timing wheel: every deadline of cartwheel in one pure data structure.

No asyncio, no I/O, nothing else of ours is imported here (DESIGN.md "Layout").
"""
from timing_wheel._wheel import MAX_TICK, SLOT_BITS, SLOTS, TimingWheel

__all__ = ["TimingWheel", "SLOTS", "SLOT_BITS", "MAX_TICK"]
