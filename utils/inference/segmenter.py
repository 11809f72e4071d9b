"""Lesion segmentation of ultrasound images with a shipped segmentation bundle.

:class:`LesionSegmenter` compiles the model's forward pass once (fixed input signature)
and warms it up, so the first real image is as fast as the next ones. Images of any size
are converted to grayscale, resized to the model input, segmented, and the probability
map is resized back to the *original* size before post-processing and measuring, so
masks and millimetre measurements refer to the pixels the user sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import keras
import numpy as np

from utils.errors import ConfigError, ModelError
from utils.image_io import LoadedImage
from utils.inference.bundle import (
    DEFAULT_SEGMENTER_BUNDLE,
    ImageLike,
    as_image_list,
    images_for_model,
    to_float_batch,
    to_gray,
)
from utils.inference.predictor import BundlePredictor
from utils.measurements import LesionMeasurements, measure_lesion_or_none
from utils.postprocess import PostprocessConfig, postprocess_mask
from utils.resize import resize_probabilities

__all__ = ["LesionSegmenter", "SegmentationResult", "postprocess_config_from_card"]

#: Images per forward pass; 16 grayscale 256x256 images need well under 1 GB.
DEFAULT_BATCH_SIZE = 16

PixelSpacing = float | tuple[float, float] | None


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """The segmentation of one image, at the image's original size.

    Attributes:
        probabilities: (H, W) float32 lesion probabilities.
        mask: (H, W) boolean lesion mask after post-processing.
        measurements: Measurements of the largest lesion, ``None`` when the mask is
            empty or measuring was switched off.
        threshold: The probability threshold used for ``mask``.
        model_probabilities: (h, w) float32 probabilities at the model's input size, as
            the network output them (a mask-guided classifier with the same segmenter
            inside reuses them instead of segmenting again); ``None`` when not kept.
    """

    probabilities: np.ndarray
    mask: np.ndarray
    measurements: LesionMeasurements | None
    threshold: float
    model_probabilities: np.ndarray | None = None


def postprocess_config_from_card(card: dict[str, Any]) -> PostprocessConfig:
    """The card's ``postprocess`` dict as a validated :class:`PostprocessConfig`.

    Raises:
        ModelError: The dict has unknown fields or invalid values.
    """
    options = dict(card["postprocess"])
    known = {field.name for field in fields(PostprocessConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ModelError(
            f"Model card postprocess has unknown fields {unknown}; allowed: {sorted(known)}."
        )
    try:
        return PostprocessConfig(**options)
    except ConfigError as error:
        raise ModelError(f"Model card postprocess is invalid: {error}") from error


class LesionSegmenter(BundlePredictor):
    """A segmentation bundle ready for inference: compiled once, batched, size-agnostic.

    Example::

        segmenter = LesionSegmenter.from_bundle("ultrasound_segmenter")
        result = segmenter.segment(load_image("scan.png"))
        result.mask, result.measurements
    """

    TASK = "segmentation"
    DEFAULT_BUNDLE = DEFAULT_SEGMENTER_BUNDLE
    DEFAULT_BATCH_SIZE = DEFAULT_BATCH_SIZE

    def __init__(self, model: keras.Model, card: dict[str, Any], **options: Any) -> None:
        """Compile ``model`` once (see :class:`BundlePredictor`) and read its post-processing.

        Raises:
            ModelError: The card is not a valid segmentation card.
            ConfigError: ``batch_size`` is not a positive integer.
        """
        super().__init__(model, card, **options)
        self.postprocess = postprocess_config_from_card(self.card)

    @property
    def threshold(self) -> float:
        """The card's probability threshold."""
        return self.postprocess.threshold

    def predict_probabilities(self, images: np.ndarray) -> np.ndarray:
        """Lesion probabilities of a uint8 batch already at the model's size.

        Args:
            images: uint8 (N, H, W) or (N, H, W, C) at the model's height and width.

        Returns:
            float32 (N, H, W) probabilities of the first output channel.

        Raises:
            ImageDimensionError: The batch is not at the model size.
            InvalidImageError: The batch is not uint8.
        """
        batch = to_float_batch(images, self.input_shape)
        height, width = self.input_shape[:2]
        outputs = np.empty((len(batch), height, width), dtype=np.float32)
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            outputs[start : start + len(chunk)] = self._forward(chunk)[..., 0]
        return outputs

    def segment(
        self,
        image: ImageLike,
        *,
        threshold: float | None = None,
        pixel_spacing_mm: PixelSpacing = None,
        postprocess: PostprocessConfig | None = None,
        measure: bool = True,
    ) -> SegmentationResult:
        """Segment one image of any size; outputs are at the image's original size.

        Args:
            image: A loaded image or a uint8 (H, W), (H, W, 1) or (H, W, 3) array.
            threshold: Probability threshold; defaults to ``postprocess``'s, else the card's.
            pixel_spacing_mm: Pixel size for measurements in mm; defaults to the DICOM
                spacing of a :class:`LoadedImage` (pixels when unknown).
            postprocess: Post-processing options; defaults to the card's.
            measure: Compute :attr:`SegmentationResult.measurements`.

        Returns:
            Probabilities, mask, measurements and the threshold used.

        Raises:
            ConfigError: ``threshold`` is not in (0, 1), or the spacing is invalid.
            ImageDimensionError: The image has an unusable shape.
            InvalidImageError: The array is not uint8.
        """
        spacings = None if pixel_spacing_mm is None else [pixel_spacing_mm]
        return self.segment_batch(
            [image],
            threshold=threshold,
            pixel_spacings_mm=spacings,
            postprocess=postprocess,
            measure=measure,
        )[0]

    def segment_batch(
        self,
        images: Sequence[ImageLike] | np.ndarray,
        *,
        threshold: float | None = None,
        pixel_spacings_mm: Sequence[PixelSpacing] | None = None,
        postprocess: PostprocessConfig | None = None,
        measure: bool = True,
    ) -> list[SegmentationResult]:
        """Segment several images of any sizes with batched forward passes.

        Args:
            images: Loaded images or uint8 arrays, each of any size (or a uint8 batch,
                see :func:`utils.inference.bundle.as_image_list`).
            threshold: As in :meth:`segment`, for every image.
            pixel_spacings_mm: One spacing per image (``None`` entries: from the image's
                metadata, else pixels); by default every spacing comes from the metadata.
            postprocess: As in :meth:`segment`, for every image.
            measure: Compute measurements (switch off for bulk evaluation).

        Returns:
            One result per image, in order.

        Raises:
            ConfigError: ``threshold`` is not in (0, 1), a spacing is invalid, or the
                spacings do not match the images.
            ImageDimensionError: An image has an unusable shape.
            InvalidImageError: An array is not uint8.
        """
        images = as_image_list(images)
        config = self._postprocess_config(threshold, postprocess)
        spacings = self._spacings(images, pixel_spacings_mm)
        grays = [to_gray(image) for image in images]
        probabilities = self.predict_probabilities(images_for_model(grays, self.input_shape))
        return [
            self._finish(probability, gray, spacing, config, measure)
            for probability, gray, spacing in zip(probabilities, grays, spacings, strict=True)
        ]

    def _postprocess_config(
        self, threshold: float | None, postprocess: PostprocessConfig | None
    ) -> PostprocessConfig:
        config = postprocess or self.postprocess
        # replace() re-runs the validation, so a bad threshold is a ConfigError.
        return config if threshold is None else replace(config, threshold=threshold)

    @staticmethod
    def _spacings(
        images: Sequence[ImageLike], given: Sequence[PixelSpacing] | None
    ) -> list[PixelSpacing]:
        if given is not None and len(given) != len(images):
            raise ConfigError(
                f"pixel_spacings_mm must give one spacing per image: {len(images)} images, "
                f"{len(given)} spacings."
            )
        spacings = list(given) if given is not None else [None] * len(images)
        return [
            image.metadata.pixel_spacing_mm
            if spacing is None and isinstance(image, LoadedImage)
            else spacing
            for image, spacing in zip(images, spacings, strict=True)
        ]

    @staticmethod
    def _finish(
        probabilities: np.ndarray,
        gray: np.ndarray,
        spacing: PixelSpacing,
        config: PostprocessConfig,
        measure: bool,
    ) -> SegmentationResult:
        """Resize one probability map to the original size, threshold, clean and measure."""
        height, width = gray.shape
        full_size = resize_probabilities(probabilities, (height, width))
        mask = postprocess_mask(full_size, config)
        measurements = measure_lesion_or_none(mask, gray, spacing) if measure else None
        return SegmentationResult(
            full_size, mask, measurements, config.threshold, model_probabilities=probabilities
        )
