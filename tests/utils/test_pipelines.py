"""Tests of the in-memory tf.data pipelines and of loading records into arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.augment import AugmentConfig
from utils.datasets.records import DatasetRecord
from utils.errors import ConfigError
from utils.pipelines import (
    ULTRASOUND_CLASSES,
    build_classification_dataset,
    build_segmentation_dataset,
    encode_labels,
    load_examples,
)

COUNT, SIZE = 12, 32


@pytest.fixture
def arrays(rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """12 random uint8 32x32 gray images, 0/1 masks and class indices."""
    images = rng.integers(0, 256, (COUNT, SIZE, SIZE, 1), dtype=np.uint8)
    masks = (rng.random((COUNT, SIZE, SIZE, 1)) > 0.7).astype(np.uint8)
    labels = np.arange(COUNT) % 3
    return images, masks, labels


def collect(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(first.numpy(), second.numpy()) for first, second in dataset]


# --------------------------------------------------------------------------- labels


def test_encode_labels_maps_names_to_indices() -> None:
    encoded = encode_labels(["benign", "normal", "malignant", "benign"])
    np.testing.assert_array_equal(encoded, [1, 0, 2, 1])
    assert encoded.dtype == np.int64
    assert ULTRASOUND_CLASSES == ("normal", "benign", "malignant")


def test_encode_labels_rejects_unknown_label_listing_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"'Benign'.*allowed: normal, benign, malignant"):
        encode_labels(["benign", "Benign"])
    with pytest.raises(ConfigError, match="'None'"):
        encode_labels([None])
    with pytest.raises(ConfigError, match="duplicates"):
        encode_labels(["a"], class_names=("a", "a"))


# ------------------------------------------------------------------------- datasets


def test_segmentation_dataset_shapes_dtypes_and_values(arrays) -> None:
    images, masks, _ = arrays
    dataset = build_segmentation_dataset(images, masks, batch_size=8, training=True, seed=1)
    batches = collect(dataset)
    assert [len(image) for image, _ in batches] == [8, 4]
    image, mask = batches[0]
    assert image.shape == (8, SIZE, SIZE, 1) and image.dtype == np.float32
    assert mask.shape == (8, SIZE, SIZE, 1) and mask.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert set(np.unique(mask)) <= {0.0, 1.0}


def test_evaluation_dataset_keeps_order_and_exact_values(arrays) -> None:
    images, masks, labels = arrays
    batches = collect(
        build_segmentation_dataset(images, masks[..., 0], batch_size=6, training=False)
    )
    np.testing.assert_allclose(np.concatenate([b[0] for b in batches]), images / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), masks)
    batches = collect(build_classification_dataset(images, labels, batch_size=6, training=False))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)


def test_classification_dataset_labels_and_one_hot(arrays) -> None:
    images, _, labels = arrays
    dataset = build_classification_dataset(
        images, labels, batch_size=5, training=True, seed=0, num_classes=3, one_hot=True
    )
    batches = collect(dataset)
    assert batches[0][0].shape == (5, SIZE, SIZE, 1)
    assert batches[0][1].shape == (5, 3)
    stacked = np.concatenate([label for _, label in batches])
    # Shuffled, but every example appears once per epoch.
    np.testing.assert_array_equal(np.bincount(stacked.argmax(axis=1)), np.bincount(labels))


def test_same_seed_gives_identical_batches_and_epochs_differ(arrays) -> None:
    images, masks, _ = arrays
    first = build_segmentation_dataset(images, masks, batch_size=8, training=True, seed=5)
    second = build_segmentation_dataset(images, masks, batch_size=8, training=True, seed=5)
    other = build_segmentation_dataset(images, masks, batch_size=8, training=True, seed=6)
    epoch_one, epoch_one_again = collect(first), collect(second)
    for (image_a, mask_a), (image_b, mask_b) in zip(epoch_one, epoch_one_again, strict=True):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(mask_a, mask_b)
    assert not np.array_equal(collect(first)[0][0], epoch_one[0][0])  # new epoch, new draws
    assert not np.array_equal(collect(other)[0][0], epoch_one[0][0])


def test_disabled_augmentation_only_shuffles(arrays) -> None:
    images, masks, _ = arrays
    dataset = build_segmentation_dataset(
        images, masks, batch_size=COUNT, training=True, seed=2,
        augment_config=AugmentConfig(enabled=False),
    )  # fmt: skip
    ((batch_images, _),) = collect(dataset)
    original = {image.tobytes() for image in images.astype(np.float32) / 255.0}
    assert {image.tobytes() for image in batch_images} == original


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"labels": np.arange(COUNT - 1) % 3}, f"Got {COUNT} images but {COUNT - 1} labels"),
        ({"labels": np.array(["benign"] * COUNT)}, "use encode_labels"),
        ({"one_hot": True}, "one_hot=True needs num_classes"),
        ({"num_classes": 2}, r"class indices in 0\.\.1"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"shuffle_buffer": 0}, "shuffle_buffer must be at least 1"),
    ],
)
def test_classification_dataset_rejects_bad_options(arrays, kwargs, message) -> None:
    images, _, labels = arrays
    options = {"labels": labels, "batch_size": 4, "training": True, "seed": 0} | kwargs
    with pytest.raises(ConfigError, match=message):
        build_classification_dataset(images, **options)


def test_segmentation_dataset_rejects_bad_masks_and_images(arrays) -> None:
    images, masks, _ = arrays
    with pytest.raises(ConfigError, match="Got 12 images but 11 masks"):
        build_segmentation_dataset(images, masks[:11], batch_size=4, training=False)
    with pytest.raises(ConfigError, match=r"only 0 and 1.*divide by 255"):
        build_segmentation_dataset(images, masks * 255, batch_size=4, training=False)
    with pytest.raises(ConfigError, match="masks are 16x16"):
        build_segmentation_dataset(images, masks[:, :16, :16], batch_size=4, training=False)
    with pytest.raises(ConfigError, match=r"C = 1 or 3.*\(12, 32, 32, 2\)"):
        build_segmentation_dataset(np.repeat(images, 2, -1), masks, batch_size=4, training=False)
    with pytest.raises(ConfigError, match="images is empty"):
        build_segmentation_dataset(images[:0], masks[:0], batch_size=4, training=False)


# -------------------------------------------------------------------------- loading


def write_example(folder: Path, name: str, rng: np.random.Generator) -> DatasetRecord:
    """A 60x80 RGB-mode PNG with gray content and an L-mode 0/255 mask of a rectangle."""
    gray = rng.integers(0, 256, (60, 80), dtype=np.uint8)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(folder / f"{name}.png")
    mask = np.zeros((60, 80), dtype=np.uint8)
    mask[10:40, 20:60] = 255
    Image.fromarray(mask).save(folder / f"{name}_mask.png")
    return DatasetRecord(
        image_path=folder / f"{name}.png",
        label="benign",
        mask_paths=(folder / f"{name}_mask.png",),
    )


def test_load_examples_resizes_images_and_masks(tmp_path, rng) -> None:
    records = [write_example(tmp_path, f"case{index}", rng) for index in range(3)]
    records.append(DatasetRecord(image_path=records[0].image_path, label="normal"))  # no mask
    images, masks = load_examples(records, (30, 40), channels=1, with_masks=True)
    assert images.shape == (4, 30, 40, 1) and images.dtype == np.uint8
    assert masks is not None and masks.shape == (4, 30, 40, 1) and masks.dtype == np.uint8
    assert set(np.unique(masks)) == {0, 1}
    assert masks[0, 5:20, 10:30].all() and masks[0].sum() == 15 * 20  # nearest: exact half
    assert masks[3].sum() == 0
    rgb, no_masks = load_examples(records[:1], (30, 40), channels=3)
    assert rgb.shape == (1, 30, 40, 3) and no_masks is None
    np.testing.assert_array_equal(rgb[0, ..., 0], images[0, ..., 0])


@pytest.mark.parametrize(
    ("image_size", "channels", "message"),
    [
        ((0, 32), 1, r"image_size must be \(height, width\).*got \(0, 32\)"),
        ((32,), 1, "image_size must be"),
        ((32.0, 32), 1, "image_size must be"),
        ((32, 32), 2, "channels must be 1 .* or 3 .*got 2"),
    ],
)
def test_load_examples_rejects_bad_options(image_size, channels, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_examples([], image_size, channels=channels)


# ------------------------------------------------------------------------ real data


@pytest.mark.real_data
def test_real_busi_records_through_segmentation_pipeline(shared_datasets) -> None:
    folder = shared_datasets / "busi" / "Dataset_BUSI_with_GT" / "benign"
    # Some numbers (e.g. "benign (1)") are held back, so take the first 8 that are here.
    numbers = sorted(
        int(path.stem.split("(")[1].rstrip(")")) for path in folder.glob("benign (*).png")
    )[:8]
    if len(numbers) < 8:
        pytest.skip(f"fewer than 8 BUSI benign images in {folder}")
    records = []
    for number in numbers:
        stem = f"benign ({number})"
        mask_paths = tuple(sorted(folder.glob(f"{stem}_mask*.png")))
        records.append(
            DatasetRecord(folder / f"{stem}.png", "benign", mask_paths, f"busi:{number}", "busi")
        )
    images, masks = load_examples(records, (128, 128), channels=1, with_masks=True)
    assert masks is not None and masks.reshape(len(records), -1).max(axis=1).min() == 1
    dataset = build_segmentation_dataset(images, masks, batch_size=8, training=True, seed=0)
    batch_images, batch_masks = next(iter(dataset))
    assert batch_images.shape == (8, 128, 128, 1)
    assert batch_masks.shape == (8, 128, 128, 1)
    assert set(np.unique(batch_masks.numpy())) == {0.0, 1.0}
    assert float(batch_images.numpy().min()) >= 0.0 and float(batch_images.numpy().max()) <= 1.0
    # Lesions stay a plausible share of the image after augmentation.
    lesion_share = batch_masks.numpy().mean(axis=(1, 2, 3))
    assert (lesion_share > 0.0).all() and (lesion_share < 0.8).all()
