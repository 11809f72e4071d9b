"""Ultrasound lesion classifiers: ImageNet backbones, a compact ViT and a small CNN.

Every builder returns a Keras 3 functional model written with ``keras.layers`` and
``keras.ops`` only, so it runs on the TensorFlow and JAX backends alike.

Input convention (the same for every architecture, so callers never need to know the
backbone): float32 images in [0, 1], channels last, with 1 (grayscale ultrasound) or 3
channels. The model does everything else inside, with named layers:

* ``input_image``: the model input.
* ``gray_to_rgb``: a 1-channel input is repeated to 3 channels before an ImageNet
  backbone (whose first convolution expects RGB).
* Backbone-specific normalisation, so ImageNet weights see what they were trained on:

  - EfficientNetB0, EfficientNetV2B0 and ConvNeXt-Tiny carry their own ImageNet
    normalisation layers and expect pixel values in [0, 255]; ``scale_to_255``
    multiplies by 255.
  - ResNet50 and VGG19 were trained with Caffe-style preprocessing
    (``keras.applications.resnet50.preprocess_input``): RGB -> BGR, then the ImageNet
    BGR channel means (103.939, 116.779, 123.68) subtracted from values in [0, 255],
    with no scaling by the standard deviation. ``rgb_to_bgr`` reverses the channel
    order (a no-op on grayscale, where the 3 channels are equal) and
    ``caffe_mean_subtract`` computes ``255 * x - mean``.
  - ``small_vit`` and ``compact_cnn`` are trained from scratch and take the [0, 1]
    values as they are: their normalisation layers adapt to the input statistics.

* Backbone layers keep the names ``keras.applications`` gives them (unique within a
  model); the backbone is inlined, not nested, so Grad-CAM can tap any of its layers
  (see :func:`last_conv_layer_name`).
* The shared head: ``head_pool`` (global average pooling), ``head_dropout``,
  ``logits`` (Dense, float32) and ``probabilities`` (softmax, float32). Both are
  float32 so mixed-precision training keeps accurate probabilities and losses. The
  model outputs probabilities; :func:`logits_model` exposes the logits for
  temperature scaling and Grad-CAM.

Weights: ``None`` (random initialisation), ``"imagenet"`` (downloaded by
``keras.applications``, needs internet once) or the path of a local HDF5 weights file,
either of the backbone alone (e.g. ``efficientnetb0_notop.h5`` as ``keras.applications``
downloads it into ``~/.keras/models``, or ``backbone.save_weights(...)``) or of the whole
classifier (``model.save_weights("x.weights.h5")``). Which of the two a file holds is
decided by the number of weight arrays in it, so a file is never half-loaded silently.

Saved ``.keras`` models use the registered :class:`ReverseChannels` layer, so import this
module before ``keras.saving.load_model``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
from keras import layers

from utils.errors import ConfigError, ModelError
from utils.models.blocks import conv_bn_relu
from utils.models.registry import build_registered

__all__ = [
    "ADAPTER_LAYER_NAMES",
    "CLASSIFIER_BUILDERS",
    "DEFAULT_CLASSIFIER_ARCH",
    "ReverseChannels",
    "backbone_layer_names",
    "build_classifier",
    "build_compact_cnn",
    "build_convnext_tiny",
    "build_efficientnetb0",
    "build_efficientnetv2b0",
    "build_resnet50",
    "build_small_vit",
    "build_vgg19",
    "last_conv_layer_name",
    "logits_model",
    "penultimate_model",
    "set_backbone_trainable",
]

InputShape = tuple[int | None, int | None, int]
WeightsArg = str | os.PathLike[str] | None

INPUT_LAYER = "input_image"
GRAY_TO_RGB_LAYER = "gray_to_rgb"
SCALE_TO_255_LAYER = "scale_to_255"
RGB_TO_BGR_LAYER = "rgb_to_bgr"
CAFFE_MEAN_LAYER = "caffe_mean_subtract"
HEAD_POOL_LAYER = "head_pool"
HEAD_DROPOUT_LAYER = "head_dropout"
LOGITS_LAYER = "logits"
PROBABILITIES_LAYER = "probabilities"

#: Layers the builders add around a backbone: input adapters and the classification
#: head. Every other layer of a classifier belongs to its feature extractor.
ADAPTER_LAYER_NAMES = frozenset(
    {
        INPUT_LAYER,
        GRAY_TO_RGB_LAYER,
        SCALE_TO_255_LAYER,
        RGB_TO_BGR_LAYER,
        CAFFE_MEAN_LAYER,
        HEAD_POOL_LAYER,
        HEAD_DROPOUT_LAYER,
        LOGITS_LAYER,
        PROBABILITIES_LAYER,
    }
)

# ImageNet channel means in BGR order, on the [0, 255] scale (Caffe preprocessing).
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# keras.applications refuses smaller inputs for the backbones used here.
_MIN_APPLICATION_SIZE = 32


@keras.saving.register_keras_serializable(package="TumorLens")
class ReverseChannels(layers.Layer):
    """Reverse the order of the last axis (RGB <-> BGR); no weights."""

    def call(self, inputs: keras.KerasTensor) -> keras.KerasTensor:
        """Return ``inputs`` with the channel axis reversed."""
        return keras.ops.flip(inputs, axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Same shape as the input."""
        return input_shape


