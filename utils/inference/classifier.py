"""Lesion classification of ultrasound images with a shipped classification bundle.

:class:`LesionClassifier` compiles the forward pass once and returns *calibrated*
probabilities: the card's ``temperature`` divides the logits before the softmax
(temperature scaling, see :mod:`utils.calibration`). Models built by
:mod:`utils.models.classification` expose a ``logits`` layer, which is used directly;
for other models the log-probabilities stand in for the logits, which is exact, since
``softmax(log p / T)`` equals ``softmax(z / T)`` for ``p = softmax(z)``.

With ``with_uncertainty=True`` the images also go through test-time augmentation, whose
spread gives an uncertainty and a "refer to a human reader" flag. With
``with_familiarity=True`` and a familiarity reference next to the bundle
(``NAME.familiarity.npz``, see :mod:`utils.familiarity`), each result also says how
unlike the training images the image looks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Self

import keras
import numpy as np

from utils.calibration import DEFAULT_N_AUGMENT, apply_temperature, should_refer, tta_predict
from utils.errors import ConfigError, ModelError
from utils.familiarity import (
    FamiliarityReference,
    FamiliarityResult,
    familiarity_path,
    load_familiarity,
)
from utils.inference.bundle import (
    DEFAULT_CLASSIFIER_BUNDLE,
    ImageLike,
    as_image_list,
    images_for_model,
    resolve_bundle_paths,
    to_float_batch,
)
from utils.inference.compiled import compile_forward
from utils.inference.predictor import BundlePredictor, weights_fingerprint
from utils.models.classification import LOGITS_LAYER, logits_model, penultimate_model
from utils.models.mask_guided import (
    SEGMENTER_LAYER,
    build_mask_guided_mixer,
    mask_guided_feature_head,
    mask_guided_head_copy,
    split_mask_guided,
)
from utils.paths import SAVED_MODELS_DIR

__all__ = ["ClassificationResult", "LesionClassifier"]

#: Images per forward pass.
DEFAULT_BATCH_SIZE = 32

# Floor of the probabilities before the log, when the model has no logits layer.
_MIN_PROBABILITY = 1e-12


@dataclass(frozen=True)
class ClassificationResult:
    """The classification of one image.

    Attributes:
        probabilities: Calibrated probability of every class, in the card's order.
        predicted_class: The most probable class.
        confidence: Its probability.
        uncertainty: Normalised predictive entropy of the test-time augmentation passes,
            in [0, 1] (0: every pass sure of one class); ``None`` without uncertainty.
        top_prob_std: Standard deviation over the passes of the top class's probability;
            ``None`` without uncertainty.
        refer: Whether to hand the image to a human reader (low calibrated confidence or
            high entropy, :func:`utils.calibration.should_refer` on the TTA mean);
            ``None`` without uncertainty.
        familiarity: How the image's features compare with the training images';
            ``None`` unless asked for and the bundle has a familiarity reference.
    """

    probabilities: dict[str, float]
    predicted_class: str
    confidence: float
    uncertainty: float | None = None
    top_prob_std: float | None = None
    refer: bool | None = None
    familiarity: FamiliarityResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "probabilities": dict(self.probabilities),
            "predicted_class": self.predicted_class,
            "confidence": self.confidence,
            "uncertainty": self.uncertainty,
            "top_prob_std": self.top_prob_std,
            "refer": self.refer,
            "familiarity": None if self.familiarity is None else self.familiarity.to_dict(),
        }


def _has_logits_layer(model: keras.Model) -> bool:
    return any(layer.name == LOGITS_LAYER for layer in model.layers)


class LesionClassifier(BundlePredictor):
    """A classification bundle ready for inference: compiled once, batched, calibrated.

    Example::

        classifier = LesionClassifier.from_bundle("ultrasound_classifier")
        [result] = classifier.predict([load_image("scan.png")], with_uncertainty=True)
        result.predicted_class, result.confidence, result.refer
    """

    TASK = "classification"
    DEFAULT_BUNDLE = DEFAULT_CLASSIFIER_BUNDLE
    DEFAULT_BATCH_SIZE = DEFAULT_BATCH_SIZE

    def __init__(
        self,
        model: keras.Model,
        card: dict[str, Any],
        *,
        familiarity: FamiliarityReference | None = None,
        **options: Any,
    ) -> None:
        """Compile ``model`` once, to its logits when it has them (see :class:`BundlePredictor`).

        Args:
            model: The classifier.
            card: Its model card.
            familiarity: The reference of :mod:`utils.familiarity` fitted on this model's
                training features, or ``None``.
            **options: ``batch_size`` and ``warm_up`` (see :class:`BundlePredictor`).

        Raises:
            ModelError: The card is not a valid classification card, or ``familiarity``
                was fitted on other weights or features of another size.
            ConfigError: ``batch_size`` is not a positive integer.
        """
        self._outputs_logits = _has_logits_layer(model)
        super().__init__(model, card, **options)
        self.class_names: tuple[str, ...] = tuple(self.card["class_names"])
        self.temperature = float(self.card.get("temperature", 1.0))
        # A mask-guided model runs its embedded segmenter once per image; the head alone
        # then takes the test-time augmentation passes.
        parts = split_mask_guided(model, to_logits=self._outputs_logits)
        self._front_end = self._head = self._mixer = None
        if parts is not None:
            front_end, head = parts
            self._front_end = compile_forward(front_end, self.input_shape)
            self._head = compile_forward(head, tuple(head.input_shape[1:]))
            height, width = self.input_shape[:2]
            self._mixer = compile_forward(build_mask_guided_mixer(model), (height, width, 2))
        self.familiarity = self._checked_familiarity(familiarity)

    @cached_property
    def segmenter_fingerprint(self) -> str | None:
        """Weights fingerprint of the embedded segmenter; ``None`` unless mask-guided.

        Computed on first use (hashing the segmenter's weights takes ~80 ms), not at load.
        """
        if not self.is_mask_guided:
            return None
        return weights_fingerprint(self.model.get_layer(SEGMENTER_LAYER))

    @classmethod
    def from_bundle(
        cls,
        name_or_path: str | Path,
        *,
        models_dir: Path | str = SAVED_MODELS_DIR,
        **options: Any,
    ) -> Self:
        """Load a bundle and, when there is one, its familiarity reference.

        The reference is ``NAME.familiarity.npz`` next to ``NAME.keras``; passing
        ``familiarity=`` (a reference, or ``None`` for none) skips reading it.

        Raises:
            ModelError: The bundle is missing or invalid, or its card names a familiarity
                reference that is missing, unreadable or fitted on other weights.
        """
        if "familiarity" in options:  # given by the caller (None: none wanted)
            return super().from_bundle(name_or_path, models_dir=models_dir, **options)
        model_path, _ = resolve_bundle_paths(name_or_path, models_dir=models_dir)
        sidecar = familiarity_path(model_path)
        options["familiarity"] = load_familiarity(sidecar) if sidecar.is_file() else None
        classifier = super().from_bundle(name_or_path, models_dir=models_dir, **options)
        if "familiarity" in classifier.card and classifier.familiarity is None:
            raise ModelError(
                f"The card of {model_path.name} describes a familiarity reference but "
                f"{sidecar.name} is missing next to it; restore it or refit it "
                "(python -m utils.train familiarity)."
            )
        return classifier

    def _checked_familiarity(
        self, reference: FamiliarityReference | None
    ) -> FamiliarityReference | None:
        if reference is None:
            return None
        n_features = int(self._feature_network.output.shape[-1])
        if reference.n_features != n_features:
            raise ModelError(
                f"The familiarity reference has {reference.n_features} features but this "
                f"classifier's penultimate layer has {n_features}: it belongs to another model."
            )
        if reference.weights_fingerprint and reference.weights_fingerprint != (
            self.weights_fingerprint
        ):
            raise ModelError(
                f"The familiarity reference was fitted on weights "
                f"{reference.weights_fingerprint}, not on this classifier's "
                f"({self.weights_fingerprint}); refit it (python -m utils.train familiarity)."
            )
        return reference

    @cached_property
    def _feature_network(self) -> keras.Model:
        """Input (or a mask-guided model's head input) -> penultimate features."""
        head = mask_guided_feature_head(self.model)
        return penultimate_model(self.model) if head is None else head

    @cached_property
    def _features_forward(self) -> Any:
        network = self._feature_network
        return compile_forward(network, tuple(network.input_shape[1:]))

    def embed(
        self,
        images: ImageLike | Sequence[ImageLike],
        segmenter_probabilities: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """(N, D) penultimate features of images of any size (the input of ``logits``).

        Args:
            images: One image or several.
            segmenter_probabilities: Mask-guided models: the embedded segmenter's maps,
                already computed (see :meth:`head_inputs`).

        Raises:
            ModelError: The model has no ``logits`` layer.
            ConfigError: Maps given to a model that is not mask-guided, or of a bad size.
        """
        inputs, _ = self._network_inputs(images, segmenter_probabilities, split=True)
        return self._features_of(inputs)

    def _features_of(self, inputs: np.ndarray) -> np.ndarray:
        """Penultimate features of a batch already in :attr:`_feature_network`'s input form."""
        if len(inputs) == 0:
            n_features = int(self._feature_network.output.shape[-1])
            return np.zeros((0, n_features), dtype=np.float32)
        return self._chunked(self._features_forward, inputs)

    def _network_inputs(
        self,
        images: ImageLike | Sequence[ImageLike],
        segmenter_probabilities: Sequence[np.ndarray] | None,
        *,
        split: bool,
    ) -> tuple[np.ndarray, Any]:
        """The batch and the compiled forward (to logits) that classify it.

        A mask-guided model is split (``split``, or given maps) into its front end, run
        here once, and the head the returned forward runs: test-time augmentation and the
        familiarity features then reuse the head's input instead of re-segmenting.
        """
        if segmenter_probabilities is not None:
            return self.head_inputs(images, segmenter_probabilities), self._head
        if self._head is None or not split:
            return self._model_batch(images), self._forward
        return self._chunked(self._front_end, self._model_batch(images)), self._head

    def assess_familiarity(
        self,
        images: ImageLike | Sequence[ImageLike],
        segmenter_probabilities: Sequence[np.ndarray] | None = None,
    ) -> list[FamiliarityResult] | None:
        """How familiar each image looks (:mod:`utils.familiarity`); ``None`` if no reference."""
        if self.familiarity is None:
            return None
        features = self.embed(images, segmenter_probabilities)
        return self.familiarity.assess(features) if len(features) else []

    @cached_property
    def cam_model(self) -> keras.Model:  # type: ignore[override]
        """The model a CAM explains: the whole model, or a mask-guided model's head.

        A mask-guided model's CAM layers are all in its head, so explaining the head on
        its input (:meth:`cam_input`) gives the same Grad-CAM without back-propagating
        through the embedded segmenter.
        """
        head = mask_guided_head_copy(self.model)
        return self.model if head is None else head

    def cam_input(
        self, image: ImageLike, segmenter_probabilities: np.ndarray | None = None
    ) -> np.ndarray:
        """One image as the float (H, W, C) input of :attr:`cam_model`.

        Args:
            image: The image.
            segmenter_probabilities: Mask-guided models: the embedded segmenter's map of
                the image, to reuse (see :meth:`head_inputs`).

        Raises:
            ConfigError: Maps given to a model that is not mask-guided, or of a wrong size.
        """
        if not self.is_mask_guided and segmenter_probabilities is None:
            return self._model_batch([image])[0]
        maps = None if segmenter_probabilities is None else [segmenter_probabilities]
        return self.head_inputs([image], maps)[0]  # raises if not mask-guided

    @property
    def is_mask_guided(self) -> bool:
        """Whether the model embeds a lesion segmenter (see :mod:`utils.models.mask_guided`)."""
        return self._head is not None

    def can_reuse(self, segmenter_fingerprint: str, segmenter_input_shape: tuple) -> bool:
        """Whether a segmenter's model-size maps can stand in for the embedded segmenter's.

        True only for a mask-guided model whose embedded segmenter has exactly these
        weights and this input size, so reusing the maps changes nothing but the time.
        """
        return (
            self.segmenter_fingerprint is not None
            and segmenter_fingerprint == self.segmenter_fingerprint
            and tuple(segmenter_input_shape[:2]) == tuple(self.input_shape[:2])
        )

    def head_inputs(
        self,
        images: ImageLike | Sequence[ImageLike],
        segmenter_probabilities: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """The head's (N, s, s, 3) input of a mask-guided model.

        Args:
            images: One image or several.
            segmenter_probabilities: The embedded segmenter's (H, W) probability map of
                each image at the model's input size (see :meth:`can_reuse`), to skip
                running it again; ``None`` runs it.

        Raises:
            ConfigError: The model is not mask-guided, or the maps do not match the
                images in number or the model's input size.
        """
        if not self.is_mask_guided:
            raise ConfigError(
                f"{self.card.get('name', 'This classifier')} is not mask-guided: it has no "
                "segmenter whose maps it could reuse."
            )
        batch = self._model_batch(images)
        if segmenter_probabilities is None:
            return self._chunked(self._front_end, batch)
        maps = [np.asarray(m, dtype=np.float32) for m in segmenter_probabilities]
        expected = tuple(self.input_shape[:2])
        if len(maps) != len(batch) or any(m.shape != expected for m in maps):
            raise ConfigError(
                f"segmenter_probabilities must be one {expected} map per image: got "
                f"{[m.shape for m in maps]} for {len(batch)} image(s)."
            )
        pairs = np.concatenate([batch[..., :1], np.stack(maps)[..., None]], axis=-1)
        return self._chunked(self._mixer, pairs)

    def _network(self, model: keras.Model) -> keras.Model:
        # Temperature scaling needs logits; models without them get log-probabilities.
        return logits_model(model) if self._outputs_logits else model

    def predict_probabilities(
        self, images: ImageLike | Sequence[ImageLike], *, temperature: float | None = None
    ) -> np.ndarray:
        """Calibrated class probabilities of images of any size.

        Args:
            images: One image or several (see :func:`utils.inference.bundle.as_image_list`).
            temperature: Overrides the card's temperature (1.0 gives the raw softmax).

        Returns:
            float64 (N, classes) probabilities, columns in :attr:`class_names` order.

        Raises:
            ConfigError: ``temperature`` is not positive.
            ImageDimensionError: An image has an unusable shape.
            InvalidImageError: An array is not uint8.
        """
        batch = self._model_batch(images)
        return self._calibrated(batch, self._temperature(temperature))

    def predict(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        with_uncertainty: bool = False,
        n_augment: int = DEFAULT_N_AUGMENT,
        seed: int = 0,
        temperature: float | None = None,
        segmenter_probabilities: Sequence[np.ndarray] | None = None,
        with_familiarity: bool = False,
    ) -> list[ClassificationResult]:
        """Classify images of any size.

        Args:
            images: One image or several (see :func:`utils.inference.bundle.as_image_list`).
            with_uncertainty: Also run test-time augmentation (``n_augment`` forward
                passes) and fill ``uncertainty``, ``top_prob_std`` and ``refer``. The
                reported probabilities stay those of the unmodified image.
            n_augment: TTA passes, the unmodified one included.
            seed: Seed of the TTA transforms (reproducible answers).
            temperature: Overrides the card's temperature.
            segmenter_probabilities: Mask-guided models only: the embedded segmenter's
                maps of the images, already computed (see :meth:`head_inputs`).
            with_familiarity: Also fill ``familiarity`` (when the bundle has a reference).

        Returns:
            One result per image, in order.

        Raises:
            ConfigError: Bad ``n_augment``, ``temperature`` or ``segmenter_probabilities``.
            ImageDimensionError: An image has an unusable shape.
            InvalidImageError: An array is not uint8.
        """
        scale = self._temperature(temperature)
        inputs, forward = self._network_inputs(
            images, segmenter_probabilities, split=with_uncertainty or with_familiarity
        )
        results = self._classified(inputs, forward, scale, with_uncertainty, n_augment, seed)
        if not with_familiarity or self.familiarity is None:
            return results
        assessed = self.familiarity.assess(self._features_of(inputs)) if results else []
        return [
            replace(result, familiarity=familiarity)
            for result, familiarity in zip(results, assessed, strict=True)
        ]

    def _classified(
        self,
        tta_inputs: np.ndarray,
        forward: Any,
        scale: float,
        with_uncertainty: bool,
        n_augment: int,
        seed: int,
    ) -> list[ClassificationResult]:
        """:meth:`predict` of a batch from :meth:`_network_inputs`, without familiarity."""
        if len(tta_inputs) == 0:
            return []
        if not with_uncertainty:
            logits = self._logits(forward, tta_inputs)
            return [self._result(row) for row in apply_temperature(logits, scale)]
        tta = tta_predict(
            lambda x: apply_temperature(self._logits(forward, x), scale),
            tta_inputs,
            n_augment,
            seed,
        )
        refer = should_refer(tta.mean_probs, tta.normalized_entropy)
        # Pass 0 of the TTA is the unmodified batch: the plain answer, at no extra cost.
        return [
            self._result(
                probs,
                uncertainty=float(entropy),
                top_prob_std=float(spread),
                refer=bool(flag),
            )
            for probs, entropy, spread, flag in zip(
                tta.pass_probs[0], tta.normalized_entropy, tta.top_prob_std, refer, strict=True
            )
        ]

    def _model_batch(self, images: ImageLike | Sequence[ImageLike]) -> np.ndarray:
        """float32 (N, H, W, C) model input of images of any size."""
        uint8_batch = images_for_model(as_image_list(images), self.input_shape)
        return to_float_batch(uint8_batch, self.input_shape)

    def _temperature(self, temperature: float | None) -> float:
        value = self.temperature if temperature is None else temperature
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"temperature must be a positive number; got {value!r}.")
        return float(value)

    def _chunked(self, forward: Any, batch: np.ndarray) -> np.ndarray:
        """``forward`` over a float32 batch in chunks of :attr:`batch_size`."""
        chunks = [
            np.asarray(forward(batch[start : start + self.batch_size]))
            for start in range(0, len(batch), self.batch_size)
        ]
        return np.concatenate(chunks)

    def _logits(self, forward: Any, batch: np.ndarray) -> np.ndarray:
        """Logits (or log-probabilities, without a logits layer) of a non-empty batch."""
        scores = self._chunked(forward, batch)
        if not self._outputs_logits:
            scores = np.log(np.clip(scores, _MIN_PROBABILITY, 1.0))
        return scores

    def _calibrated(self, batch: np.ndarray, temperature: float) -> np.ndarray:
        """Temperature-scaled probabilities of a float32 model-size batch."""
        if len(batch) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float64)
        return apply_temperature(self._logits(self._forward, batch), temperature)

    def _result(self, probabilities: np.ndarray, **uncertainty: Any) -> ClassificationResult:
        top = int(np.argmax(probabilities))
        return ClassificationResult(
            probabilities={
                name: float(p) for name, p in zip(self.class_names, probabilities, strict=True)
            },
            predicted_class=self.class_names[top],
            confidence=float(probabilities[top]),
            **uncertainty,
        )
