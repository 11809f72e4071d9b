"""Mask-guided lesion classifier: one self-contained model, segmenter inside.

The classifier head sees three channels at its own (small) input size, made inside the
model from the full-size grey-scale image (see :mod:`utils.training.mask_guided`):

0. the image, shrunk (average pooling by the whole factor, then bilinear);
1. the embedded segmenter's lesion-probability map, resized the same way;
2. the lesion view: the image where the dilated ``probability >= threshold`` region is,
   zero elsewhere.

Everything is Keras layers and ``keras.ops``, so the one ``.keras`` file loads and runs
like any classifier (temperature scaling, test-time augmentation, Grad-CAM on any head
layer) on TensorFlow or JAX, and never depends on which segmenter bundle is installed.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from utils.errors import ModelError
from utils.models.classification import LOGITS_LAYER
from utils.models.graph import replay_copies

__all__ = [
    "FRONT_END_OUTPUT",
    "SEGMENTER_LAYER",
    "LesionView",
    "build_mask_guided_classifier",
    "build_mask_guided_front_end",
    "build_mask_guided_mixer",
    "lesion_view_pool_size",
    "mask_guided_feature_head",
    "mask_guided_head_copy",
    "split_mask_guided",
]

#: Name of the layer whose output is the head's three-channel input.
FRONT_END_OUTPUT = "mask_guided_channels"

#: Name of the embedded segmenter.
SEGMENTER_LAYER = "lesion_segmenter"

#: Dilation of the lesion region, as a fraction of the head's input side.
LESION_VIEW_MARGIN = 0.08


def lesion_view_pool_size(side: int) -> int:
    """Odd dilation window (pixels) of the lesion view for a head input of ``side`` px."""
    return max(3, round(LESION_VIEW_MARGIN * side) | 1)


@keras.saving.register_keras_serializable(package="TumorLens")
class LesionView(layers.Layer):
    """``image * dilate(probability >= threshold)``: the lesion and its margin only.

    Args:
        threshold: Probability from which a pixel counts as lesion.
        pool_size: Side of the square dilation window (odd).
        **kwargs: Layer options (``name``...).
    """

    def __init__(self, threshold: float = 0.5, pool_size: int = 9, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = float(threshold)
        self.pool_size = int(pool_size)

    def call(self, inputs: list[keras.KerasTensor]) -> keras.KerasTensor:
        """The image times the dilated lesion region of ``inputs = [image, probability]``."""
        image, probability = inputs
        region = ops.cast(ops.greater_equal(probability, self.threshold), image.dtype)
        dilated = ops.max_pool(region, self.pool_size, strides=1, padding="same")
        return image * dilated

    def compute_output_shape(self, input_shape: list[tuple]) -> tuple:
        """The image's shape."""
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        """Serialisable options (saved in the ``.keras`` file)."""
        return {**super().get_config(), "threshold": self.threshold, "pool_size": self.pool_size}