# ----------------------------------------------------------------------------- checks


def _validate_common(
    arch: str, input_shape: InputShape, num_classes: int, dropout: float, weights: WeightsArg
) -> None:
    """Raise ConfigError for options no classifier builder can honour."""
    if not isinstance(input_shape, tuple | list) or len(input_shape) != 3:
        raise ConfigError(
            f"input_shape must be (height, width, channels); received {input_shape!r}."
        )
    if input_shape[2] not in (1, 3):
        raise ConfigError(
            f"{arch} takes 1-channel (grayscale) or 3-channel (RGB) images; received "
            f"input_shape {tuple(input_shape)} with {input_shape[2]!r} channels."
        )
    for dim_name, size in (("height", input_shape[0]), ("width", input_shape[1])):
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ConfigError(
                f"input {dim_name} must be a positive integer or None; received {size!r}."
            )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2; received {num_classes!r}.")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be in [0, 1); received {dropout!r}.")
    if weights is not None and not isinstance(weights, str | os.PathLike):
        raise ConfigError(
            f"weights must be None, 'imagenet' or the path of a weights file; received {weights!r}."
        )


def _check_min_size(arch: str, input_shape: InputShape, min_size: int) -> None:
    for dim_name, size in (("height", input_shape[0]), ("width", input_shape[1])):
        if size is not None and size < min_size:
            raise ConfigError(
                f"{arch} needs inputs of at least {min_size}x{min_size} pixels; received "
                f"input {dim_name} {size}."
            )


# ----------------------------------------------------------------------------- weights


def _count_weight_arrays(path: Path) -> int:
    """Number of weight arrays in an HDF5 weights file (Keras 3 or legacy layout).

    Optimizer state, which ``save_weights`` may store beside the model's variables, is
    not counted.
    """
    count = 0

    def visit(name: str, item: h5py.HLObject) -> None:
        nonlocal count
        if isinstance(item, h5py.Dataset) and not name.startswith("optimizer"):
            count += 1

    with h5py.File(path, "r") as handle:
        # A legacy full-model .h5 keeps the weights under "model_weights".
        root = handle.get("model_weights", handle)
        root.visititems(visit)
    return count


