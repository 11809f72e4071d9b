"""Analysis of one ultrasound image: segment, measure, classify and explain, timed.

The Streamlit-free core shared by the Analyse page (:mod:`helpers.analysis` and the
cached steps of :mod:`helpers.models`), the REST API (:mod:`api`) and the batch CLI
(:mod:`utils.batch`). Each model-running step is a function returning a :class:`Step`
(its value and the seconds it took), so callers may run the steps directly
(:func:`analyse_ultrasound`) or through their own caches, and
:func:`add_classification` writes the classify-then-explain order once for both.

The module keeps no state except a counter of model-running steps, which lets tests
check that a display-only change does not recompute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np

from utils.errors import ConfigError
from utils.explain import LESION_AREA, CamExplainer, CamMethod, explainer_for
from utils.image_io import LoadedImage
from utils.image_quality import assess_texture
from utils.inference.bundle import images_for_model, to_float_batch
from utils.inference.classifier import ClassificationResult, LesionClassifier
from utils.inference.segmenter import LesionSegmenter, SegmentationResult
from utils.postprocess import dice_score

__all__ = [
    "AnalysisResult",
    "AnalysisSettings",
    "PixelSpacing",
    "Step",
    "add_classification",
    "analyse_ultrasound",
    "assemble_result",
    "cam_target",
    "classification_step",
    "classifier_cam_step",
    "familiarity_note",
    "inference_count",
    "model_disagreement",
    "reference_dice",
    "reusable_segmenter_map",
    "segment_step",
    "segmenter_cam_step",
    "smoothness_note",
]

PixelSpacing = float | tuple[float, float] | None
T = TypeVar("T")


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything besides the image that changes the analysis.

    Attributes:
        threshold: Segmentation probability threshold; ``None``: the model card's.
        pixel_spacing_mm: Pixel size for measurements; ``None``: pixels.
        cam_method: ``"gradcam"``, ``"gradcam++"`` or ``"scorecam"``.
        segmenter_layer: Segmenter layer to explain; ``None``: its default layer.
        classifier_layer: Classifier layer to explain; ``None``: its default layer.
        target_class: Class index whose CAM to show; ``None``: the predicted class.
    """

    threshold: float | None = None
    pixel_spacing_mm: PixelSpacing = None
    cam_method: CamMethod = "gradcam"
    segmenter_layer: str | None = None
    classifier_layer: str | None = None
    target_class: int | None = None


class Step(NamedTuple, Generic[T]):
    """The output of one analysis step and the seconds it took to compute."""

    value: T
    seconds: float


@dataclass(frozen=True, eq=False)
class AnalysisResult:
    """The analysis of one ultrasound image.

    Attributes:
        gray: (H, W) uint8 grayscale image that was analysed.
        segmentation: Probabilities, mask and measurements at the image's size.
        classification: Calibrated class probabilities and uncertainty, ``None`` when no
            classifier is installed.
        segmenter_cam: (h, w) [0, 1] CAM of the predicted lesion area, at the
            segmenter's input size.
        classifier_cam: (h, w) [0, 1] CAM of ``classifier_cam_class``, ``None`` without
            a classifier.
        classifier_cam_class: The class the classifier CAM explains.
        timings: Seconds each step took when it was computed (``segmentation``,
            ``segmenter_cam``, and with a classifier ``classification`` and
            ``classifier_cam``), and their ``total``.
    """

    gray: np.ndarray
    segmentation: SegmentationResult
    classification: ClassificationResult | None
    segmenter_cam: np.ndarray
    classifier_cam: np.ndarray | None
    classifier_cam_class: str | None
    timings: dict[str, float] = field(default_factory=dict)


_inference_counter = 0
_inference_counter_lock = threading.Lock()


def inference_count() -> int:
    """How many model-running steps (segment, classify, CAM) ran in this process."""
    return _inference_counter


def _count_inference() -> None:
    global _inference_counter
    with _inference_counter_lock:  # Streamlit runs sessions in threads.
        _inference_counter += 1


