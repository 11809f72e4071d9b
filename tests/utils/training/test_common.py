"""Shared training helpers: CV folds and splits, and the card block of a CV run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.utils.training.conftest import make_tiny_arrays
from utils.errors import ConfigError
from utils.training.arrays import TrainingArrays
from utils.training.common import (
    collect_cv_results,
    cv_card_section,
    cv_folds,
    require_grouped_fold,
    run_grouped_cv,
)


def _two_site_arrays() -> TrainingArrays:
    arrays = make_tiny_arrays()
    return replace(arrays, datasets=["site-a"] * 10 + ["site-b"] * 14)


def _record_fold(train: TrainingArrays, val: TrainingArrays, fold_dir: Path) -> dict:
    return {"train_sites": sorted(set(train.datasets)), "val_sites": sorted(set(val.datasets))}


def test_dataset_split_trains_on_the_other_sites_and_records_the_held_out_one(
    tmp_path: Path,
) -> None:
    run_grouped_cv(_two_site_arrays(), tmp_path, _record_fold, n_folds=0, seed=0, split="dataset")
    folds = [json.loads((tmp_path / f"fold_{k}" / "metrics.json").read_text()) for k in (0, 1)]
    assert [fold["held_out_dataset"] for fold in folds] == ["site-a", "site-b"]
    assert [fold["n_val"] for fold in folds] == [10, 14]
    assert folds[0]["train_sites"] == ["site-b"] and folds[0]["val_sites"] == ["site-a"]
    assert collect_cv_results(tmp_path, (), {})["split"] == "dataset"
    with pytest.raises(ConfigError, match="leave-one-dataset-out fold"):
        require_grouped_fold(tmp_path / "fold_0")


def test_grouped_and_dataset_folds_do_not_mix_in_one_run_folder(tmp_path: Path) -> None:
    arrays = _two_site_arrays()
    run_grouped_cv(arrays, tmp_path, _record_fold, n_folds=2, seed=0)
    assert collect_cv_results(tmp_path, (), {})["split"] == "grouped"
    require_grouped_fold(tmp_path / "fold_0")  # a grouped fold passes
    with pytest.raises(ConfigError, match="already holds grouped-split folds"):
        run_grouped_cv(arrays, tmp_path, _record_fold, n_folds=0, seed=0, split="dataset")


@pytest.mark.parametrize(
    ("split", "datasets", "message"),
    [
        ("hospital", ["a", "b"], "Unknown CV split 'hospital'; valid splits are grouped, dataset"),
        ("dataset", ["a", "a"], "at least two datasets"),
    ],
)
def test_cv_folds_rejects_a_bad_split(split: str, datasets: list[str], message: str) -> None:
    arrays = make_tiny_arrays()
    arrays = replace(arrays, datasets=[datasets[index % 2] for index in range(len(arrays))])
    with pytest.raises(ConfigError, match=message):
        cv_folds(arrays, 2, 0, split)


def test_cv_card_section_keeps_summary_and_fold_headlines() -> None:
    cv = {
        "folds": [{"fold": 0, "n_val": 3, "dice_mean": 0.5, "per_image": [1, 2, 3]}],
        "summary": {"dice_mean": {"mean": 0.5, "sd": 0.0, "n": 1}},
        "config": {"epochs": 2},
    }
    section = cv_card_section(cv, "short run")
    assert section["per_fold"] == [{"fold": 0, "n_val": 3, "dice_mean": 0.5}]
    assert section["n_folds"] == 1 and section["config"] == {"epochs": 2}
    assert section["split"] == "grouped"


def test_cv_card_section_names_each_held_out_dataset(tmp_path: Path) -> None:
    run_grouped_cv(_two_site_arrays(), tmp_path, _record_fold, n_folds=0, seed=0, split="dataset")
    section = cv_card_section(collect_cv_results(tmp_path, (), {}), "sites")
    assert section["split"] == "dataset"
    assert [row["held_out_dataset"] for row in section["per_fold"]] == ["site-a", "site-b"]


def test_cv_card_section_without_folds_raises() -> None:
    with pytest.raises(ConfigError, match="holds no finished folds"):
        cv_card_section({"folds": [], "summary": {}}, "empty")


def test_config_from_saved_keeps_known_fields_and_drops_the_rest() -> None:
    from utils.training.common import config_from_saved
    from utils.training.segmentation import SegmenterTrainConfig

    saved = {"image_size": 96, "epochs": 8, "augment": {"enabled": False}, "removed_option": 1}
    config = config_from_saved(SegmenterTrainConfig, saved)
    assert (config.image_size, config.epochs) == (96, 8)
    assert config.augment.enabled  # nested settings stay at their defaults
