"""Seeded joint image/mask augmentation for breast ultrasound, runnable inside ``tf.data``.

One random geometric transform (flips, rotation, scale, shift and an optional elastic
warp) is composed into a single map of sampling coordinates and applied to the image
(bilinear) and the mask (nearest neighbour) with the very same coordinates, so lesion
masks stay aligned and binary. Photometric changes (speckle, contrast, brightness) touch
the image only.

Every random draw uses stateless ops (``tf.random.stateless_*``) keyed by a per-example
seed of shape ``[2]``, so the result depends on the seed alone: it is reproducible and
independent of ``tf.data`` parallelism (bit-identical within one execution mode; eager
and graph results may differ in the last float bit, as graph rewrites fuse ops). All
functions work eagerly and in graph mode.

Conventions: images are float32 ``(H, W, C)`` in ``[0, 1]``; masks are float32
``(H, W, 1)`` in ``{0, 1}``. The settings, :class:`AugmentConfig`, live in the
TensorFlow-free :mod:`utils.augment_config` (shared with the JAX feed) and are
re-exported here.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import tensorflow as tf

from utils.augment_config import FILL_MODES, AugmentConfig

__all__ = ["FILL_MODES", "AugmentConfig", "augment_image", "augment_image_and_mask"]

#: Number of independent random streams split from one example seed. Fixed, so adding a
#: new augmentation later does not change the draws of the existing ones.
_NUM_STREAMS: Final = 12

#: Side of the coarse grid on which elastic noise is drawn and smoothed before being
#: upsampled to the image size; smoothing a 32x32 field is much cheaper than a full one.
_ELASTIC_GRID: Final = 32


def augment_image_and_mask(
    image: tf.Tensor,
    mask: tf.Tensor,
    seed: tf.Tensor | tuple[int, int],
    config: AugmentConfig | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply one random transform identically to an image and its mask.

    Args:
        image: float32 ``(H, W, C)`` image in ``[0, 1]``.
        mask: ``(H, W, 1)`` mask in ``{0, 1}`` (any numeric dtype).
        seed: Integer seed of shape ``[2]``; the same seed gives the same result.
        config: Settings; ``None`` uses :class:`AugmentConfig` defaults.

    Returns:
        ``(image, mask)``: float32 image clipped to ``[0, 1]`` and float32 mask that is
        still exactly ``{0, 1}``, both with the input shapes.
    """
    image, mask = _augment(image, mask, seed, config or AugmentConfig())
    assert mask is not None
    return image, mask


def augment_image(
    image: tf.Tensor,
    seed: tf.Tensor | tuple[int, int],
    config: AugmentConfig | None = None,
) -> tf.Tensor:
    """Apply one random transform to an image alone (classification).

    Same code path and draws as :func:`augment_image_and_mask`, without the mask.

    Args:
        image: float32 ``(H, W, C)`` image in ``[0, 1]``.
        seed: Integer seed of shape ``[2]``.
        config: Settings; ``None`` uses :class:`AugmentConfig` defaults.

    Returns:
        The augmented float32 image in ``[0, 1]`` with the input shape.
    """
    augmented, _ = _augment(image, None, seed, config or AugmentConfig())
    return augmented


def _augment(
    image: tf.Tensor,
    mask: tf.Tensor | None,
    seed: tf.Tensor | tuple[int, int],
    config: AugmentConfig,
) -> tuple[tf.Tensor, tf.Tensor | None]:
    image = tf.convert_to_tensor(image, dtype=tf.float32)
    if mask is not None:
        mask = tf.cast(mask, tf.float32)
    if not config.enabled:
        return image, mask
    # One seed dtype: stateless_split yields different streams for int32 and int64 seeds.
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    streams = tf.random.experimental.stateless_split(seed, num=_NUM_STREAMS)

    x_in, y_in = _sampling_coordinates(tf.shape(image)[0], tf.shape(image)[1], streams, config)
    # The same coordinates for image and mask keep them aligned by construction.
    warped_image = _resample(image, x_in, y_in, bilinear=True, fill_mode=config.fill_mode)
    warped_image = _photometric(warped_image, streams, config)
    warped_image.set_shape(image.shape)
    if mask is not None:
        warped_mask = _resample(mask, x_in, y_in, bilinear=False, fill_mode=config.fill_mode)
        warped_mask.set_shape(mask.shape)
        mask = warped_mask
    return warped_image, mask