def _timed(compute: Callable[[], T]) -> Step[T]:
    """Run one model step, counted and timed."""
    _count_inference()
    start = time.perf_counter()
    value = compute()
    return Step(value, time.perf_counter() - start)


def _model_input(image: LoadedImage, input_shape: tuple[int, int, int]) -> np.ndarray:
    """The image as the float (H, W, C) [0, 1] model input a CAM needs."""
    return to_float_batch(images_for_model([image], input_shape), input_shape)[0]


def segment_step(
    image: LoadedImage,
    segmenter: LesionSegmenter,
    threshold: float | None,
    pixel_spacing_mm: PixelSpacing,
) -> Step[SegmentationResult]:
    """Segment and measure the lesion (the only step the threshold and spacing change).

    Raises:
        ConfigError: The threshold is not in (0, 1) or the spacing is invalid.
    """
    return _timed(
        lambda: segmenter.segment(image, threshold=threshold, pixel_spacing_mm=pixel_spacing_mm)
    )


def segmenter_cam_step(
    image: LoadedImage,
    segmenter: LesionSegmenter,
    explainer: CamExplainer,
    method: CamMethod,
    layer: str | None,
) -> Step[np.ndarray]:
    """CAM of the segmenter's predicted lesion area, at its input size.

    Raises:
        ConfigError: Unknown CAM method or layer.
    """
    model_input = _model_input(image, segmenter.input_shape)
    return _timed(
        lambda: explainer.explain(model_input, LESION_AREA, layer_name=layer, method=method)
    )


def reusable_segmenter_map(
    classifier: LesionClassifier, segmenter: LesionSegmenter, segmentation: SegmentationResult
) -> np.ndarray | None:
    """The segmentation's model-size map, when the classifier may use it as its own.

    A mask-guided classifier embeds a segmenter; when that is exactly ``segmenter``
    (same weights, same input size), the map already computed replaces a second
    segmenter pass and the answers are unchanged. ``None`` otherwise.
    """
    # Check the cheap conditions first: hashing the segmenter's weights takes ~80 ms once.
    if (
        not classifier.is_mask_guided
        or segmentation.model_probabilities is None
        or not classifier.can_reuse(segmenter.weights_fingerprint, segmenter.input_shape)
    ):
        return None
    return segmentation.model_probabilities


def classification_step(
    image: LoadedImage,
    classifier: LesionClassifier,
    segmenter_map: np.ndarray | None = None,
) -> Step[ClassificationResult]:
    """Calibrated class probabilities, with test-time-augmentation uncertainty and familiarity.

    ``segmenter_map``: see :func:`reusable_segmenter_map`.
    """
    maps = None if segmenter_map is None else [segmenter_map]
    return _timed(
        lambda: classifier.predict(
            [image], with_uncertainty=True, segmenter_probabilities=maps, with_familiarity=True
        )[0]
    )


def cam_target(
    classifier: LesionClassifier,
    classification: ClassificationResult,
    target_class: int | None,
) -> int:
    """The class index the classifier CAM explains: ``target_class``, else the predicted one.

    Raises:
        ConfigError: ``target_class`` is not one of the classifier's class indices.
    """
    if target_class is None:
        return classifier.class_names.index(classification.predicted_class)
    valid = isinstance(target_class, int | np.integer) and not isinstance(target_class, bool)
    if not valid or not 0 <= target_class < len(classifier.class_names):
        raise ConfigError(
            f"The target class index {target_class!r} is not one of the classifier's "
            f"{len(classifier.class_names)} classes ({', '.join(classifier.class_names)})."
        )
    return int(target_class)


def classifier_cam_step(
    image: LoadedImage,
    classifier: LesionClassifier,
    explainer: CamExplainer,
    method: CamMethod,
    layer: str | None,
    target: int,
    segmenter_map: np.ndarray | None = None,
) -> Step[np.ndarray]:
    """CAM of one class's logit, at the input size of the explained model.

    ``explainer`` explains :attr:`LesionClassifier.cam_model` (a mask-guided model's
    head, whose input is made here, reusing ``segmenter_map`` when given).

    Raises:
        ConfigError: Unknown CAM method or layer, or a bad class index.
    """
    return _timed(
        lambda: explainer.explain(
            classifier.cam_input(image, segmenter_map), target, layer_name=layer, method=method
        )
    )


