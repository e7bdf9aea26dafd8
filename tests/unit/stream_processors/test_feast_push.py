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


def test_hset_command_is_what_redis_py_sends(tmp_path) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp
    from redis.connection import Connection

    from feature_repo.feature_store import get_store
    from stream_processors.feast_push import FeatureRow, OnlineWriter
    from tickwatch.features import FEATURE_NAMES
    from tickwatch.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path / "data", run_dir=tmp_path / "run")
    writer = OnlineWriter(get_store(settings), settings)
    feats = {name: (-1.5) ** k / 3 for k, name in enumerate(FEATURE_NAMES)}
    for warm, start in ((True, 1_764_000_060_000), (False, 1_764_000_000_123)):
        row = FeatureRow("BRK.B", start, 412.25, 1e6, feats, warm)
        key = writer._redis_key(row.symbol)
        mapping = {
            f: encode_double(feats[n])
            for f, n in zip(writer.feature_fields, FEATURE_NAMES, strict=True)
        }
        mapping[writer.close_field] = encode_double(row.close)
        mapping[writer.volume_field] = encode_double(row.volume)
        mapping[writer.warm_field] = Value(bool_val=warm).SerializeToString()
        ts = Timestamp(seconds=start // 1000, nanos=start % 1000 * 10**6)
        mapping[writer.ts_field] = ts.SerializeToString()
        items = [x for pair in mapping.items() for x in pair]
        expected = b"".join(Connection().pack_command("HSET", key, *items))
        assert writer.hset_command(key, row) == expected
