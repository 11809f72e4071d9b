"""Re-apply a functional model's layers, following its graph, to new tensors.

Composite models (ensembles, the mask-guided classifier) are built flat, by replaying
trained models' layers onto a new input, so that every layer stays tappable by name at
the top level (Grad-CAM reads ``model.get_layer(name).output``). Keras's
``clone_model(..., input_tensors=...)`` only accepts graph inputs, and a branching model
cannot be replayed layer by layer in list order, so this walks the graph itself.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

__all__ = ["replay_copies"]


def _run_through_graph(
    model: keras.Model,
    inputs: keras.KerasTensor,
    make_layer: Callable[[layers.Layer], layers.Layer],
) -> keras.KerasTensor:
    # Keras's own graph walk (what clone_model uses), which accepts any tensor as the
    # input: make_layer is called once per node, in topological order.
    return model._run_through_graph(inputs, operation_fn=make_layer)


def replay_copies(
    model: keras.Model,
    inputs: keras.KerasTensor,
    rename: Callable[[str], str] | None = None,
) -> keras.KerasTensor:
    """Fresh copies of ``model``'s layers (same configs and weights) applied to ``inputs``.

    Copies, not the layers themselves: a layer used by two models has two graph nodes,
    and ``layer.output`` (what Grad-CAM reads) is the first one's.

    Args:
        model: A single-input functional model.
        inputs: Tensor to build on, of ``model``'s input shape; any tensor of a graph
            under construction, not only an ``keras.Input``.
        rename: Maps each layer's name to its copy's (default: the same name).

    Returns:
        The copies' output tensor.
    """
    copies: list[tuple[layers.Layer, layers.Layer]] = []

    def copy(layer: layers.Layer) -> layers.Layer:
        config = layer.get_config()
        if rename is not None:
            config["name"] = rename(layer.name)
        duplicate = layer.__class__.from_config(config)
        copies.append((layer, duplicate))
        return duplicate

    outputs = _run_through_graph(model, inputs, copy)
    for original, duplicate in copies:  # built by the replay, so they now hold weights
        if original.weights:
            duplicate.set_weights(original.get_weights())
    return outputs