def _uniform(stream: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed=stream, minval=low, maxval=high)


def _sampling_coordinates(
    height: tf.Tensor, width: tf.Tensor, streams: tf.Tensor, config: AugmentConfig
) -> tuple[tf.Tensor, tf.Tensor]:
    """Return, for every output pixel, the input (x, y) it is sampled from.

    Flips, rotation, scale and shift form one affine map about the image centre; the
    elastic displacement is added on top, so the image is resampled only once.
    """
    height_f = tf.cast(height, tf.float32)
    width_f = tf.cast(width, tf.float32)
    flip_x = tf.where(_uniform(streams[0], 0.0, 1.0) < config.horizontal_flip_prob, -1.0, 1.0)
    flip_y = tf.where(_uniform(streams[1], 0.0, 1.0) < config.vertical_flip_prob, -1.0, 1.0)
    max_angle = math.radians(config.max_rotation_degrees)
    angle = _uniform(streams[2], -max_angle, max_angle)
    # Sampling maps output to input, so zooming in by `scale` means reading at 1/scale.
    inverse_scale = 1.0 / _uniform(streams[3], *config.scale_range)
    shift_x = _uniform(streams[4], -1.0, 1.0) * config.max_translation * width_f
    shift_y = _uniform(streams[5], -1.0, 1.0) * config.max_translation * height_f

    cos, sin = tf.cos(angle) * inverse_scale, tf.sin(angle) * inverse_scale
    # Pixel centres sit on integer coordinates, so the centre is (size - 1) / 2 and an
    # exact flip maps x to width - 1 - x.
    centre_x, centre_y = (width_f - 1.0) / 2.0, (height_f - 1.0) / 2.0
    rows, cols = tf.meshgrid(tf.range(height_f), tf.range(width_f), indexing="ij")
    rel_x, rel_y = cols - centre_x, rows - centre_y
    x_in = centre_x + flip_x * (cos * rel_x - sin * rel_y) - shift_x
    y_in = centre_y + flip_y * (sin * rel_x + cos * rel_y) - shift_y

    if config.uses_elastic:
        apply = tf.cast(_uniform(streams[6], 0.0, 1.0) < config.elastic_probability, tf.float32)
        displacement = _elastic_field(height, width, streams[7], config)
        x_in += apply * displacement[..., 0]
        y_in += apply * displacement[..., 1]
    return x_in, y_in


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3.0 * sigma))
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def _elastic_field(
    height: tf.Tensor, width: tf.Tensor, stream: tf.Tensor, config: AugmentConfig
) -> tf.Tensor:
    """Smooth random displacement field ``(H, W, 2)`` in pixels (dx, dy).

    Uniform noise on a coarse grid is gaussian-smoothed and bilinearly upsampled, then
    scaled so its peak displacement is ``elastic_alpha`` times the shorter side.
    """
    kernel = _gaussian_kernel(config.elastic_sigma * _ELASTIC_GRID)
    radius = (len(kernel) - 1) // 2
    noise = tf.random.stateless_uniform(
        [1, _ELASTIC_GRID, _ELASTIC_GRID, 2], seed=stream, minval=-1.0, maxval=1.0
    )
    # Mirror padding keeps the field as strong at the borders as in the middle.
    noise = tf.pad(noise, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="SYMMETRIC")
    kernel_tensor = tf.constant(kernel)
    vertical = tf.tile(tf.reshape(kernel_tensor, [-1, 1, 1, 1]), [1, 1, 2, 1])
    horizontal = tf.tile(tf.reshape(kernel_tensor, [1, -1, 1, 1]), [1, 1, 2, 1])
    smooth = tf.nn.depthwise_conv2d(noise, vertical, strides=[1, 1, 1, 1], padding="VALID")
    smooth = tf.nn.depthwise_conv2d(smooth, horizontal, strides=[1, 1, 1, 1], padding="VALID")
    field = tf.image.resize(smooth, tf.stack([height, width]), method="bilinear")[0]
    peak = tf.reduce_max(tf.abs(field)) + 1e-6
    shorter_side = tf.cast(tf.minimum(height, width), tf.float32)
    return field / peak * (config.elastic_alpha * shorter_side)


