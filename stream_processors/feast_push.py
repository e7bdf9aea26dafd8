"""Batched writes of feature rows to Feast's Redis online store, readable by get_online_features.

Feast's `push` goes through pandas (about 12-17k rows/s, and the sync path re-reads the registry on
each call); its RedisOnlineStore.online_write_batch measured about 8k rows/s here, most of it
re-hashing the same field names per row. This writer uses Feast's own key and field serialization
(`_redis_key`, `_mmh3`, Value protos) with the field hashes and entity keys computed once, and the
same rule as Feast: one pipelined read of the stored timestamps (once per key: the writer
remembers what it wrote), then one pipelined write of the rows that are newer. Only the newest
row per symbol in a batch is written (the online store keeps one row per entity).

`start` builds the commands and hands the socket work to a background thread, so Redis applies
them on the other core while the caller goes on (the batch engine produces its Kafka records
meanwhile); `PendingWrite.wait` returns once every reply is read. `write` is both in one call.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from operator import itemgetter
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


class PendingWrite:
    """A write in flight: `wait` blocks until Redis replied to all of it (raising its error)."""

    def __init__(
        self, writer: OnlineWriter, future: Future[None] | None, done: list[tuple[bytes, int]]
    ) -> None:
        self._writer = writer
        self._future = future
        self._done = done  # (key, bar start) written, remembered once acknowledged

    def wait(self) -> int:
        """The number of rows written, once Redis acknowledged them."""
        if self._future is not None:
            self._future.result()
        written = self._writer._written
        for key, ms in self._done:
            if written.get(key, -1) < ms:
                written[key] = ms
        return len(self._done)


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
        # HSET key, then field/value pairs: the 18 features, close and volume (encoded doubles),
        # warm, the event timestamp. The doubles go through one Struct whose constant parts (the
        # field names and RESP framing around each value) are arguments: one pack per row.
        doubles = [*self.feature_fields, self.close_field, self.volume_field]
        args = 2 + 2 * (len(doubles) + 2)
        self._hset_head = b"*%d\r\n$4\r\nHSET\r\n" % args
        framing = [b"" if i == 0 else _CRLF for i in range(len(doubles))]
        consts = [
            lead + _bulk(field) + b"$9\r\n" + bytes([_DOUBLE_TAG])
            for lead, field in zip(framing, doubles, strict=True)
        ]
        self._doubles = struct.Struct("<" + "".join(f"{len(c)}sd" for c in consts) + "2s")
        self._doubles_args: list[bytes | float] = [x for c in consts for x in (c, 0.0)] + [_CRLF]
        self._n_doubles = len(doubles)
        self._warm_parts = (
            _bulk(self.warm_field) + _FALSE_BULK,
            _bulk(self.warm_field) + _TRUE_BULK,
        )
        self._ts_bulk = _bulk(self.ts_field)
        self._ts_parts: dict[int, bytes] = {}  # bar start -> ts field and value (rows share it)
        self._key_heads: dict[bytes, bytes] = {}
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="feast-write")

    def write(self, rows: Iterable[FeatureRow]) -> int:
        """Write the newest row of each symbol unless the store holds a newer one; returns count."""
        return self.start(rows).wait()

    def start(self, rows: Iterable[FeatureRow]) -> PendingWrite:
        """Begin writing the newest row of each symbol that is newer than the stored one: the
        stored timestamps are read and the commands built here, then sent on the writer's
        thread. Wait for the result before the next `start` (and before relying on it)."""
        latest: dict[str, FeatureRow] = {}
        for row in rows:
            old = latest.get(row.symbol)
            if old is None or row.bar_start_ms > old.bar_start_ms:
                latest[row.symbol] = row
        keyed = [(self._redis_key(row.symbol), row) for row in latest.values()]
        self._read_stored([key for key, _ in keyed if key not in self._written])
        if len(self._written) > _MAX_CACHED_KEYS:
            self._written.clear()
        newer = [(k, row) for k, row in keyed if self._written.get(k, -1) < row.bar_start_ms]
        chunks = [newer[i : i + self.batch] for i in range(0, len(newer), self.batch)]
        packed = [(b"".join(self.hset_command(k, row) for k, row in c), len(c)) for c in chunks]
        future = self._sender.submit(self._send_chunks, packed) if packed else None
        return PendingWrite(self, future, [(key, row.bar_start_ms) for key, row in newer])

    def forget(self) -> None:
        """Drop the remembered timestamps (after a rebalance: other workers may have written)."""
        self._written.clear()

    def _read_stored(self, keys: list[bytes]) -> None:
        """Remember the stored timestamps of keys not seen yet (pipelined reads, in chunks)."""
        for i in range(0, len(keys), self.batch):
            pipe = self.redis.pipeline(transaction=False)
            chunk = keys[i : i + self.batch]
            for key in chunk:
                # redis-py annotates hget's name and key as str; it sends bytes as they are
                pipe.hget(key, self.ts_field)  # type: ignore[arg-type]
            for key, prev in zip(chunk, pipe.execute(), strict=True):
                self._written[key] = _stored_ms(prev)

    def hset_command(self, key: bytes, row: FeatureRow) -> bytes:
        """The RESP bytes of `HSET key field value ...` for a row: what redis-py would send for
        `hset(key, mapping=...)` (a unit test holds them equal), built without its per-argument
        Python work."""
        head = self._key_heads.get(key)
        if head is None:
            if len(self._key_heads) >= _MAX_CACHED_KEYS:
                self._key_heads.clear()
            head = self._key_heads[key] = self._hset_head + _bulk(key)
        ms = row.bar_start_ms
        ts_part = self._ts_parts.get(ms)
        if ts_part is None:
            if len(self._ts_parts) >= 4096:
                self._ts_parts.clear()
            ts = Timestamp(seconds=ms // 1000, nanos=ms % 1000 * 10**6).SerializeToString()
            ts_part = self._ts_parts[ms] = self._ts_bulk + _bulk(ts)
        args = self._doubles_args.copy()
        args[1 : 2 * self._n_doubles : 2] = (*_feature_values(row.features), row.close, row.volume)
        return b"".join((head, self._doubles.pack(*args), self._warm_parts[row.warm], ts_part))

    def _send_chunks(self, chunks: list[tuple[bytes, int]]) -> None:
        """Send each chunk of packed commands (bytes, number of commands) in one write and read
        its replies (an error reply raises)."""
        pool = self.redis.connection_pool
        conn = pool.get_connection()
        try:
            for data, n in chunks:
                conn.send_packed_command([data])
                for _ in range(n):
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


_feature_values = itemgetter(*FEATURE_NAMES)


def _stored_ms(ts: bytes | None) -> int:
    """Milliseconds of a stored Feast timestamp, -1 when there is none."""
    if not ts:
        return -1
    stored = Timestamp.FromString(ts)
    return stored.seconds * 1000 + stored.nanos // 10**6
