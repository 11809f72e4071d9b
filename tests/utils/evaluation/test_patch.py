"""Evaluation of patch classifiers (utils.evaluation.patch)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from tests.utils.training.patch_folders import write_breakhis_folder, write_pcam_folder
from utils.errors import ConfigError, DatasetError, ImageDimensionError
from utils.evaluation.classification import classification_report
from utils.evaluation.patch import (
    MIN_N_FOR_CI,
    add_positive_class_auc,
    evaluate_patch_classifier,
    gate_small_sample_cis,
    resolve_patch_dataset,
)
from utils.inference.bundle import available_bundles
from utils.inference.classifier import LesionClassifier
from utils.model_card import save_model_bundle
from utils.models.classification import build_compact_cnn
from utils.training.patch_data import BREAKHIS_SUBTYPE_CLASSES

REPORT_KEYS = {
    "n",
    "accuracy",
    "balanced_accuracy",
    "macro_auc",
    "ece",
    "per_class",
    "confusion_matrix",
    "ci95",
    "per_image",
    "dataset",
    "grouping",
    "positive_class",
}


def tiny_classifier(folder: Path, class_names: list[str], side: int = 32) -> LesionClassifier:
    """An untrained compact CNN bundle with ``class_names``, loaded for inference."""
    keras.utils.set_random_seed(0)
    model = build_compact_cnn((side, side, 3), num_classes=len(class_names), base_filters=4)
    card = {
        "task": "classification",
        "architecture": "compact_cnn",
        "input_shape": [side, side, 3],
        "class_names": class_names,
    }
    return LesionClassifier.from_bundle(save_model_bundle(model, "tiny", card, models_dir=folder))


@pytest.fixture(scope="module")
def pcam_classifier(tmp_path_factory) -> LesionClassifier:
    return tiny_classifier(tmp_path_factory.mktemp("models"), ["normal", "tumour"])


def test_pcam_report_has_the_classifier_keys_and_the_tumour_auc(
    pcam_classifier: LesionClassifier, tmp_path: Path
) -> None:
    data = write_pcam_folder(tmp_path / "pcam", [0, 1] * 6)
    report = evaluate_patch_classifier(
        pcam_classifier,
        data,
        figures_dir=tmp_path / "figures",
        features_path=tmp_path / "features.npy",
    )
    assert set(report) >= REPORT_KEYS
    assert report["n"] == 12 and report["dataset"] == "pcam"
    assert report["positive_class"] == "tumour" and 0 <= report["auc_tumour"] <= 1
    assert report["ci95"]["accuracy"] is not None and report["ci95"]["auc_tumour"] is not None
    assert "no patient ids" in report["grouping"]
    assert report["per_image"][0]["source"] == "train/patch000.tif"
    features = np.load(tmp_path / "features.npy")
    assert features.shape == (12, 32) and report["features"]["shape"] == [12, 32]
    assert (tmp_path / "figures" / "roc_curves.png").is_file()


def test_single_class_and_tiny_sets_do_not_crash(
    pcam_classifier: LesionClassifier, tmp_path: Path
) -> None:
    data = write_pcam_folder(tmp_path / "pcam", [0, 0, 0])
    report = evaluate_patch_classifier(pcam_classifier, data)
    assert report["n"] == 3 and report["classes_present"] == ["normal"]
    assert report["macro_auc"] is None and report["auc_tumour"] is None
    assert set(report["ci95"].values()) == {None}
    assert f"at least {MIN_N_FOR_CI}" in report["ci95_note"]


def test_breakhis_subtype_model_reads_subtype_labels(tmp_path: Path) -> None:
    classifier = tiny_classifier(tmp_path / "models", list(BREAKHIS_SUBTYPE_CLASSES))
    data = write_breakhis_folder(tmp_path / "breakhis")
    report = evaluate_patch_classifier(classifier, data)
    assert report["dataset"] == "breakhis" and report["grouping"] == "patient"
    assert report["n"] == 10 and "positive_class" not in report
    assert len(report["confusion_matrix"]) == 8
    assert report["per_image"][0]["group"].startswith("breakhis:")


def test_breakhis_binary_model_keeps_the_malignant_auc(tmp_path: Path) -> None:
    classifier = tiny_classifier(tmp_path / "models", ["benign", "malignant"])
    report = evaluate_patch_classifier(classifier, write_breakhis_folder(tmp_path / "bh"))
    assert report["positive_class"] == "malignant" and report["auc_malignant"] is not None


def test_model_classes_absent_from_the_data_are_rejected(tmp_path: Path) -> None:
    classifier = tiny_classifier(tmp_path / "models", ["benign", "malignant"])
    data = write_pcam_folder(tmp_path / "pcam", [0, 1])
    with pytest.raises(DatasetError, match=r"model's classes \(benign, malignant\).*normal"):
        evaluate_patch_classifier(classifier, data, dataset="pcam")


def test_wrong_size_pcam_patches_are_rejected(
    pcam_classifier: LesionClassifier, tmp_path: Path
) -> None:
    data = write_pcam_folder(tmp_path / "pcam", [0, 1], side=50)
    with pytest.raises(ImageDimensionError, match="must be 96x96 RGB"):
        evaluate_patch_classifier(pcam_classifier, data)


def test_dataset_resolution(tmp_path: Path) -> None:
    assert resolve_patch_dataset(write_pcam_folder(tmp_path / "p", [0]), "auto") == "pcam"
    assert resolve_patch_dataset(write_breakhis_folder(tmp_path / "b"), "auto") == "breakhis"
    with pytest.raises(ConfigError, match="Unknown patch dataset 'busi'"):
        resolve_patch_dataset(tmp_path / "p", "busi")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        resolve_patch_dataset(tmp_path / "empty", "auto")


def test_positive_auc_and_ci_gate_on_hand_made_scores() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1] * 2)
    probs = np.column_stack([1 - labels * 0.8 - 0.1, labels * 0.8 + 0.1])
    report = classification_report(probs, labels, ["normal", "tumour"])
    add_positive_class_auc(report, probs, labels, ["normal", "tumour"])
    assert report["auc_tumour"] == 1.0 and report["ci95"]["auc_tumour"] == [1.0, 1.0]
    gate_small_sample_cis(report)  # n = 12: kept
    assert report["ci95"]["auc_tumour"] == [1.0, 1.0]
    small = classification_report(probs[:4], labels[:4], ["normal", "tumour"])
    gate_small_sample_cis(small)
    assert small["ci95"]["accuracy"] is None


@pytest.mark.real_data
@pytest.mark.skipif(
    "pcam_patch_classifier" not in available_bundles(), reason="no shipped PCam patch model"
)
def test_shipped_pcam_model_on_the_shared_sample(shared_datasets: Path) -> None:
    classifier = LesionClassifier.from_bundle("pcam_patch_classifier")
    assert classifier.class_names == ("normal", "tumour")
    assert classifier.input_shape == (96, 96, 3)
    assert "NOT evidence of quality" in classifier.card["status"]
    report = evaluate_patch_classifier(classifier, shared_datasets / "pcam_sample")
    assert set(report) >= REPORT_KEYS and report["n"] == 15
