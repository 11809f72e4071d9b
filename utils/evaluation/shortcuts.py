"""Do the models look at burned-in calipers and text? Two measurements on real images.

Many BUSI and BUS-BRA images carry the sonographer's caliper crosses and text, which sit
on or around the lesion. A model can learn "calipers ⇒ lesion" (or "⇒ malignant")
instead of reading the tissue. For every image with detected marks
(:func:`utils.audit.find_caliper_text_marks`) this module measures:

* **Attention**: the share of each model's Grad-CAM mass that falls on the marks,
  against the share of the image the marks cover. ``enrichment`` = mass share / area
  share; 1 means the CAM treats mark pixels like any others, well above 1 means it is
  drawn to them.
* **Dependence** (the causal test): the marks are inpainted away (OpenCV Telea) and the
  image is analysed again. The segmenter's masks before and after are compared by Dice;
  the classifier's predicted class and its probability are compared.

Neither measurement needs labels, so any folder of ultrasound images will do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from utils.audit import find_caliper_text_marks
from utils.errors import ConfigError
from utils.explain import cam_mass_inside
from utils.image_io import LoadedImage
from utils.inference.bundle import images_for_model, to_float_batch

if TYPE_CHECKING:
    from utils.explain import CamExplainer
    from utils.inference.classifier import LesionClassifier
    from utils.inference.segmenter import LesionSegmenter

#: Marks are dilated by this many pixels: a cross's thin arms alone cover almost nothing.
MARK_DILATION_PX = 3
#: Radius of the Telea inpainting that removes the marks.
INPAINT_RADIUS_PX = 5


def mark_mask(grey: np.ndarray, dilation_px: int = MARK_DILATION_PX) -> np.ndarray:
    """Boolean (H, W) mask of the caliper and text marks found in a grey-scale image.

    Raises:
        ConfigError: ``grey`` is not a 2-D uint8 image, or ``dilation_px`` is negative.
    """
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ConfigError(
            f"mark_mask needs a 2-D uint8 grey image; received {grey.dtype} {grey.shape}."
        )
    if dilation_px < 0:
        raise ConfigError(f"dilation_px must be >= 0; received {dilation_px}.")
    mask = np.zeros(grey.shape, np.uint8)
    for x, y, width, height in find_caliper_text_marks(grey):
        mask[y : y + height, x : x + width] = 1
    if dilation_px:
        kernel = np.ones((2 * dilation_px + 1, 2 * dilation_px + 1), np.uint8)
        mask = cv2.dilate(mask, kernel)
    return mask.astype(bool)


def remove_marks(pixels: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """The image with ``marks`` inpainted from the surrounding tissue (OpenCV Telea).

    Args:
        pixels: (H, W) or (H, W, 3) uint8 image.
        marks: (H, W) boolean mask of what to remove.

    Raises:
        ConfigError: The shapes differ.
    """
    if marks.shape != pixels.shape[:2]:
        raise ConfigError(
            f"marks {marks.shape} must match the image's height and width {pixels.shape[:2]}."
        )
    return cv2.inpaint(pixels, marks.astype(np.uint8), INPAINT_RADIUS_PX, cv2.INPAINT_TELEA)


def _without_marks(image: LoadedImage, marks: np.ndarray) -> LoadedImage:
    pixels = np.ascontiguousarray(remove_marks(image.pixels, marks))
    return LoadedImage(pixels=pixels, metadata=image.metadata)


def _at_model_size(marks: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    resized = cv2.resize(
        marks.astype(np.float32), (input_shape[1], input_shape[0]), interpolation=cv2.INTER_AREA
    )
    return resized > 0


def _dice(first: np.ndarray, second: np.ndarray) -> float:
    total = int(first.sum()) + int(second.sum())
    # Two empty masks agree perfectly.
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(first, second).sum()) / total


@dataclass
class ShortcutRow:
    """The measurements of one image (``None`` where a model was not given)."""

    source: str
    n_marks_px: int
    mark_area_fraction: float
    segmenter_cam_on_marks: float | None = None
    segmenter_dice_after_removal: float | None = None
    classifier_cam_on_marks: float | None = None
    classifier_class: str | None = None
    classifier_class_after_removal: str | None = None
    classifier_probability_change: float | None = None


def _cam_on_marks(
    explainer: CamExplainer, image: LoadedImage, marks: np.ndarray, input_shape: tuple
) -> float:
    batch = to_float_batch(images_for_model([image], input_shape), input_shape)
    cam = explainer.explain(batch[0])
    return cam_mass_inside(cam, _at_model_size(marks, input_shape))


def measure_shortcuts(
    image: LoadedImage,
    source: str,
    *,
    segmenter: tuple[LesionSegmenter, CamExplainer] | None = None,
    classifier: tuple[LesionClassifier, CamExplainer] | None = None,
) -> ShortcutRow | None:
    """Attention and dependence measurements of one image; ``None`` without marks."""
    marks = mark_mask(image.gray)
    if not marks.any():
        return None
    row = ShortcutRow(
        source=source, n_marks_px=int(marks.sum()), mark_area_fraction=float(marks.mean())
    )
    cleaned = _without_marks(image, marks)
    if segmenter is not None:
        model, explainer = segmenter
        row.segmenter_cam_on_marks = _cam_on_marks(explainer, image, marks, model.input_shape)
        before, after = model.segment_batch([image, cleaned], measure=False)
        row.segmenter_dice_after_removal = _dice(before.mask > 0, after.mask > 0)
    if classifier is not None:
        model, explainer = classifier
        row.classifier_cam_on_marks = _cam_on_marks(explainer, image, marks, model.input_shape)
        probabilities = model.predict_probabilities([image, cleaned])
        predicted = int(np.argmax(probabilities[0]))
        row.classifier_class = model.class_names[predicted]
        row.classifier_class_after_removal = model.class_names[int(np.argmax(probabilities[1]))]
        row.classifier_probability_change = float(
            probabilities[1, predicted] - probabilities[0, predicted]
        )
    return row


def _mean(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None


def _model_summary(rows: Sequence[ShortcutRow], prefix: str) -> dict[str, Any] | None:
    masses = [getattr(row, f"{prefix}_cam_on_marks") for row in rows]
    if all(mass is None for mass in masses):
        return None
    areas = [row.mark_area_fraction for row in rows]
    mean_mass, mean_area = _mean(masses), _mean(areas)
    enriched = [mass > 2 * area for mass, area in zip(masses, areas, strict=True)]
    return {
        "mean_cam_mass_on_marks": mean_mass,
        "mean_mark_area_fraction": mean_area,
        "enrichment": mean_mass / mean_area if mean_area else None,
        "share_of_images_cam_enriched_over_2x": float(np.mean(enriched)),
    }


def summarise_shortcuts(rows: Sequence[ShortcutRow], n_scanned: int) -> dict[str, Any]:
    """Summary over the images with marks (see the module docstring), plus per-image rows.

    Raises:
        ConfigError: ``n_scanned`` is smaller than the number of rows.
    """
    if n_scanned < len(rows):
        raise ConfigError(f"n_scanned ({n_scanned}) cannot be below the rows ({len(rows)}).")
    summary: dict[str, Any] = {"n_scanned": n_scanned, "n_with_marks": len(rows)}
    segmenter = _model_summary(rows, "segmenter")
    if segmenter is not None:
        dice = [row.segmenter_dice_after_removal for row in rows]
        segmenter["mean_dice_before_vs_after_removal"] = _mean(dice)
        segmenter["share_changed_dice_below_0_9"] = float(np.mean([d < 0.9 for d in dice]))
    classifier = _model_summary(rows, "classifier")
    if classifier is not None:
        flips = [row.classifier_class != row.classifier_class_after_removal for row in rows]
        classifier["class_flip_rate_after_removal"] = float(np.mean(flips))
        classifier["mean_abs_probability_change"] = _mean(
            [abs(row.classifier_probability_change) for row in rows]
        )
    summary["segmenter"] = segmenter
    summary["classifier"] = classifier
    summary["per_image"] = [asdict(row) for row in rows]
    return summary
