"""Ultrasound lesion segmentation networks: U-Net, ResUNet and Attention ResUNet.

All three share one encoder-decoder skeleton and differ only in the conv block
(plain or residual) and in whether the skip connections pass through additive
attention gates (Oktay et al., 2018, "Attention U-Net: Learning Where to Look for
the Pancreas"). They are written with the Keras 3 functional API using only
``keras.layers``, so they run on the TensorFlow and JAX backends alike.

Every layer carries an explicit, unique, descriptive name so Grad-CAM and feature
visualisation can target any of them:

* ``input_image``: the model input.
* ``enc{level}_*``: encoder blocks, level 1 is the full resolution; ``enc{level}_pool``
  halves the resolution.
* ``bottleneck_*``: the deepest block.
* ``dec{level}_up``: the learned 2x upsampling into decoder level ``level``;
  ``att{level}_*``: the attention gate on that level's skip connection, gated by the
  upsampled path (attention map ``att{level}_sigmoid``, gated output
  ``att{level}_gate``); ``dec{level}_concat`` joins the upsampled path and the skip;
  ``dec{level}_*``: the decoder block.
* ``seg_logits``: 1x1 conv giving one logit per class and pixel; ``seg_probs``: its
  sigmoid, computed in float32 so mixed precision training stays stable.

Inputs are float images scaled to [0, 1] (grayscale ultrasound, channels last). No
ImageNet mean/std normalisation is applied: the networks are trained from scratch
and BatchNormalization adapts to the input statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import keras
from keras import layers

from utils.errors import ConfigError
from utils.models.blocks import BN_MOMENTUM, KERNEL_INIT, conv_bn_relu
from utils.models.registry import build_registered

__all__ = [
    "DEFAULT_SEGMENTATION_ARCH",
    "SEGMENTATION_BUILDERS",
    "attention_gate",
    "build_attention_resunet",
    "build_resunet",
    "build_segmentation_model",
    "build_unet",
    "plain_conv_block",
    "residual_conv_block",
]


class _ConvBlock(Protocol):
    """Signature shared by the plain and residual conv blocks."""

    def __call__(
        self, inputs: keras.KerasTensor, filters: int, prefix: str, dropout: float
    ) -> keras.KerasTensor: ...


def _maybe_dropout(inputs: keras.KerasTensor, rate: float, prefix: str) -> keras.KerasTensor:
    """Spatial dropout named ``{prefix}_dropout``; skipped entirely when ``rate`` is 0.

    Spatial (channel-wise) dropout is used because neighbouring pixels of a feature
    map are strongly correlated, so per-pixel dropout barely regularises.
    """
    if rate <= 0:
        return inputs
    return layers.SpatialDropout2D(rate, name=f"{prefix}_dropout")(inputs)


def plain_conv_block(
    inputs: keras.KerasTensor, filters: int, prefix: str, dropout: float
) -> keras.KerasTensor:
    """U-Net block: (conv3x3 -> BN -> ReLU) x2 with spatial dropout between the convs.

    Args:
        inputs: Feature map (N, H, W, C).
        filters: Output channels.
        prefix: Name prefix of every layer in the block, e.g. ``"enc1"``.
        dropout: Spatial dropout rate; 0 adds no dropout layer.

    Returns:
        Feature map (N, H, W, filters).
    """
    x = conv_bn_relu(inputs, filters, prefix, "1")
    x = _maybe_dropout(x, dropout, prefix)
    return conv_bn_relu(x, filters, prefix, "2")


def residual_conv_block(
    inputs: keras.KerasTensor, filters: int, prefix: str, dropout: float
) -> keras.KerasTensor:
    """Residual block: two 3x3 convs plus a shortcut, added before the last ReLU.

    The shortcut is the identity when the channel count is unchanged, otherwise a
    1x1 projection conv + BN (``{prefix}_proj`` / ``{prefix}_proj_bn``) so the
    shapes match (He et al., 2016).

    Args:
        inputs: Feature map (N, H, W, C).
        filters: Output channels.
        prefix: Name prefix of every layer in the block, e.g. ``"enc1"``.
        dropout: Spatial dropout rate; 0 adds no dropout layer.

    Returns:
        Feature map (N, H, W, filters).
    """
    x = conv_bn_relu(inputs, filters, prefix, "1")
    x = _maybe_dropout(x, dropout, prefix)
    x = conv_bn_relu(x, filters, prefix, "2", activate=False)
    shortcut = inputs
    if inputs.shape[-1] != filters:
        shortcut = layers.Conv2D(
            filters, 1, use_bias=False, kernel_initializer=KERNEL_INIT, name=f"{prefix}_proj"
        )(inputs)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_proj_bn")(
            shortcut
        )
    x = layers.Add(name=f"{prefix}_add")([x, shortcut])
    return layers.Activation("relu", name=f"{prefix}_out_relu")(x)


def attention_gate(
    skip: keras.KerasTensor, gating: keras.KerasTensor, inter_filters: int, prefix: str
) -> keras.KerasTensor:
    """Additive attention gate (Oktay et al., 2018) that reweights a skip connection.

    The skip features ``x`` and the gating signal ``g`` (decoder features carrying the
    coarser context) are each projected by a 1x1 conv into a joint space, added,
    passed through ReLU, a 1x1 conv to one channel and a sigmoid. The attention map
    alpha in [0, 1] multiplies every channel of ``x``, suppressing skip features away
    from the lesion.

    Unlike the original, which computes alpha on the coarse grid and resamples it, the
    gating signal here is the decoder features *after* the learned 2x upsampling, so
    alpha is computed at the skip's resolution: no interpolation layer is needed, the
    model accepts dynamic input sizes, and TensorFlow and JAX (whose resize kernels
    differ slightly) give the same results.

    Layer names: ``{prefix}_theta_x``, ``{prefix}_phi_g``, ``{prefix}_add``,
    ``{prefix}_relu``, ``{prefix}_psi``, ``{prefix}_sigmoid`` (the attention map,
    handy for visualisation) and ``{prefix}_gate`` (the gated skip features).

    Args:
        skip: Encoder features (N, H, W, C).
        gating: Decoder features at the same resolution (N, H, W, C_g).
        inter_filters: Channels of the intermediate joint space.
        prefix: Name prefix, e.g. ``"att3"``.

    Returns:
        Gated skip features (N, H, W, C).
    """
    theta_x = layers.Conv2D(inter_filters, 1, use_bias=False, name=f"{prefix}_theta_x")(skip)
    phi_g = layers.Conv2D(inter_filters, 1, name=f"{prefix}_phi_g")(gating)
    joint = layers.Add(name=f"{prefix}_add")([theta_x, phi_g])
    joint = layers.Activation("relu", name=f"{prefix}_relu")(joint)
    psi = layers.Conv2D(1, 1, name=f"{prefix}_psi")(joint)
    alpha = layers.Activation("sigmoid", name=f"{prefix}_sigmoid")(psi)
    # (N, H, W, 1) * (N, H, W, C) broadcasts the single attention map over channels.
    return layers.Multiply(name=f"{prefix}_gate")([skip, alpha])


def _validate_config(
    input_shape: tuple[int | None, int | None, int],
    num_classes: int,
    base_filters: int,
    depth: int,
    dropout: float,
) -> None:
    """Raise ConfigError for any option a segmentation builder cannot honour."""
    if not isinstance(input_shape, tuple | list) or len(input_shape) != 3:
        raise ConfigError(
            f"input_shape must be (height, width, channels); received {input_shape!r}."
        )
    for option, value in (("num_classes", num_classes), ("base_filters", base_filters)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{option} must be a positive integer; received {value!r}.")
    if not isinstance(depth, int) or not 1 <= depth <= 6:
        raise ConfigError(f"depth must be an integer from 1 to 6; received {depth!r}.")
    if not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1); received {dropout!r}.")
    channels = input_shape[2]
    if not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"input channels must be a positive integer; received {channels!r}.")
    factor = 2**depth
    # Unknown (None) dims are allowed; they are checked only when known statically.
    for dim_name, size in (("height", input_shape[0]), ("width", input_shape[1])):
        if size is None:
            continue
        if not isinstance(size, int) or size <= 0:
            raise ConfigError(
                f"input {dim_name} must be a positive integer or None; received {size!r}."
            )
        if size % factor:
            raise ConfigError(
                f"input {dim_name} {size} is not divisible by {factor} (2**depth with "
                f"depth={depth}); use a size that is a multiple of {factor}."
            )


@dataclass(frozen=True)
class _Variant:
    """What sets one architecture apart on the shared U-shaped skeleton."""

    block: _ConvBlock
    use_attention: bool


_VARIANTS: dict[str, _Variant] = {
    "unet": _Variant(plain_conv_block, use_attention=False),
    "resunet": _Variant(residual_conv_block, use_attention=False),
    "attention_resunet": _Variant(residual_conv_block, use_attention=True),
}


def _build_encoder_decoder(
    arch: str,
    input_shape: tuple[int | None, int | None, int],
    num_classes: int,
    base_filters: int,
    depth: int,
    dropout: float,
) -> keras.Model:
    """Assemble the shared U-shaped network of ``arch`` (a key of :data:`_VARIANTS`).

    The options and errors are those of :func:`build_unet`; the model is named ``arch``.
    """
    _validate_config(input_shape, num_classes, base_filters, depth, dropout)
    variant = _VARIANTS[arch]
    inputs = keras.Input(shape=tuple(input_shape), name="input_image")

    skips: list[keras.KerasTensor] = []
    x = inputs
    for level in range(1, depth + 1):
        x = variant.block(x, base_filters * 2 ** (level - 1), f"enc{level}", dropout)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)

    x = variant.block(x, base_filters * 2**depth, "bottleneck", dropout)

    for level in range(depth, 0, -1):
        filters = base_filters * 2 ** (level - 1)
        x = layers.Conv2DTranspose(
            filters,
            2,
            strides=2,
            padding="same",
            kernel_initializer=KERNEL_INIT,
            name=f"dec{level}_up",
        )(x)
        skip = skips[level - 1]
        if variant.use_attention:
            skip = attention_gate(skip, x, max(filters // 2, 1), f"att{level}")
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skip])
        x = variant.block(x, filters, f"dec{level}", dropout)

    logits = layers.Conv2D(num_classes, 1, name="seg_logits")(x)
    # float32 sigmoid: under mixed_float16 the probabilities and the loss stay accurate.
    probs = layers.Activation("sigmoid", dtype="float32", name="seg_probs")(logits)
    return keras.Model(inputs, probs, name=arch)


def build_unet(
    input_shape: tuple[int | None, int | None, int] = (256, 256, 1),
    num_classes: int = 1,
    base_filters: int = 16,
    depth: int = 4,
    dropout: float = 0.1,
) -> keras.Model:
    """Build a U-Net (Ronneberger et al., 2015) with BatchNorm.

    Args:
        input_shape: (height, width, channels). Height and width must be divisible by
            ``2**depth``; either may be None for a size-agnostic model. Pixel values are
            expected as floats in [0, 1].
        num_classes: Output channels. 1 gives a binary lesion probability map; more give
            independent (multi-label) sigmoid maps.
        base_filters: Filters at the first level; doubled at each deeper level.
        depth: Number of 2x downsamplings.
        dropout: Spatial dropout rate inside each conv block (0 disables it).

    Returns:
        A Keras model mapping (N, H, W, C) images to (N, H, W, num_classes) sigmoid
        probabilities; the last layers are ``seg_logits`` and ``seg_probs``.

    Raises:
        ConfigError: An option is out of range or the size is not divisible by 2**depth.
    """
    return _build_encoder_decoder("unet", input_shape, num_classes, base_filters, depth, dropout)


def build_resunet(
    input_shape: tuple[int | None, int | None, int] = (256, 256, 1),
    num_classes: int = 1,
    base_filters: int = 16,
    depth: int = 4,
    dropout: float = 0.1,
) -> keras.Model:
    """Build a ResUNet: a U-Net whose conv blocks are residual (1x1 projection shortcuts).

    Args and Returns are as in :func:`build_unet`.

    Raises:
        ConfigError: An option is out of range or the size is not divisible by 2**depth.
    """
    return _build_encoder_decoder("resunet", input_shape, num_classes, base_filters, depth, dropout)


def build_attention_resunet(
    input_shape: tuple[int | None, int | None, int] = (256, 256, 1),
    num_classes: int = 1,
    base_filters: int = 16,
    depth: int = 4,
    dropout: float = 0.1,
) -> keras.Model:
    """Build an Attention ResUNet: ResUNet with additive attention gates on every skip.

    The default TumorLens lesion segmenter. The attention maps are exposed as the
    ``att{level}_sigmoid`` layers.

    Args and Returns are as in :func:`build_unet`.

    Raises:
        ConfigError: An option is out of range or the size is not divisible by 2**depth.
    """
    return _build_encoder_decoder(
        "attention_resunet", input_shape, num_classes, base_filters, depth, dropout
    )


SEGMENTATION_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "unet": build_unet,
    "resunet": build_resunet,
    "attention_resunet": build_attention_resunet,
}

DEFAULT_SEGMENTATION_ARCH = "attention_resunet"


def build_segmentation_model(
    arch: str = DEFAULT_SEGMENTATION_ARCH, **kwargs: object
) -> keras.Model:
    """Build a segmentation model by architecture name.

    Args:
        arch: One of the keys of :data:`SEGMENTATION_BUILDERS`.
        **kwargs: Passed to the builder (``input_shape``, ``num_classes``,
            ``base_filters``, ``depth``, ``dropout``).

    Returns:
        The built (uncompiled) Keras model.

    Raises:
        ConfigError: ``arch`` is unknown, or a builder option is invalid.
    """
    return build_registered(SEGMENTATION_BUILDERS, "segmentation", arch, **kwargs)
