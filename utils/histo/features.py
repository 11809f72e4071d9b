"""Pooled CNN features of H&E patches: a classifier used as a feature extractor.

:func:`extract_features` turns patches into one vector each, taken from the global
pooling layer of a TumorLens classifier (``head_pool``, before dropout and logits) or any
named layer (a 4-D feature map is global-average-pooled). The vectors feed clustering,
nearest-neighbour search, multiple-instance learning over a slide's tiles, or a
linear probe.

Patches must already have the model's input size: a patch classifier is tied to a
magnification (PCam: 96 px at 10x), and silently resizing a tile would change it.
Inference mode (dropout off, BatchNorm statistics frozen) makes the features
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import keras
import numpy as np

from utils.errors import ConfigError, ImageDimensionError, InvalidImageError
from utils.inference.bundle import load_bundle, to_float_batch
from utils.inference.compiled import compile_forward
from utils.models.classification import HEAD_POOL_LAYER

__all__ = ["DEFAULT_FEATURE_LAYER", "extract_features", "feature_model"]

#: The layer read when none is named: the global average pool before the classifier head.
DEFAULT_FEATURE_LAYER: Final = HEAD_POOL_LAYER
_DEFAULT_BATCH_SIZE: Final = 64


def _layer_names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers]


def _default_layer(model: keras.Model) -> keras.layers.Layer:
    """``head_pool`` when present, else the last layer with a 2-D or 4-D output before the head."""
    names = _layer_names(model)
    if DEFAULT_FEATURE_LAYER in names:
        return model.get_layer(DEFAULT_FEATURE_LAYER)
    # Foreign models: the last pooled / spatial layer before the output layer.
    for layer in reversed(model.layers[:-1]):
        shape = getattr(layer, "output", None)
        if shape is not None and len(layer.output.shape) in (2, 4):
            return layer
    raise ConfigError(
        f"Model {model.name!r} has no layer to read features from; name one with layer= "
        f"(layers: {', '.join(names)})."
    )


def feature_model(model: keras.Model, layer: str | None = None) -> keras.Model:
    """A model from the classifier's input to pooled ``(N, D)`` features.

    Args:
        model: A Keras classifier (one image input).
        layer: Layer to read; ``None`` uses :data:`DEFAULT_FEATURE_LAYER` (or, for models
            without it, the last 2-D/4-D layer before the output). A 4-D output is
            global-average-pooled.

    Returns:
        The feature model (shares the classifier's weights).

    Raises:
        ConfigError: ``layer`` is not a layer of ``model``, or its output is neither
            ``(N, D)`` nor ``(N, H, W, C)``.
    """
    if layer is None:
        chosen = _default_layer(model)
    else:
        names = _layer_names(model)
        if layer not in names:
            raise ConfigError(
                f"Layer {layer!r} is not in model {model.name!r}; valid names include: "
                f"{', '.join(names[-12:])} (and {max(0, len(names) - 12)} more)."
            )
        chosen = model.get_layer(layer)
    outputs = chosen.output
    if len(outputs.shape) == 4:
        outputs = keras.layers.GlobalAveragePooling2D(name=f"{chosen.name}_feature_pool")(outputs)
    elif len(outputs.shape) != 2:
        raise ConfigError(
            f"Layer {chosen.name!r} outputs shape {tuple(outputs.shape)}; features need a "
            "(N, D) vector or an (N, H, W, C) map to pool."
        )
    return keras.Model(model.inputs, outputs, name=f"{model.name}_features")


def _resolve_model(model_or_bundle: Any) -> keras.Model:
    if isinstance(model_or_bundle, keras.Model):
        return model_or_bundle
    if isinstance(model_or_bundle, str | Path):
        model, _ = load_bundle(model_or_bundle, task="classification")
        return model
    # A LesionClassifier (or any predictor) carries its model.
    model = getattr(model_or_bundle, "model", None)
    if isinstance(model, keras.Model):
        return model
    raise ConfigError(
        "model_or_bundle must be a keras.Model, a classifier bundle name or '.keras' path, or "
        f"a LesionClassifier; received {type(model_or_bundle).__name__}."
    )


def _patch_batch(
    patches: np.ndarray | Sequence[np.ndarray], input_shape: tuple[int | None, ...]
) -> np.ndarray:
    """Check the patches and return them as one uint8 (N, H, W, C) array.

    ``input_shape`` is the model's ``(H, W, C)``; ``None`` sides accept any size.
    """
    array = np.stack(list(patches)) if isinstance(patches, list | tuple) else np.asarray(patches)
    if array.ndim == 3 and input_shape[2] == 1:
        array = array[..., None]
    if array.ndim != 4 or len(array) == 0:
        raise ImageDimensionError(
            f"patches must be a non-empty (N, H, W, C) batch; got shape {array.shape}."
        )
    if array.dtype != np.uint8:
        raise InvalidImageError(f"patches must be uint8 (0-255); got dtype {array.dtype}.")
    if len(input_shape) != 3 or any(
        want is not None and want != got
        for want, got in zip(input_shape, array.shape[1:], strict=True)
    ):
        raise ImageDimensionError(
            f"patches are {tuple(array.shape[1:])} (H, W, C) but the model takes "
            f"{tuple(input_shape)}; cut patches of that size at the model's magnification "
            "instead of resizing."
        )
    return array


def extract_features(
    model_or_bundle: Any,
    patches: np.ndarray | Sequence[np.ndarray],
    layer: str | None = None,
    batch_size: int = _DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Pooled CNN features of every patch.

    Args:
        model_or_bundle: A Keras classifier, a classification bundle name in
            ``saved_models/`` (e.g. ``"pcam_patch_classifier"``) or ``.keras`` path, or a
            :class:`~utils.inference.classifier.LesionClassifier`.
        patches: uint8 RGB patches, (N, H, W, C) array or a list of (H, W, C), at the
            model's input size.
        layer: Layer to read (see :func:`feature_model`); default the global pool.
        batch_size: Patches per forward pass.

    Returns:
        float32 array (N, D).

    Raises:
        ConfigError: Bad ``batch_size``, an unknown layer or model argument.
        ImageDimensionError: Empty input or patches not at the model's input size.
        InvalidImageError: The patches are not uint8.
        ModelError: The bundle cannot be loaded.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}.")
    model = _resolve_model(model_or_bundle)
    batch = _patch_batch(patches, tuple(model.input_shape[1:]))
    input_shape = tuple(int(side) for side in batch.shape[1:])
    forward = compile_forward(feature_model(model, layer), input_shape)
    chunks = [
        forward(to_float_batch(batch[start : start + batch_size], input_shape))
        for start in range(0, len(batch), batch_size)
    ]
    return np.concatenate(chunks).astype(np.float32)
