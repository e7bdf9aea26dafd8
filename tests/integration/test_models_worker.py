"""The scoring worker on real Kafka: kill -9 and restart, alias reload, dead letters."""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException
from metrics_support import grown, histogram
from model_support import (
    committed_total,
    held_out,
    read_events,
    read_messages,
    send_vectors,
    start_worker,
    stop,
    wait_committed,
    with_models,
)

from detection import registry
from detection.models.iforest import iforest_scores
from detection.models.lstm_ae import autoencoder_errors
from detection.scorer import (
    Scorer,
    SequenceBuffer,
    feature_matrix,
    score_bars,
    vectors_from_bars,
)
from model_workers.worker import ScoreWorker
from tickwatch.features import ADDED_FEATURES
from tickwatch.kafka import (
    delete_prefixed_topics,
    ensure_topics,
    flush_or_raise,
    make_producer,
    produce,
    read_latest,
)
from tickwatch.metrics import MODEL_INFO
from tickwatch.schemas import DeadLetter, decode, encode
from tickwatch.topics import DEAD_LETTER, FEATURES, topic_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


def _days(n: int):
    vectors = vectors_from_bars(held_out().bars)
    days = sorted({v.bar_start_ms // 86_400_000 for v in vectors})
    return vectors, [v for v in vectors if v.bar_start_ms // 86_400_000 < days[n]]


def _content(events) -> list[tuple]:
    """Events as comparable records: the bar, severity and each member's flag, score and the
    threshold the bar was held to (scores rounded: TensorFlow's float32 kernels may differ in
    the last digits between batch compositions)."""
    return sorted(
        (
            e.event_id,
            e.symbol,
            e.bar_start_ms,
            e.severity,
            tuple((s.model, s.flagged, round(s.score, 3), round(s.threshold, 6)) for s in e.scores),
        )
        for e in events
    )


def test_killed_worker_restarts_with_exactly_the_uninterrupted_events(settings, tmp_path):
    # three sessions; the kill lands in the second, after its threshold re-solve, and the
    # restart re-scores only 200 vectors per partition before its snapshot (a few windows per
    # symbol, not sessions): each symbol's online threshold (sessions of counts) must come back
    # from its changelog, the rest from the replay since the snapshot
    base = with_models(settings, tmp_path)
    base = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"consume_batch": 150}),
            "model": base.model.model_copy(update={"replay_messages": 200}),
        }
    )
    _, vectors = _days(3)
    expected = [
        e
        for e in score_bars(
            Scorer.from_registry(base),
            [b for b in held_out().bars if b.start_ms <= vectors[-1].bar_start_ms],
        )
        if e is not None
    ]
    runs = {}
    for name in ("uninterrupted", "killed"):
        s = base.model_copy(update={"topic_prefix": f"{settings.topic_prefix}{name[0]}-"})
        ensure_topics(s)
        log = tmp_path / f"{name}.log"
        proc = None
        try:
            # the killed run gets its last part only after the kill, so the kill always lands
            # before the end however fast the worker scores
            cut = len(vectors) if name == "uninterrupted" else 3 * len(vectors) // 4
            send_vectors(s, vectors[:cut])
            proc = start_worker(s, log)
            if name == "killed":
                wait_committed(s, len(vectors) // 2, proc, log)
                stop(proc, kill=True)
                assert committed_total(s) < len(vectors)
                changelog = read_latest(
                    s,
                    f"{s.topic_prefix}tickwatch-score-thresholds",
                    list(range(s.kafka.default_partitions)),
                )
                assert changelog  # the symbols scored before the kill left their thresholds
                send_vectors(s, vectors[cut:])
                proc = start_worker(s, log)
            wait_committed(s, len(vectors), proc, log)
            if name == "killed":  # the restart loaded thresholds and re-scored since them
                text = log.read_text()
                loaded = re.findall(r"loaded (\d+) thresholds", text)
                rebuilt = re.findall(r"rebuilt state from (\d+) earlier", text)
                assert int(loaded[-1]) == len(changelog), loaded
                assert int(rebuilt[-1]) > 0, rebuilt
            stop(proc)
            runs[name] = read_events(s)
        finally:
            if proc is not None and proc.poll() is None:
                stop(proc, kill=True)
            delete_prefixed_topics(s)
    ids = {n: [e.event_id for e in events] for n, events in runs.items()}
    assert ids["uninterrupted"] and set(ids["killed"]) == set(ids["uninterrupted"])
    assert max(Counter(ids["killed"]).values()) == 1
    assert max(Counter(ids["uninterrupted"]).values()) == 1
    # the same events down to each model's score and the threshold each bar was held to
    assert _content(runs["killed"]) == _content(runs["uninterrupted"]) == _content(expected)


class _CommitFailsOnce:
    """The worker's transactional producer, whose `at`-th commit fails as an abortable error
    would (a broker restart that outlasts the retries, a transaction the coordinator aborted)."""

    def __init__(self, producer, at: int) -> None:
        self.producer, self.at, self.commits, self.failed = producer, at, 0, False

    def commit_transaction(self, *args) -> None:
        self.commits += 1
        if self.commits == self.at:
            self.failed = True
            raise KafkaException(KafkaError(KafkaError._STATE, "test", txn_requires_abort=True))
        self.producer.commit_transaction(*args)

    def __getattr__(self, name: str):
        return getattr(self.producer, name)


def test_a_failed_commit_is_aborted_and_rewound_in_the_running_worker(settings, tmp_path):
    # the stage loop aborts the batch, seeks back to the committed offsets and rebuilds the state
    # as on an assignment; the worker goes on and the events are those of an undisturbed run
    base = with_models(settings, tmp_path)
    s = base.model_copy(update={"kafka": base.kafka.model_copy(update={"consume_batch": 150})})
    _, vectors = _days(1)
    expected = [
        e
        for e in score_bars(
            Scorer.from_registry(s),
            [b for b in held_out().bars if b.start_ms <= vectors[-1].bar_start_ms],
        )
        if e is not None
    ]
    send_vectors(s, vectors)
    worker = ScoreWorker(s, "rewind")
    failing = _CommitFailsOnce(worker.producer, at=3)
    worker.loop.producer = failing  # type: ignore[assignment]
    try:
        _run_until(worker, s, len(vectors), timeout_s=120)
    finally:
        worker.close()
    assert failing.failed and failing.commits > 3
    events = read_events(s)
    ids = [e.event_id for e in events]
    assert ids and max(Counter(ids).values()) == 1
    assert _content(events) == _content(expected)


def _hop_seconds(hop: str = "features_to_anomalies") -> tuple[float, float]:
    return histogram("tickwatch_hop_latency_seconds", hop=hop)


def _ingest_seconds() -> tuple[float, float]:
    return histogram("tickwatch_event_to_emit_seconds", stage="score")


def _run_until(worker: ScoreWorker, settings, target: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while committed_total(settings) < target:
        assert time.monotonic() < deadline, "worker did not catch up"
        worker.step()


def _register_other_weights(s, vectors) -> tuple[str, str]:
    """A forest fitted on other rows with another seed and an autoencoder with perturbed
    weights, registered as new versions with v1's calibration: (forest, autoencoder) version."""
    import keras
    import mlflow

    from detection.models.iforest import train_iforest

    forest, lstm = registry.load_pair(s, ("1", "1"))
    x = feature_matrix(vectors)
    rng = np.random.default_rng(5)
    other = keras.models.clone_model(lstm.model)
    other.set_weights([w + rng.normal(0, 0.2, w.shape) for w in lstm.model.get_weights()])
    length = int(lstm.metadata["sequence_length"])
    windows = np.stack([x[i : i + length] for i in range(3)])
    registry.use_tracking(s)
    with mlflow.start_run():
        v_if = registry.log_iforest(
            train_iforest(x, n_estimators=50, seed=99),
            forest.calibration,
            s,
            x[:3],
            forest.metadata["detector"],
        )
        v_ae = registry.log_lstm(
            other,
            lstm.calibration,
            np.asarray(lstm.metadata["error_scale"], dtype=np.float32),
            s,
            windows,
        )
    return v_if, v_ae


def _model_scores(scorer: Scorer, vectors) -> dict[tuple[str, int, str], float]:
    rows = scorer.score(vectors, SequenceBuffer(scorer.length))
    return {(r.symbol, r.bar_start_ms, m.model): m.score for r in rows for m in r.model_scores}


def test_moving_the_champion_alias_to_other_weights_changes_the_scores(settings, tmp_path):
    s = with_models(settings, tmp_path)
    all_vectors, day1 = _days(1)
    _, day2_end = _days(2)
    day2 = day2_end[len(day1) :]
    first = Scorer.from_registry(s)
    hop_before, ingest_before = _hop_seconds(), _ingest_seconds()
    scored_before = _hop_seconds("features_to_scores")
    worker = ScoreWorker(s, "reload", reload_interval_s=0.3)
    worker.watcher.start()
    try:
        send_vectors(s, day1)
        _run_until(worker, s, len(day1))
        versions = _register_other_weights(s, day1)
        assert versions == ("2", "2")
        registry.set_champion(s, *versions)
        deadline = time.monotonic() + 60
        while worker.scorer.versions != ("2", "2"):
            assert time.monotonic() < deadline, "alias move not picked up"
            worker.step()  # consuming (nothing new) while the watcher loads the new pair
        send_vectors(s, day2)
        _run_until(worker, s, len(day1) + len(day2))
    finally:
        worker.close()
    samples = {
        (s_.labels["model"], s_.labels["version"]) for m in MODEL_INFO.collect() for s_ in m.samples
    }
    lstm_name = s.mlflow.lstm_model_name
    assert (lstm_name, "2") in samples and (lstm_name, "1") not in samples
    events = read_events(s)
    # one vector -> anomaly event hop per event
    hop_count, hop_sum = grown(_hop_seconds(), hop_before)
    ingest_count, ingest_sum = grown(_ingest_seconds(), ingest_before)
    assert hop_count == len(events) > 0
    # ingest -> decision committed: every vector, flagged or not
    assert ingest_count == len(day1) + len(day2)
    assert 0 < hop_sum <= ingest_sum
    # one vector -> scored hop per vector, flagged or not, each committed once
    scored_count, scored_sum = grown(_hop_seconds("features_to_scores"), scored_before)
    assert scored_count == len(day1) + len(day2) and scored_sum > 0
    first_day2 = day2[0].bar_start_ms
    assert {sc.version for e in events if e.bar_start_ms >= first_day2 for sc in e.scores} == {"2"}
    assert {sc.version for e in events if e.bar_start_ms < first_day2 for sc in e.scores} == {"1"}
    assert any(e.bar_start_ms >= first_day2 for e in events)
    # the worker scores with the new weights, not the old artifact under a new version number:
    # both models' raw outputs differ on (nearly) every row, and so do scores
    x = feature_matrix(day2)
    new_if, old_if = (
        iforest_scores(worker.scorer.iforest.model, x),
        iforest_scores(first.iforest.model, x),
    )
    assert np.mean(new_if != old_if) > 0.9
    length = worker.scorer.length
    windows = np.stack([x[i : i + length] for i in range(0, len(x) - length, length)])
    new_ae = autoencoder_errors(worker.scorer.lstm.model, windows)
    old_ae = autoencoder_errors(first.lstm.model, windows)
    assert np.mean(np.any(new_ae != old_ae, axis=1)) > 0.9
    before, after = _model_scores(first, day2), _model_scores(worker.scorer, day2)
    assert before == _model_scores(first, day2)  # scoring is deterministic: no change by chance
    for model in ("iforest", "lstm_ae"):
        assert [k for k in before if k[2] == model and before[k] != after[k]], model


def test_undecodable_and_duplicate_vectors_go_to_the_dead_letter_topic(settings, tmp_path):
    s = with_models(settings, tmp_path)
    _, day1 = _days(1)
    head = day1[:50]
    producer = make_producer(s)
    features = topic_name(FEATURES, s)
    produce(producer, features, b"{not json", key="AAPL")
    flush_or_raise(producer)
    send_vectors(s, head)
    send_vectors(s, head[-1:])  # the same bar again
    broken = head[0].model_copy(
        update={"bar_start_ms": head[-1].bar_start_ms + 3_600_000, "features": {"return_z": 1.0}}
    )
    produce(producer, features, encode(broken), key=broken.symbol)
    # every model feature but not the detector's inputs (a crash before they were checked)
    no_beta = head[-1].model_copy(
        update={
            "bar_start_ms": head[-1].bar_start_ms + 2 * 3_600_000,
            "features": {k: x for k, x in head[-1].features.items() if k != "beta"},
        }
    )
    # written before the newest features existed: scored, reading their defaults
    older = head[-1].model_copy(
        update={
            "bar_start_ms": head[-1].bar_start_ms + 3 * 3_600_000,
            "features": {k: x for k, x in head[-1].features.items() if k not in ADDED_FEATURES},
        }
    )
    for vector in (no_beta, older):
        produce(producer, features, encode(vector), key=vector.symbol)
    flush_or_raise(producer)
    worker = ScoreWorker(s, "dead")
    try:
        _run_until(worker, s, len(head) + 5)
        assert not worker.buffer.is_new(older.symbol, older.bar_start_ms)  # it was scored
    finally:
        worker.close()
    letters = [decode(DeadLetter, m.value()) for m in read_messages(s, topic_name(DEAD_LETTER, s))]
    assert sorted(d.reason.split(":")[0] for d in letters) == [
        "duplicate",
        "invalid",
        "missing_features",
        "missing_features",
    ]
    assert any("'beta'" in d.reason for d in letters)
    assert {d.source for d in letters} == {"score"}
    assert any(d.raw == "{not json" for d in letters)