def _load_weights_file(
    arch: str, model: keras.Model, backbone: keras.Model | None, path: Path
) -> None:
    """Load ``path`` into the whole classifier or into its backbone, strictly.

    Raises:
        ModelError: The file is missing, unreadable or does not match ``arch``.
    """
    if not path.is_file():
        raise ModelError(f"Weights file not found: {path}.")
    try:
        n_arrays = _count_weight_arrays(path)
    except OSError as error:
        raise ModelError(
            f"Weights file {path} is not a readable HDF5 weights file ({error})."
        ) from error
    targets = {"whole model": model}
    if backbone is not None:
        targets["backbone"] = backbone
    expected = {scope: len(target.weights) for scope, target in targets.items()}
    scope = next((scope for scope, size in expected.items() if size == n_arrays), None)
    if scope is None:
        sizes = " or ".join(f"{size} ({name})" for name, size in expected.items())
        raise ModelError(
            f"Weights file {path} does not match architecture {arch!r}: it holds {n_arrays} "
            f"weight arrays, {arch!r} has {sizes}."
        )
    try:
        with warnings.catch_warnings():
            # Keras warns per layer before raising; the error below says it all.
            warnings.simplefilter("ignore")
            targets[scope].load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        raise ModelError(
            f"Weights file {path} does not match architecture {arch!r} ({scope}): {error}"
        ) from error


# ----------------------------------------------------------------------------- pieces


def _classification_head(
    features: keras.KerasTensor, num_classes: int, dropout: float
) -> keras.KerasTensor:
    """Shared head: pool -> dropout -> float32 logits -> float32 softmax."""
    x = layers.GlobalAveragePooling2D(name=HEAD_POOL_LAYER)(features)
    x = layers.Dropout(dropout, name=HEAD_DROPOUT_LAYER)(x)
    logits = layers.Dense(num_classes, dtype="float32", name=LOGITS_LAYER)(x)
    return layers.Softmax(dtype="float32", name=PROBABILITIES_LAYER)(logits)


def _to_rgb(inputs: keras.KerasTensor) -> keras.KerasTensor:
    """Repeat a 1-channel image to 3 channels; 3-channel images pass unchanged."""
    if inputs.shape[-1] == 3:
        return inputs
    return layers.Concatenate(axis=-1, name=GRAY_TO_RGB_LAYER)([inputs, inputs, inputs])


def _scale_to_255(rgb: keras.KerasTensor) -> keras.KerasTensor:
    """[0, 1] -> [0, 255] for backbones that normalise internally."""
    return layers.Rescaling(255.0, name=SCALE_TO_255_LAYER)(rgb)


def _caffe_preprocess(rgb: keras.KerasTensor) -> keras.KerasTensor:
    """``keras.applications.resnet50.preprocess_input`` for [0, 1] RGB inputs.

    RGB -> BGR, then ``255 * x - bgr_mean`` per channel (Rescaling broadcasts the
    3-vector offset over the channel axis).
    """
    bgr = ReverseChannels(name=RGB_TO_BGR_LAYER)(rgb)
    offset = [-mean for mean in _CAFFE_BGR_MEAN]
    return layers.Rescaling(255.0, offset=offset, name=CAFFE_MEAN_LAYER)(bgr)


# ----------------------------------------------------------------------------- ImageNet


@dataclass(frozen=True)
class _ApplicationSpec:
    """How one ``keras.applications`` backbone is wrapped into a classifier."""

    application: Callable[..., keras.Model]
    preprocess: Callable[[keras.KerasTensor], keras.KerasTensor]
    # EfficientNetV2 and ConvNeXt add their own ImageNet normalisation only when asked.
    include_preprocessing: bool = False


_APPLICATION_SPECS: dict[str, _ApplicationSpec] = {
    "efficientnetb0": _ApplicationSpec(keras.applications.EfficientNetB0, _scale_to_255),
    "efficientnetv2b0": _ApplicationSpec(
        keras.applications.EfficientNetV2B0, _scale_to_255, include_preprocessing=True
    ),
    "resnet50": _ApplicationSpec(keras.applications.ResNet50, _caffe_preprocess),
    "vgg19": _ApplicationSpec(keras.applications.VGG19, _caffe_preprocess),
    "convnext_tiny": _ApplicationSpec(
        keras.applications.ConvNeXtTiny, _scale_to_255, include_preprocessing=True
    ),
}
# Architectures built on keras.applications, i.e. those with ImageNet weights.
_APPLICATION_ARCHS = frozenset(_APPLICATION_SPECS)


