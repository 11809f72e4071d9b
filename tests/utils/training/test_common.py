"""Shared training helpers: the model-card block of a cross-validation run."""

from __future__ import annotations

import pytest

from utils.errors import ConfigError
from utils.training.common import cv_card_section


def test_cv_card_section_keeps_summary_and_fold_headlines() -> None:
    cv = {
        "folds": [{"fold": 0, "n_val": 3, "dice_mean": 0.5, "per_image": [1, 2, 3]}],
        "summary": {"dice_mean": {"mean": 0.5, "sd": 0.0, "n": 1}},
        "config": {"epochs": 2},
    }
    section = cv_card_section(cv, "short run")
    assert section["per_fold"] == [{"fold": 0, "n_val": 3, "dice_mean": 0.5}]
    assert section["n_folds"] == 1 and section["config"] == {"epochs": 2}


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
