"""The online writer's hand-encoded values are exactly Feast's protobuf encoding."""

from __future__ import annotations

import math

from feast.protos.feast.types.Value_pb2 import Value
from hypothesis import given
from hypothesis import strategies as st

from stream_processors.feast_push import encode_double


@given(st.floats(allow_nan=False))
def test_encode_double_is_the_protobuf_encoding(x: float) -> None:
    assert encode_double(x) == Value(double_val=x).SerializeToString()
    decoded = Value.FromString(encode_double(x))
    assert decoded.WhichOneof("val") == "double_val"
    assert decoded.double_val == x or (math.isinf(x) and decoded.double_val == x)
