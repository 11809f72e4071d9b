"""Streamlit caches of the dashboard: models once per process, analyses per image.

* :func:`load_segmenter`, :func:`load_classifier` and the explainers are
  ``st.cache_resource``: loaded and compiled once, shared by every session (they are
  read-only and thread-safe).
* :func:`cached_analysis` runs the analysis steps of :mod:`helpers.analysis`, each an
  ``st.cache_data`` keyed by the image's pixel hash and only the settings that step
  uses: display-only widgets (mask opacity, CLAHE) recompute nothing, the threshold
  recomputes the segmentation but not a slow Score-CAM. Entries live in memory only
  (never ``persist="disk"``), so no image leaves the process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from helpers.analysis import (
    AnalysisResult,
    AnalysisSettings,
    ImageChoice,
    InputImage,
    PixelSpacing,
    Step,
    add_classification,
    assemble_result,
    classification_step,
    classifier_cam_step,
    dataset_choices,
    load_choice,
    load_upload,
    reusable_segmenter_map,
    segment_step,
    segmenter_cam_step,
)
from utils.errors import ModelError
from utils.explain import LESION_AREA, CamExplainer, CamMethod
from utils.image_io import LoadedImage
from utils.inference.bundle import (
    DEFAULT_CLASSIFIER_BUNDLE,
    DEFAULT_SEGMENTER_BUNDLE,
    available_bundles,
)
from utils.inference.classifier import ClassificationResult, LesionClassifier
from utils.inference.segmenter import LesionSegmenter, SegmentationResult
from utils.labels import ULTRASOUND_CLASSES
from utils.model_card import load_model_card
from utils.paths import SAVED_MODELS_DIR, default_datasets_dir

__all__ = [
    "DEFAULT_CLASSIFIER_BUNDLE",
    "available_dataset_choices",
    "cached_analysis",
    "classifier_caption",
    "classifier_installed",
    "clear_analysis_caches",
    "load_choice_cached",
    "load_classifier",
    "load_classifier_explainer",
    "load_segmenter",
    "load_segmenter_explainer",
    "load_upload_cached",
    "ultrasound_classifier_bundles",
]

# Segmentations hold full-size probability maps (4 bytes a pixel): keep 16 per step.
_MAX_CACHED_STEPS = 16


@st.cache_resource(show_spinner="Loading the segmentation model…")
def load_segmenter(bundle: str = DEFAULT_SEGMENTER_BUNDLE) -> LesionSegmenter:
    """The shipped lesion segmenter, loaded and compiled once per process.

    Raises:
        ModelError: The bundle is missing or cannot be loaded (not cached: the next
            rerun tries again).
    """
    return LesionSegmenter.from_bundle(bundle)


def classifier_installed(bundle: str = DEFAULT_CLASSIFIER_BUNDLE) -> bool:
    """Whether the classifier bundle is in ``saved_models/`` (checked on every rerun)."""
    return bundle in available_bundles()


def ultrasound_classifier_bundles(models_dir: Path = SAVED_MODELS_DIR) -> list[str]:
    """Installed classifiers of ultrasound images, the default first.

    H&E patch classifiers (other class names) and unreadable cards are left out.
    """
    names = []
    for name in available_bundles(models_dir):
        try:
            card = load_model_card(name, models_dir=models_dir)
        except ModelError:
            continue
        if card.get("task") == "classification" and tuple(card.get("class_names", ())) == (
            ULTRASOUND_CLASSES
        ):
            names.append(name)
    return sorted(names, key=lambda name: (name != DEFAULT_CLASSIFIER_BUNDLE, name))


def classifier_caption(bundle: str, models_dir: Path = SAVED_MODELS_DIR) -> tuple[str, str]:
    """The title of a classifier's card and a one-line note (status, speed) for a picker."""
    try:
        card = load_model_card(bundle, models_dir=models_dir)
    except ModelError as error:
        return bundle, str(error)
    speed = card.get("speed", {})
    single = speed.get("single_image_ms") if isinstance(speed, dict) else None
    note = card.get("status", "no status in its card")
    return card.get("title", bundle), note + (f". Speed: {single}" if single else "")


def load_classifier(bundle: str = DEFAULT_CLASSIFIER_BUNDLE) -> LesionClassifier | None:
    """The shipped lesion classifier, or ``None`` while none is installed.

    The presence check is outside the cache, so a classifier installed while the app
    runs appears on the next rerun.

    Raises:
        ModelError: The bundle is present but cannot be loaded.
    """
    return _load_classifier_bundle(bundle) if classifier_installed(bundle) else None


@st.cache_resource(show_spinner="Loading the classifier…")
def _load_classifier_bundle(bundle: str) -> LesionClassifier:
    return LesionClassifier.from_bundle(bundle)


@st.cache_resource(show_spinner="Preparing the segmenter's Grad-CAM…")
def load_segmenter_explainer(bundle: str = DEFAULT_SEGMENTER_BUNDLE) -> CamExplainer:
    """The segmenter's CAM explainer, warmed up on its default layer.

    Its gradient sub-models are built once per layer; building and tracing the default
    one here (about a second) keeps that cost out of the first analysis.
    """
    segmenter = load_segmenter(bundle)
    explainer = CamExplainer(segmenter.model)
    explainer.explain(np.zeros(segmenter.input_shape, np.float32), LESION_AREA)
    return explainer


@st.cache_resource(show_spinner=False)
def load_classifier_explainer(bundle: str = DEFAULT_CLASSIFIER_BUNDLE) -> CamExplainer:
    """The classifier's CAM explainer (call only when :func:`load_classifier` is not None)."""
    return CamExplainer(_load_classifier_bundle(bundle).cam_model)


