from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.utils.training.conftest import make_tiny_arrays
from utils.augment_config import AugmentConfig
from utils.errors import ConfigError
from utils.inference.classifier import LesionClassifier
from utils.models.segmentation import build_segmentation_model
from utils.train import main
from utils.training.arrays import TrainingArrays
from utils.training.classification import ClassifierTrainConfig
from utils.training.mask_guided import (
    cross_validate_mask_guided,
    fold_probability_maps,
    mask_guided_images,
    ship_mask_guided,
    train_final_mask_guided,
)
from utils.training.segmentation import SegmenterTrainConfig, cross_validate_segmenter

SEG_TINY = {"image_size": 32, "base_filters": 4, "depth": 2, "batch_size": 8, "patience": 3}
CLS_TINY = {
    "arch": "compact_cnn",
    "image_size": 32,
    "batch_size": 8,
    "patience": 3,
    "dropout": 0.1,
    "epochs": 1,
    "evaluate_tta": False,
    "augment": AugmentConfig(elastic_probability=0.0),
}


def test_channels_are_image_probability_and_dilated_lesion_view() -> None:
    images = np.full((1, 50, 50, 1), 100, np.uint8)
    probability = np.zeros((1, 50, 50), np.float32)
    probability[0, 20:30, 20:30] = 0.9
    probability[0, 0, 0] = 0.3  # below the threshold: not in the lesion view
    stacked = mask_guided_images(images, probability, threshold=0.5)
    assert stacked.shape == (1, 50, 50, 3) and stacked.dtype == np.uint8
    np.testing.assert_array_equal(stacked[0, ..., 0], images[0, ..., 0])
    assert stacked[0, 25, 25, 1] == round(0.9 * 255) and stacked[0, 0, 0, 1] == round(0.3 * 255)
    view = stacked[0, ..., 2]
    assert view[25, 25] == 100
    assert view[18, 25] == 100  # the margin around the lesion is kept (dilation)
    assert view[0, 0] == 0 and view[45, 45] == 0  # far tissue is blanked


def test_an_empty_prediction_gives_an_empty_lesion_view() -> None:
    images = np.full((2, 16, 16, 1), 80, np.uint8)
    stacked = mask_guided_images(images, np.zeros((2, 16, 16), np.float32))
    assert not stacked[..., 1:].any()


