"""What the Analyse page computes and shows, without Streamlit (so it is unit-testable).

Three parts:

* **Inputs**: the built-in examples (``examples/index.json``, or phantoms generated on
  the fly when the folder is missing), a few dataset images when a datasets folder is
  configured, and uploads, each loaded as a :class:`~utils.image_io.LoadedImage`.
* **Analysis**: :func:`analyse_ultrasound` segments, measures, classifies (when a
  classifier is installed) and explains one image, timing each step. It and its step
  functions live in :mod:`utils.analysis` (shared with the API and the batch CLI) and
  are re-exported here, so the page imports everything from one place.
* **Display**: overlays, the probability chart and the table rows. They only change
  what is shown; the analysis always runs on the original pixels.

Caching lives in :mod:`helpers.models`; this module keeps no state (the counter of
model-running steps, :func:`inference_count`, is in :mod:`utils.analysis`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import cv2
import numpy as np
import plotly.graph_objects as go

from utils.analysis import (
    AnalysisResult,
    AnalysisSettings,
    PixelSpacing,
    Step,
    add_classification,
    analyse_ultrasound,
    assemble_result,
    cam_target,
    classification_step,
    classifier_cam_step,
    familiarity_note,
    inference_count,
    model_disagreement,
    reference_dice,
    reusable_segmenter_map,
    segment_step,
    segmenter_cam_step,
    smoothness_note,
)
from utils.datasets.busi import read_busi
from utils.datasets.masks import load_mask
from utils.enhance import clahe, clahe_rgb
from utils.errors import DatasetError, TumorLensError
from utils.explain import CAM_METHODS, overlay_heatmap
from utils.image_io import SUPPORTED_FORMATS, LoadedImage, load_image
from utils.inference.classifier import ClassificationResult
from utils.inference.segmenter import SegmentationResult
from utils.paths import PROJECT_ROOT
from utils.phantoms import DEFAULT_EXAMPLES, DESCRIPTIONS, LABELS, generate_phantom

__all__ = [
    "ANALYSE_MAX_PIXELS",
    "CAM_METHODS",
    "EXAMPLES_DIR",
    "SUPPORTED_FORMATS",
    "AnalysisResult",
    "AnalysisSettings",
    "ImageChoice",
    "InputImage",
    "PixelSpacing",
    "Step",
    "TumorLensError",
    "add_classification",
    "analyse_ultrasound",
    "assemble_result",
    "cam_overlay",
    "cam_target",
    "classification_step",
    "classifier_cam_step",
    "dataset_choices",
    "display_image",
    "example_choices",
    "familiarity_note",
    "image_digest",
    "inference_count",
    "load_choice",
    "load_upload",
    "mask_overlay",
    "measurement_rows",
    "model_disagreement",
    "probability_figure",
    "reference_dice",
    "resolve_pixel_spacing",
    "reusable_segmenter_map",
    "segment_step",
    "segmenter_cam_step",
    "smoothness_note",
    "timing_rows",
]

#: Where ``python -m utils.phantoms --out examples`` writes the built-in examples.
EXAMPLES_DIR: Final = PROJECT_ROOT / "examples"
#: Largest image the page analyses (16 MP, e.g. 4000 x 4000): far above any ultrasound
#: frame, and it keeps four display panels and the cached results small.
ANALYSE_MAX_PIXELS: Final = 16_000_000
#: Longest side of the displayed panels; larger images are shrunk for display only.
DISPLAY_MAX_SIDE: Final = 1024
#: Dataset images listed per class (a sample to try, not a browser).
DATASET_IMAGES_PER_LABEL: Final = 3
#: Lesion colour of the mask overlay (RGB) and its outline thickness in display pixels.
MASK_COLOUR: Final = (0, 220, 90)
MASK_OUTLINE_PX: Final = 2


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ImageChoice:
    """One image the user can pick instead of uploading.

    Attributes:
        key: Unique id (stable across reruns, used by the selectbox).
        title: What the selectbox shows.
        source: ``"example"`` (a shipped PNG), ``"phantom"`` (generated on the fly when
            the examples folder is missing) or ``"dataset"``.
        label: Ground-truth class (``"benign"``...), ``None`` when unknown.
        image_path: The image file (examples and datasets).
        mask_paths: Reference lesion masks, OR-merged (may be empty).
        pixel_spacing_mm: Known square pixel size in mm, ``None`` when unknown.
        kind: Phantom kind (phantoms).
        seed: Phantom seed (phantoms).
        probe: Phantom probe (phantoms).
        description: One line about the image.
    """

    key: str
    title: str
    source: Literal["example", "phantom", "dataset"]
    label: str | None = None
    image_path: Path | None = None
    mask_paths: tuple[Path, ...] = ()
    pixel_spacing_mm: float | None = None
    kind: str | None = None
    seed: int | None = None
    probe: str = "linear"
    description: str = ""


@dataclass(frozen=True, eq=False)
class InputImage:
    """An image ready to analyse, with what is known about it besides its pixels.

    Attributes:
        image: The loaded image.
        reference_mask: (H, W) bool reference lesion mask, ``None`` when there is none.
        pixel_spacing_mm: Known square pixel size (examples), ``None`` when unknown; a
            DICOM spacing stays in ``image.metadata``.
        label: Ground-truth class, ``None`` when unknown.
        description: One line about the image.
    """

    image: LoadedImage
    reference_mask: np.ndarray | None = None
    pixel_spacing_mm: float | None = None
    label: str | None = None
    description: str = ""


def example_choices(examples_dir: Path = EXAMPLES_DIR) -> list[ImageChoice]:
    """The built-in examples: ``examples_dir/index.json``, else generated phantoms.

    Args:
        examples_dir: Folder written by ``python -m utils.phantoms --out examples``.

    Returns:
        One choice per example, in index order. When the folder or its index is missing
        or unreadable, the default phantom set of :mod:`utils.phantoms`, generated when
        picked, so the page always has something to analyse.
    """
    entries, synthetic = _read_example_index(examples_dir)
    if entries:
        return [_example_choice(entry, examples_dir, synthetic) for entry in entries]
    return _phantom_choices()


def _read_example_index(examples_dir: Path) -> tuple[list[dict[str, Any]], bool]:
    """The index entries whose image file exists, and whether the images are synthetic.

    No usable index gives no entries.
    """
    try:
        index = json.loads((examples_dir / "index.json").read_text(encoding="utf-8"))
        entries = list(index["examples"])
    except (OSError, ValueError, KeyError, TypeError):
        return [], False
    usable = [
        entry
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(entry.get("image"), str)
        and (examples_dir / entry["image"]).is_file()
    ]
    return usable, bool(index.get("synthetic", False))


def _example_choice(entry: dict[str, Any], examples_dir: Path, synthetic: bool) -> ImageChoice:
    name = str(entry.get("name", Path(entry["image"]).stem))
    label = entry.get("label")
    mask = entry.get("mask")
    mask_path = examples_dir / mask if isinstance(mask, str) else None
    spacing = entry.get("pixel_spacing_mm")
    return ImageChoice(
        key=f"example:{name}",
        title=f"{name} ({label})" if label else name,
        source="example",
        label=label,
        image_path=examples_dir / entry["image"],
        mask_paths=(mask_path,) if mask_path and mask_path.is_file() else (),
        pixel_spacing_mm=float(spacing) if isinstance(spacing, int | float) else None,
        description=_describe(str(entry.get("description", "")), synthetic),
    )


def _describe(description: str, synthetic: bool) -> str:
    # A reader must never mistake a phantom for a patient's scan.
    return f"Synthetic phantom: {description}" if synthetic else description


def _phantom_choices() -> list[ImageChoice]:
    return [
        ImageChoice(
            key=f"phantom:{spec.name}",
            title=f"{spec.name} ({LABELS[spec.kind]}, generated)",
            source="phantom",
            label=LABELS[spec.kind],
            pixel_spacing_mm=0.1,
            kind=spec.kind,
            seed=spec.seed,
            probe=spec.probe,
            description=_describe(DESCRIPTIONS[spec.kind], synthetic=True),
        )
        for spec in DEFAULT_EXAMPLES
    ]


def dataset_choices(
    datasets_dir: Path, per_label: int = DATASET_IMAGES_PER_LABEL
) -> list[ImageChoice]:
    """A few labelled BUSI images from a datasets folder, when it holds BUSI.

    Args:
        datasets_dir: The datasets folder (``TUMORLENS_DATA_DIR``), holding ``busi/``.
        per_label: Images listed per class (the first ones in natural order).

    Returns:
        Up to ``per_label`` choices per BUSI class; empty when BUSI is not there.
    """
    try:
        records = read_busi(datasets_dir / "busi")
    except (DatasetError, OSError):
        return []
    taken: dict[str, int] = {}
    choices = []
    for record in records:
        label = record.label or "unlabelled"
        if taken.get(label, 0) >= per_label:
            continue
        taken[label] = taken.get(label, 0) + 1
        choices.append(
            ImageChoice(
                key=f"dataset:busi:{record.image_path.name}",
                title=f"BUSI {record.image_path.stem}",
                source="dataset",
                label=record.label,
                image_path=record.image_path,
                mask_paths=tuple(record.mask_paths),
                description="BUSI (Al-Dhabyani et al. 2020, CC BY 4.0); part of the "
                "shipped segmenter's training data, so results on it are optimistic.",
            )
        )
    return choices


def load_choice(choice: ImageChoice) -> InputImage:
    """Load (or generate) a picked image and its reference mask.

    Raises:
        TumorLensError: The file is missing, unreadable or not an image.
    """
    if choice.source == "phantom":
        return _generate_phantom_input(choice)
    if choice.image_path is None:
        raise DatasetError(f"The image {choice.title!r} has no file.")
    image = load_image(choice.image_path, max_pixels=ANALYSE_MAX_PIXELS)
    reference = None
    if choice.mask_paths:
        reference = load_mask(
            list(choice.mask_paths), (image.pixels.shape[0], image.pixels.shape[1])
        )
    return InputImage(
        image=image,
        reference_mask=reference,
        pixel_spacing_mm=choice.pixel_spacing_mm,
        label=choice.label,
        description=choice.description,
    )


def _generate_phantom_input(choice: ImageChoice) -> InputImage:
    phantom = generate_phantom(
        choice.kind or "benign_oval",
        seed=choice.seed or 0,
        probe=choice.probe,
        pixel_spacing_mm=choice.pixel_spacing_mm or 0.1,
    )
    # Through the PNG loader, so a generated example is exactly what its file would be.
    encoded = cv2.imencode(".png", phantom.image)[1].tobytes()
    return InputImage(
        image=load_image(encoded),
        reference_mask=phantom.mask,
        pixel_spacing_mm=phantom.pixel_spacing_mm,
        label=phantom.label,
        description=choice.description,
    )


def load_upload(data: bytes) -> LoadedImage:
    """Load uploaded bytes (never the file name, which may identify a patient).

    Raises:
        TumorLensError: Empty, corrupt, unsupported, or larger than the page's limits.
    """
    return load_image(data, max_pixels=ANALYSE_MAX_PIXELS)


def image_digest(image: LoadedImage) -> str:
    """A short hash of the pixels and DICOM spacing: the image part of the cache key."""
    digest = hashlib.blake2b(image.pixels.tobytes(), digest_size=16)
    digest.update(repr((image.pixels.shape, image.metadata.pixel_spacing_mm)).encode())
    return digest.hexdigest()


def resolve_pixel_spacing(
    entered_mm: float | None, image: LoadedImage, known_mm: float | None = None
) -> tuple[PixelSpacing, str]:
    """The pixel spacing to measure with, and where it comes from.

    Precedence: what the user entered, then the DICOM header, then the example's known
    spacing; otherwise none, and measurements are in pixels.

    Args:
        entered_mm: Spacing typed by the user; ``None`` or 0 means "not entered".
        image: The loaded image (its DICOM spacing, if any).
        known_mm: Spacing known for a built-in example.

    Returns:
        ``(spacing, sentence)``: spacing in mm (a float, a (row, column) pair or
        ``None``) and a sentence for the page.
    """
    if entered_mm:
        return float(entered_mm), f"{entered_mm:g} mm per pixel, as entered"
    dicom = image.metadata.pixel_spacing_mm
    if dicom is not None:
        row, col = dicom
        return (float(row), float(col)), f"{row:g} x {col:g} mm per pixel, from the DICOM header"
    if known_mm:
        return float(known_mm), f"{known_mm:g} mm per pixel, known for this example"
    return None, "unknown: measurements are in pixels (enter the spacing in the sidebar)"


# ----------------------------------------------------------------------------- display


def _fit_for_display(rgb: np.ndarray) -> np.ndarray:
    """Shrink an image whose longest side exceeds :data:`DISPLAY_MAX_SIDE`."""
    height, width = rgb.shape[:2]
    scale = DISPLAY_MAX_SIDE / max(height, width)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def display_image(image: LoadedImage, *, enhance: bool = False) -> np.ndarray:
    """The image as shown: RGB uint8, optionally CLAHE-enhanced, at most 1024 px a side.

    Args:
        image: The loaded image.
        enhance: Apply CLAHE (grayscale images) or CLAHE on the lightness (colour ones).

    Returns:
        (h, w, 3) uint8 RGB, for display only.
    """
    if not enhance:
        return _fit_for_display(image.pixels)
    if image.is_grayscale:
        enhanced = np.repeat(clahe(image.gray)[..., None], 3, axis=2)
    else:
        enhanced = clahe_rgb(image.pixels)
    return _fit_for_display(enhanced)


def mask_overlay(base: np.ndarray, mask: np.ndarray, opacity: float) -> np.ndarray:
    """Tint the lesion of ``mask`` over ``base`` and outline it.

    Args:
        base: (h, w, 3) uint8 display image.
        mask: (H, W) bool mask at the image's size (resized to ``base`` if needed).
        opacity: Tint weight in [0, 1]; the outline is always drawn, so the lesion stays
            visible at 0.

    Returns:
        (h, w, 3) uint8 RGB.
    """
    height, width = base.shape[:2]
    lesion = mask.astype(np.uint8)
    if lesion.shape != (height, width):
        lesion = cv2.resize(lesion, (width, height), interpolation=cv2.INTER_NEAREST)
    shown = base.copy()
    inside = lesion.astype(bool)
    colour = np.array(MASK_COLOUR, dtype=np.float32)
    tinted = (1.0 - opacity) * shown[inside].astype(np.float32) + opacity * colour
    shown[inside] = np.clip(np.round(tinted), 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(lesion, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(shown, contours, -1, MASK_COLOUR, MASK_OUTLINE_PX)
    return shown


def cam_overlay(base: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A CAM (at the model size) coloured over the display image (resized to it)."""
    return overlay_heatmap(base, cam, alpha=alpha)


