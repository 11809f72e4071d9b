from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest

from utils.augment_config import AugmentConfig
from utils.training.arrays import TrainingArrays
from utils.training.segmentation import (
    SegmenterTrainConfig,
    cross_validate_segmenter,
    train_final_segmenter,
)

TINY = {"image_size": 32, "base_filters": 4, "depth": 2, "batch_size": 8, "patience": 3}


def test_two_fold_cv_then_final_model(tiny_arrays: TrainingArrays, tmp_path: Path) -> None:
    config = SegmenterTrainConfig(epochs=2, augment=AugmentConfig(elastic_probability=0.0), **TINY)
    summary = cross_validate_segmenter(tiny_arrays, config, tmp_path, n_folds=2)
    assert summary["n_folds"] == 2
    for fold in summary["folds"]:
        assert 0.0 <= fold["dice_mean"] <= 1.0
        assert 0.1 <= fold["threshold"] <= 0.9
        assert 0.0 <= fold["dice_mean_untuned"] <= 1.0
        # Grouped CV: a patient is never on both sides.
        assert fold["n_train"] + fold["n_val"] == len(tiny_arrays)
    saved = json.loads((tmp_path / "cv.json").read_text())
    assert saved["summary"]["dice_mean"]["n"] == 2
    assert saved["summary"]["dice_mean_untuned"]["n"] == 2

    _model, postprocess = train_final_segmenter(tiny_arrays, config, tmp_path / "final")
    assert postprocess.threshold == pytest.approx(saved["summary"]["threshold"]["mean"])
    reloaded = keras.saving.load_model(tmp_path / "final" / "model.keras", compile=False)
    assert reloaded.output_shape == (None, 32, 32, 1)
    assert reloaded.dtype_policy.name == "float32"