@pytest.mark.parametrize(
    ("images", "maps", "match"),
    [
        (
            np.zeros((2, 16, 16, 3), np.uint8),
            np.zeros((2, 16, 16)),
            r"\(N, H, W, 1\).*\(2, 16, 16, 3\)",
        ),
        (np.zeros((2, 16, 16, 1), np.uint8), np.zeros((2, 8, 8)), r"\(2, 16, 16\).*\(2, 8, 8\)"),
    ],
)
def test_mismatched_shapes_are_rejected(images: np.ndarray, maps: np.ndarray, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        mask_guided_images(images, maps)


@pytest.fixture(scope="module")
def segmenter_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-fold segmenter CV run on ``tiny_arrays`` (trained once per module)."""
    out = tmp_path_factory.mktemp("seg")
    config = SegmenterTrainConfig(epochs=1, augment=AugmentConfig(enabled=False), **SEG_TINY)
    cross_validate_segmenter(make_tiny_arrays(), config, out, n_folds=2)
    return out


def test_cv_uses_each_folds_own_segmenter(
    tiny_arrays: TrainingArrays, segmenter_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cls"
    cv = cross_validate_mask_guided(
        tiny_arrays, ClassifierTrainConfig(**CLS_TINY), out, segmenter_run, n_folds=2
    )
    assert cv["n_folds"] == 2
    assert cv["config"]["channels"] == 3
    assert cv["mask_source"] == str(segmenter_run)
    saved = json.loads((out / "cv.json").read_text())
    assert saved["summary"]["accuracy"]["n"] == 2
    for fold in saved["folds"]:
        assert fold["n_train"] + fold["n_val"] == len(tiny_arrays)
    # The two folds' segmenters differ, so their maps of the same images differ.
    maps_0, _ = fold_probability_maps(tiny_arrays, segmenter_run, 0, saved["folds"][0]["n_val"])
    maps_1, _ = fold_probability_maps(tiny_arrays, segmenter_run, 1, saved["folds"][1]["n_val"])
    assert maps_0.shape == (len(tiny_arrays), 32, 32)
    assert not np.allclose(maps_0, maps_1)

    # Final model (segmenter embedded) and the shipped bundle with out-of-fold metrics.
    segmenter = build_segmentation_model("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)
    config = ClassifierTrainConfig(**CLS_TINY)
    model = train_final_mask_guided(tiny_arrays, segmenter, 0.5, config, out / "final")
    assert model.input_shape == (None, 32, 32, 1)
    final = json.loads((out / "final" / "final.json").read_text())
    assert final["input_shape"] == [32, 32, 1] and final["head_input_shape"] == [32, 32, 3]
    assert final["temperature"] == pytest.approx(cv["summary"]["temperature"]["mean"])
    models_dir = tmp_path / "models"
    path = ship_mask_guided(
        out, tiny_arrays, config, segmenter_run, name="guided", models_dir=models_dir
    )
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["input_shape"] == [32, 32, 1]
    assert card["cv_pooled"]["metrics"]["n"] == len(tiny_arrays)
    classifier = LesionClassifier.from_bundle("guided", models_dir=models_dir)
    [result] = classifier.predict([tiny_arrays.images[0]], with_uncertainty=True)
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert result.refer is not None


def test_a_segmenter_run_with_other_folds_is_rejected(
    tiny_arrays: TrainingArrays, segmenter_run: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="do not share folds"):
        cross_validate_mask_guided(
            tiny_arrays, ClassifierTrainConfig(**CLS_TINY), tmp_path / "c", segmenter_run, n_folds=3
        )


def test_a_segmenter_run_of_another_image_size_is_rejected(
    tiny_arrays: TrainingArrays, segmenter_run: Path
) -> None:
    small = TrainingArrays(
        images=tiny_arrays.images[:, :16, :16],
        masks=None,
        labels=tiny_arrays.labels,
        groups=tiny_arrays.groups,
        sources=tiny_arrays.sources,
        datasets=tiny_arrays.datasets,
    )
    n_val = json.loads((segmenter_run / "fold_0" / "metrics.json").read_text())["n_val"]
    with pytest.raises(ConfigError, match="32 px but the images are 16 px"):
        fold_probability_maps(small, segmenter_run, 0, n_val)


def test_a_leave_one_dataset_out_segmenter_run_is_rejected(
    tiny_arrays: TrainingArrays, segmenter_run: Path, tmp_path: Path
) -> None:
    by_site = tmp_path / "by_site"
    shutil.copytree(segmenter_run, by_site)
    metrics_path = by_site / "fold_0" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics_path.write_text(json.dumps({**metrics, "held_out_dataset": "site-a"}))
    with pytest.raises(ConfigError, match="is a leave-one-dataset-out fold"):
        fold_probability_maps(tiny_arrays, by_site, 0, metrics["n_val"])


def test_missing_segmenter_run_and_fold_are_rejected(
    tiny_arrays: TrainingArrays, segmenter_run: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"cv.json is missing"):
        fold_probability_maps(tiny_arrays, tmp_path / "nowhere", 0, 12)
    with pytest.raises(ConfigError, match="fold_5 has no finished segmenter fold"):
        fold_probability_maps(tiny_arrays, segmenter_run, 5, 12)


def test_cli_mask_guided_needs_folds_or_final(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["classify", "--arrays", str(tmp_path / "any.npz"), "--out", str(tmp_path / "o")]
    assert main([*command, "--mask-guided-from", str(tmp_path)]) == 2
    assert "needs --folds K and/or --final" in capsys.readouterr().err


def test_cli_mask_guided_reads_grey_scale_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["classify", "--arrays", str(tmp_path / "any.npz"), "--out", str(tmp_path / "o")]
    assert main([*command, "--mask-guided-from", str(tmp_path), "--final", "--channels", "3"]) == 2
    assert "reads grey-scale images; received --channels 3" in capsys.readouterr().err


def test_final_model_needs_images_at_the_segmenter_size(tmp_path: Path) -> None:
    arrays = make_tiny_arrays()
    segmenter = build_segmentation_model("unet", input_shape=(64, 64, 1), base_filters=4, depth=2)
    with pytest.raises(ConfigError, match=r"images are \(32, 32, 1\) but the segmenter takes"):
        train_final_mask_guided(
            arrays, segmenter, 0.5, ClassifierTrainConfig(**CLS_TINY), tmp_path / "final"
        )


def test_shipping_a_run_without_cv_and_final_model_is_rejected(
    tiny_arrays: TrainingArrays, segmenter_run: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"cv.json is missing: run the CV and --final first"):
        ship_mask_guided(
            tmp_path / "empty_run",
            tiny_arrays,
            ClassifierTrainConfig(**CLS_TINY),
            segmenter_run,
            models_dir=tmp_path / "models",
        )