def assemble_result(
    image: LoadedImage,
    segmentation: Step[SegmentationResult],
    segmenter_cam: Step[np.ndarray],
    classification: Step[ClassificationResult] | None = None,
    classifier_cam: Step[np.ndarray] | None = None,
    classifier_cam_class: str | None = None,
) -> AnalysisResult:
    """Put the steps' outputs together, with their timings and total."""
    steps: dict[str, Step[Any] | None] = {
        "segmentation": segmentation,
        "segmenter_cam": segmenter_cam,
        "classification": classification,
        "classifier_cam": classifier_cam,
    }
    timings = {name: step.seconds for name, step in steps.items() if step is not None}
    timings["total"] = sum(timings.values())
    return AnalysisResult(
        gray=image.gray,
        segmentation=segmentation.value,
        classification=None if classification is None else classification.value,
        segmenter_cam=segmenter_cam.value,
        classifier_cam=None if classifier_cam is None else classifier_cam.value,
        classifier_cam_class=classifier_cam_class,
        timings=timings,
    )


def add_classification(
    image: LoadedImage,
    segmentation: Step[SegmentationResult],
    segmenter_cam: Step[np.ndarray],
    classifier: LesionClassifier,
    settings: AnalysisSettings,
    *,
    classify: Callable[[], Step[ClassificationResult]],
    explain_class: Callable[[int], Step[np.ndarray]],
) -> AnalysisResult:
    """Classify, pick the CAM's class, explain it and assemble the whole result.

    ``classify`` and ``explain_class`` run the steps (directly, or through the page's
    caches), so the order of the steps is written once.
    """
    classification = classify()
    target = cam_target(classifier, classification.value, settings.target_class)
    return assemble_result(
        image,
        segmentation,
        segmenter_cam,
        classification,
        explain_class(target),
        classifier.class_names[target],
    )


def analyse_ultrasound(
    image: LoadedImage,
    settings: AnalysisSettings,
    *,
    segmenter: LesionSegmenter,
    classifier: LesionClassifier | None = None,
    segmenter_explainer: CamExplainer | None = None,
    classifier_explainer: CamExplainer | None = None,
) -> AnalysisResult:
    """Segment, measure, classify and explain one ultrasound image, timing each step.

    The page runs the same steps through :mod:`helpers.models`, which caches each one
    under the settings it depends on.

    Args:
        image: The loaded image, analysed as it is (never the CLAHE display version).
        settings: Threshold, spacing and CAM options.
        segmenter: The lesion segmenter.
        classifier: The lesion classifier, ``None`` when none is installed.
        segmenter_explainer: CAMs of the segmenter (default: its shared explainer).
        classifier_explainer: CAMs of the classifier (default: its shared explainer).

    Returns:
        The results and the seconds each step took.

    Raises:
        TumorLensError: A setting is invalid (threshold, spacing, layer, CAM method,
            target class) or the image has an unusable shape.
    """
    segmentation = segment_step(image, segmenter, settings.threshold, settings.pixel_spacing_mm)
    segmenter_cam = segmenter_cam_step(
        image,
        segmenter,
        segmenter_explainer or explainer_for(segmenter.model),
        settings.cam_method,
        settings.segmenter_layer,
    )
    if classifier is None:
        return assemble_result(image, segmentation, segmenter_cam)
    shared_map = reusable_segmenter_map(classifier, segmenter, segmentation.value)
    return add_classification(
        image,
        segmentation,
        segmenter_cam,
        classifier,
        settings,
        classify=lambda: classification_step(image, classifier, shared_map),
        explain_class=lambda target: classifier_cam_step(
            image,
            classifier,
            classifier_explainer or explainer_for(classifier.cam_model),
            settings.cam_method,
            settings.classifier_layer,
            target,
            shared_map,
        ),
    )


