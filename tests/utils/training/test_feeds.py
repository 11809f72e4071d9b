from __future__ import annotations

import numpy as np

from utils.augment_config import AugmentConfig
from utils.training.arrays import TrainingArrays
from utils.training.feeds import ArrayFeed, augment_pair


def test_batches_have_expected_shapes_and_ranges(tiny_arrays: TrainingArrays) -> None:
    feed = ArrayFeed(tiny_arrays.images, tiny_arrays.masks, batch_size=8, training=True, seed=1)
    assert len(feed) == 3
    images, masks = feed[0]
    assert images.shape == (8, 32, 32, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(np.unique(masks)) <= {0.0, 1.0}


def test_same_seed_gives_identical_batches(tiny_arrays: TrainingArrays) -> None:
    first = ArrayFeed(tiny_arrays.images, tiny_arrays.masks, batch_size=8, training=True, seed=3)
    second = ArrayFeed(tiny_arrays.images, tiny_arrays.masks, batch_size=8, training=True, seed=3)
    np.testing.assert_array_equal(first[1][0], second[1][0])
    other = ArrayFeed(tiny_arrays.images, tiny_arrays.masks, batch_size=8, training=True, seed=4)
    assert not np.array_equal(first[1][0], other[1][0])


def test_geometry_moves_image_and_mask_together() -> None:
    image = np.full((64, 64, 1), 200, np.uint8)
    mask = np.zeros((64, 64, 1), np.uint8)
    mask[12:42, 16:46] = 1
    image[mask == 1] = 10
    config = AugmentConfig(max_rotation_degrees=15, elastic_probability=1.0)
    for seed in range(20):
        warped, warped_mask = augment_pair(np.random.default_rng(seed), image, mask, config)
        dark = (warped[..., 0] < 100) & (warped[..., 0] > 0)
        lesion = warped_mask[..., 0] == 1
        overlap = (dark & lesion).sum() / max((dark | lesion).sum(), 1)
        assert overlap > 0.85, f"seed {seed}: image and mask drifted apart (IoU {overlap:.2f})"


def test_validation_feed_is_neither_shuffled_nor_augmented(tiny_arrays: TrainingArrays) -> None:
    feed = ArrayFeed(tiny_arrays.images, tiny_arrays.masks, batch_size=8, training=False)
    images, masks = feed[0]
    np.testing.assert_allclose(images, tiny_arrays.images[:8] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(masks, tiny_arrays.masks[:8])
