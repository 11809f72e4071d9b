"""Tests of the card-ready ROC, reliability and confusion data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from utils.calibration import expected_calibration_error
from utils.errors import ConfigError
from utils.evaluation.card_curves import card_curves

NAMES = ["normal", "benign", "malignant"]


def _predictions(n: int = 60, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[labels]
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), labels


def test_card_curves_match_the_metrics_and_are_json_ready() -> None:
    probs, labels = _predictions()
    curves = card_curves(probs, labels, NAMES, source="fold test")
    assert json.loads(json.dumps(curves)) == curves  # plain JSON, no NaN
    assert curves["n"] == 60 and curves["source"] == "fold test"
    assert set(curves["roc"]) == set(NAMES)
    # All three classes present: the renormalised one-vs-rest AUC is the plain one.
    malignant = labels == 2
    expected = roc_auc_score(malignant, probs[:, 2] / probs.sum(axis=1))
    assert curves["roc"]["malignant"]["auc"] == pytest.approx(expected, abs=1e-6)
    roc = curves["roc"]["benign"]
    assert roc["fpr"][0] == 0 and roc["tpr"][-1] == 1 and len(roc["fpr"]) == len(roc["tpr"])
    calibration = curves["calibration"]
    assert len(calibration["edges"]) == len(calibration["counts"]) + 1 == 16
    assert sum(calibration["counts"]) == 60
    assert calibration["ece"] == pytest.approx(expected_calibration_error(probs, labels), abs=1e-6)
    matrix = np.array(curves["confusion_matrix"])
    assert matrix.sum() == 60 and np.array_equal(matrix.sum(axis=1), [20, 20, 20])


def test_empty_bins_are_null_and_a_missing_class_has_no_curve() -> None:
    probs, labels = _predictions()
    keep = labels != 0
    curves = card_curves(probs[keep], labels[keep], NAMES)
    assert set(curves["roc"]) == {"benign", "malignant"}
    counts = curves["calibration"]["counts"]
    assert counts[0] == 0 and curves["calibration"]["accuracy"][0] is None


def test_bad_class_names_are_a_config_error() -> None:
    probs, labels = _predictions()
    with pytest.raises(ConfigError, match="class_names must name each of the 3 columns"):
        card_curves(probs, labels, ["a", "b"])
