"""`tickwatch stack init` on a deployment that already has champions: topics only, no training."""

from __future__ import annotations

from pathlib import Path

import yaml

from detection.detector import DETECTOR_VERSION, GRID, MEMBERS
from ops.stack import bootstrap
from ops.stack.processes import wait_until
from tickwatch.kafka import admin
from tickwatch.settings import Settings
from tickwatch.topics import ALL_TOPICS, topic_name


def _register_champions(settings: Settings, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    source = tmp_path / "model"
    source.mkdir()
    # what `champion_exists` reads: an MLmodel of a skops-stored forest whose metadata carries a
    # detector of this version on this calendar (a champion registered by older code, pickled,
    # without one or on another calendar, is retrained)
    detector = {
        "version": DETECTOR_VERSION,
        "members": list(MEMBERS),
        "grid": GRID.tolist(),
        "calendar": settings.features.calendar,
    }
    mlmodel = {
        "artifact_path": "model",
        "flavors": {"sklearn": {"serialization_format": "skops"}},
        "metadata": {"detector": detector},
    }
    (source / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.mlflow.experiment)
    with mlflow.start_run() as run:  # the server takes a version's files from a run only
        mlflow.log_artifacts(str(source), "model")
    for name in (settings.mlflow.iforest_model_name, settings.mlflow.lstm_model_name):
        client.create_registered_model(name)
        version = client.create_model_version(
            name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
        )
        client.set_registered_model_alias(name, settings.mlflow.champion_alias, version.version)


def test_init_creates_missing_topics_and_skips_training_when_champions_exist(
    settings: Settings, tmp_path: Path
) -> None:
    names = [topic_name(t, settings) for t in ALL_TOPICS]
    client = admin(settings)
    for fut in client.delete_topics(names[:2]).values():
        fut.result()

    def deleted() -> bool:
        return not set(names[:2]) & set(client.list_topics(timeout=10).topics)

    assert wait_until(deleted, 30)
    _register_champions(settings, tmp_path)

    assert bootstrap.run(settings, broker_timeout_s=30) == []

    existing = set(client.list_topics(timeout=10).topics)
    assert set(names) <= existing
