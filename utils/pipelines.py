"""In-memory ``tf.data`` input pipelines for ultrasound classification and segmentation.

Ultrasound datasets are small (BUSI has about 1,600 images), so every image is decoded
and resized once by :func:`load_examples` and kept in memory as ``uint8``; only the
random augmentation runs per epoch, inside ``tf.data``.

Value convention: the datasets yield float32 images scaled to ``[0, 1]`` (``uint8 / 255``)
and the models take them as they are. A backbone that wants another range (e.g. Keras
EfficientNet expects 0..255) must rescale inside the model, so training and inference
feed the same arrays.

Reproducibility: the shuffle order and the per-example augmentation seeds both derive
from ``seed``. Augmentation uses stateless random ops keyed by a seed drawn from
``tf.data.Dataset.random``, which is zipped in sequentially, so two datasets built with
the same seed yield identical batches whatever the parallelism, and every epoch gets a
new shuffle and new augmentations.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import numpy as np
import tensorflow as tf

from utils.augment import AugmentConfig, augment_image, augment_image_and_mask
from utils.datasets.masks import load_mask
from utils.datasets.records import DatasetRecord
from utils.errors import ConfigError
from utils.image_io import load_image
from utils.labels import ULTRASOUND_CLASSES, encode_labels
from utils.resize import resize_image, resize_mask  # re-exported: older imports use pipelines

__all__ = ["ULTRASOUND_CLASSES", "encode_labels"]  # re-exported: historical home

#: Class names of the breast-ultrasound classifier, in label-index order.

#: Smallest and largest accepted side of ``image_size``.
MIN_IMAGE_SIDE: Final = 8
MAX_IMAGE_SIDE: Final = 4096

_ALLOWED_CHANNELS: Final = (1, 3)


# ------------------------------------------------------------------------------ loading


def load_examples(
    records: Sequence[DatasetRecord],
    image_size: tuple[int, int],
    channels: int = 1,
    with_masks: bool = False,
    *,
    progress: bool = False,
    max_workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode and resize every record once, into in-memory uint8 arrays.

    Images are stretched to ``image_size`` (aspect ratio not kept, as usual for
    ultrasound classifiers): area interpolation when shrinking, which avoids aliasing of
    the speckle, and bilinear when enlarging. Masks use nearest neighbour so they stay
    binary. Records without a mask (BUSI ``normal``) get an empty mask.

    Args:
        records: The images to load, in order.
        image_size: Target ``(height, width)`` in pixels.
        channels: 1 for grayscale (ultrasound) or 3 for RGB.
        with_masks: Also load and OR-merge each record's masks.
        progress: Show a tqdm progress bar.
        max_workers: Decoding threads; defaults to the CPU count (at most 8). Decoding
            and resizing release the GIL, so threads run in parallel.

    Returns:
        ``(images, masks)``: uint8 images ``(N, H, W, channels)`` and, with
        ``with_masks``, uint8 masks ``(N, H, W, 1)`` holding 0 or 1; otherwise ``None``.

    Raises:
        ConfigError: ``image_size`` or ``channels`` is invalid.
        InvalidImageError: An image or mask cannot be read (subclasses say why), or a
            mask's size differs from its image's.
    """
    height, width = validate_image_size(image_size)
    if channels not in _ALLOWED_CHANNELS:
        raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")
    records = list(records)
    images = np.zeros((len(records), height, width, channels), dtype=np.uint8)
    masks = np.zeros((len(records), height, width, 1), dtype=np.uint8) if with_masks else None

    def load_one(index: int) -> None:
        image, mask = _load_record(records[index], (height, width), channels, with_masks)
        images[index] = image
        if masks is not None and mask is not None:
            masks[index, ..., 0] = mask

    workers = max_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(load_one, range(len(records)))
        if progress:
            from tqdm.auto import tqdm

            done = tqdm(done, total=len(records), desc="Loading images", unit="img")
        for _ in done:  # Consuming the iterator re-raises the first worker error.
            pass
    return images, masks


