"""H&E patch training: readers -> arrays -> histology feeds -> training -> bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.utils.training.patch_folders import write_breakhis_folder, write_pcam_folder
from utils.errors import ConfigError, DatasetError, ImageDimensionError
from utils.inference.bundle import load_bundle
from utils.inference.classifier import LesionClassifier
from utils.training.arrays import TrainingArrays
from utils.training.patch import patch_train_config, train_patch_classifier
from utils.training.patch_data import (
    BREAKHIS_SUBTYPE_CLASSES,
    load_patch_arrays,
    patch_class_names,
)
from utils.training.patch_feeds import (
    PatchAugmentConfig,
    augment_patch,
    augment_patch_batch,
    build_patch_dataset,
)

PCAM_LABELS = [0, 1, 0, 1, 0, 1, 0, 1]


@pytest.fixture
def pcam_dir(tmp_path: Path) -> Path:
    return write_pcam_folder(tmp_path / "pcam", PCAM_LABELS)


@pytest.fixture
def breakhis_dir(tmp_path: Path) -> Path:
    return write_breakhis_folder(tmp_path / "breakhis")


# ----------------------------------------------------------------------------- data


def test_pcam_arrays_are_native_96px_rgb_with_one_group_per_patch(pcam_dir: Path) -> None:
    arrays = load_patch_arrays("pcam", [pcam_dir])
    assert arrays.images.shape == (8, 96, 96, 3) and arrays.images.dtype == np.uint8
    assert arrays.labels == ["normal", "tumour"] * 4  # the unlabelled test/ patch is left out
    assert len(set(arrays.groups)) == 8
    assert set(arrays.datasets) == {"pcam"}


def test_breakhis_arrays_group_by_patient_and_resize_to_square(breakhis_dir: Path) -> None:
    arrays = load_patch_arrays("breakhis", [breakhis_dir], image_size=32)
    assert arrays.images.shape == (10, 32, 32, 3)
    assert arrays.labels.count("benign") == 5 and arrays.labels.count("malignant") == 5
    # Patients 25197 and 2523 have two images each: 8 groups for 10 images.
    assert len(set(arrays.groups)) == 8


def test_breakhis_subtypes_label_by_subtype(breakhis_dir: Path) -> None:
    arrays = load_patch_arrays("breakhis", [breakhis_dir], image_size=32, subtypes=True)
    assert set(arrays.labels) == set(BREAKHIS_SUBTYPE_CLASSES)
    assert patch_class_names("breakhis", subtypes=True) == BREAKHIS_SUBTYPE_CLASSES


def test_arrays_are_cached_and_reused(pcam_dir: Path, tmp_path: Path) -> None:
    first = load_patch_arrays("pcam", [pcam_dir], cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("patches_*.npz"))) == 1
    second = load_patch_arrays("pcam", [pcam_dir], cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.images, second.images)


def test_wrong_pcam_patch_size_is_rejected(pcam_dir: Path) -> None:
    path = next((pcam_dir / "train").glob("*.tif"))
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    with pytest.raises(ImageDimensionError, match=r"64x64 px .* must be 96x96 RGB"):
        load_patch_arrays("pcam", [pcam_dir])


def test_unknown_dataset_name_is_rejected(pcam_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown patch dataset 'camelyon'.*pcam, breakhis"):
        load_patch_arrays("camelyon", [pcam_dir])


def test_empty_folder_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        load_patch_arrays("breakhis", [tmp_path / "empty"])


def test_no_folder_is_rejected() -> None:
    with pytest.raises(DatasetError, match="pass at least one --data"):
        load_patch_arrays("pcam", [])


def test_subtypes_on_pcam_are_rejected(pcam_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"--subtypes needs subtype labels.*normal / tumour"):
        load_patch_arrays("pcam", [pcam_dir], subtypes=True)


def test_bad_image_size_is_rejected(pcam_dir: Path) -> None:
    with pytest.raises(ConfigError, match="image_size must be an integer from 16 to 1024"):
        load_patch_arrays("pcam", [pcam_dir], image_size=8)


# ----------------------------------------------------------------------------- feeds


def _no_colour_jitter() -> PatchAugmentConfig:
    return PatchAugmentConfig(
        brightness_delta=0.0, contrast_range=(1, 1), saturation_range=(1, 1), hue_delta=0.0
    )


def test_dihedral_augmentation_moves_pixels_without_changing_them() -> None:
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    orientations = set()
    for seed in range(12):
        out = augment_patch(image, [seed, 1], _no_colour_jitter()).numpy()
        np.testing.assert_array_equal(np.sort(out, axis=None), np.sort(image, axis=None))
        orientations.add(out.tobytes())
    assert len(orientations) >= 4  # several of the 8 dihedral orientations were drawn


def test_every_patch_of_a_batch_gets_its_own_draws() -> None:
    image = np.random.default_rng(3).random((16, 16, 3)).astype(np.float32)
    batch = augment_patch_batch(np.stack([image] * 8), [7, 7]).numpy()
    assert len({patch.tobytes() for patch in batch}) == 8
    np.testing.assert_array_equal(batch, augment_patch_batch(np.stack([image] * 8), [7, 7]))


def test_colour_jitter_changes_colours_within_unit_range() -> None:
    image = np.full((8, 8, 3), 0.5, np.float32)
    out = augment_patch(image, [3, 4], PatchAugmentConfig(dihedral=False)).numpy()
    assert not np.allclose(out, image)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_stain_hook_is_applied_last() -> None:
    image = np.random.default_rng(1).random((8, 8, 3)).astype(np.float32)
    seen = []

    def invert(patch, seed):
        seen.append(tuple(seed.shape))
        return 1.0 - patch

    config = PatchAugmentConfig(enabled=True, dihedral=False, **_no_jitter_kwargs())
    out = augment_patch(image, [0, 0], config, stain_augment=invert).numpy()
    np.testing.assert_allclose(out, 1.0 - image, atol=1e-6)
    assert seen == [(2,)]


def _no_jitter_kwargs() -> dict:
    return {
        "brightness_delta": 0.0,
        "contrast_range": (1, 1),
        "saturation_range": (1, 1),
        "hue_delta": 0.0,
    }


def test_patch_dataset_is_reproducible_and_reshuffles_each_epoch() -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(10) % 2

    def epoch(dataset):
        return np.concatenate([batch.numpy() for batch, _ in dataset])

    first = build_patch_dataset(images, labels, batch_size=4, training=True, seed=5)
    again = build_patch_dataset(images, labels, batch_size=4, training=True, seed=5)
    epoch_one = epoch(first)
    np.testing.assert_array_equal(epoch_one, epoch(again))
    assert not np.array_equal(epoch_one, epoch(first))  # new draws in epoch two
    assert epoch_one.shape == (10, 16, 16, 3) and 0 <= epoch_one.min() <= epoch_one.max() <= 1
    evaluation = build_patch_dataset(images, labels, batch_size=4, training=False)
    np.testing.assert_allclose(epoch(evaluation), images / 255.0, atol=1e-6)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("contrast_range", (1.2, 0.8), "contrast_range must be"),
        ("saturation_range", (-1, 1), "saturation_range must be"),
        ("hue_delta", 0.9, "hue_delta must be in"),
        ("brightness_delta", 2.0, "brightness_delta must be in"),
    ],
)
def test_bad_augment_settings_are_rejected(option: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PatchAugmentConfig(**{option: value})


# ----------------------------------------------------------------------------- training


def _tiny_config(dataset: str = "pcam", **overrides):
    options = {"image_size": 32, "epochs": 1, "batch_size": 4, "evaluate_tta": False}
    return patch_train_config(dataset, **{**options, **overrides})


def test_config_defaults_follow_the_dataset() -> None:
    pcam = patch_train_config("pcam")
    assert pcam.input_shape == (96, 96, 3) and pcam.class_names == ("normal", "tumour")
    assert pcam.arch == "compact_cnn"
    breakhis = patch_train_config("breakhis")
    assert breakhis.input_shape == (224, 224, 3)
    assert breakhis.class_names == ("benign", "malignant")


def test_unknown_architecture_is_rejected() -> None:
    with pytest.raises(ConfigError, match="Unknown classifier architecture 'resnet9'"):
        patch_train_config("pcam", arch="resnet9")


def test_single_class_training_data_is_rejected(pcam_dir: Path, tmp_path: Path) -> None:
    arrays = load_patch_arrays("pcam", [pcam_dir], image_size=32)
    normal_only = arrays.subset([i for i, label in enumerate(arrays.labels) if label == "normal"])
    with pytest.raises(DatasetError, match="only the class normal"):
        train_patch_classifier(normal_only, _tiny_config(), tmp_path / "run", dataset="pcam")


def test_final_training_writes_a_loadable_demonstration_bundle(
    pcam_dir: Path, tmp_path: Path
) -> None:
    arrays = load_patch_arrays("pcam", [pcam_dir], image_size=32)
    result = train_patch_classifier(
        arrays, _tiny_config(), tmp_path / "run", dataset="pcam", models_dir=tmp_path / "models"
    )
    bundle = result["bundle"]
    assert bundle == tmp_path / "models" / "pcam_patch_classifier.keras"
    assert (tmp_path / "run" / "final" / "pcam_patch_classifier.keras").is_file()
    model, card = load_bundle(bundle, task="classification")
    assert card["class_names"] == ["normal", "tumour"]
    assert card["input_shape"] == [32, 32, 3]
    assert "DEMONSTRATION ONLY" in card["status"]
    assert "from scratch on 8 shared sample patches" in card["status"]
    assert "NOT patient-level" in card["training_data"]["grouping"]
    assert card["full_data_command"].startswith("python -m utils.train patch --dataset pcam")
    assert (
        "NOT evidence of quality" in (tmp_path / "models" / "pcam_patch_classifier.md").read_text()
    )
    probabilities = LesionClassifier(model, card).predict_probabilities(arrays.images[:3])
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_breakhis_cross_validation_is_patient_level(breakhis_dir: Path, tmp_path: Path) -> None:
    arrays = load_patch_arrays("breakhis", [breakhis_dir], image_size=32)
    result = train_patch_classifier(
        arrays, _tiny_config("breakhis"), tmp_path / "run", dataset="breakhis", n_folds=2
    )
    folds = json.loads((tmp_path / "run" / "cv.json").read_text())["folds"]
    assert len(folds) == 2 and result["card"]["cv_folds"] == 2
    assert "Patient-level" in result["card"]["training_data"]["grouping"]
    groups = np.array(arrays.groups)
    from utils.training.common import grouped_cv_folds

    for train_idx, val_idx in grouped_cv_folds(arrays, 2, seed=0):
        assert not set(groups[train_idx]) & set(groups[val_idx])


def test_arrays_from_another_task_are_rejected(tmp_path: Path) -> None:
    arrays = TrainingArrays(
        images=np.zeros((4, 32, 32, 3), np.uint8),
        masks=None,
        labels=["benign", "malignant"] * 2,
        groups=list("abcd"),
        sources=list("abcd"),
        datasets=["x"] * 4,
    )
    with pytest.raises(DatasetError, match="not classes of this model"):
        train_patch_classifier(arrays, _tiny_config(), tmp_path / "run", dataset="pcam")


# ----------------------------------------------------------------------------- real data


@pytest.mark.real_data
def test_shared_pcam_sample_decodes_to_15_native_patches(shared_datasets: Path) -> None:
    arrays = load_patch_arrays("pcam", [shared_datasets / "pcam_sample"])
    assert arrays.images.shape == (15, 96, 96, 3)
    assert arrays.labels.count("normal") == 10 and arrays.labels.count("tumour") == 5
    assert len(set(arrays.groups)) == 15  # no patient ids in PCam


@pytest.mark.real_data
def test_shared_breakhis_sample_groups_12_images_into_9_patients(shared_datasets: Path) -> None:
    binary = load_patch_arrays("breakhis", [shared_datasets / "breakhis_sample"], image_size=64)
    assert binary.images.shape == (12, 64, 64, 3)
    assert binary.labels.count("benign") == 8 and binary.labels.count("malignant") == 4
    assert len(set(binary.groups)) == 9
    subtypes = load_patch_arrays(
        "breakhis", [shared_datasets / "breakhis_sample"], image_size=64, subtypes=True
    )
    assert set(subtypes.labels) == set(BREAKHIS_SUBTYPE_CLASSES)
