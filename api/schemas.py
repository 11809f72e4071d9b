"""Response bodies of the API, with the examples the OpenAPI schema shows."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from utils.encoding import heatmap_png_base64
from utils.measurements import LesionMeasurements

__all__ = [
    "AnalyzeResponse",
    "Classification",
    "ErrorResponse",
    "ExplainResponse",
    "HealthResponse",
    "Heatmap",
    "LegacyPredictResponse",
    "Mask",
    "ModelInfo",
    "ModelsResponse",
    "PredictResponse",
    "SegmentResponse",
    "Segmentation",
]

MaskFormat = Literal["png", "rle"]

# A real 2 x 2 heatmap PNG, so the example decodes.
_PNG_EXAMPLE = heatmap_png_base64(np.array([[0.0, 0.5], [0.5, 1.0]]))


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


_MODEL_EXAMPLE = {"name": "ultrasound_classifier", "version": "1.0.0", "task": "classification"}
_CLASSIFICATION_EXAMPLE = {
    "prediction": "benign",
    "probabilities": {"normal": 0.08, "benign": 0.81, "malignant": 0.11},
    "confidence": 0.81,
    "uncertainty": 0.22,
    "refer": False,
    "familiarity": {"distance": 7.1, "percentile": 62.3, "unfamiliar": False},
}
_MASK_EXAMPLE = {"format": "rle", "height": 2, "width": 2, "png_base64": None, "counts": [1, 3]}
_SEGMENTATION_EXAMPLE = {
    "mask": _MASK_EXAMPLE,
    "threshold": 0.5,
    "lesion_found": True,
    "lesion_area_px": 3,
    "measurements": None,
    "unreliable_descriptors": [],
}
_HEATMAP_EXAMPLE = {
    "model": "segmenter",
    "method": "gradcam",
    "target": "lesion area",
    "height": 2,
    "width": 2,
    "png_base64": _PNG_EXAMPLE,
}


class ErrorResponse(BaseModel):
    """Every error answer (4xx, 503, and the rare 500)."""

    model_config = _example(
        {"error": "UnsupportedFormatError", "detail": "The upload is not a supported image..."}
    )
    error: str = Field(description="Error type, e.g. ImageTooLargeError or ValidationError.")
    detail: str = Field(description="What was received and what is allowed.")
    errors: list[dict[str, Any]] | None = Field(
        None, description="Per-field problems of a 422 (location, message; never the values)."
    )


class ModelInfo(BaseModel):
    """Which model answered (from its model card)."""

    model_config = _example(_MODEL_EXAMPLE)
    name: str
    version: str | None = Field(description="The card's version; None when it has none.")
    task: str


class Familiarity(BaseModel):
    """How the image compares with the classifier's training images (utils.familiarity)."""

    distance: float = Field(ge=0, description="Feature-space Mahalanobis distance.")
    percentile: float = Field(
        ge=0, le=100, description="Share of training images (%) that lie closer than it."
    )
    unfamiliar: bool = Field(
        description="Farther than the card's training-distance quantile: unlike the training "
        "images, so trust the probabilities less."
    )


class Texture(BaseModel):
    """How much fine texture the image has, against the training images (utils.image_quality)."""

    index: float = Field(ge=0, description="std(Laplacian) / std(image) of the 96-px grey image.")
    threshold: float = Field(description="The training images' 1st percentile of the index.")
    too_smooth: bool = Field(
        description="Below the threshold: smoother than 99% of the training images, where "
        "both ultrasound models were measured to be much less reliable."
    )


_TEXTURE_DESCRIPTION = "Smooth-image check; null when the model's card holds no texture reference."


class Classification(BaseModel):
    """Calibrated class probabilities, with test-time-augmentation uncertainty."""

    model_config = _example(_CLASSIFICATION_EXAMPLE)
    prediction: str = Field(description="The most probable class.")
    probabilities: dict[str, float] = Field(description="Calibrated probabilities; sum to 1.")
    confidence: float = Field(ge=0, le=1, description="Probability of the predicted class.")
    uncertainty: float | None = Field(
        description="Normalised predictive entropy over test-time augmentation, in [0, 1]."
    )
    refer: bool = Field(
        description="Uncertainty flag: hand the image to a human reader (low confidence or "
        "high entropy)."
    )
    familiarity: Familiarity | None = Field(
        default=None,
        description="Unfamiliar-image check; null when the classifier ships no reference.",
    )


