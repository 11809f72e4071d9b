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
logits. Temperature scaling then applies to those averaged logits, and Grad-CAM on
``ensemble_features`` is the ensemble's own Grad-CAM: the gradient of the averaged
logit with respect to every member's feature map. Every member layer keeps its name
behind a ``member{k}_`` prefix, so any of them can still be tapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers

from utils.errors import ConfigError, ModelError
from utils.models.classification import (
    HEAD_DROPOUT_LAYER,
    HEAD_POOL_LAYER,
    INPUT_LAYER,
    LOGITS_LAYER,
    PROBABILITIES_LAYER,
    build_classifier,
)

__all__ = [
    "ENSEMBLE_FEATURES_LAYER",
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


def _check_members(members: Sequence[keras.Model]) -> None:
    if len(members) < 2:
        raise ConfigError(f"An ensemble needs at least 2 members; received {len(members)}.")
    shapes = {tuple(m.input_shape[1:]) for m in members}
    classes = {int(m.output_shape[-1]) for m in members}
    features = {tuple(_head_parts(m, i)[0].shape[1:3]) for i, m in enumerate(members)}
    for what, values in (("input shape", shapes), ("class count", classes)):
        if len(values) != 1:
            raise ModelError(f"Ensemble members must share one {what}; received {sorted(values)}.")
    if len(features) != 1:
        raise ModelError(
            "Ensemble members' last feature maps must have one spatial size to be "
            f"concatenated; received {sorted(features)}."
        )


def _renamed_layer(layer: layers.Layer, prefix: str) -> layers.Layer:
    config = layer.get_config()
    config["name"] = prefix + layer.name
    return layer.__class__.from_config(config)


def _member_features(
    member: keras.Model, index: int, inputs: keras.KerasTensor
) -> keras.KerasTensor:
    """Member ``index``'s feature extractor re-applied to ``inputs``, weights copied."""
    features, _ = _head_parts(member, index)
    trunk = keras.Model(member.input, features)
    prefix = member_prefix(index)
    clone = keras.models.clone_model(
        trunk, input_tensors=inputs, clone_function=lambda layer: _renamed_layer(layer, prefix)
    )
    for layer in trunk.layers:
        if layer.weights and not isinstance(layer, layers.InputLayer):
            clone.get_layer(prefix + layer.name).set_weights(layer.get_weights())
    return clone.outputs[0]


def assemble_ensemble(
    members: Sequence[keras.Model], name: str = "classifier_ensemble"
) -> keras.Model:
    """One flat classifier whose logits are the mean of the members' logits.

    Args:
        members: Two or more trained classifiers built by
            :mod:`utils.models.classification` (the shared head), with one input shape,
            class count and last-feature-map size.
        name: Name of the assembled model.

    Returns:
        A model mapping (N, H, W, C) images in [0, 1] to (N, classes) probabilities,
        with the layers described in the module docstring.

    Raises:
        ConfigError: Fewer than two members.
        ModelError: A member lacks the shared head, or the members do not match.
    """
    _check_members(members)
    inputs = keras.Input(shape=tuple(members[0].input_shape[1:]), name=INPUT_LAYER)
    features = layers.Concatenate(axis=-1, name=ENSEMBLE_FEATURES_LAYER)(
        [_member_features(member, index, inputs) for index, member in enumerate(members)]
    )
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
    logits_layer.set_weights(
        [np.concatenate(kernels, axis=0) / len(members), np.mean(biases, axis=0)]
    )
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
