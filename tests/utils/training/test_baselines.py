from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from utils.errors import ConfigError
from utils.train import main
from utils.training.arrays import TrainingArrays
from utils.training.baselines import (
    BaselineConfig,
    cross_validate_baseline,
    pixel_features,
    train_and_evaluate_baseline,
)


def test_pixel_features_shrink_and_scale() -> None:
    images = np.full((3, 40, 40, 1), 255, np.uint8)
    images[1] = 0
    features = pixel_features(images, 8)
    assert features.shape == (3, 64)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features[0], 1.0)
    np.testing.assert_allclose(features[1], 0.0)


def test_pixel_features_average_colour_channels() -> None:
    images = np.zeros((1, 8, 8, 3), np.uint8)
    images[..., 0] = 255
    np.testing.assert_allclose(pixel_features(images, 4), 1.0 / 3.0, atol=1e-6)


def test_pixel_features_reject_a_single_image() -> None:
    with pytest.raises(ConfigError, match=r"\(N, H, W, C\); received shape \(8, 8\)"):
        pixel_features(np.zeros((8, 8), np.uint8), 4)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (BaselineConfig(model="svm"), r"Unknown baseline 'svm'; valid baselines: \['logistic"),
        (BaselineConfig(pixels=2), "pixels must be between 4 and 128; received 2"),
        (BaselineConfig(pixels=16.0), "pixels must be an integer; received 16.0"),
    ],
)
def test_bad_configs_are_refused(tiny_arrays: TrainingArrays, config, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        train_and_evaluate_baseline(tiny_arrays, tiny_arrays, config)


@pytest.mark.parametrize("model", ["logistic_regression", "random_forest"])
def test_baselines_learn_a_separable_task(tiny_arrays: TrainingArrays, model: str) -> None:
    # In the fixture, normal images have no dark square: pixels separate them from lesions.
    labels = ["normal" if label == "normal" else "benign" for label in tiny_arrays.labels]
    arrays = replace(tiny_arrays, labels=labels)
    report = train_and_evaluate_baseline(arrays, arrays, BaselineConfig(model=model, pixels=8))
    assert report["accuracy"] >= 0.9
    assert report["temperature"] > 0
    assert set(report) >= {"accuracy", "macro_auc", "ece", "ece_before", "confusion_matrix"}


def test_a_fold_missing_a_class_still_gives_every_column(tiny_arrays: TrainingArrays) -> None:
    train = tiny_arrays.subset([i for i, y in enumerate(tiny_arrays.labels) if y != "malignant"])
    report = train_and_evaluate_baseline(train, tiny_arrays, BaselineConfig(pixels=8))
    assert len(report["confusion_matrix"]) == 3
    assert report["per_class"]["malignant"]["recall"] == 0.0


def test_cross_validation_writes_folds_and_summary(
    tiny_arrays: TrainingArrays, tmp_path: Path
) -> None:
    summary = cross_validate_baseline(tiny_arrays, BaselineConfig(pixels=8), tmp_path, n_folds=3)
    assert summary["n_folds"] == 3
    assert sorted(path.parent.name for path in tmp_path.glob("fold_*/metrics.json")) == [
        "fold_0",
        "fold_1",
        "fold_2",
    ]
    cv = json.loads((tmp_path / "cv.json").read_text())
    assert cv["config"]["model"] == "logistic_regression"
    assert cv["summary"]["accuracy"]["mean"] is not None


def test_cli_runs_a_baseline_from_an_arrays_cache(
    tiny_arrays: TrainingArrays, tmp_path: Path
) -> None:
    cache = tmp_path / "tiny.npz"
    tiny_arrays.save(cache)
    out = tmp_path / "run"
    code = main(
        ["baseline", "--arrays", str(cache), "--pixels", "8", "--folds", "3", "--out", str(out)]
    )
    assert code == 0
    assert json.loads((out / "cv.json").read_text())["n_folds"] == 3


def test_cli_reports_an_unknown_baseline(
    tiny_arrays: TrainingArrays, tmp_path: Path, capsys
) -> None:
    cache = tmp_path / "tiny.npz"
    tiny_arrays.save(cache)
    code = main(
        ["baseline", "--arrays", str(cache), "--model", "svm", "--out", str(tmp_path / "r")]
    )
    assert code == 2
    assert "valid baselines" in capsys.readouterr().err