def _instantiate_backbone(
    arch: str,
    spec: _ApplicationSpec,
    features_input: keras.KerasTensor,
    input_shape: InputShape,
    weights: WeightsArg,
) -> keras.Model:
    """Build the backbone of ``arch`` on ``features_input``, downloading ImageNet weights.

    Raises:
        ModelError: The ImageNet weights were asked for and cannot be downloaded.
    """
    use_imagenet = weights == "imagenet"
    # Only the backbones that need it get the flag: the others reject unknown options.
    extra_options = {"include_preprocessing": True} if spec.include_preprocessing else {}
    try:
        # input_tensor inlines the backbone layers into this graph (no nested model),
        # so every backbone layer stays reachable from the classifier's input.
        return spec.application(
            include_top=False,
            weights="imagenet" if use_imagenet else None,
            input_tensor=features_input,
            input_shape=(input_shape[0], input_shape[1], 3),
            **extra_options,
        )
    except Exception as error:
        if not use_imagenet:
            raise
        # keras.utils.get_file raises a bare Exception when the download fails.
        raise ModelError(
            f"Could not get the ImageNet weights of {arch!r} ({error}). Without internet, "
            f"pass the path of the downloaded backbone weights file instead (the file "
            f"keras.applications caches in ~/.keras/models)."
        ) from error


def _build_application_classifier(
    arch: str, input_shape: InputShape, num_classes: int, weights: WeightsArg, dropout: float
) -> keras.Model:
    """Wrap the ``keras.applications`` backbone of ``arch`` with the adapters and the head.

    The options and errors are those of :func:`build_efficientnetb0`; ``arch`` is a key
    of :data:`_APPLICATION_SPECS`.
    """
    _validate_common(arch, input_shape, num_classes, dropout, weights)
    _check_min_size(arch, input_shape, _MIN_APPLICATION_SIZE)
    spec = _APPLICATION_SPECS[arch]
    inputs = keras.Input(shape=tuple(input_shape), name=INPUT_LAYER)
    features_input = spec.preprocess(_to_rgb(inputs))
    backbone = _instantiate_backbone(arch, spec, features_input, input_shape, weights)
    model = keras.Model(
        inputs, _classification_head(backbone.output, num_classes, dropout), name=arch
    )
    if weights is not None and weights != "imagenet":
        _load_weights_file(arch, model, backbone, Path(weights))
    return model


def build_efficientnetb0(
    input_shape: InputShape = (224, 224, 3),
    num_classes: int = 3,
    weights: WeightsArg = None,
    dropout: float = 0.3,
) -> keras.Model:
    """EfficientNetB0 (Tan & Le, 2019) classifier; the TumorLens default.

    Args:
        input_shape: (height, width, channels) with 1 or 3 channels; height and width at
            least 32, or None for a size-agnostic model. Pixel values in [0, 1].
        num_classes: Number of output classes (>= 2).
        weights: None (random), ``"imagenet"``, or the path of a weights file of the
            backbone or of the whole classifier.
        dropout: Dropout rate before the logits.

    Returns:
        A model mapping (N, H, W, C) images to (N, num_classes) probabilities.

    Raises:
        ConfigError: An option is invalid.
        ModelError: The weights file is missing or does not match the architecture, or
            the ImageNet weights cannot be downloaded.
    """
    return _build_application_classifier(
        "efficientnetb0", input_shape, num_classes, weights, dropout
    )


def build_efficientnetv2b0(
    input_shape: InputShape = (224, 224, 3),
    num_classes: int = 3,
    weights: WeightsArg = None,
    dropout: float = 0.3,
) -> keras.Model:
    """EfficientNetV2-B0 (Tan & Le, 2021) classifier.

    Args, Returns and Raises are as in :func:`build_efficientnetb0`.
    """
    return _build_application_classifier(
        "efficientnetv2b0", input_shape, num_classes, weights, dropout
    )