def _shrink(x: keras.KerasTensor, side: int, head_size: int, what: str) -> keras.KerasTensor:
    """Average-pool by the whole factor, then bilinear to ``head_size``.

    Close to area resizing and, unlike antialiased resizing, it compiles with XLA.
    """
    factor = max(1, side // head_size)
    if factor > 1:
        x = layers.AveragePooling2D(factor, name=f"{what}_pool")(x)
    return layers.Resizing(head_size, head_size, name=f"{what}_resize")(x)


def build_mask_guided_front_end(
    segmenter: keras.Model, head_size: int, threshold: float
) -> keras.Model:
    """The model from a full-size image to the head's (head_size, head_size, 3) input.

    Args:
        segmenter: Lesion segmenter taking (H, W, 1) images in [0, 1] and returning
            (H, W, 1) probabilities. It is copied and frozen.
        head_size: Input side of the classifier head.
        threshold: Lesion threshold of the lesion view (the segmenter's).

    Returns:
        A model named ``mask_guided_front_end``.

    Raises:
        ModelError: The segmenter does not map (H, W, 1) to (H, W, 1).
    """
    in_shape, out_shape = tuple(segmenter.input_shape[1:]), tuple(segmenter.output_shape[1:])
    if len(in_shape) != 3 or in_shape[-1] != 1 or out_shape != in_shape:
        raise ModelError(
            f"The segmenter must map (H, W, 1) images to (H, W, 1) probabilities; it maps "
            f"{in_shape} to {out_shape}."
        )
    embedded = keras.models.clone_model(segmenter)
    embedded.set_weights(segmenter.get_weights())
    embedded.trainable = False
    embedded.name = SEGMENTER_LAYER
    image = keras.Input(shape=in_shape, name="image")
    probability = embedded(image, training=False)
    small_image = _shrink(image, in_shape[0], head_size, "image")
    small_probability = _shrink(probability, in_shape[0], head_size, "probability")
    view = LesionView(threshold, lesion_view_pool_size(head_size), name="lesion_view")(
        [small_image, small_probability]
    )
    stacked = layers.Concatenate(name=FRONT_END_OUTPUT)([small_image, small_probability, view])
    return keras.Model(image, stacked, name="mask_guided_front_end")


def build_mask_guided_classifier(
    segmenter: keras.Model, head: keras.Model, threshold: float
) -> keras.Model:
    """One model: full-size image -> front end -> the trained head's class probabilities.

    The head's layers are copied onto the front end's output, following the head's
    graph (a chain such as ``compact_cnn`` or a branching head such as an ensemble), so
    every head layer keeps its name (``stage4_relu2``, ``ensemble_features``,
    ``logits``...) at the top level of the model, where Grad-CAM and
    :func:`~utils.models.classification.logits_model` find it.

    Args:
        segmenter: See :func:`build_mask_guided_front_end`.
        head: A trained single-input classifier taking (s, s, 3) inputs.
        threshold: Lesion threshold of the lesion view.

    Returns:
        A model named ``mask_guided_<head name>``.

    Raises:
        ModelError: The head does not take square three-channel inputs, or the composed
            model does not reproduce it.
    """
    head_shape = tuple(head.input_shape[1:])
    square = len(head_shape) == 3 and head_shape[0] == head_shape[1] and head_shape[-1] == 3
    if len(head.inputs) != 1 or not square:
        raise ModelError(f"The head must take square (s, s, 3) inputs; it takes {head_shape}.")
    front_end = build_mask_guided_front_end(segmenter, head_shape[0], threshold)
    outputs = replay_copies(head, front_end.output)
    model = keras.Model(front_end.input, outputs, name=f"mask_guided_{head.name}")
    _check_reproduces_head(model, front_end, head)
    return model


def _check_reproduces_head(model: keras.Model, front_end: keras.Model, head: keras.Model) -> None:
    """Raise ModelError unless ``model`` equals ``head(front_end(x))`` on a test batch."""
    rng = np.random.default_rng(0)
    batch = rng.uniform(0.0, 1.0, (2, *model.input_shape[1:])).astype(np.float32)
    expected = head.predict(front_end.predict(batch, verbose=0), verbose=0)
    got = model.predict(batch, verbose=0)
    if not np.allclose(got, expected, atol=1e-4):
        raise ModelError(
            f"Composing the head {head.name!r} with the mask-guided front end changed its "
            f"outputs (max difference {float(np.max(np.abs(got - expected))):.3g})."
        )


def _head_graph(
    model: keras.Model, *, to_logits: bool = False, to_features: bool = False
) -> keras.Model | None:
    """The composed model's own head layers, from the front end's output (shared weights).

    The head ends at the probabilities, the logits (``to_logits``) or the penultimate
    features, the input of the logits layer (``to_features``).
    """
    if FRONT_END_OUTPUT not in {layer.name for layer in model.layers}:
        return None
    cut = model.get_layer(FRONT_END_OUTPUT).output
    if to_features:
        end = model.get_layer(LOGITS_LAYER).input
    else:
        end = model.get_layer(LOGITS_LAYER).output if to_logits else model.outputs[0]
    return keras.Model(cut, end, name="mask_guided_head")


def mask_guided_feature_head(model: keras.Model) -> keras.Model | None:
    """A mask-guided model's head up to its penultimate features; ``None`` if not mask-guided.

    Built from the composed model itself: a head model's own ``logits`` layer input
    belongs to the composed graph, not to the head's cloned one.
    """
    return _head_graph(model, to_features=True)


def split_mask_guided(
    model: keras.Model, *, to_logits: bool = False
) -> tuple[keras.Model, keras.Model] | None:
    """The front end and the head of a composed mask-guided model (shared layers).

    Lets a predictor run the costly segmenter once per image and the cheap head many
    times (test-time augmentation of the head's input).

    Args:
        model: Any classifier.
        to_logits: End the head at its ``logits`` layer instead of the probabilities.

    Returns:
        ``(front_end, head)``, or ``None`` when ``model`` is not mask-guided.
    """
    head = _head_graph(model, to_logits=to_logits)
    if head is None:
        return None
    cut = model.get_layer(FRONT_END_OUTPUT)
    front_end = keras.Model(model.inputs[0], cut.output, name="mask_guided_front_end")
    return front_end, head


def build_mask_guided_mixer(model: keras.Model) -> keras.Model | None:
    """The front end *after* its segmenter: (H, W, 2) ``[image, probability]`` -> head input.

    Where the caller already has the embedded segmenter's probability map of the image
    (the analysis runs that segmenter anyway), this turns the pair into the head's
    three channels with the model's own layers, skipping the costly second segmenter
    pass: ``mixer(concat(x, segmenter(x)))`` equals the front end of ``x``.

    Args:
        model: A composed mask-guided classifier.

    Returns:
        A model named ``mask_guided_mixer``, or ``None`` when ``model`` is not mask-guided.
    """
    names = {layer.name for layer in model.layers}
    if FRONT_END_OUTPUT not in names:
        return None
    height, width = tuple(model.input_shape[1:3])
    pair = keras.Input(shape=(height, width, 2), name="image_and_probability")

    def shrink(x: keras.KerasTensor, what: str) -> keras.KerasTensor:
        # The same (optional) pooling and resizing layers as _shrink built.
        for step in ("pool", "resize"):
            if f"{what}_{step}" in names:
                x = model.get_layer(f"{what}_{step}")(x)
        return x

    image = shrink(pair[..., :1], "image")
    probability = shrink(pair[..., 1:], "probability")
    view = model.get_layer("lesion_view")([image, probability])
    stacked = model.get_layer(FRONT_END_OUTPUT)([image, probability, view])
    return keras.Model(pair, stacked, name="mask_guided_mixer")


def mask_guided_head_copy(model: keras.Model) -> keras.Model | None:
    """A stand-alone copy of a mask-guided model's head, for Grad-CAM.

    Fresh layers with the same names, configs and weights: Grad-CAM builds sub-models
    from ``layer.output``, which a layer shared with the composed model would point at
    the composed graph. The head's CAM equals the whole model's at any head layer,
    without back-propagating through the segmenter.

    Returns:
        The head (head input -> class probabilities), or ``None`` when not mask-guided.
    """
    head = _head_graph(model)
    if head is None:
        return None
    head_input = keras.Input(shape=tuple(head.input_shape[1:]), name="head_input")
    return keras.Model(head_input, replay_copies(head, head_input), name="mask_guided_head")