def _load_record(
    record: DatasetRecord, size: tuple[int, int], channels: int, with_mask: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    loaded = load_image(record.image_path)
    pixels = loaded.gray if channels == 1 else loaded.pixels
    image = resize_image(pixels, size)
    if channels == 1:
        image = image[..., None]
    if not with_mask:
        return image, None
    mask = load_mask(record.mask_paths, shape=pixels.shape[:2])
    return image, resize_mask(mask, size)


def validate_image_size(image_size: object) -> tuple[int, int]:
    """Check that ``image_size`` is ``(height, width)`` of two sensible integers.

    Returns:
        The size as a tuple of two Python ints.

    Raises:
        ConfigError: It is not a pair of integers between 8 and 4096.
    """
    allowed = (
        f"image_size must be (height, width) with two integers between {MIN_IMAGE_SIDE} "
        f"and {MAX_IMAGE_SIDE}"
    )
    if not isinstance(image_size, tuple | list) or len(image_size) != 2:
        raise ConfigError(f"{allowed}; got {image_size!r}.")
    for side in image_size:
        is_int = isinstance(side, int | np.integer) and not isinstance(side, bool)
        if not is_int or not MIN_IMAGE_SIDE <= side <= MAX_IMAGE_SIDE:
            raise ConfigError(f"{allowed}; got {image_size!r}.")
    return int(image_size[0]), int(image_size[1])


# ----------------------------------------------------------------------------- datasets


def build_classification_dataset(
    images: np.ndarray,
    labels: np.ndarray | Sequence[int],
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment_config: AugmentConfig | None = None,
    shuffle_buffer: int | None = None,
    num_classes: int | None = None,
    one_hot: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(image, label)`` for classifier training or evaluation.

    Args:
        images: uint8 ``(N, H, W, C)`` (or ``(N, H, W)``) in 0..255, or floats in [0, 1].
        labels: Class indices ``(N,)``, e.g. from :func:`encode_labels`.
        batch_size: Examples per batch (the last batch may be smaller).
        training: Shuffle every epoch and augment when True; keep order otherwise.
        seed: Seed of shuffling and augmentation (ignored when not training).
        augment_config: Augmentation settings; ``None`` uses the defaults.
        shuffle_buffer: Shuffle buffer size; defaults to ``N`` (a perfect shuffle, cheap
            because the pipeline shuffles indices, not images).
        num_classes: Number of classes; required with ``one_hot``. When given, labels
            are checked to lie in ``[0, num_classes)``.
        one_hot: Yield float32 one-hot labels ``(B, num_classes)`` instead of int32
            indices ``(B,)``.

    Returns:
        A dataset of float32 images ``(B, H, W, C)`` in [0, 1] and labels.

    Raises:
        ConfigError: Bad shapes, lengths, batch size, buffer size or labels.
    """
    image_tensor = _images_to_tensor(images)
    count = int(image_tensor.shape[0])
    label_array = np.asarray(labels)
    if label_array.ndim != 1 or not np.issubdtype(label_array.dtype, np.integer):
        raise ConfigError(
            f"labels must be a 1-D array of integer class indices, got shape "
            f"{label_array.shape} of {label_array.dtype}; use encode_labels for class names."
        )
    _check_same_length("labels", len(label_array), count)
    if one_hot and num_classes is None:
        raise ConfigError("one_hot=True needs num_classes (e.g. len(ULTRASOUND_CLASSES)).")
    if num_classes is not None:
        _check_label_range(label_array, num_classes)
    label_tensor = tf.constant(label_array, dtype=tf.int32)
    config = augment_config or AugmentConfig()

    def finish_label(label: tf.Tensor) -> tf.Tensor:
        return tf.one_hot(label, num_classes) if one_hot else label

    def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return _to_unit_float(tf.gather(image_tensor, index)), finish_label(
            tf.gather(label_tensor, index)
        )

    def load_augmented(index: tf.Tensor, element_seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, label = load(index)
        return augment_image(image, element_seed, config), label

    return _assemble(count, load, load_augmented, batch_size, training, seed, shuffle_buffer)


def build_segmentation_dataset(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment_config: AugmentConfig | None = None,
    shuffle_buffer: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(image, mask)`` for segmentation training or evaluation.

    Args:
        images: uint8 ``(N, H, W, C)`` (or ``(N, H, W)``) in 0..255, or floats in [0, 1].
        masks: ``(N, H, W, 1)`` or ``(N, H, W)`` masks holding 0/1 (bool or integer).
        batch_size: Examples per batch (the last batch may be smaller).
        training: Shuffle every epoch and augment when True; keep order otherwise.
        seed: Seed of shuffling and augmentation (ignored when not training).
        augment_config: Augmentation settings; ``None`` uses the defaults.
        shuffle_buffer: Shuffle buffer size; defaults to ``N``.

    Returns:
        A dataset of float32 images ``(B, H, W, C)`` in [0, 1] and float32 masks
        ``(B, H, W, 1)`` in {0, 1}.

    Raises:
        ConfigError: Bad shapes, lengths, batch size or non-binary masks.
    """
    image_tensor = _images_to_tensor(images)
    count = int(image_tensor.shape[0])
    mask_tensor = _masks_to_tensor(masks, tuple(image_tensor.shape[:3]))
    config = augment_config or AugmentConfig()

    def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = _to_unit_float(tf.gather(image_tensor, index))
        return image, tf.cast(tf.gather(mask_tensor, index), tf.float32)

    def load_augmented(index: tf.Tensor, element_seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, mask = load(index)
        return augment_image_and_mask(image, mask, element_seed, config)

    return _assemble(count, load, load_augmented, batch_size, training, seed, shuffle_buffer)


def _assemble(
    count: int,
    load: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]],
    load_augmented: Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]],
    batch_size: int,
    training: bool,
    seed: int,
    shuffle_buffer: int | None,
) -> tf.data.Dataset:
    """Index stream → (shuffle + per-example seeds) → map → batch → prefetch.

    The in-memory arrays are gathered by index inside ``map``, so shuffling moves
    integers, not images, and a full-size shuffle buffer costs nothing.
    """
    batch_size = _check_batch_size(batch_size)
    indices = tf.data.Dataset.range(count)
    if not training:
        # Evaluation: no randomness, so gather and scale whole batches at once.
        batches = indices.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE)
        return batches.prefetch(tf.data.AUTOTUNE)

    seed = _check_seed(seed)
    buffer = _check_shuffle_buffer(shuffle_buffer, count)
    # Separate sub-seeds, so the shuffle order and the augmentation draws are unrelated.
    shuffle_seed, augment_seed = (
        int(part) for part in np.random.SeedSequence(seed).generate_state(2)
    )
    indices = indices.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    # Sequential per-example [2] seeds, new each epoch and reproducible for a given seed.
    element_seeds = tf.data.Dataset.random(
        seed=augment_seed, rerandomize_each_iteration=True
    ).batch(2)
    examples = tf.data.Dataset.zip(indices, element_seeds).map(
        load_augmented, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    options = tf.data.Options()
    # Parallelism comes from augmenting several examples at once; letting each one also
    # spread its small ops over threads only adds contention (measured ~5% slower).
    options.threading.max_intra_op_parallelism = 1
    return examples.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options)


