"""Deep ensembles: K independently trained classifiers as one flat Keras model.

Classifiers trained from scratch on ~1,500 images vary a lot from one seed to the next;
averaging a few of them is the most reliable way to cut that variance. The ensemble is
rebuilt as one functional model, so the rest of TumorLens treats it as any classifier::

    input_image -> member{k}_<layer> ... -> member k's last feature map   (k = 0..K-1)
                -> ensemble_features (Concatenate) -> head_pool -> head_dropout
                -> logits -> probabilities

Global average pooling acts channel by channel, so a Dense layer on the pooled,
concatenated features whose kernel is the members' kernels stacked and divided by K,
and whose bias is the mean of their biases, computes exactly the mean of the members'
logits (or, with member weights w_k, the kernels times w_k: the weighted mean).
Members may also read different channels of one shared input (a ``member{k}_channels``
layer picks them), e.g. a grey-scale classifier beside a mask-guided head that also
reads the lesion channels. Temperature scaling then applies to those averaged logits,
and Grad-CAM on ``ensemble_features`` is the ensemble's own Grad-CAM: the gradient of the averaged
logit with respect to every member's feature map. Every member layer keeps its name
behind a ``member{k}_`` prefix, so any of them can still be tapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from utils.errors import ConfigError, ModelError
from utils.models.classification import (
    HEAD_DROPOUT_LAYER,
    HEAD_POOL_LAYER,
    INPUT_LAYER,
    LOGITS_LAYER,
    PROBABILITIES_LAYER,
    build_classifier,
)
from utils.models.graph import replay_copies

__all__ = [
    "ENSEMBLE_FEATURES_LAYER",
    "SelectChannels",
    "assemble_ensemble",
    "build_classifier_ensemble",
    "member_prefix",
]

ENSEMBLE_FEATURES_LAYER = "ensemble_features"


def member_prefix(index: int) -> str:
    """Prefix of member ``index``'s layer names inside an ensemble (``"member0_"``...)."""
    return f"member{index}_"


def _head_parts(member: keras.Model, index: int) -> tuple[keras.KerasTensor, layers.Dense]:
    """Member ``index``'s feature tensor (the head's input) and its logits layer."""
    try:
        pool = member.get_layer(HEAD_POOL_LAYER)
        logits = member.get_layer(LOGITS_LAYER)
    except ValueError as error:
        raise ModelError(
            f"Ensemble member {index} ({member.name!r}) lacks the shared classifier head "
            f"({HEAD_POOL_LAYER!r} -> {LOGITS_LAYER!r}); only models built by "
            "utils.models.classification can be ensembled."
        ) from error
    return pool.input, logits


