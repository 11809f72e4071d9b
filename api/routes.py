"""The API's endpoints: read the upload, run :mod:`utils`, convert the result.

Endpoints are plain ``def`` functions: FastAPI runs them in its thread pool, so the
event loop stays free while a model runs (see :mod:`api.services` on thread safety).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from api import convert
from api.auth import require_token
from api.schemas import (
    AnalyzeResponse,
    ErrorResponse,
    ExplainResponse,
    HealthResponse,
    LegacyPredictResponse,
    MaskFormat,
    ModelsResponse,
    PredictResponse,
    SegmentResponse,
)
from api.services import ModelServices
from utils.analysis import (
    AnalysisSettings,
    analyse_ultrasound,
    cam_target,
    classification_step,
    classifier_cam_step,
    model_disagreement,
    segment_step,
    segmenter_cam_step,
    smoothness_note,
)
from utils.explain import CamMethod
from utils.image_io import LoadedImage, load_image

__all__ = ["router"]

# Every error answer has the same JSON body; listing them documents it in the schema.
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid option (e.g. a CAM target class the model does not have).",
        401: "Missing or wrong bearer token (only when API_TOKEN is set).",
        413: "Upload larger than the byte limit or the image than the pixel limit.",
        415: "Not a PNG, JPEG, BMP, TIFF or single-frame DICOM image (sniffed from bytes).",
        422: "Corrupt or empty image, or a missing or invalid form field.",
        503: "The model this endpoint needs is not installed.",
    }.items()
}

UploadField = Annotated[
    UploadFile,
    File(description="The image: PNG, JPEG, BMP, TIFF or DICOM (detected from its bytes)."),
]
SpacingField = Annotated[
    float | None,
    Form(
        gt=0,
        le=10,
        description="Pixel size in mm for measurements; default: the DICOM header's, else px.",
    ),
]
ThresholdField = Annotated[
    float | None,
    Form(gt=0, lt=1, description="Mask probability threshold; default: the model card's."),
]
MaskFormatField = Annotated[
    MaskFormat, Form(description="Mask encoding: 'png' (base64) or 'rle' (run lengths).")
]
CamMethodField = Annotated[CamMethod, Form(description="Class activation map method.")]

router = APIRouter()
protected = APIRouter(dependencies=[Depends(require_token)], responses=_ERRORS)


def _services(request: Request) -> ModelServices:
    return request.app.state.services


Services = Annotated[ModelServices, Depends(_services)]


def _read(upload: UploadFile, services: ModelServices) -> LoadedImage:
    """Decode the upload within the limits; its file name is never read (it may name a patient)."""
    limits = services.settings
    # One byte past the limit is enough for load_image to report "too large".
    data = upload.file.read(limits.max_upload_bytes + 1)
    return load_image(data, max_bytes=limits.max_upload_bytes, max_pixels=limits.max_pixels)


@router.get("/health", response_model=HealthResponse, tags=["service"])
def health(services: Services) -> HealthResponse:
    """Liveness and which models are loaded (no authentication)."""
    status = services.status()
    degraded = not all(model["loaded"] for model in status.values())
    return HealthResponse(status="degraded" if degraded else "ok", models=status)


@protected.get("/v1/models", response_model=ModelsResponse, tags=["service"])
def models(services: Services) -> ModelsResponse:
    """The model cards (JSON) of every installed bundle."""
    return ModelsResponse(models=services.cards())


@protected.post("/v1/predict", response_model=PredictResponse, tags=["analysis"])
def predict(file: UploadField, services: Services) -> PredictResponse:
    """Classify a breast ultrasound image: calibrated probabilities and an uncertainty flag."""
    image = _read(file, services)
    classifier, _ = services.classifier()
    with services.run():
        result = classification_step(image, classifier).value
    return PredictResponse(
        **convert.classification(result).model_dump(),
        model=convert.model_info(classifier.card),
        texture=convert.texture(image.gray, classifier.card),
    )


@protected.post(
    "/predict", response_model=LegacyPredictResponse, tags=["compatibility"], deprecated=True
)
def predict_legacy(file: UploadField, services: Services) -> LegacyPredictResponse:
    """The seed API's prediction ({prediction, confidence}); use ``/v1/predict``."""
    full = predict(file, services)
    return LegacyPredictResponse(prediction=full.prediction, confidence=full.confidence)


