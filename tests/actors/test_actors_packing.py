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
