"""The API's champion scorer when the registry stops answering."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from prometheus_client import REGISTRY

import detection.registry
from api.scoring import ChampionScorer
from tickwatch.settings import Settings


class Loaded:
    """Stands for a Scorer already loaded from the registry (only its identity matters here)."""

    versions = ("3", "3")
    version = "iforest-v3+lstm-ae-v3"


def reload_errors() -> float:
    labels = {"stage": "api", "kind": "model_reload"}
    return REGISTRY.get_sample_value("tickwatch_errors_total", labels) or 0.0


def registry_down(_: Settings) -> None:
    raise MlflowException("API request to http://127.0.0.1:5000 failed: connection refused")


def test_a_registry_outage_keeps_the_loaded_pair_and_is_counted(monkeypatch) -> None:
    monkeypatch.setattr(detection.registry, "champion_pair", registry_down)
    scorer = ChampionScorer(Settings(_env_file=None))
    scorer._scorer = loaded = Loaded()  # loaded earlier; its recheck is due
    before = reload_errors()
    assert scorer.get() is loaded
    assert reload_errors() == before + 1
    assert scorer.get() is loaded  # rechecked again only after RECHECK_S
    assert reload_errors() == before + 1


def test_a_registry_outage_before_any_pair_is_loaded_raises() -> None:
    scorer = ChampionScorer(Settings(_env_file=None))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(detection.registry, "champion_pair", registry_down)
        with pytest.raises(MlflowException):
            scorer.get()