def _to_unit_float(images: tf.Tensor) -> tf.Tensor:
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


def _images_to_tensor(images: np.ndarray) -> tf.Tensor:
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in _ALLOWED_CHANNELS:
        raise ConfigError(
            f"images must be (N, H, W, C) with C = 1 or 3 (or (N, H, W)), got {array.shape}."
        )
    if array.shape[0] == 0:
        raise ConfigError("images is empty; a dataset needs at least one image.")
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        raise ConfigError(
            f"images must be uint8 (0..255) or floats in [0, 1], got dtype {array.dtype}."
        )
    return tf.convert_to_tensor(array if array.dtype == np.uint8 else array.astype(np.float32))


def _masks_to_tensor(masks: np.ndarray, images_shape: tuple[int, int, int]) -> tf.Tensor:
    array = np.asarray(masks)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] != 1:
        raise ConfigError(f"masks must be (N, H, W, 1) or (N, H, W), got {array.shape}.")
    _check_same_length("masks", array.shape[0], images_shape[0])
    if tuple(array.shape[1:3]) != tuple(images_shape[1:3]):
        raise ConfigError(
            f"masks are {array.shape[1]}x{array.shape[2]} (HxW) but images are "
            f"{images_shape[1]}x{images_shape[2]}; they must match."
        )
    if array.dtype != np.bool_ and array.size and (array.min() < 0 or array.max() > 1):
        raise ConfigError(
            f"masks must hold only 0 and 1, got values from {array.min()} to {array.max()} "
            "(0/255 masks: divide by 255 or compare with > 0 first)."
        )
    return tf.convert_to_tensor(array.astype(np.uint8))


def _check_same_length(name: str, length: int, image_count: int) -> None:
    if length != image_count:
        raise ConfigError(
            f"Got {image_count} images but {length} {name}; there must be one per image."
        )


def _check_label_range(labels: np.ndarray, num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(
            f"labels must be class indices in 0..{num_classes - 1}, got values from "
            f"{labels.min()} to {labels.max()}."
        )


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
    return int(batch_size)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")
    return int(seed)


def _check_shuffle_buffer(shuffle_buffer: int | None, count: int) -> int:
    if shuffle_buffer is None:
        return count
    if isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, int | np.integer):
        raise ConfigError(f"shuffle_buffer must be a positive integer, got {shuffle_buffer!r}.")
    if shuffle_buffer < 1:
        raise ConfigError(f"shuffle_buffer must be at least 1, got {shuffle_buffer}.")
    return int(shuffle_buffer)