def build_resnet50(
    input_shape: InputShape = (224, 224, 3),
    num_classes: int = 3,
    weights: WeightsArg = None,
    dropout: float = 0.3,
) -> keras.Model:
    """ResNet50 (He et al., 2016) classifier with Caffe-style preprocessing inside.

    Args, Returns and Raises are as in :func:`build_efficientnetb0`.
    """
    return _build_application_classifier("resnet50", input_shape, num_classes, weights, dropout)


def build_vgg19(
    input_shape: InputShape = (224, 224, 3),
    num_classes: int = 3,
    weights: WeightsArg = None,
    dropout: float = 0.3,
) -> keras.Model:
    """VGG19 (Simonyan & Zisserman, 2015) classifier with Caffe-style preprocessing inside.

    VGG has no BatchNormalization; from random weights it trains slowly, so use it
    with ImageNet weights.

    Args, Returns and Raises are as in :func:`build_efficientnetb0`.
    """
    return _build_application_classifier("vgg19", input_shape, num_classes, weights, dropout)


def build_convnext_tiny(
    input_shape: InputShape = (224, 224, 3),
    num_classes: int = 3,
    weights: WeightsArg = None,
    dropout: float = 0.3,
) -> keras.Model:
    """ConvNeXt-Tiny (Liu et al., 2022) classifier.

    Args, Returns and Raises are as in :func:`build_efficientnetb0`.
    """
    return _build_application_classifier(
        "convnext_tiny", input_shape, num_classes, weights, dropout
    )


# ----------------------------------------------------------------------------- from scratch


def _reject_imagenet(arch: str, weights: WeightsArg) -> None:
    if weights == "imagenet":
        raise ConfigError(
            f"No ImageNet weights exist for {arch!r}, which is trained from scratch; use "
            f"weights=None or the path of a weights file saved from a {arch!r} model, or "
            f"choose one of: {', '.join(sorted(_APPLICATION_ARCHS))}."
        )


def _finish_scratch_model(
    arch: str,
    inputs: keras.KerasTensor,
    features: keras.KerasTensor,
    num_classes: int,
    dropout: float,
    weights: WeightsArg,
) -> keras.Model:
    """Add the shared head and load an optional whole-model weights file."""
    model = keras.Model(inputs, _classification_head(features, num_classes, dropout), name=arch)
    if weights is not None:
        _load_weights_file(arch, model, None, Path(weights))
    return model


def build_compact_cnn(
    input_shape: InputShape = (224, 224, 3),
    num_classes: int = 3,
    weights: WeightsArg = None,
    dropout: float = 0.3,
    base_filters: int = 24,
) -> keras.Model:
    """A small VGG-style CNN trained from scratch (about 0.66M parameters by default).

    A stride-2 stem, then four stages of two 3x3 conv-BN-ReLU layers whose widths double
    (24, 48, 96, 192 by default), with 2x max pooling after the first three: a 224x224
    input gives a 14x14 last feature map (``stage4_relu2``), fine enough for Grad-CAM.
    Layers: ``stem_*``, ``stage{s}_{conv|bn|relu}{k}``, ``stage{s}_pool``.

    Args:
        input_shape: (height, width, channels) with 1 or 3 channels; pixel values in
            [0, 1], used as they are (BatchNorm adapts to their statistics).
        num_classes: Number of output classes (>= 2).
        weights: None (random) or the path of a weights file of a whole ``compact_cnn``
            with the same options. ``"imagenet"`` is refused.
        dropout: Dropout rate before the logits.
        base_filters: Width of the stem and first stage.

    Returns:
        A model mapping (N, H, W, C) images to (N, num_classes) probabilities.

    Raises:
        ConfigError: An option is invalid, or ``weights="imagenet"``.
        ModelError: The weights file is missing or does not match the architecture.
    """
    arch = "compact_cnn"
    _validate_common(arch, input_shape, num_classes, dropout, weights)
    _reject_imagenet(arch, weights)
    _check_min_size(arch, input_shape, 16)
    if isinstance(base_filters, bool) or not isinstance(base_filters, int) or base_filters < 1:
        raise ConfigError(f"base_filters must be a positive integer; received {base_filters!r}.")
    inputs = keras.Input(shape=tuple(input_shape), name=INPUT_LAYER)
    x = conv_bn_relu(inputs, base_filters, "stem", strides=2)
    n_stages = 4
    for stage in range(1, n_stages + 1):
        filters = base_filters * 2 ** (stage - 1)
        x = conv_bn_relu(x, filters, f"stage{stage}", "1")
        x = conv_bn_relu(x, filters, f"stage{stage}", "2")
        if stage < n_stages:
            x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    return _finish_scratch_model(arch, inputs, x, num_classes, dropout, weights)


