from __future__ import annotations

import numpy as np
import pytest

from utils.errors import ConfigError
from utils.evaluation.familiarity import familiarity_cv_report


def _fold_data(rng: np.random.Generator, n: int = 400, dim: int = 12, folds: int = 4):
    datasets = np.array(["site_a"] * (n // 2) + ["site_b"] * (n // 2))
    # The two sites differ along the widest axis (the projection keeps the widest ones).
    scales = np.linspace(2.0, 0.2, dim)
    offset = np.where(datasets == "site_b", 10.0, 0.0)[:, None] * np.eye(dim)[0]
    features = rng.normal(size=(n, dim)) * scales + offset
    fold_of = rng.permutation(np.arange(n) % folds)
    outside = {"shifted": [rng.normal(size=(30, dim)) + 10.0 for _ in range(folds)]}
    return [features] * folds, fold_of, list(datasets), outside


def test_report_separates_held_out_images_from_outside_ones_and_sites() -> None:
    rng = np.random.default_rng(0)
    fold_features, fold_of, datasets, outside = _fold_data(rng)
    report = familiarity_cv_report(
        fold_features, fold_of, datasets, outside, n_components=4, quantile=0.95
    )
    assert report["n_folds"] == 4 and report["n_images"] == 400
    held = report["held_out_flagged"]
    assert len(held["per_fold"]) == 4 and held["mean"] < 0.15
    shifted = report["outside"]["shifted"]
    assert shifted["n"] == 30 and shifted["flagged"]["mean"] == 1.0
    assert shifted["auroc"]["mean"] == 1.0
    assert set(report["cross_site"]) == {"site_a->site_b", "site_b->site_a"}
    for entry in report["cross_site"].values():
        assert entry["flagged_other_site"]["mean"] > 0.9 > 0.2 > entry["flagged_same_site"]["mean"]
        assert entry["auroc"]["mean"] > 0.95


def test_accuracy_of_flagged_and_unflagged_held_out_images_is_reported() -> None:
    rng = np.random.default_rng(3)
    fold_features, fold_of, datasets, _ = _fold_data(rng)
    plain = familiarity_cv_report(fold_features, fold_of, datasets, n_components=3)
    assert "held_out_accuracy" not in plain
    # Call every image right except those far from the centre (the flagged ones, mostly).
    features = fold_features[0]
    far = np.linalg.norm(features - features.mean(axis=0), axis=1)
    correct = far < np.quantile(far, 0.9)
    report = familiarity_cv_report(
        fold_features, fold_of, datasets, n_components=3, held_out_correct=correct
    )
    split = report["held_out_accuracy"]
    assert split["flagged"]["n"] + split["unflagged"]["n"] == 400
    assert split["flagged"]["accuracy"] < split["unflagged"]["accuracy"]
    with pytest.raises(ConfigError, match="held_out_correct has 3 entries but there are 400"):
        familiarity_cv_report(fold_features, fold_of, datasets, held_out_correct=correct[:3])


def test_without_outside_sets_the_report_still_measures_the_held_out_rate() -> None:
    rng = np.random.default_rng(1)
    fold_features, fold_of, datasets, _ = _fold_data(rng)
    report = familiarity_cv_report(fold_features, fold_of, datasets, n_components=3)
    assert report["outside"] == {} and 0.0 <= report["held_out_flagged"]["mean"] <= 1.0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("one_fold", "features of 2 or more folds; received 1"),
        ("short_datasets", "datasets has 399 entries but fold_of has 400"),
        ("short_features", "Fold 0's features have 10 rows but there are 400 images"),
        ("missing_fold", r"every fold index 0..3; received \[0, 1, 2\]"),
    ],
)
def test_inputs_that_do_not_line_up_are_refused(change: str, match: str) -> None:
    fold_features, fold_of, datasets, _ = _fold_data(np.random.default_rng(2))
    if change == "one_fold":
        fold_features = fold_features[:1]
    elif change == "short_datasets":
        datasets = datasets[:-1]
    elif change == "short_features":
        fold_features = [fold_features[0][:10], *fold_features[1:]]
    else:
        fold_of = np.where(fold_of == 3, 0, fold_of)
    with pytest.raises(ConfigError, match=match):
        familiarity_cv_report(fold_features, fold_of, datasets)
