"""Helpers for the model tests: one small registry trained per test run, workers, topic readers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from producers.market_sim import SimResult, labels_to_frame, simulate
from tickwatch.kafka import (
    INGEST_HEADER,
    consume_batch,
    flush_or_raise,
    make_consumer,
    make_producer,
    produce,
)
from tickwatch.schemas import AnomalyEvent, FeatureVector, decode, encode
from tickwatch.settings import Settings, settings_to_env
from tickwatch.topics import ANOMALIES, FEATURES, topic_name

SYMBOLS = ["AAPL", "GOOGL", "MSFT", "TSLA", "VOO"]
TRAIN_DAYS, TRAIN_SEED, EPOCHS = 12, 7, 4
HELD_OUT_DAYS, HELD_OUT_SEED = 5, 1234


@dataclass(frozen=True)
class TrainedRegistry:
    """Champion v1 of both models on the stack's MLflow server (under names of its own), and the
    run that made them."""

    settings: Settings
    outcome: object


def registry_settings(base: Settings, prefix: str) -> Settings:
    """`base` on the stack's MLflow server over HTTP, as deployed (docker-compose, Kubernetes),
    with an experiment and registered model names of its own (`prefix`), so tests beside each
    other never move one another's champion alias."""
    mlflow = base.mlflow.model_copy(
        update={
            "tracking_uri": f"http://127.0.0.1:{base.mlflow.port}",
            "experiment": f"{prefix}{base.mlflow.experiment}",
            "iforest_model_name": f"{prefix}{base.mlflow.iforest_model_name}",
            "lstm_model_name": f"{prefix}{base.mlflow.lstm_model_name}",
        }
    )
    return base.model_copy(update={"mlflow": mlflow})


def delete_registered_models(settings: Settings) -> None:
    """Remove the test's registered models from the shared MLflow server (if it made any)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    for name in (settings.mlflow.iforest_model_name, settings.mlflow.lstm_model_name):
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(name)


@lru_cache(maxsize=1)
def trained_registry() -> TrainedRegistry:
    """Train once per test process on simulated history (12 days x 5 symbols, 4 epochs)."""
    from model_workers.dataset import frame_from_bars
    from model_workers.train import train_and_register

    root = Path(tempfile.mkdtemp(prefix="tickwatch-models-"))
    base = Settings(_env_file=None, run_dir=root / "run")
    settings = registry_settings(base, f"models{uuid.uuid4().hex[:8]}-")
    sim = simulate(SYMBOLS, TRAIN_DAYS, TRAIN_SEED)
    outcome = train_and_register(
        settings,
        frame_from_bars(sim.bars),
        labels_to_frame(sim.labels),
        "sim",
        epochs=EPOCHS,
        bars=sim.bars,
    )
    return TrainedRegistry(settings, outcome)


def with_models(settings: Settings, tmp: Path) -> Settings:
    """`settings` whose own registered models hold copies of the trained pair as champion v1
    (copies on the server: moving this test's alias moves nobody else's)."""
    from detection.registry import set_champion, use_tracking

    reg = trained_registry().settings
    client = use_tracking(settings)
    for src, dst in (
        (reg.mlflow.iforest_model_name, settings.mlflow.iforest_model_name),
        (reg.mlflow.lstm_model_name, settings.mlflow.lstm_model_name),
    ):
        client.copy_model_version(f"models:/{src}/1", dst)
    set_champion(settings, "1", "1")
    return settings.model_copy(
        update={"prometheus": settings.prometheus.model_copy(update={"score_metrics_port": 0})}
    )


@lru_cache(maxsize=1)
def held_out() -> SimResult:
    """Simulated days the models never saw (another seed, later dates)."""
    import datetime as dt

    return simulate(SYMBOLS, HELD_OUT_DAYS, HELD_OUT_SEED, start_day=dt.date(2025, 6, 2))


def held_out_labels() -> pd.DataFrame:
    return labels_to_frame(held_out().labels)


def send_vectors(settings: Settings, vectors: list[FeatureVector]) -> None:
    """Produce feature vectors keyed by symbol with the ingest header, like the features stage."""
    producer = make_producer(settings)
    now = str(int(time.time() * 1000)).encode()
    for v in vectors:
        # wall-clock message time: simulated 2025 bar times would fall outside topic retention
        produce(
            producer,
            topic_name(FEATURES, settings),
            encode(v),
            key=v.symbol,
            headers=[(INGEST_HEADER, now)],
        )
    flush_or_raise(producer)


def read_messages(
    settings: Settings, topic: str, idle_s: float = 3.0, timeout_s: float = 60
) -> list:
    """Every committed message of `topic` from the start (reads until idle)."""
    consumer = make_consumer(
        settings, f"check-{time.monotonic_ns()}", **{"isolation.level": "read_committed"}
    )
    consumer.subscribe([topic])
    out: list = []
    deadline, last = time.monotonic() + timeout_s, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last < idle_s:
        msgs = consume_batch(consumer, 1000, 0.5)
        if msgs:
            last = time.monotonic()
        out += msgs
    consumer.close()
    return out


def read_events(settings: Settings) -> list[AnomalyEvent]:
    """Every committed anomaly event, checking each key and ingest header."""
    out = []
    for m in read_messages(settings, topic_name(ANOMALIES, settings)):
        event = decode(AnomalyEvent, m.value())
        assert m.key().decode() == event.event_id
        assert INGEST_HEADER in dict(m.headers() or [])
        out.append(event)
    return out


def committed_total(settings: Settings) -> int:
    """Offsets the scoring group has committed on the features topic, summed over partitions."""
    from confluent_kafka import TopicPartition

    group = f"{settings.topic_prefix}tickwatch-score"
    # read_uncommitted: no "require stable" offset fetch, so a transaction left open by a killed
    # worker (pending until the coordinator aborts it) does not block the read; the offsets seen
    # are the last committed ones, which is what the callers compare
    consumer = make_consumer(settings, group, **{"isolation.level": "read_uncommitted"})
    topic = topic_name(FEATURES, settings)
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
    consumer.close()
    return sum(max(tp.offset, 0) for tp in committed)


def start_worker(settings: Settings, log: Path) -> subprocess.Popen:
    """`tickwatch score` in a subprocess that sees exactly these settings."""
    env = {**os.environ, **settings_to_env(settings), "TICKWATCH_LOG_LEVEL": "INFO"}
    return subprocess.Popen(
        [sys.executable, "-m", "tickwatch", "score", "--instance", "w1", "--reload-interval", "2"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait_committed(
    settings: Settings, target: int, proc: subprocess.Popen, log: Path, timeout_s: float = 120
) -> int:
    """Poll the group's committed offsets until they reach `target`; fail if the worker died."""
    deadline = time.monotonic() + timeout_s
    done = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        done = committed_total(settings)
        if done >= target:
            return done
        time.sleep(0.3)
    raise TimeoutError(f"committed {done}/{target}:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen, kill: bool = False) -> None:
    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
