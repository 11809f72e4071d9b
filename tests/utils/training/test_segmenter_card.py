from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.utils.training.conftest import make_tiny_arrays
from utils.augment_config import AugmentConfig
from utils.errors import ConfigError
from utils.inference.segmenter import LesionSegmenter
from utils.postprocess import PostprocessConfig
from utils.train import main
from utils.training.arrays import TrainingArrays
from utils.training.segmentation import (
    SegmenterTrainConfig,
    cross_validate_segmenter,
    train_final_segmenter,
)
from utils.training.segmenter_card import (
    native_resolution_section,
    pooled_section,
    ship_segmenter,
)

TINY = {"image_size": 32, "base_filters": 4, "depth": 2, "batch_size": 8, "patience": 3}
CONFIG = SegmenterTrainConfig(epochs=1, augment=AugmentConfig(enabled=False), **TINY)


def _on_disk(arrays: TrainingArrays, folder: Path) -> tuple[TrainingArrays, dict]:
    """The arrays' images and masks written at twice their size, as a dataset would hold them."""
    folder.mkdir(parents=True, exist_ok=True)
    sources, mask_paths = [], {}
    for index, (image, mask) in enumerate(zip(arrays.images, arrays.masks, strict=True)):
        source = folder / f"img{index}.png"
        cv2.imwrite(str(source), cv2.resize(image, (64, 64), interpolation=cv2.INTER_NEAREST))
        sources.append(str(source))
        if mask.any():
            mask_path = folder / f"img{index}_mask.png"
            big = cv2.resize(mask[..., 0] * 255, (64, 64), interpolation=cv2.INTER_NEAREST)
            cv2.imwrite(str(mask_path), big)
            mask_paths[str(source)] = [mask_path]
    return replace(arrays, sources=sources), mask_paths


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainingArrays, dict]:
    """A finished 2-fold CV plus final model, and its images written to disk."""
    root = tmp_path_factory.mktemp("ship_seg")
    arrays, mask_paths = _on_disk(make_tiny_arrays(), root / "data")
    cross_validate_segmenter(arrays, CONFIG, root / "run", n_folds=2)
    train_final_segmenter(arrays, CONFIG, root / "run" / "final")
    return root / "run", arrays, mask_paths


def test_ship_writes_a_loadable_bundle_with_pooled_out_of_fold_scores(
    shipped_run: tuple[Path, TrainingArrays, dict], tmp_path: Path
) -> None:
    run, arrays, mask_paths = shipped_run
    path = ship_segmenter(
        run, arrays, CONFIG, mask_paths, models_dir=tmp_path, status="test", limitations=["tiny"]
    )
    card = json.loads((tmp_path / "ultrasound_segmenter.json").read_text())
    cv = json.loads((run / "cv.json").read_text())
    assert card["postprocess"]["threshold"] == pytest.approx(cv["summary"]["threshold"]["mean"])
    assert card["cv"]["n_folds"] == 2 and card["status"] == "test"
    assert card["training_data"]["n_images"] == len(arrays)
    n_lesion = sum(label != "normal" for label in arrays.labels)
    for resolution in ("model_resolution", "native_resolution"):
        scores = card["cv_pooled"][resolution]
        assert scores["lesion_dice"]["n_images"] == n_lesion
        assert scores["normal_false_positive_rate"]["n_images"] == len(arrays) - n_lesion
        low, high = scores["lesion_dice"]["ci95"]
        assert low <= scores["lesion_dice"]["mean"] <= high
    assert "measurement_agreement" in card["cv_pooled"]["native_resolution"]
    headline = card["cv_pooled"]["metrics"]
    assert headline["n"] == len(arrays)
    native = card["cv_pooled"]["native_resolution"]
    assert headline["lesion_dice"] == native["lesion_dice"]["mean"]
    assert (
        headline["ci95"]["normal_false_positive_rate"]
        == native["normal_false_positive_rate"]["ci95"]
    )
    assert len(card["cv"]["folds"]) == 2 and "dice_mean" in card["cv"]["summary"]
    segmenter = LesionSegmenter.from_bundle(path, warm_up=False)
    assert segmenter.threshold == pytest.approx(card["postprocess"]["threshold"])


