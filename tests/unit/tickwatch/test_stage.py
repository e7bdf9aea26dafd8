"""The transactional stage loop's order of calls and its one error policy, on fake clients."""

from __future__ import annotations

import gc
import weakref

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

import tickwatch.stage as stage
from tickwatch.stage import EXIT_RESTART, Outcome, TransactionalLoop, ingest_ms, next_offsets


class Msg:
    def __init__(self, partition: int, offset: int, headers=None) -> None:
        self._p, self._o, self._h = partition, offset, headers

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def headers(self):
        return self._h


class FakeProducer:
    def __init__(self, calls: list, failures: dict[str, list[KafkaError]]) -> None:
        self.calls, self.failures = calls, failures

    def _call(self, name: str) -> None:
        self.calls.append(name)
        pending = self.failures.get(name)
        if pending:
            raise KafkaException(pending.pop(0))

    def begin_transaction(self) -> None:
        self._call("begin")

    def send_offsets_to_transaction(self, offsets, meta, timeout) -> None:
        self.calls.append(("offsets", sorted((tp.partition, tp.offset) for tp in offsets)))
        self._call("send")

    def commit_transaction(self, timeout) -> None:
        self._call("commit")

    def abort_transaction(self, timeout) -> None:
        self._call("abort")


class FakeConsumer:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def consumer_group_metadata(self) -> object:
        return object()

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", 0), TopicPartition("t", 1)]

    def committed(self, partitions, timeout=None) -> list[TopicPartition]:
        return [TopicPartition("t", 0, 7), TopicPartition("t", 1, -1001)]

    def seek(self, tp: TopicPartition) -> None:
        self.calls.append(("seek", tp.partition, tp.offset))


def _loop(failures: dict[str, list[KafkaError]] | None = None):
    calls: list = []
    rewound: list = []
    loop = TransactionalLoop(
        "test",
        FakeProducer(calls, failures or {}),  # type: ignore[arg-type]
        FakeConsumer(calls),  # type: ignore[arg-type]
        "t",
        batch=10,
        poll_s=0,
        record_type="X",
        rewind=lambda consumer, parts: rewound.append(sorted(p.partition for p in parts)),
    )
    return loop, calls, rewound


def _process(calls: list):
    def process(msgs, offsets) -> Outcome:
        calls.append(("process", dict(offsets)))
        return Outcome(
            before_commit=lambda: calls.append("before_commit"),
            committed=lambda: calls.append("committed"),
            aborted=lambda: calls.append("aborted"),
        )

    return process


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch) -> None:
    monkeypatch.setattr(stage, "TXN_RETRY_PAUSE_S", 0)


def test_a_batch_is_processed_then_its_offsets_join_the_transaction_then_it_commits() -> None:
    loop, calls, rewound = _loop()
    msgs = [Msg(0, 5), Msg(1, 2), Msg(0, 6)]
    assert loop.transact(msgs, _process(calls))  # type: ignore[arg-type]
    assert calls == [
        "begin",
        ("process", {0: 7, 1: 3}),
        ("offsets", [(0, 7), (1, 3)]),
        "send",
        "before_commit",
        "commit",
        "committed",
    ]
    assert rewound == []


def test_a_step_without_input_sends_no_offsets() -> None:
    loop, calls, _ = _loop()
    assert loop.transact([], _process(calls))
    assert calls == ["begin", ("process", {}), "before_commit", "commit", "committed"]


def test_a_retriable_error_is_retried_in_place() -> None:
    retriable = KafkaError(KafkaError._TIMED_OUT, "broker down", retriable=True)
    loop, calls, rewound = _loop({"commit": [retriable, retriable]})
    assert loop.transact([Msg(0, 1)], _process(calls))  # type: ignore[list-item]
    assert calls.count("commit") == 3 and "abort" not in calls and calls[-1] == "committed"
    assert rewound == []


def test_an_abortable_error_aborts_and_rewinds_to_the_committed_offsets() -> None:
    abortable = KafkaError(KafkaError._STATE, "fenced epoch", txn_requires_abort=True)
    loop, calls, rewound = _loop({"send": [abortable]})
    assert not loop.transact([Msg(0, 1)], _process(calls))  # type: ignore[list-item]
    after = calls[calls.index("send") + 1 :]
    assert after == ["aborted", "abort", ("seek", 0, 7), ("seek", 1, OFFSET_BEGINNING)]
    assert rewound == [[0, 1]]
    assert "commit" not in calls


def test_retriable_errors_past_the_deadline_abort_and_rewind(monkeypatch) -> None:
    monkeypatch.setattr(stage, "TXN_RETRY_S", 0)
    retriable = KafkaError(KafkaError._TIMED_OUT, "broker down", retriable=True)
    loop, calls, rewound = _loop({"commit": [retriable]})
    assert not loop.transact([Msg(0, 1)], _process(calls))  # type: ignore[list-item]
    assert calls[-3:] == ["abort", ("seek", 0, 7), ("seek", 1, OFFSET_BEGINNING)]
    assert rewound == [[0, 1]]


