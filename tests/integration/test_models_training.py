"""Training: both models registered in MLflow with metadata, champion gating, held-out quality."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import pytest
from model_support import (
    EPOCHS,
    SYMBOLS,
    TRAIN_DAYS,
    TRAIN_SEED,
    held_out,
    held_out_labels,
    trained_registry,
    with_models,
)

from detection import registry
from detection.detector import GRID, Detector
from detection.scorer import Scorer
from model_workers import dataset
from model_workers.backtest import detector_metrics, scored_frame
from model_workers.fit import FitResult, validation_metrics
from model_workers.train import promote_if_no_worse
from model_workers.validation import injected_validation
from producers.market_sim import labels_to_frame, simulate
from tickwatch.anomalies import KINDS
from tickwatch.features import MODEL_FEATURES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_training_registers_both_models_as_champion_with_their_metadata(settings, tmp_path):
    s = with_models(settings, tmp_path)
    outcome = trained_registry().outcome
    assert outcome.promoted and outcome.champion_f1 is None
    assert registry.champion_pair(s) == ("1", "1")
    client = registry.use_tracking(s)
    run = client.get_run(outcome.run_id)
    assert run.data.params["sequence_length"] == str(s.model.sequence_length)
    assert run.data.metrics["val_ensemble_f1"] == pytest.approx(outcome.f1)
    assert len(client.get_metric_history(outcome.run_id, "lstm_loss")) == EPOCHS
    assert mlflow.artifacts.load_dict(f"runs:/{outcome.run_id}/features.json") == {
        "features": list(MODEL_FEATURES)
    }
    for name in (s.mlflow.iforest_model_name, s.mlflow.lstm_model_name):
        info = mlflow.models.get_model_info(f"models:/{name}/1")
        assert info.signature is not None
        assert info.metadata["features"] == list(MODEL_FEATURES)
    detector = mlflow.models.get_model_info(f"models:/{s.mlflow.iforest_model_name}/1").metadata[
        "detector"
    ]
    assert Detector.from_dict(detector).threshold > 1.0  # a fitted budget, not the lowest level


def test_model_catches_held_out_anomalies_better_than_the_prototype_rule(settings, tmp_path):
    s = with_models(settings, tmp_path)
    frame = scored_frame(Scorer.from_registry(s), held_out().bars, s)
    metrics = detector_metrics(frame, held_out_labels(), s.model.cooldown_minutes)
    ours, prototype = metrics["ensemble"], metrics["prototype_rule"]
    assert ours.events >= 30
    assert ours.f1 >= prototype.f1 + 0.05, (ours, prototype)
    assert ours.false_alarms_per_symbol_day <= 2.0


def test_champion_alias_moves_only_to_a_pair_at_least_as_good(settings, tmp_path):
    s = with_models(settings, tmp_path)
    sim = simulate(SYMBOLS, TRAIN_DAYS, TRAIN_SEED)
    frame, labels = dataset.frame_from_bars(sim.bars), labels_to_frame(sim.labels)
    _, val_rows = dataset.split_by_day(frame, 0.3)
    val = frame[val_rows].reset_index(drop=True)
    forest, lstm = registry.load_pair(s, ("1", "1"))
    scale = np.asarray(lstm.metadata["error_scale"], dtype=np.float32)
    fitted = Detector.from_dict(forest.metadata["detector"])
    # a detector whose budget can never be met: its threshold sits at the top level
    blind = dataclasses.replace(fitted, prior=np.full(len(GRID), 1e3))

    def candidate(detector: Detector) -> FitResult:
        result = FitResult(
            forest.model, lstm.model, forest.calibration, lstm.calibration, scale, [], detector
        )
        result.metrics = validation_metrics(
            result.scorer(s.model.sequence_length), frame, val_rows, labels, 5
        )
        return result

    example = dataset.model_matrix(val)[:3]
    windows, valid = dataset.sequences(val, s.model.sequence_length)
    for detector, expect_promoted, expect in (
        (blind, False, ("1", "1")),
        (fitted, True, ("3", "3")),
    ):
        result = candidate(detector)
        with mlflow.start_run() as run:
            v_if = registry.log_iforest(
                forest.model, forest.calibration, s, example, detector.to_dict()
            )
            v_ae = registry.log_lstm(lstm.model, lstm.calibration, scale, s, windows[valid][:3])
            outcome = promote_if_no_worse(s, result, frame, labels, run.info.run_id, v_if, v_ae)
        assert outcome.promoted is expect_promoted
        assert registry.champion_pair(s) == expect


def test_without_labels_the_injected_validation_decides(settings, tmp_path):
    # real history has no labels: the gate compares both pairs on anomalies injected into a
    # copy of the validation days, never an F1 of 0 against 0
    s = with_models(settings, tmp_path)
    sim = simulate(SYMBOLS, TRAIN_DAYS, TRAIN_SEED, inject=False)
    frame, no_labels = dataset.frame_from_bars(sim.bars), labels_to_frame([])
    _, val_rows = dataset.split_by_day(frame, 0.3)
    val = frame[val_rows].reset_index(drop=True)
    cut = int(val["bar_start_ms"].min())
    held_out = (
        [b for b in sim.bars if b.start_ms < cut],
        [b for b in sim.bars if b.start_ms >= cut],
    )
    forest, lstm = registry.load_pair(s, ("1", "1"))
    scale = np.asarray(lstm.metadata["error_scale"], dtype=np.float32)
    fitted = Detector.from_dict(forest.metadata["detector"])
    blind = dataclasses.replace(fitted, prior=np.full(len(GRID), 1e3))
    example = dataset.model_matrix(val)[:3]
    windows, valid = dataset.sequences(val, s.model.sequence_length)
    seen = []
    for detector, expect_promoted, expect in (
        (blind, False, ("1", "1")),
        (fitted, True, ("3", "3")),
    ):
        result = FitResult(
            forest.model, lstm.model, forest.calibration, lstm.calibration, scale, [], detector
        )
        injected = injected_validation(result.scorer(s.model.sequence_length), *held_out, s)
        with mlflow.start_run() as run:
            v_if = registry.log_iforest(
                forest.model, forest.calibration, s, example, detector.to_dict()
            )
            v_ae = registry.log_lstm(lstm.model, lstm.calibration, scale, s, windows[valid][:3])
            outcome = promote_if_no_worse(
                s, result, frame, no_labels, run.info.run_id, v_if, v_ae, injected, held_out
            )
        assert outcome.gate == "injected F1" and outcome.champion_f1 is not None
        assert outcome.promoted is expect_promoted
        assert registry.champion_pair(s) == expect
        seen.append((injected.injected.f1, injected.injected.events, injected.row()))
    (blind_f1, events, _), (fitted_f1, _, row) = seen
    assert events >= 20 and blind_f1 == 0.0 and fitted_f1 > 0.5
    # every kind was injected and each is measured
    assert {k for k in row if k.startswith("injected_recall_")} == {
        f"injected_recall_{k}" for k in KINDS
    }
