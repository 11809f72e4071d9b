"""Layer blocks shared by the TumorLens classifiers and segmentation networks.

Both model families are trained from scratch on small ultrasound datasets, so they use
the same initialisation and BatchNorm settings and the same conv-BN-ReLU unit.
"""

from __future__ import annotations

import keras
from keras import layers

__all__ = ["BN_MOMENTUM", "KERNEL_INIT", "conv_bn_relu"]

#: He initialisation suits the ReLU activations used throughout.
KERNEL_INIT = "he_normal"
#: Lower than Keras's 0.99: ultrasound datasets are small (a few hundred images, tens of
#: steps per epoch), and slow-moving BN statistics would make inference-mode predictions
#: lag far behind the trained weights during the first epochs.
BN_MOMENTUM = 0.9


def conv_bn_relu(
    inputs: keras.KerasTensor,
    filters: int,
    prefix: str,
    suffix: str = "",
    *,
    strides: int = 1,
    activate: bool = True,
) -> keras.KerasTensor:
    """3x3 conv (no bias, BN follows) -> BatchNorm -> optional ReLU.

    Args:
        inputs: Feature map (N, H, W, C).
        filters: Output channels.
        prefix: Name prefix of the layers, e.g. ``"enc1"``.
        suffix: Name suffix of the layers, e.g. ``"1"`` for the first conv of a block:
            they are named ``{prefix}_conv{suffix}``, ``{prefix}_bn{suffix}`` and
            ``{prefix}_relu{suffix}``.
        strides: Convolution stride.
        activate: Add the ReLU; False leaves it to the caller (e.g. after a residual add).

    Returns:
        Feature map (N, H / strides, W / strides, filters).
    """
    x = layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=KERNEL_INIT,
        name=f"{prefix}_conv{suffix}",
    )(inputs)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_bn{suffix}")(x)
    if activate:
        x = layers.Activation("relu", name=f"{prefix}_relu{suffix}")(x)
    return x