def _transformer_block(
    tokens: keras.KerasTensor, num_heads: int, mlp_dim: int, prefix: str
) -> keras.KerasTensor:
    """Pre-norm transformer encoder block: x + MHA(LN(x)), then x + MLP(LN(x))."""
    embed_dim = tokens.shape[-1]
    x = layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_ln1")(tokens)
    x = layers.MultiHeadAttention(
        num_heads=num_heads, key_dim=embed_dim // num_heads, name=f"{prefix}_attn"
    )(x, x)
    tokens = layers.Add(name=f"{prefix}_attn_add")([tokens, x])
    x = layers.LayerNormalization(epsilon=1e-6, name=f"{prefix}_ln2")(tokens)
    x = layers.Dense(mlp_dim, activation="gelu", name=f"{prefix}_mlp_fc1")(x)
    x = layers.Dense(embed_dim, name=f"{prefix}_mlp_fc2")(x)
    return layers.Add(name=f"{prefix}_mlp_add")([tokens, x])


def build_small_vit(
    input_shape: InputShape = (224, 224, 3),
    num_classes: int = 3,
    weights: WeightsArg = None,
    dropout: float = 0.3,
    patch_size: int = 16,
    embed_dim: int = 128,
    depth: int = 4,
    num_heads: int = 4,
    mlp_ratio: float = 2.0,
) -> keras.Model:
    """A compact Vision Transformer (Dosovitskiy et al., 2021) trained from scratch.

    Patches are embedded by a strided conv (``patch_embed``). Position is encoded by a
    3x3 depthwise conv on the patch grid added to the embeddings (``pos_conv`` /
    ``pos_add``, the conditional position encoding of Chu et al., 2023), which needs no
    custom layer and no fixed token count. Tokens go through ``depth`` pre-norm blocks
    (``vit_block{i}_*``, ``keras.layers.MultiHeadAttention``), a final ``encoder_norm``,
    and are laid back on the patch grid (``tokens_to_grid``) so the shared head pools
    them (global average pooling instead of a class token) and Grad-CAM sees a spatial
    map. About 0.65M parameters by default.

    Args:
        input_shape: (height, width, channels) with 1 or 3 channels; height and width
            must be known and divisible by ``patch_size``. Pixel values in [0, 1].
        num_classes: Number of output classes (>= 2).
        weights: None (random) or the path of a weights file of a whole ``small_vit``
            with the same options. ``"imagenet"`` is refused.
        dropout: Dropout rate before the logits.
        patch_size: Side of the square patches, in pixels.
        embed_dim: Token width; must be divisible by ``num_heads``.
        depth: Number of transformer blocks.
        num_heads: Attention heads per block.
        mlp_ratio: Hidden width of the MLPs relative to ``embed_dim``.

    Returns:
        A model mapping (N, H, W, C) images to (N, num_classes) probabilities.

    Raises:
        ConfigError: An option is invalid, or ``weights="imagenet"``.
        ModelError: The weights file is missing or does not match the architecture.
    """
    arch = "small_vit"
    _validate_common(arch, input_shape, num_classes, dropout, weights)
    _reject_imagenet(arch, weights)
    for option, value in (
        ("patch_size", patch_size),
        ("embed_dim", embed_dim),
        ("depth", depth),
        ("num_heads", num_heads),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{option} must be a positive integer; received {value!r}.")
    if embed_dim % num_heads:
        raise ConfigError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}).")
    if not isinstance(mlp_ratio, int | float) or mlp_ratio <= 0:
        raise ConfigError(f"mlp_ratio must be a positive number; received {mlp_ratio!r}.")
    height, width = input_shape[0], input_shape[1]
    if height is None or width is None or height % patch_size or width % patch_size:
        raise ConfigError(
            f"small_vit needs a known input height and width divisible by patch_size "
            f"{patch_size}; received input_shape {tuple(input_shape)}."
        )
    grid = (height // patch_size, width // patch_size)

    inputs = keras.Input(shape=tuple(input_shape), name=INPUT_LAYER)
    patches = layers.Conv2D(embed_dim, patch_size, strides=patch_size, name="patch_embed")(inputs)
    position = layers.DepthwiseConv2D(3, padding="same", name="pos_conv")(patches)
    x = layers.Add(name="pos_add")([patches, position])
    x = layers.Reshape((grid[0] * grid[1], embed_dim), name="grid_to_tokens")(x)
    mlp_dim = max(1, round(embed_dim * mlp_ratio))
    for index in range(1, depth + 1):
        x = _transformer_block(x, num_heads, mlp_dim, f"vit_block{index}")
    x = layers.LayerNormalization(epsilon=1e-6, name="encoder_norm")(x)
    x = layers.Reshape((*grid, embed_dim), name="tokens_to_grid")(x)
    return _finish_scratch_model(arch, inputs, x, num_classes, dropout, weights)


# ----------------------------------------------------------------------------- registry

CLASSIFIER_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "efficientnetb0": build_efficientnetb0,
    "efficientnetv2b0": build_efficientnetv2b0,
    "resnet50": build_resnet50,
    "vgg19": build_vgg19,
    "convnext_tiny": build_convnext_tiny,
    "small_vit": build_small_vit,
    "compact_cnn": build_compact_cnn,
}

