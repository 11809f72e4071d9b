"""Class activation maps (Grad-CAM, Grad-CAM++, Score-CAM) for classifiers and segmenters.

A CAM says which parts of the image drove a score: a classifier's logit for one class,
or a segmenter's predicted lesion area (see :mod:`utils.explain_targets`). The three
methods weight the feature maps ``A_k`` of one layer and keep the positive part of
``sum_k w_k A_k``:

* **Grad-CAM** (Selvaraju et al., 2017): ``w_k`` is the spatial mean of the gradient of
  the score with respect to ``A_k``.
* **Grad-CAM++** (Chattopadhay et al., 2018): ``w_k`` sums the positive gradients with
  pixel weights from the second and third derivatives, which spreads the map over
  several instances of the evidence. The score's ``exp`` in the paper cancels out after
  normalisation and is left out, so large scores (a lesion area of thousands of
  pixels) cannot overflow. The alphas are normalised per channel as in the authors'
  code and tf-keras-vis.
* **Score-CAM** (Wang et al., 2020): gradient-free; each feature map, upsampled and
  scaled to [0, 1], masks the image, and ``w_k`` is how much that masked image raises
  the score above a black image. As in the paper, a classifier's score here is the
  class *probability* (softmax of the logits), not the logit: a masked image only
  counts as evidence for a class if it raises that class against the others (with two
  classes, a network may move only the other logit). Layers with more than ``scorecam_max_channels``
  channels keep the channels with the largest spatial spread (Faster Score-CAM), so one
  map costs a bounded number of forward passes. The weights are used as they are, not
  softmaxed over channels, because a lesion area in pixels would make that softmax
  one-hot.

Maps are upsampled bilinearly to the input size and divided by their maximum, so they
lie in [0, 1], a map with no positive evidence stays all zero, and 0 keeps meaning "no
evidence" (a min-max scaling would invent some).

Implementation: tf-keras-vis 0.8.7 (pinned in ``requirements.txt``) runs with Keras 3
here and serves as the reference in the tests, but it is not used at run time because
(1) it rebuilds a Keras model on every call and runs eagerly, too slow for a dashboard
that explains on every click; (2) its Score-CAM softmaxes the model outputs and
reshapes them to (N, classes), which breaks on a segmenter's (N, H, W, 1) output; (3) by
default it silently moves the chosen layer to the nearest ``Conv`` layer before it.
So Grad-CAM and Grad-CAM++ are computed here with ``tf.GradientTape`` on a sub-model
``keras.Model(inputs, [layer.output, score_output])``, and Score-CAM with batched
masked forward passes. :class:`CamExplainer` builds each sub-model and its
``tf.function`` once per layer and reuses them.

Typical use::

    explainer = CamExplainer(model)  # keep it (e.g. st.cache_resource)
    heatmap = explainer.explain(image, target=2, method="gradcam++")
    shown = overlay_heatmap(image_uint8, heatmap)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, Literal, get_args

import cv2
import keras
import numpy as np
import tensorflow as tf

from utils.errors import ConfigError, ImageDimensionError, InvalidImageError
from utils.explain_targets import (
    LESION_AREA,
    CamTarget,
    check_target,
    default_target_layer,
    list_target_layers,
    model_kind,
    resolve_target_layer,
    score_tensor,
    scores_are_logits,
)

__all__ = [
    "CAM_METHODS",
    "LESION_AREA",
    "CamExplainer",
    "CamMethod",
    "cam_mass_inside",
    "compute_cam",
    "explainer_for",
    "list_target_layers",
    "overlay_heatmap",
]

CamMethod = Literal["gradcam", "gradcam++", "scorecam"]
#: The CAM methods :meth:`CamExplainer.explain` knows.
CAM_METHODS: Final[tuple[str, ...]] = get_args(CamMethod)

#: Score-CAM keeps at most this many feature maps (those with the largest spread): one
#: forward pass each, about 1 s for EfficientNetB0 at 224 px and 3 s for the attention
#: ResUNet at 256 px on two CPU cores.
DEFAULT_SCORECAM_MAX_CHANNELS: Final = 32
#: Masked images per Score-CAM forward pass.
DEFAULT_SCORECAM_BATCH_SIZE: Final = 32
# How many models compute_cam keeps explainers for (the app shows two at most).
_EXPLAINER_CACHE_SIZE: Final = 4

# The class index is a graph input, so explaining another class does not retrace.
_INDEX_SPEC: Final = tf.TensorSpec((), tf.int32)


@dataclass(frozen=True)
class _LayerGraph:
    """The compiled functions of one target layer, built once and reused."""

    activations_and_gradients: Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
    activations: Callable[[tf.Tensor], tf.Tensor]


# ----------------------------------------------------------------------------- CAM maths


def _gradcam_weights(gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM channel weights: the spatial mean of the gradients, (h, w, K) -> (K,)."""
    return gradients.mean(axis=(0, 1))