@keras.saving.register_keras_serializable(package="TumorLens")
class SelectChannels(layers.Layer):
    """The listed channels of the input, in that order: a member's view of a shared input.

    Args:
        channels: Channel indices to keep.
        **kwargs: Layer options (``name``...).
    """

    def __init__(self, channels: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = tuple(int(channel) for channel in channels)

    def call(self, inputs: keras.KerasTensor) -> keras.KerasTensor:
        """``inputs[..., channels]``."""
        return ops.take(inputs, list(self.channels), axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """The input's shape with ``len(channels)`` channels."""
        return (*input_shape[:-1], len(self.channels))

    def get_config(self) -> dict[str, Any]:
        """Serialisable options (saved in the ``.keras`` file)."""
        return {**super().get_config(), "channels": list(self.channels)}


def _check_members(
    members: Sequence[keras.Model], member_channels: Sequence[Sequence[int]] | None
) -> tuple[int, ...]:
    """Raise unless the members can be assembled; return the ensemble's input shape."""
    if len(members) < 2:
        raise ConfigError(f"An ensemble needs at least 2 members; received {len(members)}.")
    input_shape = _shared_input_shape(members, member_channels)
    classes = {int(m.output_shape[-1]) for m in members}
    features = {tuple(_head_parts(m, i)[0].shape[1:3]) for i, m in enumerate(members)}
    if len(classes) != 1:
        raise ModelError(
            f"Ensemble members must share one class count; received {sorted(classes)}."
        )
    if len(features) != 1:
        raise ModelError(
            "Ensemble members' last feature maps must have one spatial size to be "
            f"concatenated; received {sorted(features)}."
        )
    return input_shape


def _shared_input_shape(
    members: Sequence[keras.Model], member_channels: Sequence[Sequence[int]] | None
) -> tuple[int, ...]:
    """The ensemble's input shape, checked against what each member reads of it."""
    shapes = [tuple(m.input_shape[1:]) for m in members]
    if member_channels is None:
        if len(set(shapes)) != 1:
            raise ModelError(
                f"Ensemble members must share one input shape; received {sorted(set(shapes))}."
            )
        return shapes[0]
    if len(member_channels) != len(members):
        raise ConfigError(
            f"member_channels must list the channels of each of the {len(members)} members; "
            f"received {len(member_channels)} entries."
        )
    spatial = {shape[:-1] for shape in shapes}
    if len(spatial) != 1:
        raise ModelError(f"Ensemble members must share one image size; received {sorted(spatial)}.")
    for index, (shape, channels) in enumerate(zip(shapes, member_channels, strict=True)):
        if len(channels) != shape[-1] or min(channels, default=-1) < 0:
            raise ConfigError(
                f"Member {index} takes {shape[-1]} channel(s), so it must read as many "
                f"non-negative channel indices; received {list(channels)}."
            )
    return (*shapes[0][:-1], 1 + max(max(channels) for channels in member_channels))


def _normalised_weights(weights: Sequence[float] | None, count: int) -> np.ndarray:
    if weights is None:
        return np.full(count, 1.0 / count)
    values = np.asarray(weights, dtype=np.float64)
    if values.shape != (count,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ConfigError(
            f"member_weights must be {count} positive numbers; received {list(weights)}."
        )
    return values / values.sum()


def _member_features(
    member: keras.Model, index: int, inputs: keras.KerasTensor
) -> keras.KerasTensor:
    """Member ``index``'s feature extractor re-applied to ``inputs``, weights copied."""
    features, _ = _head_parts(member, index)
    trunk = keras.Model(member.input, features)
    prefix = member_prefix(index)
    return replay_copies(trunk, inputs, rename=lambda name: prefix + name)


def assemble_ensemble(
    members: Sequence[keras.Model],
    name: str = "classifier_ensemble",
    *,
    member_channels: Sequence[Sequence[int]] | None = None,
    member_weights: Sequence[float] | None = None,
) -> keras.Model:
    """One flat classifier whose logits are the (weighted) mean of the members' logits.

    Args:
        members: Two or more trained classifiers built by
            :mod:`utils.models.classification` (the shared head), with one class count,
            image size and last-feature-map size. A member may itself be an ensemble.
        name: Name of the assembled model.
        member_channels: For members that read different channels of one shared input
            (a grey-scale model beside a mask-guided head): the input channels each
            member reads, e.g. ``[(0,), (0, 1, 2)]``. The shared input has as many
            channels as the highest index + 1. Default: every member reads the whole
            input, and all must share one input shape.
        member_weights: Positive weight of each member's logits (normalised to sum to
            1); default equal.

    Returns:
        A model mapping (N, H, W, C) images in [0, 1] to (N, classes) probabilities,
        with the layers described in the module docstring (plus a
        ``member{k}_channels`` layer in front of each member that reads a subset).

    Raises:
        ConfigError: Fewer than two members, or bad ``member_channels`` or weights.
        ModelError: A member lacks the shared head, or the members do not match.
    """
    input_shape = _check_members(members, member_channels)
    weights = _normalised_weights(member_weights, len(members))
    inputs = keras.Input(shape=input_shape, name=INPUT_LAYER)
    member_features = []
    for index, member in enumerate(members):
        view = inputs
        channels = None if member_channels is None else tuple(member_channels[index])
        if channels is not None and channels != tuple(range(input_shape[-1])):
            view = SelectChannels(channels, name=f"{member_prefix(index)}channels")(inputs)
        member_features.append(_member_features(member, index, view))
    features = layers.Concatenate(axis=-1, name=ENSEMBLE_FEATURES_LAYER)(member_features)
    dropout_rate = float(members[0].get_layer(HEAD_DROPOUT_LAYER).rate)
    n_classes = int(members[0].output_shape[-1])
    x = layers.GlobalAveragePooling2D(name=HEAD_POOL_LAYER)(features)
    x = layers.Dropout(dropout_rate, name=HEAD_DROPOUT_LAYER)(x)
    logits_layer = layers.Dense(n_classes, dtype="float32", name=LOGITS_LAYER)
    logits = logits_layer(x)
    outputs = layers.Softmax(dtype="float32", name=PROBABILITIES_LAYER)(logits)
    model = keras.Model(inputs, outputs, name=name)
    kernels, biases = zip(
        *(_head_parts(m, i)[1].get_weights() for i, m in enumerate(members)), strict=True
    )
    weighted = [kernel * weight for kernel, weight in zip(kernels, weights, strict=True)]
    bias = np.tensordot(weights, np.stack(biases), axes=1)
    logits_layer.set_weights([np.concatenate(weighted, axis=0), bias])
    return model


def build_classifier_ensemble(member_arch: str, members: int, **member_options: Any) -> keras.Model:
    """An untrained ensemble of ``members`` ``member_arch`` classifiers.

    Its structure (and so its weight order) is that of :func:`assemble_ensemble` on
    trained members of the same options, so saved ensemble weights load into it.

    Args:
        member_arch: Registry name of every member (see ``CLASSIFIER_BUILDERS``).
        members: Number of members (>= 2).
        **member_options: Options of :func:`~utils.models.classification.build_classifier`
            (``input_shape``, ``num_classes``, ``dropout``...).

    Raises:
        ConfigError: Fewer than two members, an unknown architecture or a bad option.
    """
    if isinstance(members, bool) or not isinstance(members, int) or members < 2:
        raise ConfigError(f"An ensemble needs at least 2 members; received {members!r}.")
    built = [build_classifier(member_arch, **member_options) for _ in range(members)]
    return assemble_ensemble(built, name=f"{member_arch}_ensemble")