def probability_figure(classification: ClassificationResult) -> go.Figure:
    """Horizontal bar chart of the calibrated class probabilities, predicted class marked.

    Args:
        classification: The classifier's result for the image.

    Returns:
        A Plotly figure, probabilities from 0 to 1.
    """
    names = list(classification.probabilities)
    values = [classification.probabilities[name] for name in names]
    colours = ["#d62728" if name == classification.predicted_class else "#7f7f7f" for name in names]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker_color=colours,
            text=[f"{value:.0%}" for value in values],
            textposition="auto",
        )
    )
    figure.update_layout(
        xaxis={"range": [0, 1], "tickformat": ".0%", "title": "calibrated probability"},
        yaxis={"autorange": "reversed"},
        height=80 + 40 * len(names),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        showlegend=False,
    )
    return figure


def measurement_rows(segmentation: SegmentationResult) -> list[dict[str, str]] | None:
    """The lesion measurement table, ``None`` when the mask is empty."""
    if segmentation.measurements is None:
        return None
    return segmentation.measurements.to_table_rows()


_TIMING_LABELS: Final[dict[str, str]] = {
    "segmentation": "Segmentation and measurements",
    "segmenter_cam": "Segmenter CAM",
    "classification": "Classification (with test-time augmentation)",
    "classifier_cam": "Classifier CAM",
    "total": "Total",
}


def timing_rows(timings: dict[str, float]) -> list[dict[str, str]]:
    """The analysis timings as table rows, in pipeline order, total last."""
    return [
        {"step": _TIMING_LABELS.get(step, step), "seconds": f"{seconds:.2f}"}
        for step, seconds in sorted(timings.items(), key=lambda item: item[0] == "total")
    ]