@st.cache_data(max_entries=4, show_spinner="Reading the image…")
def load_upload_cached(data: bytes) -> LoadedImage:
    """:func:`helpers.analysis.load_upload`, decoded once per distinct upload."""
    return load_upload(data)


def available_dataset_choices() -> list[ImageChoice]:
    """A few images of the configured datasets folder (``TUMORLENS_DATA_DIR``), if any."""
    return _dataset_choices_cached(default_datasets_dir())


@st.cache_data(ttl=600, show_spinner=False)
def _dataset_choices_cached(datasets_dir: Path) -> list[ImageChoice]:
    # Keyed by the folder, so a changed TUMORLENS_DATA_DIR is listed afresh.
    return dataset_choices(datasets_dir)


@st.cache_data(max_entries=16, show_spinner="Loading the example…")
def load_choice_cached(choice: ImageChoice) -> InputImage:
    """:func:`helpers.analysis.load_choice`, loaded (or generated) once per choice."""
    return load_choice(choice)


def cached_analysis(
    image_digest: str,
    image: LoadedImage,
    settings: AnalysisSettings,
    *,
    with_classifier: bool,
    classifier_bundle: str = DEFAULT_CLASSIFIER_BUNDLE,
) -> AnalysisResult:
    """:func:`helpers.analysis.analyse_ultrasound` with the cached models and steps.

    Each step is cached under only what it depends on, so the threshold and spacing
    re-run the segmentation alone (not a slow Score-CAM), a CAM option re-runs that CAM
    alone, and display options re-run nothing.

    Args:
        image_digest: :func:`helpers.analysis.image_digest` of ``image``: the image part
            of every cache key.
        image: The image to analyse.
        settings: Analysis settings.
        with_classifier: Whether a classifier is installed (then it also classifies and
            explains the class).
        classifier_bundle: Which installed classifier to use.

    Raises:
        TumorLensError: A setting is invalid, or a model cannot be loaded.
    """
    segmenter_key = _model_key(load_segmenter())
    segmentation = _segmentation(
        segmenter_key, image_digest, image, settings.threshold, settings.pixel_spacing_mm
    )
    segmenter_cam = _segmenter_cam(
        segmenter_key, image_digest, image, settings.cam_method, settings.segmenter_layer
    )
    classifier = load_classifier(classifier_bundle) if with_classifier else None
    if classifier is None:
        return assemble_result(image, segmentation, segmenter_cam)
    classifier_key = _model_key(classifier)
    # The map never changes a cached answer (it is used only when it equals the one the
    # classifier would compute), so it stays out of the cache keys.
    shared_map = reusable_segmenter_map(classifier, load_segmenter(), segmentation.value)
    return add_classification(
        image,
        segmentation,
        segmenter_cam,
        classifier,
        settings,
        classify=lambda: _classification(
            classifier_key, image_digest, image, classifier_bundle, shared_map
        ),
        explain_class=lambda target: _classifier_cam(
            classifier_key,
            image_digest,
            image,
            settings.cam_method,
            settings.classifier_layer,
            target,
            classifier_bundle,
            shared_map,
        ),
    )


def _model_key(predictor: LesionSegmenter | LesionClassifier) -> str:
    """Names the loaded model in cache keys, so a replaced model never gets stale results."""
    card = predictor.card
    return f"{card.get('name')}|{card.get('version')}|{card.get('created')}|{id(predictor.model)}"


# The leading underscore of ``_image`` keeps Streamlit from hashing the pixels again:
# ``image_digest`` stands for them in the cache keys; ``model_key`` stands for the model.


@st.cache_data(max_entries=_MAX_CACHED_STEPS, show_spinner="Segmenting…")
def _segmentation(
    model_key: str,
    image_digest: str,
    _image: LoadedImage,
    threshold: float | None,
    spacing: PixelSpacing,
) -> Step[SegmentationResult]:
    return segment_step(_image, load_segmenter(), threshold, spacing)


@st.cache_data(max_entries=_MAX_CACHED_STEPS, show_spinner="Explaining the segmentation…")
def _segmenter_cam(
    model_key: str, image_digest: str, _image: LoadedImage, method: CamMethod, layer: str | None
) -> Step[np.ndarray]:
    return segmenter_cam_step(_image, load_segmenter(), load_segmenter_explainer(), method, layer)


@st.cache_data(max_entries=_MAX_CACHED_STEPS, show_spinner="Classifying…")
def _classification(
    model_key: str,
    image_digest: str,
    _image: LoadedImage,
    bundle: str,
    _segmenter_map: np.ndarray | None = None,
) -> Step[ClassificationResult]:
    return classification_step(_image, _loaded_classifier(bundle), _segmenter_map)


@st.cache_data(max_entries=_MAX_CACHED_STEPS, show_spinner="Explaining the classification…")
def _classifier_cam(
    model_key: str,
    image_digest: str,
    _image: LoadedImage,
    method: CamMethod,
    layer: str | None,
    target: int,
    bundle: str,
    _segmenter_map: np.ndarray | None = None,
) -> Step[np.ndarray]:
    return classifier_cam_step(
        _image,
        _loaded_classifier(bundle),
        load_classifier_explainer(bundle),
        method,
        layer,
        target,
        _segmenter_map,
    )


def _loaded_classifier(bundle: str) -> LesionClassifier:
    classifier = load_classifier(bundle)
    if classifier is None:  # Removed from saved_models/ while the app runs.
        raise ModelError("The classifier is no longer installed; reload the page.")
    return classifier


def clear_analysis_caches() -> None:
    """Forget every cached analysis step (e.g. after the models changed)."""
    for step in (_segmentation, _segmenter_cam, _classification, _classifier_cam):
        step.clear()