class PredictResponse(Classification):
    """``POST /v1/predict``."""

    model_config = _example({**_CLASSIFICATION_EXAMPLE, "model": _MODEL_EXAMPLE})
    model: ModelInfo
    texture: Texture | None = Field(default=None, description=_TEXTURE_DESCRIPTION)


class LegacyPredictResponse(BaseModel):
    """``POST /predict``: the seed API's shape, kept for old clients."""

    model_config = _example({"prediction": "benign", "confidence": 0.81})
    prediction: str
    confidence: float


class Mask(BaseModel):
    """The lesion mask at the uploaded image's size.

    ``png``: an 8-bit PNG (lesion 255) as base64. ``rle``: row-major run lengths that
    alternate background and lesion, starting with background, summing to height x width.
    """

    model_config = _example(_MASK_EXAMPLE)
    format: Literal["png", "rle"]
    height: int
    width: int
    png_base64: str | None = None
    counts: list[int] | None = None


class Segmentation(BaseModel):
    """The lesion mask and its measurements."""

    model_config = _example(_SEGMENTATION_EXAMPLE)
    mask: Mask
    threshold: float = Field(description="Probability threshold used.")
    lesion_found: bool
    lesion_area_px: int = Field(ge=0)
    measurements: LesionMeasurements | None = Field(
        description="Measurements of the kept lesion (mm with a pixel spacing, else px); "
        "None when no lesion was found."
    )
    unreliable_descriptors: list[str] = Field(
        default_factory=list,
        description="Measurement fields that the segmenter's card shows to lose most of "
        "their malignant-vs-benign meaning on the model's smooth outline (its "
        "measurement_agreement.descriptors); judge those on the image. Empty when no "
        "lesion was found or the card has no such check.",
    )


class SegmentResponse(Segmentation):
    """``POST /v1/segment``."""

    model_config = _example(
        {**_SEGMENTATION_EXAMPLE, "model": {**_MODEL_EXAMPLE, "task": "segmentation"}}
    )
    model: ModelInfo
    texture: Texture | None = Field(default=None, description=_TEXTURE_DESCRIPTION)


class Heatmap(BaseModel):
    """A class activation map at the model's input size, as an 8-bit grayscale PNG.

    Pixel value / 255 is the CAM value in [0, 1]; resize it to the image to overlay it.
    """

    model_config = _example(_HEATMAP_EXAMPLE)
    model: Literal["segmenter", "classifier"]
    method: str
    target: str = Field(description="What is explained: 'lesion area' or a class name.")
    height: int
    width: int
    png_base64: str


class ExplainResponse(BaseModel):
    """``POST /v1/explain``."""

    model_config = _example({"heatmap": _HEATMAP_EXAMPLE, "model": _MODEL_EXAMPLE})
    heatmap: Heatmap
    model: ModelInfo


class AnalyzeResponse(BaseModel):
    """``POST /v1/analyze``: segmentation, classification and both heatmaps."""

    model_config = _example(
        {
            "segmentation": _SEGMENTATION_EXAMPLE,
            "classification": _CLASSIFICATION_EXAMPLE,
            "segmenter_heatmap": _HEATMAP_EXAMPLE,
            "classifier_heatmap": None,
            "timings": {"segmentation": 0.05, "segmenter_cam": 0.2, "total": 0.25},
            "models": [_MODEL_EXAMPLE],
            "notes": [],
        }
    )
    segmentation: Segmentation
    classification: Classification | None = Field(description="None without a classifier.")
    segmenter_heatmap: Heatmap
    classifier_heatmap: Heatmap | None
    timings: dict[str, float] = Field(description="Seconds per step and their total.")
    models: list[ModelInfo]
    notes: list[str] = Field(
        description="What was skipped and why (e.g. no classifier), and whether the models "
        "disagree (a 'normal' verdict with a lesion mask, or a lesion verdict without one)."
    )


class ModelStatus(BaseModel):
    """Whether one model is loaded."""

    bundle: str
    loaded: bool
    problem: str | None


class HealthResponse(BaseModel):
    """``GET /health``."""

    model_config = _example(
        {
            "status": "ok",
            "models": {
                "segmenter": {"bundle": "ultrasound_segmenter", "loaded": True, "problem": None}
            },
        }
    )
    status: Literal["ok", "degraded"] = Field(description="'degraded' when a model is missing.")
    models: dict[str, ModelStatus]


class ModelsResponse(BaseModel):
    """``GET /v1/models``: the model cards of every installed bundle."""

    model_config = _example({"models": [{"name": "ultrasound_segmenter", "task": "segmentation"}]})
    models: list[dict[str, Any]]