@protected.post("/v1/segment", response_model=SegmentResponse, tags=["analysis"])
def segment(
    file: UploadField,
    services: Services,
    threshold: ThresholdField = None,
    pixel_spacing_mm: SpacingField = None,
    mask_format: MaskFormatField = "png",
) -> SegmentResponse:
    """Segment the lesion: the mask (PNG or RLE) and its measurements."""
    image = _read(file, services)
    segmenter, _ = services.segmenter()
    with services.run():
        result = segment_step(image, segmenter, threshold, pixel_spacing_mm).value
    return SegmentResponse(
        **convert.segmentation(result, mask_format, segmenter.card).model_dump(),
        model=convert.model_info(segmenter.card),
        texture=convert.texture(image.gray, segmenter.card),
    )


@protected.post("/v1/explain", response_model=ExplainResponse, tags=["analysis"])
def explain(
    file: UploadField,
    services: Services,
    model: Annotated[
        Literal["segmenter", "classifier"],
        Form(description="Explain the segmenter's lesion area or the classifier's class."),
    ] = "segmenter",
    cam_method: CamMethodField = "gradcam",
    target_class: Annotated[
        int | None,
        Form(ge=0, le=1000, description="Classifier class index; default: the predicted one."),
    ] = None,
) -> ExplainResponse:
    """Grad-CAM (or Grad-CAM++ / Score-CAM) heatmap of the segmenter or the classifier."""
    image = _read(file, services)
    if model == "segmenter":
        segmenter, explainer = services.segmenter()
        with services.run():
            cam = segmenter_cam_step(image, segmenter, explainer, cam_method, None).value
        return ExplainResponse(
            heatmap=convert.heatmap(cam, "segmenter", cam_method, "lesion area"),
            model=convert.model_info(segmenter.card),
        )
    classifier, explainer = services.classifier()
    with services.run():
        if target_class is None:
            predicted = classification_step(image, classifier).value
            target = cam_target(classifier, predicted, None)
        else:
            target = cam_target(classifier, None, target_class)  # type: ignore[arg-type]
        cam = classifier_cam_step(image, classifier, explainer, cam_method, None, target).value
    return ExplainResponse(
        heatmap=convert.heatmap(cam, "classifier", cam_method, classifier.class_names[target]),
        model=convert.model_info(classifier.card),
    )


@protected.post("/v1/analyze", response_model=AnalyzeResponse, tags=["analysis"])
def analyze(
    file: UploadField,
    services: Services,
    threshold: ThresholdField = None,
    pixel_spacing_mm: SpacingField = None,
    mask_format: MaskFormatField = "png",
    cam_method: CamMethodField = "gradcam",
) -> AnalyzeResponse:
    """Segment, measure, classify and explain in one call (classification needs a classifier)."""
    image = _read(file, services)
    segmenter, segmenter_explainer = services.segmenter()
    classifier, classifier_explainer, notes = None, None, []
    if services.has("classifier"):
        classifier, classifier_explainer = services.classifier()
    else:
        notes.append("No classifier is installed: classification and its heatmap are skipped.")
    settings = AnalysisSettings(
        threshold=threshold, pixel_spacing_mm=pixel_spacing_mm, cam_method=cam_method
    )
    with services.run():
        result = analyse_ultrasound(
            image,
            settings,
            segmenter=segmenter,
            classifier=classifier,
            segmenter_explainer=segmenter_explainer,
            classifier_explainer=classifier_explainer,
        )
    used = [segmenter] if classifier is None else [segmenter, classifier]
    for note in (model_disagreement(result), smoothness_note(result.gray, segmenter.card)):
        if note is not None:
            notes.append(note)
    return AnalyzeResponse(
        segmentation=convert.segmentation(result.segmentation, mask_format, segmenter.card),
        classification=None
        if result.classification is None
        else convert.classification(result.classification),
        segmenter_heatmap=convert.heatmap(
            result.segmenter_cam, "segmenter", cam_method, "lesion area"
        ),
        classifier_heatmap=None
        if result.classifier_cam is None
        else convert.heatmap(
            result.classifier_cam, "classifier", cam_method, str(result.classifier_cam_class)
        ),
        timings=result.timings,
        models=[convert.model_info(predictor.card) for predictor in used],
        notes=notes,
    )


router.include_router(protected)