def test_pooled_scores_are_exact_and_resample_whole_groups() -> None:
    arrays = make_tiny_arrays()
    truths = arrays.masks[..., 0].astype(bool)
    masks = truths.copy()
    first_lesion = next(i for i, label in enumerate(arrays.labels) if label != "normal")
    rows = np.nonzero(truths[first_lesion].any(axis=1))[0]
    masks[first_lesion, rows[: len(rows) // 2]] = False  # half the lesion: Dice 2/3
    masks[0, :4, :4] = True  # image 0 is normal: one false mask
    scores = pooled_section(masks, truths, arrays)
    n_lesion = sum(label != "normal" for label in arrays.labels)
    assert scores["lesion_dice"]["mean"] == pytest.approx(
        (n_lesion - 1 + 2 / 3) / n_lesion, abs=1e-4
    )
    assert scores["normal_false_positive_rate"]["mean"] == pytest.approx(1 / 6, abs=1e-4)
    assert scores["normal_false_positive_rate"]["n_groups"] == 6
    assert scores["lesion_dice_by_label"]["malignant"] == 1.0
    low, high = scores["normal_false_positive_rate"]["ci95"]
    assert low == 0.0 and 1 / 6 < high < 1.0


def test_native_scores_upsample_the_map_before_thresholding(tmp_path: Path) -> None:
    arrays, mask_paths = _on_disk(make_tiny_arrays(), tmp_path)
    maps = arrays.masks[..., 0].astype(np.float32)  # a perfect 32-px map
    section = native_resolution_section(
        arrays, maps, np.full(len(arrays), 0.5), mask_paths, PostprocessConfig()
    )
    assert section["lesion_dice"]["mean"] > 0.95
    assert section["normal_false_positive_rate"]["mean"] == 0.0
    agreement = section["measurement_agreement"]
    assert agreement["n_images"] == sum(label != "normal" for label in arrays.labels)
    assert abs(agreement["longest_diameter"]["median"]) < 0.1
    roughness = agreement["descriptors"]["boundary_roughness"]
    assert roughness["n"] == agreement["n_images"]
    assert roughness["median_absolute_difference"] < 0.1
    # Measured on the images too, so the echo descriptors are compared.
    assert agreement["descriptors"]["mean_echogenicity_ratio"]["n"] == agreement["n_images"]


def test_native_scores_refuse_a_lesion_image_without_its_mask_file(tmp_path: Path) -> None:
    arrays, mask_paths = _on_disk(make_tiny_arrays(), tmp_path)
    maps = arrays.masks[..., 0].astype(np.float32)
    del mask_paths[arrays.sources[1]]  # image 1 has a lesion
    with pytest.raises(ConfigError, match=r"img1.png has a lesion mask in the training arrays"):
        native_resolution_section(
            arrays, maps, np.full(len(arrays), 0.5), mask_paths, PostprocessConfig()
        )


def test_shipping_an_unfinished_run_is_rejected(tmp_path: Path) -> None:
    arrays = make_tiny_arrays()
    with pytest.raises(ConfigError, match=r"cv.json is missing: run the CV and --final first"):
        ship_segmenter(tmp_path, arrays, CONFIG, {}, models_dir=tmp_path / "models")
    (tmp_path / "cv.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"final/model.keras is missing"):
        ship_segmenter(tmp_path, arrays, CONFIG, {}, models_dir=tmp_path / "models")


def test_shipping_needs_the_masks(
    shipped_run: tuple[Path, TrainingArrays, dict], tmp_path: Path
) -> None:
    run, arrays, _ = shipped_run
    with pytest.raises(ConfigError, match="needs the masks; the arrays hold none"):
        ship_segmenter(run, replace(arrays, masks=None), CONFIG, {}, models_dir=tmp_path)


def test_cli_ship_segmenter_needs_the_original_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["ship-segmenter", "--arrays", str(tmp_path / "a.npz"), "--out", str(tmp_path)]
    assert main(command) == 2
    assert "ship-segmenter needs --data, not --arrays" in capsys.readouterr().err
    assert main(["ship-segmenter", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "cv.json is missing: --out must be a finished segment run" in capsys.readouterr().err