def test_a_fatal_error_exits_for_a_restart() -> None:
    fatal = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
    loop, calls, rewound = _loop({"commit": [fatal]})
    with pytest.raises(SystemExit) as exc:
        loop.transact([Msg(0, 1)], _process(calls))  # type: ignore[list-item]
    assert exc.value.code == EXIT_RESTART == 75
    assert "abort" not in calls and rewound == []


def test_a_failed_abort_exits_for_a_restart() -> None:
    abortable = KafkaError(KafkaError._STATE, "x", txn_requires_abort=True)
    loop, calls, _ = _loop({"send": [abortable], "abort": [KafkaError(KafkaError._TIMED_OUT)]})
    with pytest.raises(SystemExit) as exc:
        loop.transact([Msg(0, 1)], _process(calls))  # type: ignore[list-item]
    assert exc.value.code == EXIT_RESTART


def test_a_bug_in_process_aborts_the_transaction_and_raises() -> None:
    loop, calls, rewound = _loop()

    def broken(msgs, offsets) -> Outcome:
        raise ValueError("bug")

    with pytest.raises(ValueError):
        loop.transact([Msg(0, 1)], broken)  # type: ignore[list-item]
    assert calls == ["begin", "abort"] and rewound == []


def test_next_offsets_and_the_ingest_header() -> None:
    assert next_offsets([Msg(2, 9), Msg(2, 4), Msg(0, 0)]) == {2: 10, 0: 1}  # type: ignore[list-item]
    assert ingest_ms(Msg(0, 0, [("tw-ingest-ms", b"123")])) == 123  # type: ignore[arg-type]
    assert ingest_ms(Msg(0, 0, [("tw-ingest-ms", b"x")])) is None  # type: ignore[arg-type]
    assert ingest_ms(Msg(0, 0, None)) is None  # type: ignore[arg-type]


class Appended(Msg):
    def __init__(self, kind: int, ms: int) -> None:
        super().__init__(0, 0)
        self._ts = (kind, ms)

    def timestamp(self) -> tuple[int, int]:
        return self._ts


def test_a_hop_counts_each_source_appended_by_the_broker_from_its_append() -> None:
    from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME

    from tickwatch.metrics import HOP_LATENCY, Hop

    series = HOP_LATENCY.labels(Hop.FEATURES_TO_SCORES)
    sum0, count0 = series._sum.get(), sum(b.get() for b in series._buckets)
    sources = [
        Appended(TIMESTAMP_LOG_APPEND_TIME, 99_000),
        Appended(TIMESTAMP_LOG_APPEND_TIME, 100_500),  # after "now" (two clocks): counted as 0
        Appended(TIMESTAMP_CREATE_TIME, 1),  # event time, not an arrival: no hop
    ]
    stage.observe_hop(Hop.FEATURES_TO_SCORES, sources, now_s=100.0)
    assert sum(b.get() for b in series._buckets) - count0 == 2
    assert series._sum.get() - sum0 == pytest.approx(1.0)


def test_freezing_long_lived_state_thaws_and_frees_what_an_earlier_freeze_kept() -> None:
    """A model swap frees the replaced model's reference cycles (TensorFlow's objects have
    them): the collector never walks frozen objects, so each freeze thaws the last one first."""

    class Model:
        pass

    old = Model()
    old.self_ref = old  # a cycle: reference counting alone never frees it
    gone = weakref.ref(old)
    try:
        stage.freeze_long_lived()
        assert gc.get_freeze_count() > 0
        del old
        gc.collect()
        assert gone() is not None  # frozen: out of the collector's reach
        stage.freeze_long_lived()  # the swap: thaw, collect, freeze what is alive now
        assert gone() is None
    finally:
        gc.unfreeze()


class WatermarkConsumer:
    """A consumer whose fetches have seen partition 0's log end (12) but not partition 1's."""

    def __init__(self) -> None:
        self.queries: list[dict] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", 0), TopicPartition("t", 1)]

    def position(self, partitions) -> list[TopicPartition]:
        return [TopicPartition("t", 0, 5), TopicPartition("t", 1, -1001)]

    def get_watermark_offsets(self, tp: TopicPartition, **kwargs) -> tuple[int, int]:
        self.queries.append(kwargs)
        return (0, 12) if tp.partition == 0 else (-1001, -1001)


def test_the_lag_gauge_reads_the_fetched_log_end_and_never_queries_the_broker() -> None:
    """A query per partition in the stage's loop held every record behind it; the log end the
    fetches carried is enough, and a partition not fetched from yet is left unset."""
    consumer = WatermarkConsumer()
    stage.LagGauge("lagtest", consumer, every_s=0).update()  # type: ignore[arg-type]
    assert consumer.queries and all(q.get("cached") is True for q in consumer.queries)
    assert stage.CONSUMER_LAG.labels("lagtest", "t", "0")._value.get() == 7
    samples = [
        s.labels.get("partition")
        for metric in stage.CONSUMER_LAG.collect()
        for s in metric.samples
        if s.labels.get("stage") == "lagtest"
    ]
    assert samples == ["0"]
