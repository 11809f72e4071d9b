"""Backend-agnostic batch feed for Keras backends without TensorFlow (e.g. JAX on a GPU).

With the TensorFlow backend, training uses the ``tf.data`` pipelines of
:mod:`utils.pipelines`. A JAX-only machine has no ``tf.data``, so this feed serves the
same in-memory arrays as a :class:`keras.utils.PyDataset` and applies the same
:class:`~utils.augment_config.AugmentConfig` on the CPU with OpenCV: one sampling map
per image (flip, rotation, scale, shift and an optional elastic warp composed), used
with bilinear sampling for the image and nearest-neighbour for the mask, so masks stay
aligned and binary; then speckle, contrast and brightness on the image only.

Each batch draws from its own generator seeded by ``(seed, epoch, batch index)``, so
batches are reproducible whatever the number of feeding threads.
"""

from __future__ import annotations

import math

import cv2
import keras
import numpy as np

from utils.augment_config import AugmentConfig

_BORDER_MODES = {
    "constant": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,
    "nearest": cv2.BORDER_REPLICATE,
}

#: Side of the coarse grid on which elastic noise is drawn before smoothing/upsampling.
_ELASTIC_GRID = 32


def sampling_maps(
    rng: np.random.Generator, shape: tuple[int, int], config: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates ``(map_x, map_y)`` of every output pixel for one random draw.

    Args:
        rng: Generator of this image's random draws.
        shape: ``(height, width)`` of the image.
        config: Augmentation settings.

    Returns:
        Two float32 ``(H, W)`` arrays for :func:`cv2.remap`.
    """
    height, width = shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
    angle = math.radians(rng.uniform(-config.max_rotation_degrees, config.max_rotation_degrees))
    scale = rng.uniform(*config.scale_range)
    shift_y = rng.uniform(-config.max_translation, config.max_translation) * height
    shift_x = rng.uniform(-config.max_translation, config.max_translation) * width
    # Inverse mapping: undo the shift, rotation and zoom around the centre.
    x0, y0 = cols - centre_x - shift_x, rows - centre_y - shift_y
    cos, sin = math.cos(-angle), math.sin(-angle)
    source_x = (cos * x0 - sin * y0) / scale
    source_y = (sin * x0 + cos * y0) / scale
    if rng.random() < config.horizontal_flip_prob:
        source_x = -source_x
    if rng.random() < config.vertical_flip_prob:
        source_y = -source_y
    source_x += centre_x
    source_y += centre_y
    if config.uses_elastic and rng.random() < config.elastic_probability:
        displacement_x, displacement_y = _elastic_field(rng, shape, config)
        source_x += displacement_x
        source_y += displacement_y
    return source_x.astype(np.float32), source_y.astype(np.float32)


def _elastic_field(
    rng: np.random.Generator, shape: tuple[int, int], config: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random displacement (pixels) peaking at ``elastic_alpha`` of the short side."""
    height, width = shape
    sigma = max(config.elastic_sigma * _ELASTIC_GRID, 0.5)
    fields = []
    for _ in range(2):
        noise = rng.standard_normal((_ELASTIC_GRID, _ELASTIC_GRID)).astype(np.float32)
        smooth = cv2.GaussianBlur(noise, (0, 0), sigma)
        smooth /= max(float(np.abs(smooth).max()), 1e-6)
        fields.append(cv2.resize(smooth, (width, height), interpolation=cv2.INTER_CUBIC))
    peak = config.elastic_alpha * min(height, width)
    return fields[0] * peak, fields[1] * peak


def augment_pair(
    rng: np.random.Generator,
    image: np.ndarray,
    mask: np.ndarray | None,
    config: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Geometric augmentation of one uint8 image (H, W, C) and its optional mask (H, W, 1)."""
    map_x, map_y = sampling_maps(rng, image.shape[:2], config)
    border = _BORDER_MODES[config.fill_mode]
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=border, borderValue=0)
    warped = warped.reshape(image.shape)
    if mask is None:
        return warped, None
    warped_mask = cv2.remap(mask, map_x, map_y, cv2.INTER_NEAREST, borderMode=border, borderValue=0)
    return warped, warped_mask.reshape(mask.shape)


def photometric(rng: np.random.Generator, images: np.ndarray, config: AugmentConfig) -> np.ndarray:
    """Speckle (multiplicative log-normal noise), contrast and brightness on [0, 1] images."""
    count = len(images)
    if config.speckle_std > 0:
        std = rng.uniform(0.0, config.speckle_std, size=(count, 1, 1, 1)).astype(np.float32)
        # Log-normal noise with mean 1 and (approximately) this std, like real speckle.
        noise = rng.standard_normal(images.shape).astype(np.float32)
        images = images * np.exp(std * noise - 0.5 * std**2)
    low, high = config.contrast_range
    factor = rng.uniform(low, high, size=(count, 1, 1, 1)).astype(np.float32)
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    delta = config.brightness_delta
    offset = rng.uniform(-delta, delta, size=(count, 1, 1, 1)).astype(np.float32)
    return np.clip(images * factor + mean * (1 - factor) + offset, 0.0, 1.0)


class ArrayFeed(keras.utils.PyDataset):
    """Shuffled, augmented batches of in-memory uint8 arrays for ``model.fit``.

    Args:
        images: uint8 (N, H, W, C).
        targets: Class indices (N,) for classification, or uint8 masks (N, H, W, 1).
        batch_size: Examples per batch.
        training: Shuffle every epoch and augment when True.
        seed: Seed of the shuffling and augmentation.
        augment_config: Augmentation settings (training only).
        **kwargs: Passed to :class:`keras.utils.PyDataset` (``workers`` etc.).
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        *,
        batch_size: int,
        training: bool,
        seed: int = 0,
        augment_config: AugmentConfig | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.images = images
        self.targets = targets
        self.batch_size = batch_size
        self.training = training
        self.seed = seed
        self.config = augment_config or AugmentConfig()
        self.is_segmentation = targets.ndim == 4
        self._epoch = 0
        self._order = np.arange(len(images))
        self._shuffle()

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def _shuffle(self) -> None:
        if self.training:
            self._order = np.random.default_rng([self.seed, self._epoch]).permutation(
                len(self.images)
            )

    def on_epoch_end(self) -> None:
        """Reshuffle the example order between epochs (training only)."""
        self._epoch += 1
        self._shuffle()

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        batch = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        images, targets = self.images[batch], self.targets[batch]
        augment = self.training and self.config.enabled
        if augment:
            rng = np.random.default_rng([self.seed, self._epoch, index])
            pairs = [
                augment_pair(rng, image, target if self.is_segmentation else None, self.config)
                for image, target in zip(images, targets, strict=True)
            ]
            images = np.stack([image for image, _ in pairs])
            if self.is_segmentation:
                targets = np.stack([mask for _, mask in pairs])
        images = images.astype(np.float32) / 255.0
        if augment:
            images = photometric(rng, images, self.config)
        if self.is_segmentation:
            targets = targets.astype(np.float32)
        return images.astype(np.float32), targets
