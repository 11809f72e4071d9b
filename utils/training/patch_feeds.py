"""Training feeds for H&E patches: the shared ``tf.data`` pipeline plus histology augmentation.

H&E patches have no orientation and vary in colour between labs and scanners, unlike
ultrasound (whose depth axis must not be flipped and whose noise is speckle). So the
ultrasound augmentation of :mod:`utils.augment` is switched off here and every training
batch of :func:`utils.pipelines.build_classification_dataset` (which keeps its shuffling
and reproducible seeding) goes through one more ``map``:

1. a random element of the dihedral group (transpose, left-right and up-down flips, each
   with probability 1/2), which moves pixels exactly (no interpolation, no filled corners);
2. colour jitter: brightness, contrast, saturation and hue, drawn per patch;
3. an optional **stain augmentation hook** (``stain_augment``), e.g. the HED
   (haematoxylin-eosin-DAB) perturbation of ``utils.histo.stain``: any
   ``(batch, seed) -> batch`` function on float32 ``(B, H, W, 3)`` batches in [0, 1] with
   a ``[2]`` int64 seed, written with stateless TensorFlow ops (wrap a per-image function
   in ``tf.map_fn``).

The batch is augmented with vectorised ops, each patch with its own draws.
All draws are stateless and keyed by a per-batch seed from ``tf.data.Dataset.random``,
so two feeds built with the same seed yield the same batches. Other Keras backends (no
``tf.data``) fall back to :func:`utils.training.common.make_feeds` with
:data:`HISTO_AUGMENT_CONFIG` (flips, rotation with reflected borders, brightness and
contrast), since the colour jitter here is TensorFlow code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from utils.augment_config import AugmentConfig
from utils.errors import ConfigError
from utils.training.common import FeedBuilder, make_feeds

#: ``(batch, seed) -> batch`` on float32 (B, H, W, 3) in [0, 1] with an int64 ``[2]`` seed.
StainAugment = Callable[[Any, Any], Any]

#: What the backend-agnostic feeds apply to patches: both flips, any rotation (reflected
#: borders), brightness and contrast; no speckle or elastic warp (ultrasound-specific).
HISTO_AUGMENT_CONFIG = AugmentConfig(
    horizontal_flip_prob=0.5,
    vertical_flip_prob=0.5,
    max_rotation_degrees=180.0,
    scale_range=(1.0, 1.0),
    max_translation=0.0,
    brightness_delta=0.08,
    contrast_range=(0.85, 1.15),
    speckle_std=0.0,
    elastic_probability=0.0,
    fill_mode="reflect",
)

# Independent random streams split from one patch seed; fixed so that adding a step
# later does not change the draws of the existing ones.
_NUM_STREAMS = 8  # 3 dihedral, brightness, contrast, hue, saturation, stain


@dataclass(frozen=True)
class PatchAugmentConfig:
    """Histology augmentation settings (see the module docstring).

    Attributes:
        enabled: Master switch.
        dihedral: Random flip and 90-degree rotation (8 orientations).
        brightness_delta: Offset drawn from ``[-delta, delta]`` on [0, 1] values.
        contrast_range: Contrast factor range.
        saturation_range: Saturation factor range (staining intensity).
        hue_delta: Hue shift drawn from ``[-delta, delta]`` (fraction of the colour wheel;
            small, since H&E hue carries the stain identity).
    """

    enabled: bool = True
    dihedral: bool = True
    brightness_delta: float = 0.08
    contrast_range: tuple[float, float] = (0.85, 1.15)
    saturation_range: tuple[float, float] = (0.85, 1.15)
    hue_delta: float = 0.03

    def __post_init__(self) -> None:
        for name in ("contrast_range", "saturation_range"):
            low, high = getattr(self, name)
            if not 0 <= low <= high <= 5:
                raise ConfigError(
                    f"PatchAugmentConfig.{name} must be (low, high) with 0 <= low <= high "
                    f"<= 5; got {(low, high)}."
                )
            object.__setattr__(self, name, (float(low), float(high)))
        if not 0 <= self.brightness_delta <= 1:
            raise ConfigError(
                f"PatchAugmentConfig.brightness_delta must be in [0, 1]; got "
                f"{self.brightness_delta!r}."
            )
        if not 0 <= self.hue_delta <= 0.5:
            raise ConfigError(
                f"PatchAugmentConfig.hue_delta must be in [0, 0.5]; got {self.hue_delta!r}."
            )


def augment_patch_batch(
    images: Any,
    seed: Any,
    config: PatchAugmentConfig | None = None,
    stain_augment: StainAugment | None = None,
) -> Any:
    """Augment a float32 ``(B, H, W, 3)`` batch in [0, 1], each patch with its own draws.

    Vectorised over the batch (no per-patch ``map_fn``); flips use ``tf.reverse``, as
    negative-stride slicing was ~4x slower here.

    Args:
        images: The patches (square when ``dihedral``, so a transpose keeps the shape).
        seed: Integer seed of shape ``[2]``; the same seed gives the same result.
        config: Settings; ``None`` uses the defaults.
        stain_augment: Optional stain augmentation applied last, to the whole batch
            (see the module docstring).

    Returns:
        The augmented batch, float32 in [0, 1], same shape.
    """
    import tensorflow as tf

    config = config or PatchAugmentConfig()
    images = tf.convert_to_tensor(images, tf.float32)
    if not config.enabled:
        return images
    streams = tf.random.experimental.stateless_split(
        tf.cast(tf.convert_to_tensor(seed), tf.int64), num=_NUM_STREAMS
    )
    count = tf.shape(images)[0]

    def per_patch(stream: Any, low: float, high: float) -> Any:
        return tf.random.stateless_uniform([count, 1, 1, 1], stream, minval=low, maxval=high)

    out = images
    if config.dihedral:
        # Transpose, left-right flip and up-down flip, each with probability 1/2: the
        # 8 symmetries of the square with equal probability, moving pixels exactly.
        symmetries = (
            lambda x: tf.transpose(x, [0, 2, 1, 3]),
            lambda x: tf.reverse(x, axis=[2]),
            lambda x: tf.reverse(x, axis=[1]),
        )
        for index, symmetry in enumerate(symmetries):
            out = tf.where(per_patch(streams[index], 0.0, 1.0) < 0.5, symmetry(out), out)
    if config.brightness_delta > 0:
        delta = config.brightness_delta
        out = out + per_patch(streams[3], -delta, delta)
    if config.contrast_range != (1.0, 1.0):
        mean = tf.reduce_mean(out, axis=[1, 2], keepdims=True)
        out = (out - mean) * per_patch(streams[4], *config.contrast_range) + mean
    if config.saturation_range != (1.0, 1.0) or config.hue_delta > 0:
        hsv = tf.image.rgb_to_hsv(tf.clip_by_value(out, 0.0, 1.0))
        hue_shift = per_patch(streams[5], -config.hue_delta, config.hue_delta)[..., 0]
        hue = tf.math.floormod(hsv[..., 0] + hue_shift, 1.0)
        saturation_factor = per_patch(streams[6], *config.saturation_range)[..., 0]
        saturation = tf.clip_by_value(hsv[..., 1] * saturation_factor, 0.0, 1.0)
        out = tf.image.hsv_to_rgb(tf.stack([hue, saturation, hsv[..., 2]], axis=-1))
    if stain_augment is not None:
        out = stain_augment(tf.clip_by_value(out, 0.0, 1.0), streams[7])
    out = tf.clip_by_value(out, 0.0, 1.0)
    out.set_shape(images.shape)
    return out


def augment_patch(
    image: Any,
    seed: Any,
    config: PatchAugmentConfig | None = None,
    stain_augment: StainAugment | None = None,
) -> Any:
    """Augment one float32 ``(H, W, 3)`` patch in [0, 1] (see :func:`augment_patch_batch`).

    Returns:
        The augmented patch, float32 in [0, 1], same shape.
    """
    import tensorflow as tf

    batch = tf.convert_to_tensor(image, tf.float32)[None]
    return augment_patch_batch(batch, seed, config, stain_augment)[0]


def build_patch_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    patch_augment: PatchAugmentConfig | None = None,
    stain_augment: StainAugment | None = None,
) -> Any:
    """Batches of ``(float32 patches in [0, 1], int labels)``, augmented when training.

    Args:
        images: uint8 (N, H, W, 3) patches.
        labels: (N,) class indices.
        batch_size: Patches per batch.
        training: Shuffle and augment when True; keep order otherwise.
        seed: Seed of shuffling and augmentation.
        patch_augment: Histology augmentation settings (training only).
        stain_augment: Optional stain augmentation hook (training only).

    Returns:
        A prefetched ``tf.data.Dataset``.

    Raises:
        ConfigError: Bad shapes, labels, batch size or seed.
    """
    import tensorflow as tf

    from utils.pipelines import build_classification_dataset

    base = build_classification_dataset(
        images,
        labels,
        batch_size=batch_size,
        training=training,
        seed=seed,
        augment_config=AugmentConfig(enabled=False),
    )
    config = patch_augment or PatchAugmentConfig()
    if not training or not config.enabled:
        return base
    # A seed stream of its own, unrelated to the shuffle (which derives from ``seed``).
    batch_seeds = tf.data.Dataset.random(seed=seed + 7919, rerandomize_each_iteration=True)

    def augment_batch(batch: tuple[Any, Any], batch_seed: Any) -> tuple[Any, Any]:
        patches, batch_labels = batch
        seed = tf.stack([batch_seed, tf.constant(0, tf.int64)])
        return augment_patch_batch(patches, seed, config, stain_augment), batch_labels

    return (
        tf.data.Dataset.zip(base, batch_seeds)
        .map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def _patch_feeds(
    train_images: np.ndarray,
    train_targets: np.ndarray,
    val_images: np.ndarray,
    val_targets: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    augment_config: AugmentConfig,
    patch_augment: PatchAugmentConfig,
    stain_augment: StainAugment | None,
) -> tuple[Any, Any]:
    if keras.backend.backend() != "tensorflow":
        return make_feeds(
            train_images,
            train_targets,
            val_images,
            val_targets,
            batch_size=batch_size,
            seed=seed,
            augment_config=augment_config,
        )
    options = {"batch_size": batch_size, "seed": seed}
    train = build_patch_dataset(
        train_images,
        train_targets,
        training=True,
        patch_augment=patch_augment,
        stain_augment=stain_augment,
        **options,
    )
    return train, build_patch_dataset(val_images, val_targets, training=False, **options)


def make_patch_feed_builder(
    patch_augment: PatchAugmentConfig | None = None,
    stain_augment: StainAugment | None = None,
) -> FeedBuilder:
    """A feed builder for :func:`utils.training.classification.train_classifier`.

    Args:
        patch_augment: Histology augmentation settings; ``None`` uses the defaults.
        stain_augment: Optional stain augmentation hook (see the module docstring).

    Returns:
        A function with the signature of :func:`utils.training.common.make_feeds`.
    """
    return functools.partial(
        _patch_feeds,
        patch_augment=patch_augment or PatchAugmentConfig(),
        stain_augment=stain_augment,
    )
