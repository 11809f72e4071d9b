"""What each batch task makes of one image: a flat result row.

Rows are flat so the results table is easy to filter: scalars, plus the mask as
run-length ``mask_rle`` counts (:mod:`utils.encoding`) and the heatmaps as base64 PNG.
Every row has ``item`` (the path relative to the input folder), ``status`` (``"ok"``
or ``"error"``), ``error_type`` and ``error`` (``None`` when ok), the image's
``height`` and ``width`` and the ``seconds`` it took, the only column that differs
between two runs on the same data.

A task is one entry of :data:`TASKS`: the bundles it needs, what it reads (a decoded
image, or the path of a whole-slide image it opens itself) and its row function. Tasks
that need a module not installed here are listed in :data:`PENDING_TASKS` and refused
with a clear error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from utils import analysis
from utils.batch import models
from utils.encoding import heatmap_png_base64, rle_encode
from utils.errors import ConfigError
from utils.evaluation.descriptors import lost_descriptors
from utils.image_io import LoadedImage
from utils.image_quality import assess_texture, texture_index
from utils.inference.classifier import ClassificationResult
from utils.inference.segmenter import SegmentationResult

__all__ = ["PENDING_TASKS", "TASKS", "Task", "TaskOptions", "get_task", "require_models"]


@dataclass(frozen=True)
class TaskOptions:
    """Everything besides the image that a task's rows depend on (sent to every worker)."""

    models_dir: Path
    segmenter: str
    classifier: str
    threshold: float | None = None
    pixel_spacing_mm: float | None = None
    cam_method: str = "gradcam"
    wsi_model: str = "nuclei_segmenter"
    wsi_mpp: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored beside the parts, so a resume uses the same options)."""
        return {**self.__dict__, "models_dir": str(self.models_dir)}


Row = dict[str, Any]


@dataclass(frozen=True)
class Task:
    """One batch task: the roles of the bundles it needs, and its row function."""

    needs: tuple[str, ...]
    run: Callable[[Any, TaskOptions], Row]
    reads: str = "image"  # "image": a LoadedImage; "slide": the file's path


def _classification_columns(result: ClassificationResult) -> Row:
    row: Row = {
        "prediction": result.predicted_class,
        "confidence": result.confidence,
        "uncertainty": result.uncertainty,
        "refer": result.refer,
        "unfamiliar": None if result.familiarity is None else result.familiarity.unfamiliar,
        "familiarity_percentile": (
            None if result.familiarity is None else round(result.familiarity.percentile, 1)
        ),
    }
    row.update({f"prob_{name}": value for name, value in result.probabilities.items()})
    return row


def _segmentation_columns(result: SegmentationResult, card: dict[str, Any]) -> Row:
    area = int(np.count_nonzero(result.mask))
    unreliable = [] if result.measurements is None else lost_descriptors(card)
    row: Row = {
        "threshold": result.threshold,
        "lesion_found": area > 0,
        "lesion_area_px": area,
        "mask_rle": rle_encode(result.mask)["counts"],
        # JSON text like the spacing: the measurement columns the card marks unreliable.
        "unreliable_descriptors": json.dumps(unreliable),
    }
    measured = {} if result.measurements is None else result.measurements.to_dict()
    for name, value in measured.items():
        # Lists (the spacing) as JSON text, so every measurement column is a scalar.
        row[f"measure_{name}"] = json.dumps(value) if isinstance(value, list) else value
    return row


def _texture_columns(image: LoadedImage, card: dict[str, Any]) -> Row:
    """The image's texture index, and whether it is smoother than the training images.

    ``too_smooth`` is empty when the segmenter card holds no ``input_texture`` reference.
    """
    texture = assess_texture(image.gray, card)
    index = texture_index(image.gray) if texture is None else texture.index
    return {
        "texture_index": round(index, 4),
        "too_smooth": None if texture is None else texture.too_smooth,
    }


def _spacing(image: LoadedImage, options: TaskOptions) -> Any:
    return options.pixel_spacing_mm or image.metadata.pixel_spacing_mm


def _classify(image: LoadedImage, options: TaskOptions) -> Row:
    classifier = models.classifier(options.models_dir, options.classifier)
    return _classification_columns(analysis.classification_step(image, classifier).value)


def _segment(image: LoadedImage, options: TaskOptions) -> Row:
    segmenter = models.segmenter(options.models_dir, options.segmenter)
    step = analysis.segment_step(image, segmenter, options.threshold, _spacing(image, options))
    return {
        **_segmentation_columns(step.value, segmenter.card),
        **_texture_columns(image, segmenter.card),
    }


def _analyze(image: LoadedImage, options: TaskOptions) -> Row:
    segmenter = models.segmenter(options.models_dir, options.segmenter)
    classifier = models.classifier(options.models_dir, options.classifier)
    settings = analysis.AnalysisSettings(
        threshold=options.threshold,
        pixel_spacing_mm=_spacing(image, options),
        cam_method=options.cam_method,  # type: ignore[arg-type]
    )
    result = analysis.analyse_ultrasound(
        image,
        settings,
        segmenter=segmenter,
        classifier=classifier,
        segmenter_explainer=models.explainer(segmenter),
        classifier_explainer=models.explainer(classifier),
    )
    row = _segmentation_columns(result.segmentation, segmenter.card)
    row.update(_texture_columns(image, segmenter.card))
    row.update(_classification_columns(result.classification))  # type: ignore[arg-type]
    row["segmenter_cam_png"] = heatmap_png_base64(result.segmenter_cam)
    row["classifier_cam_png"] = heatmap_png_base64(result.classifier_cam)  # type: ignore[arg-type]
    row["classifier_cam_class"] = result.classifier_cam_class
    return row


def _wsi(path: Path, options: TaskOptions) -> Row:
    from utils.wsi.pipeline import analyse_slide
    from utils.wsi.reader import open_slide

    scorer = models.wsi_scorer(options.models_dir, options.wsi_model)
    with open_slide(path, mpp=options.wsi_mpp) as slide:
        result = analyse_slide(slide, scorer)
        summary = result.to_dict()
    row: Row = {
        "height": int(slide.height),
        "width": int(slide.width),
        "mpp": summary["slide"].get("mpp"),
        "tiles_scored": summary["tiles"]["scored"],
        "tissue_area_mm2": summary["tissue"]["area_mm2"],
        "n_regions": len(summary["regions"]),
        "burden_percent": summary["burden_percent"],
        "detected_area_mm2": summary["detected_area_mm2"],
        # The full per-slide summary (regions, map statistics) as JSON text: rows stay flat.
        "wsi_results_json": json.dumps(summary, default=str),
    }
    return row


#: The tasks this installation runs, by name.
TASKS: Final[dict[str, Task]] = {
    "classify": Task(("classifier",), _classify),
    "segment": Task(("segmenter",), _segment),
    "analyze": Task(("segmenter", "classifier"), _analyze),
    "wsi": Task(("wsi_model",), _wsi, reads="slide"),
}

#: Tasks known to TumorLens whose module is not part of this installation yet.
PENDING_TASKS: Final[dict[str, str]] = {}


def get_task(name: str) -> Task:
    """The task called ``name``.

    Raises:
        ConfigError: Unknown task, or one whose module is not installed (the message
            names the valid tasks).
    """
    if name in TASKS:
        return TASKS[name]
    valid = ", ".join(TASKS)
    if name in PENDING_TASKS:
        raise ConfigError(
            f"The {name} task requires {PENDING_TASKS[name]}, which is not installed in this "
            f"version of TumorLens; available tasks: {valid}."
        )
    raise ConfigError(f"Unknown batch task {name!r}; choose one of: {valid}.")


def require_models(task: Task, options: TaskOptions) -> None:
    """Check, before any work is sent out, that the task's bundles are installed.

    Raises:
        ModelUnavailableError: A bundle the task needs is missing.
    """
    for role in task.needs:
        models.require_bundle(options.models_dir, getattr(options, role), role)
