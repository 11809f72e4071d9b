"""What the Review page shows and stores, mostly without Streamlit (so it is unit-testable).

* **Queue**: the built-in examples and, when configured, a few dataset images
  (:mod:`helpers.analysis` choices); a case's id is its choice key.
* **AI snapshot**: what the AI showed the reviewer (model versions, probabilities,
  mask area), taken from the cached analysis of :mod:`helpers.models`.
* **Corrected masks**: from the drawing canvas (its RGBA layer) or an uploaded image.
* **Tables**: the queue, the case's reviews and its audit trail.

:func:`review_store` is the one Streamlit cache here: one store (one connection pool)
per database URL and process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import cv2
import numpy as np
import streamlit as st

from helpers.analysis import AnalysisResult, ImageChoice, example_choices
from utils.errors import ImageDimensionError, ReviewConflictError, TumorLensError
from utils.image_io import LoadedImage
from utils.paths import default_review_db_url
from utils.postprocess import fill_holes
from utils.review import (
    BIRADS_CATEGORIES,
    REVIEW_CLASSES,
    AiSnapshot,
    AuditEntry,
    Review,
    ReviewInput,
    ReviewStore,
    audit_frame,
    check_mask,
    mask_from_image_bytes,
    reviews_csv,
    reviews_json,
)

__all__ = [
    "BIRADS_CATEGORIES",
    "CANVAS_MAX_HEIGHT",
    "CANVAS_MAX_WIDTH",
    "MASK_UPLOAD_TYPES",
    "REVIEW_CLASSES",
    "AiSnapshot",
    "Review",
    "ReviewConflictError",
    "ReviewInput",
    "ReviewStore",
    "TumorLensError",
    "ai_snapshot",
    "audit_csv",
    "canvas_background",
    "canvas_mask",
    "canvas_size",
    "case_review_rows",
    "history_rows",
    "mask_from_upload",
    "model_label",
    "queue_rows",
    "review_cases",
    "review_store",
    "reviews_csv",
    "reviews_json",
]

#: Widest the drawing canvas is shown (px); its height follows the image's aspect ratio.
CANVAS_MAX_WIDTH: Final = 560
CANVAS_MAX_HEIGHT: Final = 640
#: Mask file types the upload accepts.
MASK_UPLOAD_TYPES: Final = ("png", "tif", "tiff", "bmp")


@st.cache_resource(show_spinner=False)
def _open_store(url: str) -> ReviewStore:
    return ReviewStore(url)


def review_store(url: str | None = None) -> ReviewStore:
    """The review database of this installation, opened once per URL and process.

    Args:
        url: SQLAlchemy URL; ``None``: ``$TUMORLENS_REVIEW_DB`` or the default SQLite
            file (read on every call, so a changed setting opens the new database).

    Raises:
        ConfigError, StorageError: The database cannot be opened (not cached).
    """
    return _open_store(url or default_review_db_url())


# ----------------------------------------------------------------------------- queue


def review_cases(dataset_choices: Sequence[ImageChoice] = ()) -> list[ImageChoice]:
    """The cases to review: the built-in examples, then the given dataset images."""
    return [*example_choices(), *dataset_choices]


def queue_rows(cases: Sequence[ImageChoice], reviewed: set[str]) -> list[dict[str, str]]:
    """One queue row per case, saying whether this reviewer has reviewed it."""
    return [
        {
            "case": case.title,
            "source": "dataset" if case.source == "dataset" else "example",
            "reviewed by you": "✓ reviewed" if case.key in reviewed else "to do",
        }
        for case in cases
    ]


# ----------------------------------------------------------------------------- AI output


def model_label(card: dict[str, Any] | None) -> str | None:
    """``"name vVERSION"`` of a model card, ``None`` without a card."""
    if not card:
        return None
    name = card.get("name", "model")
    version = card.get("version")
    return f"{name} v{version}" if version is not None else str(name)


def ai_snapshot(
    result: AnalysisResult,
    image: LoadedImage,
    digest: str,
    segmenter_card: dict[str, Any] | None,
    classifier_card: dict[str, Any] | None = None,
) -> AiSnapshot:
    """What the AI showed for this image, to store with the review.

    Args:
        result: The cached analysis of the image.
        image: The image.
        digest: :func:`helpers.analysis.image_digest` of the image.
        segmenter_card: The segmenter's model card.
        classifier_card: The classifier's card, ``None`` when none is installed.
    """
    classification = result.classification
    return AiSnapshot(
        segmenter=model_label(segmenter_card),
        classifier=model_label(classifier_card) if classification is not None else None,
        probabilities=(
            {name: float(p) for name, p in classification.probabilities.items()}
            if classification is not None
            else {}
        ),
        predicted_class=classification.predicted_class if classification is not None else None,
        mask_area_px=int(result.segmentation.mask.sum()),
        threshold=float(result.segmentation.threshold),
        image_shape=(int(image.pixels.shape[0]), int(image.pixels.shape[1])),
        image_digest=digest,
    )


# ----------------------------------------------------------------------------- masks


def canvas_size(
    image_shape: tuple[int, int],
    max_width: int = CANVAS_MAX_WIDTH,
    max_height: int = CANVAS_MAX_HEIGHT,
) -> tuple[int, int]:
    """(width, height) of a drawing canvas with the image's aspect ratio, as large as fits.

    Small images are enlarged too, so that a lesion is big enough to outline.
    """
    height, width = image_shape
    scale = min(max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def canvas_background(display: np.ndarray) -> bytes:
    """The (h, w, 3) RGB display image as PNG bytes, the canvas's background."""
    return cv2.imencode(".png", cv2.cvtColor(display, cv2.COLOR_RGB2BGR))[1].tobytes()


