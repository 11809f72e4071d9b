"""Analysis results of :mod:`utils` turned into the API's response bodies."""

from __future__ import annotations

from typing import Any

import numpy as np

from api.schemas import (
    Classification,
    Heatmap,
    Mask,
    MaskFormat,
    ModelInfo,
    Segmentation,
    Texture,
)
from utils.encoding import heatmap_png_base64, mask_png_base64, rle_encode
from utils.evaluation.descriptors import lost_descriptors
from utils.image_quality import assess_texture
from utils.inference.classifier import ClassificationResult
from utils.inference.segmenter import SegmentationResult

__all__ = ["classification", "heatmap", "model_info", "segmentation", "texture"]


def model_info(card: dict[str, Any]) -> ModelInfo:
    """Name, version and task of a predictor's card."""
    version = card.get("version")
    return ModelInfo(
        name=str(card.get("name", "unnamed")),
        version=None if version is None else str(version),
        task=str(card.get("task")),
    )


def classification(result: ClassificationResult) -> Classification:
    """A classifier result; ``refer`` is computed whenever uncertainty was requested."""
    return Classification(
        prediction=result.predicted_class,
        probabilities=dict(result.probabilities),
        confidence=result.confidence,
        uncertainty=result.uncertainty,
        refer=bool(result.refer),
        familiarity=None if result.familiarity is None else result.familiarity.to_dict(),
    )


def texture(gray: np.ndarray, card: dict[str, Any]) -> Texture | None:
    """The smooth-image check of ``gray`` against ``card``'s ``input_texture``, if any."""
    assessed = assess_texture(gray, card)
    if assessed is None:
        return None
    return Texture(
        index=round(assessed.index, 4),
        threshold=assessed.threshold,
        too_smooth=assessed.too_smooth,
    )


def _mask(mask: np.ndarray, mask_format: MaskFormat) -> Mask:
    height, width = mask.shape
    if mask_format == "rle":
        return Mask(format="rle", height=height, width=width, counts=rle_encode(mask)["counts"])
    return Mask(format="png", height=height, width=width, png_base64=mask_png_base64(mask))


def segmentation(
    result: SegmentationResult, mask_format: MaskFormat, card: dict[str, Any]
) -> Segmentation:
    """The mask in the requested encoding, with its area, measurements and their caveats."""
    area = int(np.count_nonzero(result.mask))
    return Segmentation(
        mask=_mask(result.mask, mask_format),
        threshold=float(result.threshold),
        lesion_found=area > 0,
        lesion_area_px=area,
        measurements=result.measurements,
        unreliable_descriptors=[] if result.measurements is None else lost_descriptors(card),
    )


def heatmap(cam: np.ndarray, model: str, method: str, target: str) -> Heatmap:
    """A [0, 1] CAM as an 8-bit PNG."""
    height, width = cam.shape
    return Heatmap(
        model=model,  # type: ignore[arg-type]
        method=method,
        target=target,
        height=height,
        width=width,
        png_base64=heatmap_png_base64(cam),
    )
