"""The tf.data crop pipeline keeps image and targets aligned under augmentation."""

from __future__ import annotations

import numpy as np

from utils.histo.pipeline import build_nuclei_dataset


def test_crops_are_aligned_scaled_and_reproducible(rng) -> None:
    images = rng.integers(0, 256, size=(2, 48, 40, 3), dtype=np.uint8)
    # Targets copy the red channel, so alignment survives any flip or rotation.
    targets = np.stack([images[..., 0], 255 - images[..., 0]], axis=-1)
    dataset = build_nuclei_dataset(
        images, targets, crop_size=16, batch_size=4, seed=3, stain_augment=False
    )
    batch_images, batch_targets = next(iter(dataset))
    assert batch_images.shape == (4, 16, 16, 3) and batch_targets.shape == (4, 16, 16, 2)
    np.testing.assert_allclose(batch_images[..., 0], batch_targets[..., 0], atol=1e-6)
    assert float(np.min(batch_images)) >= 0.0 and float(np.max(batch_images)) <= 1.0
    again = next(iter(build_nuclei_dataset(images, targets, crop_size=16, batch_size=4, seed=3,
                                           stain_augment=False)))  # fmt: skip
    np.testing.assert_array_equal(batch_images, again[0])


def test_stain_augmentation_changes_colours_not_targets(rng) -> None:
    images = np.full((1, 32, 32, 3), (180, 110, 170), dtype=np.uint8)
    targets = np.zeros((1, 32, 32, 2), dtype=np.uint8)
    targets[0, 8:24, 8:24, 0] = 255
    plain = next(iter(build_nuclei_dataset(images, targets, crop_size=32, batch_size=2, seed=0,
                                           stain_augment=False)))  # fmt: skip
    stained = next(iter(build_nuclei_dataset(images, targets, crop_size=32, batch_size=2, seed=0,
                                             stain_augment=True)))  # fmt: skip
    assert not np.allclose(plain[0], stained[0])
    np.testing.assert_array_equal(plain[1].numpy().sum(), stained[1].numpy().sum())
