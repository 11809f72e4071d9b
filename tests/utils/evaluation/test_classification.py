from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from utils.errors import ConfigError
from utils.evaluation import classification as evaluation
from utils.evaluation.classification import (
    classification_plot_data,
    classification_report,
    save_classification_plots,
)

CLASSES = ("benign", "malignant", "normal")


@pytest.fixture
def noisy_set() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 240)
    logits = rng.normal(size=(240, 3))
    logits[np.arange(240), labels] += 1.5
    return softmax(logits, axis=1), labels


def test_perfect_classifier() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 1])
    probs = np.full((7, 3), 0.05)
    probs[np.arange(7), labels] = 0.9
    report = classification_report(probs, labels, CLASSES, n_resamples=200)
    assert report["n"] == 7
    assert report["classes_present"] == list(CLASSES)
    assert report["accuracy"] == 1.0
    assert report["balanced_accuracy"] == 1.0
    assert report["macro_auc"] == 1.0
    assert report["auc_malignant"] == 1.0
    assert report["ece"] == pytest.approx(0.1)
    # Seven right answers at confidence 0.9 are likelier than calibration predicts (0.9^7
    # = 0.48), but within what perfect calibration shows on seven images.
    assert 0.0 < report["ece_floor"] < report["ece"] <= report["ece_floor_p95"]
    assert report["confusion_matrix"] == [[2, 0, 0], [0, 3, 0], [0, 0, 2]]
    assert report["per_class"]["malignant"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 3,
        "auc": 1.0,
    }
    assert report["ci95"] == {"accuracy": [1.0, 1.0], "auc_malignant": [1.0, 1.0]}


def test_confusion_matrix_rows_true_columns_predicted() -> None:
    labels = np.array([0, 0, 1, 2])
    predicted = np.array([0, 1, 1, 0])
    probs = np.full((4, 3), 0.1)
    probs[np.arange(4), predicted] = 0.8
    report = classification_report(probs, labels, CLASSES, n_resamples=50)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert report["accuracy"] == 0.5
    assert report["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert report["per_class"]["benign"]["precision"] == 0.5
    assert report["per_class"]["normal"]["recall"] == 0.0


def test_set_without_normal_images(noisy_set) -> None:
    probs, labels = noisy_set
    keep = labels != 2
    probs, labels = probs[keep], labels[keep]
    report = classification_report(probs, labels, CLASSES, n_resamples=100)
    assert report["classes_present"] == ["benign", "malignant"]
    # Over the present classes, on probabilities renormalised over them.
    renormalised = probs[:, 1] / (probs[:, 0] + probs[:, 1])
    expected = roc_auc_score(labels == 1, renormalised)
    assert report["macro_auc"] == pytest.approx(expected)
    assert report["per_class"]["benign"]["auc"] == pytest.approx(expected)
    assert report["per_class"]["normal"]["auc"] is None
    assert report["per_class"]["normal"]["support"] == 0
    assert report["auc_malignant"] == pytest.approx(roc_auc_score(labels == 1, probs[:, 1]))
    assert len(report["confusion_matrix"]) == 3
    assert report["confusion_matrix"][2] == [0, 0, 0]
    low, high = report["ci95"]["auc_malignant"]
    assert low <= report["auc_malignant"] <= high


def test_single_class_set_does_not_crash() -> None:
    probs = softmax(np.random.default_rng(1).normal(size=(5, 3)), axis=1)
    report = classification_report(probs, np.full(5, 1), CLASSES, n_resamples=50)
    assert report["classes_present"] == ["malignant"]
    assert report["macro_auc"] is None
    assert report["auc_malignant"] is None
    assert report["ci95"]["auc_malignant"] is None
    assert report["ci95"]["accuracy"] is not None


def test_no_malignant_class_name(noisy_set) -> None:
    probs, labels = noisy_set
    report = classification_report(probs, labels, ("a", "b", "c"), n_resamples=50)
    assert report["auc_malignant"] is None
    assert report["macro_auc"] is not None


def test_report_is_json_ready_and_reproducible(noisy_set) -> None:
    probs, labels = noisy_set
    first = classification_report(probs, labels, CLASSES, bootstrap_seed=7)
    second = classification_report(probs, labels, CLASSES, bootstrap_seed=7)
    assert json.dumps(first) == json.dumps(second)
    low, high = first["ci95"]["accuracy"]
    assert low < first["accuracy"] < high


def test_rank_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(3)
    target = rng.random(200) < 0.4
    scores = np.round(rng.random(200), 1)  # many ties
    rows = np.column_stack([target, scores])
    assert evaluation._rank_auc(rows) == pytest.approx(roc_auc_score(target, scores))
    assert np.isnan(evaluation._rank_auc(rows[~target]))


@pytest.mark.parametrize(
    ("names", "message"),
    [(("benign", "malignant"), "name each of the 3 columns"), (("a", "a", "b"), "once")],
)
def test_bad_class_names(names, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        classification_report(np.full((2, 3), 1 / 3), np.array([0, 1]), names)


def test_bad_labels() -> None:
    with pytest.raises(ConfigError, match="out of range"):
        classification_report(np.full((2, 3), 1 / 3), np.array([0, 3]), CLASSES)


def test_save_plots_writes_png_and_html(tmp_path: Path, noisy_set) -> None:
    probs, labels = noisy_set
    paths = save_classification_plots(probs, labels, CLASSES, tmp_path / "plots")
    names = sorted(path.name for path in paths)
    assert names == sorted(
        f"{stem}.{ext}"
        for stem in ("roc_curves", "reliability_diagram", "confusion_matrix")
        for ext in ("png", "html")
    )
    for path in paths:
        assert path.is_file() and path.stat().st_size > 0
        if path.suffix == ".png":
            with Image.open(path) as image:
                assert image.format == "PNG" and min(image.size) >= 300
    assert (tmp_path / "plots" / "plotly.min.js").is_file()
    assert "plotly.min.js" in (tmp_path / "plots" / "roc_curves.html").read_text()


def test_save_plots_png_only_and_partial_sets(tmp_path: Path) -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]])
    paths = save_classification_plots(probs, np.array([0, 0]), CLASSES, tmp_path, formats=["png"])
    assert [path.suffix for path in paths] == [".png"] * 3


def test_save_plots_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="formats"):
        save_classification_plots(
            np.full((2, 3), 1 / 3), np.array([0, 1]), CLASSES, tmp_path, formats=["svg"]
        )


def test_plot_data_for_cards_matches_the_report(noisy_set) -> None:
    probs, labels = noisy_set
    data = classification_plot_data(probs, labels, CLASSES, max_roc_points=20)
    report = classification_report(probs, labels, CLASSES)
    assert data["confusion_matrix"] == report["confusion_matrix"]
    assert sum(data["reliability"]["counts"]) == len(labels)
    for name, curve in data["roc"].items():
        assert len(curve["fpr"]) <= 20 and curve["fpr"][0] == 0.0 and curve["tpr"][-1] == 1.0
        assert curve["auc"] == pytest.approx(report["per_class"][name]["auc"])
    json.dumps(data)  # JSON-ready for model cards


def test_plot_data_rejects_misnamed_columns(noisy_set) -> None:
    probs, labels = noisy_set
    with pytest.raises(ConfigError, match="class_names must name each of the 3 columns"):
        classification_plot_data(probs, labels, ("a", "b"))
