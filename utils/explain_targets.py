"""What a class activation map (CAM) explains: the layer it taps and the score it follows.

Helpers of :mod:`utils.explain`, kept apart so the CAM maths stays short. They work on
the models of :mod:`utils.models.classification` and :mod:`utils.models.segmentation`
(or any single-input Keras 3 functional model of the same shape):

* a **classifier** outputs (N, num_classes); its CAM follows one class's *logit*
  (pre-softmax), taken from the ``logits`` layer when there is one (softmax outputs
  saturate, so their gradients vanish on confident predictions and one class's
  probability also rises when the others fall);
* a **segmenter** outputs (N, H, W, num_classes) sigmoid probabilities; its CAM follows
  the predicted lesion area, the sum of the lesion probabilities over every pixel (and
  output channel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import keras

from utils.errors import ConfigError, ModelError
from utils.models.classification import ADAPTER_LAYER_NAMES, LOGITS_LAYER, last_conv_layer_name

__all__ = [
    "LESION_AREA",
    "CamTarget",
    "ModelKind",
    "check_target",
    "default_target_layer",
    "list_target_layers",
    "model_kind",
    "resolve_target_layer",
    "score_tensor",
    "scores_are_logits",
]

#: The target of a segmenter's CAM: the predicted lesion area.
LESION_AREA: Final = "lesion_area"

CamTarget = int | Literal["lesion_area"]
ModelKind = Literal["classifier", "segmenter"]

# The deepest block of every segmentation network (utils.models.segmentation).
_BOTTLENECK_PREFIX: Final = "bottleneck_"


@dataclass(frozen=True)
class _ModelShape:
    """The parts of a model's signature the CAM code relies on."""

    kind: ModelKind
    num_outputs: int


def _describe(model: keras.Model) -> _ModelShape:
    """Classify ``model`` as a classifier or a segmenter from its single output's rank.

    Raises:
        ModelError: The model has several inputs or outputs, or an output of another rank.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(
            f"CAMs need a model with one image input and one output; {model.name!r} has "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs."
        )
    output_shape = model.outputs[0].shape
    kinds: dict[int, ModelKind] = {2: "classifier", 4: "segmenter"}
    if len(output_shape) not in kinds:
        raise ModelError(
            f"CAMs need a classifier output (N, classes) or a segmentation output (N, H, W, "
            f"classes); {model.name!r} outputs shape {tuple(output_shape)}."
        )
    return _ModelShape(kinds[len(output_shape)], int(output_shape[-1]))


def model_kind(model: keras.Model) -> ModelKind:
    """``"classifier"`` or ``"segmenter"``, from the rank of the model's output.

    Raises:
        ModelError: The model is neither (several inputs or outputs, other output rank).
    """
    return _describe(model).kind


def _has_spatial_output(layer: keras.layers.Layer) -> bool:
    """Whether the layer has one (N, H, W, C) output (shared layers are skipped)."""
    try:
        output = layer.output
    except (AttributeError, ValueError):  # Several outputs, or used at several places.
        return False
    return isinstance(output, keras.KerasTensor) and len(output.shape) == 4


def list_target_layers(model: keras.Model) -> list[str]:
    """Names of the layers a CAM can tap: every layer with a 4-D (N, H, W, C) output.

    The input and the classifiers' input adapters (``gray_to_rgb``, ``scale_to_255``...,
    mere copies of the image) are left out.

    Args:
        model: A classifier or segmenter.

    Returns:
        Layer names ordered from the input to the output, for a layer picker.
    """
    return [
        layer.name
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
        and layer.name not in ADAPTER_LAYER_NAMES
        and _has_spatial_output(layer)
    ]


def default_target_layer(model: keras.Model) -> str:
    """The layer a CAM taps when none is named.

    Classifiers: :func:`~utils.models.classification.last_conv_layer_name`, the last
    spatial feature map before pooling (the original Grad-CAM choice: most semantic,
    still spatial). Segmenters: the output of the bottleneck block (e.g.
    ``bottleneck_out_relu``), as in Seg-Grad-CAM (Vinogradova et al., 2020). The last
    decoder layers are full resolution but sit one 1x1 conv before the output, so their
    CAM mostly repeats the predicted mask; the bottleneck shows which coarse context the
    network drew the lesion from. A model without a ``bottleneck_*`` layer falls back to
    its last spatial layer before the output.

    Raises:
        ModelError: The model has no spatial layer.
    """
    if model_kind(model) == "classifier":
        return last_conv_layer_name(model)
    candidates = list_target_layers(model)
    bottleneck = [name for name in candidates if name.startswith(_BOTTLENECK_PREFIX)]
    if bottleneck:
        return bottleneck[-1]
    # Skip the output layer itself: its CAM is the prediction, explaining nothing.
    before_output = [name for name in candidates if name != model.layers[-1].name]
    if not before_output:
        raise ModelError(f"Model {model.name!r} has no layer with a spatial output.")
    return before_output[-1]


def resolve_target_layer(model: keras.Model, layer_name: str | None) -> str:
    """``layer_name`` checked against :func:`list_target_layers`, or the default layer.

    Raises:
        ConfigError: ``layer_name`` is not a spatial layer of the model (the message
            lists the valid names).
    """
    if layer_name is None:
        return default_target_layer(model)
    valid = list_target_layers(model)
    if layer_name not in valid:
        raise ConfigError(
            f"Unknown CAM layer {layer_name!r} for model {model.name!r}; valid layers (4-D "
            f"outputs, input to output): {', '.join(valid)}."
        )
    return layer_name


def check_target(model: keras.Model, target: object) -> CamTarget:
    """Check that ``target`` makes sense for ``model``.

    Args:
        model: A classifier or segmenter.
        target: A class index in ``[0, num_classes)`` for a classifier, ``"lesion_area"``
            for a segmenter.

    Returns:
        ``target``, as a plain ``int`` for a class index.

    Raises:
        ConfigError: The target does not fit the model.
    """
    shape = _describe(model)
    if shape.kind == "segmenter":
        if target != LESION_AREA:
            raise ConfigError(
                f"A segmenter's CAM target must be {LESION_AREA!r} (the predicted lesion "
                f"area); received {target!r}."
            )
        return LESION_AREA
    is_index = isinstance(target, int) and not isinstance(target, bool)
    if not is_index or not 0 <= target < shape.num_outputs:
        raise ConfigError(
            f"A classifier's CAM target must be a class index from 0 to "
            f"{shape.num_outputs - 1}; received {target!r}."
        )
    return int(target)


def _logits_output(model: keras.Model) -> keras.KerasTensor | None:
    """A classifier's ``logits`` layer output, or None (segmenter, or no such layer)."""
    if model_kind(model) != "classifier":
        return None
    try:
        return model.get_layer(LOGITS_LAYER).output
    except ValueError:  # Not built by utils.models.classification.
        return None


def scores_are_logits(model: keras.Model) -> bool:
    """Whether :func:`score_tensor` gives logits (a classifier with a ``logits`` layer)."""
    return _logits_output(model) is not None


def score_tensor(model: keras.Model) -> keras.KerasTensor:
    """The symbolic tensor a CAM's score is read from.

    Classifiers: the ``logits`` layer's output when present (pre-softmax), else the
    model output. Segmenters: the model output (the lesion probabilities).
    """
    logits = _logits_output(model)
    return model.outputs[0] if logits is None else logits
