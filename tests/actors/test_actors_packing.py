"""actors.packing: the msgspec encoder writes exactly msgpack.packb's bytes for what actors store."""
from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.packing import packb, unpackb

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=8))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_same_bytes_as_msgpack(value: Any) -> None:
    assert packb(value) == msgpack.packb(value)
    assert unpackb(packb(value)) == msgpack.unpackb(msgpack.packb(value))


def test_a_timestamp_in_an_unknown_field_is_stored_as_msgpack_stores_it() -> None:
    item = {"sku": "a", "seen": msgpack.Timestamp(5, 7)}
    assert packb([item]) == msgpack.packb([item])
    assert unpackb(packb([item])) == [item]


def test_run_attributes_read_back_what_was_written_whichever_cart_was_read_last() -> None:
    """The run attributes of the last ``packed_run`` read are remembered (actors/cart.py): reads and writes
    interleaved across carts, including two carts holding equal bytes, must each see their own values."""
    from actors.cart import CartActor
    from actors.stores import StoreRules

    rules = StoreRules("s")
    a, b, c = (CartActor(rules, name, None, 0.0) for name in "abc")
    a.run, a.since, a.held = 1, 10.0, ((20.0, 1, "email"),)
    b.run, b.since = 1, 10.0
    c.packed_run = bytes(b.packed_run)  # equal bytes, another object
    assert (a.run, a.since, a.held) == (1, 10.0, ((20.0, 1, "email"),))
    assert (b.run, b.done, b.held, c.since) == (1, 0, None, 10.0)
    b.done |= 2
    assert (c.done, b.done, a.done) == (0, 2, 0)
    a.held = [[30.0, 2, "push"]]  # as msgpack gives it: read back as tuples
    assert a.held == ((30.0, 2, "push"),) and b.held is None
    a.run, a.done, a.since, a.held, a.touch = 0, 0, None, None, None
    assert a.packed_run is None and (a.run, a.held) == (0, None) and b.since == 10.0
    assert unpackb(b.packed_run) == [1, -2, 10.0, None, None]  # done stored negated
