from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest

from utils.augment_config import AugmentConfig
from utils.errors import ConfigError
from utils.inference.segmenter import LesionSegmenter
from utils.training.arrays import TrainingArrays
from utils.training.segmentation import (
    SegmenterTrainConfig,
    build_and_compile,
    cross_validate_segmenter,
    oversample_normals,
    train_final_segmenter,
)

TINY = {"image_size": 32, "base_filters": 4, "depth": 2, "batch_size": 8, "patience": 3}


def test_two_fold_cv_then_final_model(tiny_arrays: TrainingArrays, tmp_path: Path) -> None:
    config = SegmenterTrainConfig(
        epochs=2, normal_oversample=2, augment=AugmentConfig(elastic_probability=0.0), **TINY
    )
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
    # The run's final model loads by path like a bundle (its minimal card beside it).
    segmenter = LesionSegmenter.from_bundle(tmp_path / "final" / "model.keras", warm_up=False)
    assert segmenter.threshold == pytest.approx(postprocess.threshold)
    assert segmenter.input_shape == (32, 32, 1)


def test_presence_loss_uses_the_postprocess_blob_size() -> None:
    config = SegmenterTrainConfig(
        loss="dice_bce_presence", min_component_area_fraction=0.01, presence_weight=0.2, **TINY
    )
    model = build_and_compile(config, steps_per_epoch=1)
    assert model.loss.get_config()["min_area_fraction"] == 0.01
    assert model.loss.get_config()["presence_weight"] == 0.2


def test_boundary_loss_gets_its_weight_and_the_presence_options_stay_out() -> None:
    config = SegmenterTrainConfig(
        loss="dice_bce_boundary", boundary_weight=0.4, presence_weight=0.2, **TINY
    )
    loss_config = build_and_compile(config, steps_per_epoch=1).loss.get_config()
    assert loss_config["name"] == "dice_bce_boundary_loss"
    assert loss_config["boundary_weight"] == 0.4
    assert "presence_weight" not in loss_config


def test_oversampling_repeats_only_the_empty_mask_images(tiny_arrays: TrainingArrays) -> None:
    empty = ~tiny_arrays.masks.reshape(len(tiny_arrays), -1).any(axis=1)
    assert oversample_normals(tiny_arrays, 1) is tiny_arrays
    grown = oversample_normals(tiny_arrays, 3)
    assert len(grown) == len(tiny_arrays) + 2 * int(empty.sum())
    grown_empty = ~grown.masks.reshape(len(grown), -1).any(axis=1)
    assert int(grown_empty.sum()) == 3 * int(empty.sum())
    assert grown.labels.count("normal") == 3 * tiny_arrays.labels.count("normal")
    # Lesion images keep their single copy.
    assert int((~grown_empty).sum()) == int((~empty).sum())


@pytest.mark.parametrize("factor", [0, -2, 1.5, True])
def test_oversampling_factor_must_be_a_positive_integer(
    tiny_arrays: TrainingArrays, factor: object
) -> None:
    with pytest.raises(
        ConfigError, match=f"normal_oversample must be a positive integer; received {factor!r}"
    ):
        oversample_normals(tiny_arrays, factor)  # type: ignore[arg-type]


def test_oversampling_needs_masks(tiny_arrays: TrainingArrays) -> None:
    from dataclasses import replace

    with pytest.raises(ConfigError, match="needs masks"):
        oversample_normals(replace(tiny_arrays, masks=None), 2)