DEFAULT_CLASSIFIER_ARCH = "efficientnetb0"


def build_classifier(arch: str = DEFAULT_CLASSIFIER_ARCH, **kwargs: object) -> keras.Model:
    """Build a classifier by architecture name.

    Args:
        arch: One of the keys of :data:`CLASSIFIER_BUILDERS`.
        **kwargs: Passed to the builder (``input_shape``, ``num_classes``, ``weights``,
            ``dropout`` and the architecture's own options).

    Returns:
        The built (uncompiled) Keras model.

    Raises:
        ConfigError: ``arch`` is unknown, or an option is invalid.
        ModelError: A weights file is missing or incompatible.
    """
    return build_registered(CLASSIFIER_BUILDERS, "classifier", arch, **kwargs)


# ----------------------------------------------------------------------------- model helpers


def _logits_layer(model: keras.Model) -> keras.layers.Layer:
    try:
        return model.get_layer(LOGITS_LAYER)
    except ValueError as error:
        raise ModelError(
            f"Model {model.name!r} has no {LOGITS_LAYER!r} layer; it was not built by "
            f"utils.models.classification."
        ) from error


def _sub_model(model: keras.Model, output: keras.KerasTensor, suffix: str) -> keras.Model:
    # A single input is passed bare so the new model is called like the original.
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, output, name=f"{model.name}_{suffix}")


def logits_model(model: keras.Model) -> keras.Model:
    """A model from the classifier's input to its ``logits`` layer (shared weights).

    Args:
        model: A classifier built by this module (or loaded from one).

    Returns:
        A model mapping images to (N, num_classes) float32 logits, for temperature
        scaling and Grad-CAM.

    Raises:
        ModelError: ``model`` has no layer named ``logits``.
    """
    return _sub_model(model, _logits_layer(model).output, "logits")