def reference_dice(result: AnalysisResult, reference_mask: np.ndarray | None) -> float | None:
    """Dice of the segmentation with a reference mask of the same size, else ``None``."""
    if reference_mask is None or reference_mask.shape != result.segmentation.mask.shape:
        return None
    return dice_score(result.segmentation.mask, reference_mask)


#: Classes that mean "there is a lesion" to :func:`model_disagreement`.
LESION_CLASSES = frozenset({"benign", "malignant"})


def model_disagreement(result: AnalysisResult) -> str | None:
    """A caution when the classifier and the segmenter contradict each other, else ``None``.

    The two models are trained separately and can disagree: a "normal" verdict with a
    lesion mask, or a lesion verdict with an empty mask. Readers should see that rather
    than two confident-looking panels. Neither model is the safe one to trust: out of
    fold, a "normal" verdict with a mask came up on about 2% of normal images (a false
    mask) and 1% of lesion images (a missed lesion), so which one is wrong depends on how
    likely a lesion is in the patient (the segmenter card's ``model_disagreement``).
    """
    classification = result.classification
    if classification is None:
        return None
    found = bool(result.segmentation.mask.any())
    verdict = f"{classification.predicted_class} ({classification.confidence:.0%})"
    if classification.predicted_class == "normal" and found:
        return (
            f"The models disagree: the classifier rates this image {verdict}, but the "
            "segmenter outlined a region. One of them is wrong, and either can be: in "
            "cross-validation this happened both on normal tissue the segmenter mistook "
            "for a lesion and on lesions the classifier missed. Judge the outlined region "
            "on the image before accepting either answer."
        )
    if classification.predicted_class in LESION_CLASSES and not found:
        return (
            f"The models disagree: the classifier rates this image {verdict}, but the "
            f"segmenter found no lesion at threshold {result.segmentation.threshold:.2f}. "
            "Lower the threshold to see weaker detections, or read the image without a mask."
        )
    return None


def smoothness_note(
    gray: np.ndarray, card: Mapping[str, Any], *, brief: bool = False
) -> str | None:
    """A warning when the image is smoother than nearly all training images, else ``None``.

    Uses the ``input_texture`` reference of ``card`` (the segmenter's; see
    :mod:`utils.image_quality`); ``None`` as well when the card has none. ``brief`` gives
    one sentence (for the one-page PDF report) instead of the page's paragraph.

    Raises:
        InvalidImageError: ``gray`` is not a uint8 (H, W) image.
        ModelError: The card's reference is malformed.
    """
    texture = assess_texture(gray, card)
    if texture is None or not texture.too_smooth:
        return None
    if brief:
        return (
            f"Smooth image (texture index {texture.index:.2f}, below 99% of the training "
            "images): both models are much less reliable on images this smooth."
        )
    return (
        f"Smooth image: it has less fine texture than 99% of the training images "
        f"(texture index {texture.index:.2f}, below {texture.threshold:.2f}). On images "
        "this smooth, such as after strong speckle reduction or when a small image was "
        "enlarged, the classifier leans towards malignant and the segmenter outlines "
        "normal tissue far more often (segmenter card: robustness_smoothing). Analyse "
        "the scanner's original image if you can, and trust both models less here."
    )


def familiarity_note(classification: ClassificationResult | None) -> str | None:
    """What the familiarity flag says about the image, for readers; ``None`` if not assessed.

    See :mod:`utils.familiarity`: the distance of the classifier's features to those of
    its training images, flagged above the card's training-distance quantile.
    """
    familiarity = None if classification is None else classification.familiarity
    if familiarity is None:
        return None
    if familiarity.unfamiliar:
        return (
            f"Unfamiliar image: it lies farther from the classifier's training images than "
            f"{familiarity.percentile:.1f}% of them do. The model learnt from B-mode breast "
            "ultrasound of two hospitals; on images unlike those (another kind of image, "
            "scanner, preset or overlay) its probabilities deserve less trust. Check that "
            "this is a breast ultrasound image and read it without relying on the model."
        )
    return (
        f"Familiar image: it lies closer to the classifier's training images than "
        f"{100.0 - familiarity.percentile:.0f}% of them do (no unfamiliar-image flag)."
    )