def _gradcam_plus_plus_weights(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM++ channel weights (closed form of Chattopadhay et al., eq. 19)."""
    # float64: the third power of small gradients underflows float32.
    grads = gradients.astype(np.float64)
    grads_2 = grads**2
    denominator = 2.0 * grads_2 + activations.sum(axis=(0, 1)) * grads_2 * grads
    alphas = grads_2 / np.where(denominator != 0.0, denominator, 1.0)
    alpha_sums = alphas.sum(axis=(0, 1))
    alphas /= np.where(alpha_sums != 0.0, alpha_sums, 1.0)
    return (alphas * np.maximum(grads, 0.0)).sum(axis=(0, 1))


def _weighted_cam(activations: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ReLU of the weighted sum of the feature maps: (h, w, K), (K,) -> (h, w) float32."""
    cam = np.maximum(activations.astype(np.float64) @ weights.astype(np.float64), 0.0)
    return cam.astype(np.float32)


def _normalised(cam: np.ndarray) -> np.ndarray:
    """``cam`` divided by its maximum; an all-zero (or non-finite) map becomes zeros."""
    # NaN or inf would come from a broken model; a blank map is safer to display.
    cam = np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0.0:
        return np.zeros_like(cam, dtype=np.float32)
    return (cam / peak).astype(np.float32)


def _resized(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a (h, w) map to ``size`` = (height, width)."""
    if cam.shape == size:
        return cam
    return cv2.resize(cam, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


class _XlaWithFallback:
    """Calls ``xla`` until XLA fails to compile it (an op it lacks), then ``plain`` for good."""

    def __init__(self, xla: Any, plain: Any) -> None:
        self._xla, self._plain, self._chosen = xla, plain, xla

    def __call__(self, *args: Any) -> Any:
        try:
            return self._chosen(*args)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
            if self._chosen is self._plain:
                raise
            self._chosen = self._plain
            return self._plain(*args)

    def experimental_get_tracing_count(self) -> int:
        """Traces of the function in use (as ``tf.function``'s method)."""
        return self._chosen.experimental_get_tracing_count()


# ----------------------------------------------------------------------------- checks


def _check_method(method: str) -> None:
    if method not in CAM_METHODS:
        raise ConfigError(
            f"Unknown CAM method {method!r}; valid methods: {', '.join(CAM_METHODS)}."
        )


def _image_batch(image: np.ndarray, input_shape: tuple[int | None, ...]) -> np.ndarray:
    """Check one float image against the model input and return it as a (1, H, W, C) batch.

    Raises:
        ImageDimensionError: The shape does not match the model input.
        InvalidImageError: Not a float array with finite values in [0, 1].
    """
    pixels = np.asarray(image)
    if pixels.ndim == 2 and input_shape[-1] == 1:
        pixels = pixels[..., None]  # A grayscale (H, W) image is unambiguous.
    expected = tuple("any" if side is None else side for side in input_shape)
    matches = pixels.ndim == 3 and all(
        want is None or got == want for got, want in zip(pixels.shape, input_shape, strict=True)
    )
    if not matches:
        raise ImageDimensionError(
            f"CAMs need one image of shape {expected} (the model input, without the batch "
            f"axis); got shape {pixels.shape}. Resize it with "
            "utils.inference.bundle.images_for_model first."
        )
    if pixels.dtype.kind != "f":
        raise InvalidImageError(
            f"CAMs need a float image in [0, 1]; got {pixels.dtype}. Convert uint8 images "
            "with utils.inference.bundle.to_float_batch."
        )
    if not np.all(np.isfinite(pixels)) or pixels.min() < 0.0 or pixels.max() > 1.0:
        raise InvalidImageError(
            "CAMs need pixel values in [0, 1] (the model's training scale); got values "
            f"from {pixels.min()} to {pixels.max()}."
        )
    return pixels[None].astype(np.float32)


# ----------------------------------------------------------------------------- explainer


class CamExplainer:
    """CAMs of one model, with the sub-models and ``tf.function``s built once per layer.

    Building a gradient sub-model and tracing its graph takes far longer than running
    it, so the dashboard should keep one explainer per model (e.g. in
    ``st.cache_resource``) or call :func:`compute_cam`, which does. Safe to share
    between threads.

    Attributes:
        model: The explained classifier or segmenter.
        kind: ``"classifier"`` or ``"segmenter"``.
        submodel_builds: How many gradient sub-models were built (one per layer used).
    """

    def __init__(
        self,
        model: keras.Model,
        *,
        scorecam_max_channels: int = DEFAULT_SCORECAM_MAX_CHANNELS,
        scorecam_batch_size: int = DEFAULT_SCORECAM_BATCH_SIZE,
        jit_compile: bool = True,
    ) -> None:
        """Prepare to explain ``model``; nothing is built until the first CAM.

        Args:
            model: A classifier (N, classes) or segmenter (N, H, W, classes) with one input.
            scorecam_max_channels: Feature maps Score-CAM keeps at most.
            scorecam_batch_size: Masked images per Score-CAM forward pass.
            jit_compile: Compile the Grad-CAM forward and backward pass with XLA (falls
                back to the plain graph if XLA cannot compile the model).

        Raises:
            ModelError: The model is neither a classifier nor a segmenter.
            ConfigError: A Score-CAM option is not a positive integer.
        """
        for option, value in (
            ("scorecam_max_channels", scorecam_max_channels),
            ("scorecam_batch_size", scorecam_batch_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{option} must be a positive integer; received {value!r}.")
        self.model = model
        self.kind = model_kind(model)
        self._scores_are_logits = scores_are_logits(model)
        self.submodel_builds = 0
        self._jit_compile = bool(jit_compile)
        self._input_shape: tuple[int | None, ...] = tuple(model.inputs[0].shape[1:])
        self._input_spec = tf.TensorSpec((None, *self._input_shape), tf.float32)
        self._scorecam_max_channels = scorecam_max_channels
        self._scorecam_batch_size = scorecam_batch_size
        # Sub-models and compiled functions, by layer ("layer:NAME") or purpose.
        self._graphs: dict[str, Any] = {}
        # Re-entrant: building one graph may build (or fetch) another first.
        self._lock = threading.RLock()

    # -- public

    @property
    def target_layers(self) -> list[str]:
        """:func:`list_target_layers` of the model, input to output."""
        return list(self._valid_layers)

    @cached_property
    def default_layer(self) -> str:
        """The layer used when none is named (see :func:`default_target_layer`)."""
        return default_target_layer(self.model)

    @cached_property
    def _valid_layers(self) -> tuple[str, ...]:
        return tuple(list_target_layers(self.model))

    def explain(
        self,
        image: np.ndarray,
        target: CamTarget | None = None,
        *,
        layer_name: str | None = None,
        method: CamMethod = "gradcam",
        upsample: bool = True,
    ) -> np.ndarray:
        """The CAM of ``target`` for one image.

        Args:
            image: float (H, W, C) in [0, 1] at the model's input size ((H, W) is
                accepted for 1-channel models).
            target: Class index for a classifier (default: the predicted class);
                ``"lesion_area"`` for a segmenter (the default).
            layer_name: A name from :attr:`target_layers`; default :attr:`default_layer`.
            method: One of :data:`CAM_METHODS`.
            upsample: Return the map at the image size (True) or at the layer's size.

        Returns:
            float32 (H, W) map in [0, 1] (all zeros when nothing supports the score).

        Raises:
            ConfigError: Unknown layer or method, or a target that does not fit the model.
            ImageDimensionError: The image shape does not match the model input.
            InvalidImageError: The image is not float in [0, 1].
        """
        _check_method(method)
        layer = self._resolve_layer(layer_name)
        batch = _image_batch(image, self._input_shape)
        class_index = self._class_index(batch, target)
        if method == "scorecam":
            cam = self._scorecam(batch, class_index, layer)
        else:
            activations, gradients = self._layer_graph(layer).activations_and_gradients(
                tf.constant(batch), tf.constant(class_index, tf.int32)
            )
            activations, gradients = activations.numpy()[0], gradients.numpy()[0]
            if method == "gradcam":
                weights = _gradcam_weights(gradients)
            else:
                weights = _gradcam_plus_plus_weights(activations, gradients)
            cam = _weighted_cam(activations, weights)
        if upsample:
            cam = _resized(cam, batch.shape[1:3])
        return _normalised(cam)

    # -- targets

    def _resolve_layer(self, layer_name: str | None) -> str:
        if layer_name is None:
            return self.default_layer
        if layer_name in self._valid_layers:
            return layer_name
        return resolve_target_layer(self.model, layer_name)  # Raises, listing valid layers.

    def _class_index(self, batch: np.ndarray, target: CamTarget | None) -> int:
        """The class to explain: ``target`` checked, or the predicted class; -1 for area."""
        if target is None and self.kind == "classifier":
            return int(np.argmax(self._score_outputs_fn()(tf.constant(batch)).numpy()[0]))
        checked = check_target(self.model, LESION_AREA if target is None else target)
        return -1 if checked == LESION_AREA else int(checked)

    def _reduce_score(
        self, outputs: tf.Tensor, class_index: tf.Tensor, *, confidence: bool = False
    ) -> tf.Tensor:
        """Per-image score (N,): one class's logit, or the summed lesion probabilities.

        ``confidence=True`` takes a classifier's softmax probability instead of the logit.
        """
        outputs = tf.cast(outputs, tf.float32)  # Mixed precision models output float16.
        if self.kind == "segmenter":
            return tf.reduce_sum(outputs, axis=[1, 2, 3])
        if confidence and self._scores_are_logits:
            outputs = tf.nn.softmax(outputs, axis=-1)
        return tf.gather(outputs, class_index, axis=1)

    # -- graphs (built once, under the lock)

    def _cached(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` on the first call for ``key``, the same object afterwards."""
        with self._lock:
            if key not in self._graphs:
                self._graphs[key] = build()
            return self._graphs[key]

    def _layer_graph(self, layer_name: str) -> _LayerGraph:
        return self._cached(f"layer:{layer_name}", lambda: self._build_layer_graph(layer_name))

    def _build_layer_graph(self, layer_name: str) -> _LayerGraph:
        """Sub-model ``image -> (layer output, score output)`` and its compiled functions."""
        self.submodel_builds += 1
        submodel = keras.Model(
            self.model.inputs[0],
            [self.model.get_layer(layer_name).output, score_tensor(self.model)],
            name=f"{self.model.name}_cam_{layer_name}",
        )

        def activations_and_gradients(
            images: tf.Tensor, class_index: tf.Tensor
        ) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                activations, outputs = submodel(images, training=False)
                score = tf.reduce_sum(self._reduce_score(outputs, class_index))
            gradients = tape.gradient(score, activations)
            return tf.cast(activations, tf.float32), tf.cast(gradients, tf.float32)

        signature = [self._input_spec, _INDEX_SPEC]
        gradients_fn = tf.function(activations_and_gradients, input_signature=signature)
        if self._jit_compile:
            # XLA fuses the backward pass: about 1.4x faster Grad-CAMs of the shipped
            # segmenter on a 2-core CPU (python -m utils.bench, paired A/B).
            gradients_fn = _XlaWithFallback(
                tf.function(activations_and_gradients, input_signature=signature, jit_compile=True),
                gradients_fn,
            )

        @tf.function(input_signature=[self._input_spec])
        def activations(images: tf.Tensor) -> tf.Tensor:
            return tf.cast(submodel(images, training=False)[0], tf.float32)

        return _LayerGraph(gradients_fn, activations)

    def _score_model(self) -> keras.Model:
        """``image -> score output`` (logits or lesion probabilities), sharing the weights."""
        return self._cached(
            "score_model",
            lambda: keras.Model(
                self.model.inputs[0], score_tensor(self.model), name=f"{self.model.name}_score"
            ),
        )

    def _score_outputs_fn(self) -> Callable[[tf.Tensor], tf.Tensor]:
        """Compiled ``images -> float32 score outputs``."""

        def build() -> Callable[[tf.Tensor], tf.Tensor]:
            score_model = self._score_model()

            @tf.function(input_signature=[self._input_spec])
            def score_outputs(images: tf.Tensor) -> tf.Tensor:
                return tf.cast(score_model(images, training=False), tf.float32)

            return score_outputs

        return self._cached("score_outputs", build)

    # -- Score-CAM

    def _scorecam(self, batch: np.ndarray, class_index: int, layer_name: str) -> np.ndarray:
        """Score-CAM at the layer's resolution (h, w), unnormalised."""
        activations = self._layer_graph(layer_name).activations(tf.constant(batch)).numpy()[0]
        activations = activations[..., self._scorecam_channels(activations)]
        index = tf.constant(class_index, tf.int32)
        black = self._score_outputs_fn()(tf.zeros_like(batch))
        baseline = float(self._reduce_score(black, index, confidence=True).numpy()[0])
        masked_scores = self._masked_scores_fn()
        step = self._scorecam_batch_size
        weights = np.concatenate(
            [
                masked_scores(batch, activations[None, ..., start : start + step], index).numpy()
                for start in range(0, activations.shape[-1], step)
            ]
        )
        return _weighted_cam(activations, weights - baseline)

    def _scorecam_channels(self, activations: np.ndarray) -> np.ndarray:
        """Indices of the feature maps Score-CAM uses: the most spread-out ones, in order."""
        n_channels = activations.shape[-1]
        if n_channels <= self._scorecam_max_channels:
            return np.arange(n_channels)
        spread = activations.std(axis=(0, 1))
        return np.sort(np.argsort(spread)[-self._scorecam_max_channels :])

    def _masked_scores_fn(self) -> Callable[..., tf.Tensor]:
        """Compiled ``(image, maps (1, h, w, K), class_index) -> (K,)`` masked scores."""

        def build() -> Callable[..., tf.Tensor]:
            score_model = self._score_model()
            maps_spec = tf.TensorSpec((1, None, None, None), tf.float32)

            @tf.function(input_signature=[self._input_spec, maps_spec, _INDEX_SPEC])
            def masked_scores(
                images: tf.Tensor, maps: tf.Tensor, class_index: tf.Tensor
            ) -> tf.Tensor:
                masks = tf.image.resize(maps, tf.shape(images)[1:3], method="bilinear")
                low = tf.reduce_min(masks, axis=[1, 2], keepdims=True)
                high = tf.reduce_max(masks, axis=[1, 2], keepdims=True)
                # A constant map carries no spatial information: its mask is all zero.
                masks = tf.math.divide_no_nan(masks - low, high - low)
                masks = tf.transpose(masks, [3, 1, 2, 0])  # (K, H, W, 1): a mask per image.
                outputs = score_model(images * masks, training=False)
                return self._reduce_score(outputs, class_index, confidence=True)

            return masked_scores

        return self._cached("masked_scores", build)


# ----------------------------------------------------------------------------- functions

_explainers: OrderedDict[int, CamExplainer] = OrderedDict()
_explainers_lock = threading.Lock()


def explainer_for(model: keras.Model) -> CamExplainer:
    """The shared :class:`CamExplainer` of ``model``, created on first use.

    The last few models are kept (least recently used first out), so repeated calls
    reuse the built sub-models.
    """
    with _explainers_lock:
        explainer = _explainers.get(id(model))
        # The cache holds the model, so its id cannot be reused while it is cached.
        if explainer is None or explainer.model is not model:
            explainer = CamExplainer(model)
            _explainers[id(model)] = explainer
        _explainers.move_to_end(id(model))
        while len(_explainers) > _EXPLAINER_CACHE_SIZE:
            _explainers.popitem(last=False)
        return explainer


def compute_cam(
    model: keras.Model,
    image: np.ndarray,
    *,
    layer_name: str | None = None,
    target: CamTarget | None = None,
    method: CamMethod = "gradcam",
) -> np.ndarray:
    """The CAM of ``target`` for one image, via the model's shared :class:`CamExplainer`.

    Args:
        model: A classifier or segmenter.
        image: float (H, W, C) in [0, 1] at the model's input size.
        layer_name: A name from :func:`list_target_layers`; default: the last feature map
            of a classifier, the bottleneck of a segmenter.
        target: Class index for a classifier (default: the predicted class; the score is
            its logit, its probability for Score-CAM); ``"lesion_area"`` for a segmenter
            (the default; the score is the sum of the predicted lesion probabilities).
        method: One of :data:`CAM_METHODS`.

    Returns:
        float32 (H, W) map in [0, 1].

    Raises:
        ConfigError: Unknown layer or method, or a target that does not fit the model.
        ImageDimensionError: The image shape does not match the model input.
        InvalidImageError: The image is not float in [0, 1].
        ModelError: The model is neither a classifier nor a segmenter.
    """
    return explainer_for(model).explain(image, target, layer_name=layer_name, method=method)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 (H, W), (H, W, 1) or (H, W, 3) image as (H, W, 3) RGB."""
    pixels = np.asarray(image)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        raise ImageDimensionError(
            f"overlay_heatmap needs an (H, W) grayscale or (H, W, 3) RGB image; got shape "
            f"{np.asarray(image).shape}."
        )
    if pixels.dtype != np.uint8:
        raise InvalidImageError(f"overlay_heatmap needs a uint8 image; got {pixels.dtype}.")
    return pixels


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Blend a [0, 1] heatmap, coloured with the JET colormap, over an image.

    Args:
        image: uint8 (H, W) grayscale or (H, W, 3) RGB image.
        heatmap: (h, w) map in [0, 1]; resized (bilinear) to the image size if needed,
            so a CAM at the model size can be shown on the original image.
        alpha: Weight of the heatmap colours, in [0, 1].

    Returns:
        uint8 (H, W, 3) RGB image.

    Raises:
        ConfigError: ``alpha`` is outside [0, 1].
        ImageDimensionError: The image or heatmap has an unusable shape.
        InvalidImageError: The image is not uint8, or the heatmap is not finite.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ConfigError(f"alpha must be a number in [0, 1]; received {alpha!r}.")
    rgb = _as_rgb(image)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2 or 0 in heat.shape:
        raise ImageDimensionError(f"A heatmap must be a 2-D (H, W) map; got shape {heat.shape}.")
    if not np.all(np.isfinite(heat)):
        raise InvalidImageError("A heatmap must hold finite values in [0, 1].")
    heat = np.clip(_resized(heat, rgb.shape[:2]), 0.0, 1.0)
    colours = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)  # OpenCV colormaps are BGR.
    return cv2.addWeighted(rgb, 1.0 - float(alpha), colours, float(alpha), 0.0)


def cam_mass_inside(heatmap: np.ndarray, region_mask: np.ndarray) -> float:
    """Share of a heatmap's total mass that lies inside a region.

    Args:
        heatmap: Non-negative (H, W) map, e.g. a CAM.
        region_mask: (H, W) mask of the region (non-zero or True inside).

    Returns:
        ``sum(heatmap[region]) / sum(heatmap)`` in [0, 1]; 0.0 for an all-zero heatmap
        (no evidence anywhere, so none inside the region).

    Raises:
        ImageDimensionError: The shapes differ.
        InvalidImageError: The heatmap has negative or non-finite values.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    region = np.asarray(region_mask).astype(bool)
    if heat.shape != region.shape or heat.ndim != 2:
        raise ImageDimensionError(
            f"heatmap and region_mask must be 2-D maps of the same shape; got {heat.shape} "
            f"and {region.shape}."
        )
    if not np.all(np.isfinite(heat)) or heat.min(initial=0.0) < 0.0:
        raise InvalidImageError("A heatmap must hold finite, non-negative values.")
    total = heat.sum()
    return float(heat[region].sum() / total) if total > 0 else 0.0