def penultimate_model(model: keras.Model) -> keras.Model:
    """A model from the classifier's input to its penultimate features (shared weights).

    The features are the input of the ``logits`` layer (the pooled, dropped-out head
    features; dropout is off at inference), as :mod:`utils.familiarity` uses them.

    Args:
        model: A classifier built by this module (or loaded from one).

    Returns:
        A model mapping images to (N, D) features.

    Raises:
        ModelError: ``model`` has no layer named ``logits``.
    """
    return _sub_model(model, _logits_layer(model).input, "penultimate")


def backbone_layer_names(model: keras.Model) -> list[str]:
    """Names of the feature-extractor layers: all but the input adapters and the head.

    Args:
        model: A classifier built by this module.

    Returns:
        Layer names in topological order.
    """
    return [layer.name for layer in model.layers if layer.name not in ADAPTER_LAYER_NAMES]


def last_conv_layer_name(model: keras.Model) -> str:
    """Name of the last feature layer with a 4-D (N, H, W, C) output: Grad-CAM's target.

    Args:
        model: A classifier built by this module.

    Returns:
        E.g. ``"top_activation"`` (EfficientNetB0), ``"conv5_block3_out"`` (ResNet50),
        ``"stage4_relu2"`` (compact_cnn) or ``"tokens_to_grid"`` (small_vit).

    Raises:
        ModelError: No feature layer has a 4-D output.
    """
    names = set(backbone_layer_names(model))
    for layer in reversed(model.layers):
        if layer.name in names and len(layer.output.shape) == 4:
            return layer.name
    raise ModelError(f"Model {model.name!r} has no feature layer with a 4-D (spatial) output.")


def set_backbone_trainable(
    model: keras.Model,
    trainable: bool,
    *,
    fine_tune_from: float = 0.0,
    freeze_batchnorm: bool = True,
) -> int:
    """Freeze or unfreeze the feature extractor for two-phase fine-tuning.

    Phase 1 (``trainable=False``): the backbone is frozen and only the head trains.
    Phase 2 (``trainable=True``): backbone layers from ``fine_tune_from`` (a fraction of
    the backbone depth) onwards are unfrozen; BatchNormalization layers stay frozen,
    which in Keras 3 also keeps them in inference mode (moving statistics used and not
    updated), as the Keras transfer-learning guide recommends: batch statistics of small
    ultrasound batches would wreck the ImageNet statistics. The head always stays
    trainable. Recompile the model afterwards for the change to take effect.

    Args:
        model: A classifier built by this module.
        trainable: Unfreeze (True) or freeze (False) the backbone.
        fine_tune_from: Fraction in [0, 1) of the backbone layers, counted from the
            input, that stay frozen when unfreezing; 0 unfreezes all of them.
        freeze_batchnorm: Keep BatchNormalization layers frozen when unfreezing; turn off
            only for a backbone trained from scratch.

    Returns:
        The number of backbone layers with weights left trainable.

    Raises:
        ConfigError: ``fine_tune_from`` is outside [0, 1).
    """
    if isinstance(fine_tune_from, bool) or not isinstance(fine_tune_from, int | float):
        raise ConfigError(f"fine_tune_from must be a number in [0, 1); got {fine_tune_from!r}.")
    if not 0 <= fine_tune_from < 1:
        raise ConfigError(f"fine_tune_from must be in [0, 1); received {fine_tune_from!r}.")
    model.trainable = True  # Undo any model-wide freeze; the layers are set one by one.
    names = set(backbone_layer_names(model))
    backbone = [layer for layer in model.layers if layer.name in names]
    first_unfrozen = math.floor(fine_tune_from * len(backbone))
    n_trainable = 0
    for index, layer in enumerate(backbone):
        unfreeze = trainable and index >= first_unfrozen
        if freeze_batchnorm and isinstance(layer, layers.BatchNormalization):
            unfreeze = False
        layer.trainable = unfreeze
        n_trainable += int(unfreeze and bool(layer.weights))
    return n_trainable
