from __future__ import annotations

import numpy as np
import pytest

from utils.evaluation.bootstrap import bootstrap_ci
from utils.evaluation.segmentation import segmentation_report


def _square(top: int, left: int, size: int = 10, shape=(32, 32)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_report_separates_lesion_metrics_from_normal_false_positives() -> None:
    truths = [_square(5, 5), _square(5, 5), np.zeros((32, 32), bool), np.zeros((32, 32), bool)]
    predictions = [_square(5, 5), _square(5, 10), np.zeros((32, 32), bool), _square(0, 0, 3)]
    labels = ["benign", "malignant", "normal", "normal"]
    report = segmentation_report(predictions, truths, labels)
    assert report["n"] == 4 and report["n_lesion"] == 2 and report["n_normal"] == 2
    # Dice: 1.0 for the exact square, 2*50/200 = 0.5 for the half-shifted one.
    assert report["dice_mean"] == pytest.approx(0.75)
    assert report["per_class"]["benign"]["dice_mean"] == pytest.approx(1.0)
    assert report["per_class"]["malignant"]["dice_mean"] == pytest.approx(0.5)
    assert report["normal_false_positive_rate"] == pytest.approx(0.5)
    low, high = report["ci95"]["dice_mean"]
    assert 0.5 <= low <= high <= 1.0


def test_report_without_normal_images_has_no_false_positive_rate() -> None:
    report = segmentation_report([_square(5, 5)], [_square(5, 5)], ["benign"])
    assert report["normal_false_positive_rate"] is None


def test_bootstrap_ci_brackets_the_mean_and_handles_empty_input() -> None:
    values = np.random.default_rng(0).normal(0.8, 0.05, size=200)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high and high - low < 0.03
    assert all(np.isnan(bootstrap_ci(np.array([]))))