def draw_lesion(
    base: np.ndarray,
    image_shape: tuple[int, int],
    tool: str,
    key: str,
    colour: tuple[int, int, int],
) -> np.ndarray | None:
    """Show a drawing canvas over ``base`` and return what was drawn as an image-size mask.

    Args:
        base: (h, w, 3) RGB display image, the canvas background.
        image_shape: (height, width) of the analysed image (the mask's size).
        tool: streamlit-drawable-canvas drawing mode (``polygon``, ``rect``...).
        key: Widget key.
        colour: RGB of the strokes and (translucent) fill.

    Returns:
        :func:`canvas_mask` of the drawing; ``None`` while nothing is drawn.
    """
    from streamlit_drawable_canvas import st_canvas

    red, green, blue = colour
    width, height = canvas_size(image_shape)
    drawing = st_canvas(
        fill_color=f"rgba({red}, {green}, {blue}, 0.35)",
        stroke_width=2,
        stroke_color=f"#{red:02x}{green:02x}{blue:02x}",
        background_image=canvas_background(base),
        width=width,
        height=height,
        drawing_mode=tool,
        return_image_data=True,
        key=key,
    )
    return canvas_mask(drawing.image_data, image_shape)


def canvas_mask(rgba: np.ndarray | None, image_shape: tuple[int, int]) -> np.ndarray | None:
    """The lesion drawn on the canvas as an (H, W) bool mask at the image's size.

    Every drawn pixel (alpha > 0) is lesion, and closed outlines are filled, so a
    free-hand contour gives its inside. The canvas layer holds only the drawing (the
    image is a separate background).

    Args:
        rgba: (h, w, 4) uint8 canvas pixels, ``None`` before the canvas reports any.
        image_shape: (height, width) of the image.

    Returns:
        The mask, or ``None`` when nothing is drawn.

    Raises:
        ImageDimensionError: ``rgba`` is not an (h, w, 4) array.
    """
    if rgba is None:
        return None
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ImageDimensionError(
            f"The canvas sent an array of shape {rgba.shape}; expected (h, w, 4)."
        )
    drawn = rgba[..., 3] > 0
    if not drawn.any():
        return None
    filled = fill_holes(drawn).astype(np.uint8)
    height, width = image_shape
    resized = cv2.resize(filled, (width, height), interpolation=cv2.INTER_NEAREST)
    return check_mask(resized.astype(bool), image_shape)


def mask_from_upload(data: bytes, image_shape: tuple[int, int]) -> np.ndarray:
    """An uploaded mask image (non-black = lesion), at the image's size.

    Raises:
        InvalidImageError: Empty, corrupt or not an image.
        ImageDimensionError: Not the image's size.
    """
    return mask_from_image_bytes(data, image_shape)


# ----------------------------------------------------------------------------- tables


def case_review_rows(reviews: Iterable[Review]) -> list[dict[str, Any]]:
    """The reviews of one case, one row each."""
    return [
        {
            "reviewer": review.reviewer,
            "agrees with AI": "yes" if review.agree else "no",
            "class": review.reviewer_class,
            "BI-RADS": review.birads,
            "corrected mask": "yes" if review.corrected_mask_png is not None else "no",
            "comment": review.comment,
            "updated (UTC)": review.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            "version": review.version,
        }
        for review in reviews
    ]


def _describe_change(name: str, change: list[Any]) -> str:
    old, new = change
    if name == "ai":
        return "AI output snapshot"
    return f"{name}: {old!r} → {new!r}" if old is not None else f"{name}: {new!r}"


def history_rows(entries: Iterable[AuditEntry]) -> list[dict[str, Any]]:
    """The audit trail as rows: when, who, what, and the fields that changed."""
    return [
        {
            "when (UTC)": entry.at.strftime("%Y-%m-%d %H:%M:%S"),
            "who": entry.actor,
            "action": entry.action,
            "review of": entry.reviewer,
            "version": entry.version,
            "changes": "; ".join(
                _describe_change(name, change)
                for name, change in entry.changes.items()
                if entry.action != "delete" or name != "ai"
            ),
        }
        for entry in entries
    ]


def audit_csv(entries: Sequence[AuditEntry]) -> bytes:
    """The audit trail as UTF-8 CSV bytes."""
    return audit_frame(entries).to_csv(index=False).encode()
