"""tf.data pipeline of random nucleus crops with joint geometric and H&E stain augmentation."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from utils.histo.stain import hed_augment

__all__ = ["build_nuclei_dataset"]


def build_nuclei_dataset(
    images: np.ndarray,
    targets: np.ndarray,
    *,
    crop_size: int,
    batch_size: int,
    seed: int,
    stain_augment: bool = True,
) -> tf.data.Dataset:
    """Endless batches of augmented random crops: floats in [0, 1], targets (.., 2).

    Crop position, tile, flips and rot90 come from stateless RNG keyed on the element
    index and ``seed``, so a run is reproducible and crops differ across steps.
    """
    image_tensor = tf.constant(images)
    target_tensor = tf.constant(targets)
    count, height, width = images.shape[:3]

    def hed(crop: np.ndarray, key: np.ndarray) -> np.ndarray:
        return hed_augment(crop, np.random.default_rng(int(key)))

    def sample(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        stream = tf.stack([tf.cast(index, tf.int32), tf.constant(seed, tf.int32)])
        draws = tf.random.stateless_uniform([6], seed=stream, maxval=2**30, dtype=tf.int32)
        tile = draws[0] % count
        top = draws[1] % (height - crop_size + 1)
        left = draws[2] % (width - crop_size + 1)
        image = image_tensor[tile, top : top + crop_size, left : left + crop_size]
        target = target_tensor[tile, top : top + crop_size, left : left + crop_size]
        if stain_augment:
            image = tf.numpy_function(hed, [image, draws[5]], tf.uint8)
            image.set_shape((crop_size, crop_size, 3))
        joint = tf.concat([image, target], axis=-1)
        joint = tf.image.rot90(joint, k=draws[3] % 4)
        joint = tf.cond(draws[4] % 2 == 1, lambda: tf.reverse(joint, [1]), lambda: joint)
        joint = tf.cast(joint, tf.float32) / 255.0
        return joint[..., :3], joint[..., 3:]

    return (
        tf.data.Dataset.range(2**62)
        .map(sample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
