"""H&E nucleus segmentation networks with a foreground head and a distance head.

Touching nuclei merge in a plain foreground map. The networks here therefore predict two
maps from one shared U-shaped trunk:

* channel 0, ``fg_probs``: the probability that a pixel belongs to a nucleus;
* channel 1, ``dist_map``: the Euclidean distance of a pixel to the nearest background
  pixel, divided by :data:`DISTANCE_SCALE` pixels and clipped to [0, 1] (sigmoid output).
  Its local maxima mark nucleus centres, which seed a watershed that splits touching
  nuclei (see :mod:`utils.histo.instances`).

Both maps are concatenated into one ``(N, H, W, 2)`` output named ``nuclei_maps`` so the
shared inference code (one compiled forward returning one array) works unchanged.

Layer names follow :mod:`utils.models.segmentation`: ``input_image``, ``enc{level}_*``,
``bottleneck_*``, ``dec{level}_*``, then ``fg_logits``/``fg_probs``,
``dist_logits``/``dist_map`` and ``nuclei_maps``. Inputs are RGB floats in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import keras
from keras import layers

from utils.errors import ConfigError
from utils.models.blocks import KERNEL_INIT, conv_bn_relu
from utils.models.registry import build_registered
from utils.models.segmentation import plain_conv_block, residual_conv_block

__all__ = [
    "DEFAULT_NUCLEI_ARCH",
    "DISTANCE_SCALE",
    "NUCLEI_BUILDERS",
    "build_nuclei_model",
    "build_nuclei_resunet",
    "build_nuclei_unet",
]

#: Distance (pixels at 40x, ~0.25 um/px) mapped to 1.0 by the distance head: larger than
#: the radius of most nuclei (3-10 px), so the peaks of the map are not flattened.
DISTANCE_SCALE: Final = 12.0
#: Channels of the full-resolution branch.
FULL_RES_FILTERS: Final = 8


def _validate(
    input_shape: tuple[int | None, int | None, int],
    num_classes: int,
    base_filters: int,
    depth: int,
    dropout: float,
) -> None:
    if not isinstance(input_shape, tuple | list) or len(input_shape) != 3:
        raise ConfigError(
            f"input_shape must be (height, width, channels); received {input_shape!r}."
        )
    if input_shape[2] != 3:
        raise ConfigError(f"nuclei models take RGB input (3 channels); received {input_shape!r}.")
    if num_classes != 1:
        raise ConfigError(
            f"nuclei models have one foreground class (plus the distance map); "
            f"received num_classes={num_classes!r}."
        )
    if not isinstance(base_filters, int) or base_filters < 1:
        raise ConfigError(f"base_filters must be a positive integer; received {base_filters!r}.")
    if not isinstance(depth, int) or not 2 <= depth <= 6:
        raise ConfigError(f"depth must be an integer from 1 to 5; received {depth - 1!r}.")
    if not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1); received {dropout!r}.")
    for dim_name, size in (("height", input_shape[0]), ("width", input_shape[1])):
        if size is not None and (not isinstance(size, int) or size <= 0 or size % 2**depth):
            raise ConfigError(
                f"input {dim_name} must be None or a positive multiple of {2**depth} "
                f"(2**depth); received {size!r}."
            )


def _build(
    name: str,
    block: Callable[..., keras.KerasTensor],
    input_shape: tuple[int | None, int | None, int],
    num_classes: int,
    base_filters: int,
    depth: int,
    dropout: float,
) -> keras.Model:
    _validate(input_shape, num_classes, base_filters, depth + 1, dropout)
    inputs = keras.Input(shape=tuple(input_shape), name="input_image")
    # A thin full-resolution branch keeps nucleus borders sharp, while the U-Net proper
    # runs on a stride-2 grid (0.5 um/px at 40x, where nuclei are still 5-20 px wide):
    # four times cheaper, which is what makes CPU-only training affordable.
    full = conv_bn_relu(inputs, FULL_RES_FILTERS, "full", "1")
    x = conv_bn_relu(full, base_filters, "stem", "1", strides=2)
    skips = []
    for level in range(1, depth + 1):
        x = block(x, base_filters * 2 ** (level - 1), f"enc{level}", dropout)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = block(x, base_filters * 2**depth, "bottleneck", dropout)
    for level in range(depth, 0, -1):
        filters = base_filters * 2 ** (level - 1)
        x = layers.Conv2DTranspose(
            filters, 2, strides=2, padding="same", kernel_initializer=KERNEL_INIT,
            name=f"dec{level}_up",
        )(x)  # fmt: skip
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level - 1]])
        x = block(x, filters, f"dec{level}", 0.0)
    x = layers.Conv2DTranspose(
        FULL_RES_FILTERS, 2, strides=2, padding="same", kernel_initializer=KERNEL_INIT,
        name="full_up",
    )(x)  # fmt: skip
    x = layers.Concatenate(name="full_concat")([x, full])
    x = conv_bn_relu(x, FULL_RES_FILTERS, "full", "2")
    fg_logits = layers.Conv2D(1, 1, name="fg_logits")(x)
    dist_logits = layers.Conv2D(1, 1, name="dist_logits")(x)
    # float32 sigmoids keep probabilities and losses accurate under mixed precision.
    fg = layers.Activation("sigmoid", dtype="float32", name="fg_probs")(fg_logits)
    dist = layers.Activation("sigmoid", dtype="float32", name="dist_map")(dist_logits)
    outputs = layers.Concatenate(dtype="float32", name="nuclei_maps")([fg, dist])
    return keras.Model(inputs, outputs, name=name)


def build_nuclei_unet(
    input_shape: tuple[int | None, int | None, int] = (256, 256, 3),
    num_classes: int = 1,
    base_filters: int = 16,
    depth: int = 3,
    dropout: float = 0.05,
) -> keras.Model:
    """Build a two-head U-Net (foreground probability + clipped distance map).

    Layout: full-resolution conv branch (``full_*``), stride-2 stem (``stem_*``), a U-Net
    of ``depth`` levels on the half-resolution grid, a learned 2x upsampling
    (``full_up``) joined with the full-resolution branch, and the two 1x1 heads.

    Args:
        input_shape: (height, width, 3); height and width must be None or multiples of
            ``2**(depth + 1)``. Pixels are RGB floats in [0, 1].
        num_classes: Must be 1 (nuclei vs background); kept for the builder signature.
        base_filters: Filters at the first U-Net level, doubled per level.
        depth: Number of 2x downsamplings after the stride-2 stem.
        dropout: Spatial dropout inside the encoder blocks.

    Returns:
        Model mapping (N, H, W, 3) to (N, H, W, 2): foreground probability, distance map.

    Raises:
        ConfigError: An option is out of range.
    """
    return _build(
        "nuclei_unet", plain_conv_block, input_shape, num_classes, base_filters, depth, dropout
    )


def build_nuclei_resunet(
    input_shape: tuple[int | None, int | None, int] = (256, 256, 3),
    num_classes: int = 1,
    base_filters: int = 16,
    depth: int = 3,
    dropout: float = 0.05,
) -> keras.Model:
    """Build the residual variant of :func:`build_nuclei_unet` (same Args and Returns).

    Raises:
        ConfigError: An option is out of range.
    """
    return _build(
        "nuclei_resunet", residual_conv_block, input_shape, num_classes, base_filters, depth,
        dropout,
    )  # fmt: skip


NUCLEI_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "nuclei_unet": build_nuclei_unet,
    "nuclei_resunet": build_nuclei_resunet,
}
DEFAULT_NUCLEI_ARCH: Final = "nuclei_unet"


def build_nuclei_model(arch: str = DEFAULT_NUCLEI_ARCH, **kwargs: object) -> keras.Model:
    """Build a nuclei model by architecture name (a key of :data:`NUCLEI_BUILDERS`).

    Raises:
        ConfigError: ``arch`` is unknown or an option is invalid.
    """
    return build_registered(NUCLEI_BUILDERS, "nuclei", arch, **kwargs)
