"""Batched writes of feature rows to Feast's Redis online store, readable by get_online_features.

Feast's `push` goes through pandas (about 12-17k rows/s, and the sync path re-reads the registry on
each call); its RedisOnlineStore.online_write_batch measured about 8k rows/s here, most of it
re-hashing the same field names per row. This writer uses Feast's own key and field serialization
(`_redis_key`, `_mmh3`, Value protos) with the field hashes and entity keys computed once, and the
same rule as Feast: one pipelined read of the stored timestamps (once per key: the writer
remembers what it wrote), then one pipelined write of the rows that are newer. Only the newest
row per symbol in a batch is written (the online store keeps one row per entity).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

import redis
from feast import FeatureStore
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp

from feature_repo.entities import SYMBOL_KEY
from feature_repo.feature_views import FEATURE_VIEW
from tickwatch.features import FEATURE_NAMES
from tickwatch.settings import Settings

_MAX_CACHED_KEYS = 100_000
_DOUBLE = struct.Struct("<Bd")
_DOUBLE_TAG = 5 << 3 | 1  # Value.double_val: field 5, wire type 64-bit
_TRUE = Value(bool_val=True).SerializeToString()
_FALSE = Value(bool_val=False).SerializeToString()


_CRLF = b"\r\n"
_DOLLAR_9 = b"$9\r\n"
_DOUBLE_BULK = struct.Struct("<4sBd2s")  # a RESP bulk string of one encoded double
_TRUE_BULK = b"$%d\r\n%s\r\n" % (len(_TRUE), _TRUE)
_FALSE_BULK = b"$%d\r\n%s\r\n" % (len(_FALSE), _FALSE)


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode_double(x: float) -> bytes:
    """`Value(double_val=x).SerializeToString()` without building the message (5x faster)."""
    return _DOUBLE.pack(_DOUBLE_TAG, x)


class FeatureRow(NamedTuple):
    """One computed feature vector, as written to the online store and the features topic."""

    symbol: str
    bar_start_ms: int
    close: float
    volume: float
    features: dict[str, float]
    warm: bool


class OnlineWriter:
    """Writes FeatureRows to the Redis online store of one FeatureStore in pipelined batches."""

    def __init__(self, store: FeatureStore, settings: Settings) -> None:
        view = store.get_feature_view(FEATURE_VIEW)
        self.project = store.config.project
        self.key_version = store.config.entity_key_serialization_version
        self.ts_field = f"_ts:{view.name}".encode()
        self.feature_fields = [_mmh3(f"{view.name}:{name}") for name in FEATURE_NAMES]
        self.close_field, self.volume_field, self.warm_field = (
            _mmh3(f"{view.name}:{name}") for name in ("close", "volume", "warm")
        )
        self.redis = redis.Redis(settings.redis.host, settings.redis.port, db=settings.redis.db)
        self._keys: dict[str, bytes] = {}
        # bar start of the newest row known to be stored, per Redis key: this worker's symbols
        # are written by no one else while it owns their partitions, so after one read of the
        # stored timestamp the check needs no round trip (forget() on rebalance)
        self._written: dict[bytes, int] = {}
        self.batch = max(1, settings.features.push_batch)  # rows per Redis pipeline
        self._feature_bulks = [_bulk(field) for field in self.feature_fields]
        self._close_bulk, self._volume_bulk, self._warm_bulk, self._ts_bulk = (
            _bulk(f) for f in (self.close_field, self.volume_field, self.warm_field, self.ts_field)
        )
        args = 2 + 2 * (len(FEATURE_NAMES) + 4)  # HSET, key, then field/value pairs
        self._hset_head = b"*%d\r\n$4\r\nHSET\r\n" % args

    def write(self, rows: Iterable[FeatureRow]) -> int:
        """Write the newest row of each symbol unless the store holds a newer one; returns count."""
        latest: dict[str, FeatureRow] = {}
        for row in rows:
            old = latest.get(row.symbol)
            if old is None or row.bar_start_ms > old.bar_start_ms:
                latest[row.symbol] = row
        rows_by_symbol = list(latest.values())
        return sum(
            self._write_chunk(rows_by_symbol[i : i + self.batch])
            for i in range(0, len(rows_by_symbol), self.batch)
        )

    def forget(self) -> None:
        """Drop the remembered timestamps (after a rebalance: other workers may have written)."""
        self._written.clear()

    def _write_chunk(self, rows: list[FeatureRow]) -> int:
        """One pipelined read of the stored timestamps not remembered yet, one pipelined write
        of the newer rows."""
        keys = [self._redis_key(row.symbol) for row in rows]
        unknown = [key for key in keys if key not in self._written]
        pipe = self.redis.pipeline(transaction=False)
        if unknown:
            for key in unknown:
                pipe.hget(key, self.ts_field)
            for key, prev in zip(unknown, pipe.execute(), strict=True):
                self._written[key] = _stored_ms(prev)
        if len(self._written) > _MAX_CACHED_KEYS:
            self._written.clear()
        commands = []
        for key, row in zip(keys, rows, strict=True):
            if self._written.get(key, -1) >= row.bar_start_ms:
                continue  # Feast's rule: only a newer event timestamp replaces a row
            commands.append(self.hset_command(key, row))
        if commands:
            self._send(commands)
            for key, row in zip(keys, rows, strict=True):
                self._written[key] = max(self._written.get(key, -1), row.bar_start_ms)
        return len(commands)

    def hset_command(self, key: bytes, row: FeatureRow) -> bytes:
        """The RESP bytes of `HSET key field value ...` for a row: what redis-py would send for
        `hset(key, mapping=...)` (a unit test holds them equal), built without its per-argument
        Python work."""
        feats = row.features
        ms = row.bar_start_ms
        ts = Timestamp(seconds=ms // 1000, nanos=ms % 1000 * 10**6).SerializeToString()
        parts = [self._hset_head, _bulk(key)]
        for field, name in zip(self._feature_bulks, FEATURE_NAMES, strict=True):
            parts += (field, _DOUBLE_BULK.pack(_DOLLAR_9, _DOUBLE_TAG, feats[name], _CRLF))
        parts += (
            self._close_bulk,
            _DOUBLE_BULK.pack(_DOLLAR_9, _DOUBLE_TAG, row.close, _CRLF),
            self._volume_bulk,
            _DOUBLE_BULK.pack(_DOLLAR_9, _DOUBLE_TAG, row.volume, _CRLF),
            self._warm_bulk,
            _TRUE_BULK if row.warm else _FALSE_BULK,
            self._ts_bulk,
            _bulk(ts),
        )
        return b"".join(parts)

    def _send(self, commands: list[bytes]) -> None:
        """Send the commands in one write and read every reply (an error reply raises)."""
        pool = self.redis.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([b"".join(commands)])
            for _ in commands:
                conn.read_response()
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse this connection
            raise
        finally:
            pool.release(conn)

    def _redis_key(self, symbol: str) -> bytes:
        key = self._keys.get(symbol)
        if key is None:
            if len(self._keys) >= _MAX_CACHED_KEYS:
                self._keys.clear()
            entity = EntityKey(join_keys=[SYMBOL_KEY], entity_values=[Value(string_val=symbol)])
            key = self._keys[symbol] = _redis_key(self.project, entity, self.key_version)
        return key


def _stored_ms(ts: bytes | None) -> int:
    """Milliseconds of a stored Feast timestamp, -1 when there is none."""
    if not ts:
        return -1
    stored = Timestamp.FromString(ts)
    return stored.seconds * 1000 + stored.nanos // 10**6