def _reflect(coordinate: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Mirror coordinates into ``[0, size - 1]`` (edge pixel not repeated)."""
    last = tf.cast(tf.maximum(size - 1, 1), tf.float32)
    folded = tf.math.floormod(coordinate, 2.0 * last)
    return last - tf.abs(folded - last)


def _resample(
    image: tf.Tensor, x_in: tf.Tensor, y_in: tf.Tensor, *, bilinear: bool, fill_mode: str
) -> tf.Tensor:
    """Sample ``image`` (H, W, C) at the float coordinates ``(x_in, y_in)``.

    Bilinear for images; nearest neighbour for masks, so mask values are copied, never
    blended, and stay binary.
    """
    if fill_mode == "constant":
        # A one-pixel zero border plus clamping turns every outside sample into zero
        # and gives a smooth bilinear fade at the image edge.
        image = tf.pad(image, [[1, 1], [1, 1], [0, 0]])
        x_in, y_in = x_in + 1.0, y_in + 1.0
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    if fill_mode == "reflect":
        x, y = _reflect(x_in, width), _reflect(y_in, height)
    else:
        x = tf.clip_by_value(x_in, 0.0, tf.cast(width - 1, tf.float32))
        y = tf.clip_by_value(y_in, 0.0, tf.cast(height - 1, tf.float32))
    flat = tf.reshape(image, [height * width, -1])

    def gather(rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
        return tf.gather(flat, rows * width + cols)

    if not bilinear:
        cols = tf.minimum(tf.cast(tf.floor(x + 0.5), tf.int32), width - 1)
        rows = tf.minimum(tf.cast(tf.floor(y + 0.5), tf.int32), height - 1)
        return gather(rows, cols)

    x0, y0 = tf.floor(x), tf.floor(y)
    weight_x, weight_y = (x - x0)[..., None], (y - y0)[..., None]
    col0, row0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    # At the last row/column the weight of the clamped neighbour is zero.
    col1, row1 = tf.minimum(col0 + 1, width - 1), tf.minimum(row0 + 1, height - 1)
    top_left, top_right = gather(row0, col0), gather(row0, col1)
    bottom_left, bottom_right = gather(row1, col0), gather(row1, col1)
    top = top_left + (top_right - top_left) * weight_x
    bottom = bottom_left + (bottom_right - bottom_left) * weight_x
    return top + (bottom - top) * weight_y


def _photometric(image: tf.Tensor, streams: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Speckle, contrast and brightness changes on the image only, clipped to [0, 1]."""
    if config.speckle_std > 0.0:
        std = _uniform(streams[8], 0.0, config.speckle_std)
        # Log-normal noise with mean 1 and the drawn std: positive and right-skewed like
        # gamma-distributed speckle intensity, but several times cheaper to sample.
        log_sigma = tf.sqrt(tf.math.log1p(std * std))
        # One noise field shared by all channels, so gray-in-RGB images stay gray.
        noise_shape = tf.concat([tf.shape(image)[:2], [1]], axis=0)
        normal = tf.random.stateless_normal(noise_shape, seed=streams[9])
        image = image * tf.exp(log_sigma * normal - 0.5 * log_sigma * log_sigma)
    # Contrast and brightness fold into one per-pixel `image * gain + offset` with scalar
    # gain and offset. Besides being cheaper, this form gave bit-identical results on
    # every call, whereas TF's CPU kernels for the longer chain
    # `(image - mean) * factor + mean + delta` flipped last bits after ~100 calls.
    gain, offset = tf.constant(1.0), tf.constant(0.0)
    low, high = config.contrast_range
    if (low, high) != (1.0, 1.0):
        gain = _uniform(streams[10], low, high)
        offset = tf.reduce_mean(image) * (1.0 - gain)
    if config.brightness_delta > 0.0:
        offset += _uniform(streams[11], -config.brightness_delta, config.brightness_delta)
    image = image * gain + offset
    return tf.clip_by_value(image, 0.0, 1.0)
