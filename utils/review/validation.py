"""What a clinician's review holds, and the checks every field passes before it is stored.

A review is keyed by ``(case_id, reviewer)``: one reviewer has one review per case,
which they may edit. Nothing here identifies a patient unless the reviewer types it into
the comment; DICOM tags are never part of a review.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from utils.errors import ConfigError
from utils.labels import ULTRASOUND_CLASSES

#: Classes a reviewer can give (the ultrasound classifier's classes).
REVIEW_CLASSES: Final[tuple[str, ...]] = ULTRASOUND_CLASSES
#: BI-RADS ultrasound assessment categories (ACR 5th edition); 4 may be left unsplit.
BIRADS_CATEGORIES: Final[tuple[str, ...]] = (
    "0",
    "1",
    "2",
    "3",
    "4",
    "4A",
    "4B",
    "4C",
    "5",
    "6",
)
MAX_REVIEWER_CHARS: Final = 80
MAX_CASE_ID_CHARS: Final = 128
MAX_CASE_LABEL_CHARS: Final = 200
MAX_COMMENT_CHARS: Final = 4000
# Control characters would make names unreadable in the audit trail and exports.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class AiSnapshot:
    """What the AI showed the reviewer, frozen with the review.

    Attributes:
        segmenter: Segmenter model name and version (``"name vX"``), ``None`` if absent.
        classifier: Classifier model name and version, ``None`` when none is installed.
        probabilities: Calibrated class probabilities, empty without a classifier.
        predicted_class: The classifier's class, ``None`` without a classifier.
        mask_area_px: Lesion pixels of the AI mask.
        threshold: The segmentation threshold used.
        image_shape: (height, width) of the reviewed image; a corrected mask must match.
        image_digest: Hash of the pixels, so a review stays tied to the exact image.
    """

    segmenter: str | None = None
    classifier: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    predicted_class: str | None = None
    mask_area_px: int | None = None
    threshold: float | None = None
    image_shape: tuple[int, int] | None = None
    image_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "segmenter": self.segmenter,
            "classifier": self.classifier,
            "probabilities": dict(self.probabilities),
            "predicted_class": self.predicted_class,
            "mask_area_px": self.mask_area_px,
            "threshold": self.threshold,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "image_digest": self.image_digest,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AiSnapshot:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        data = data or {}
        shape = data.get("image_shape")
        return cls(
            segmenter=data.get("segmenter"),
            classifier=data.get("classifier"),
            probabilities={str(k): float(v) for k, v in (data.get("probabilities") or {}).items()},
            predicted_class=data.get("predicted_class"),
            mask_area_px=data.get("mask_area_px"),
            threshold=data.get("threshold"),
            image_shape=(int(shape[0]), int(shape[1])) if shape else None,
            image_digest=data.get("image_digest"),
        )


@dataclass(frozen=True, eq=False)
class ReviewInput:
    """One reviewer's assessment of one case, as entered (validated by :func:`validate`).

    Attributes:
        case_id: The case: an example or dataset id, or an image digest.
        reviewer: Who reviews (a name or initials, not a login).
        agree: Whether the reviewer agrees with the AI output.
        reviewer_class: The reviewer's class, one of :data:`REVIEW_CLASSES`.
        birads: BI-RADS category, one of :data:`BIRADS_CATEGORIES` (case-insensitive).
        comment: Free text (optional).
        corrected_mask: (H, W) bool or 0/1 or 0/255 uint8 mask, ``None`` for none.
        case_label: What the queue calls the case (optional).
        ai: What the AI showed.
    """

    case_id: str
    reviewer: str
    agree: bool
    reviewer_class: str
    birads: str
    comment: str = ""
    corrected_mask: np.ndarray | None = None
    case_label: str = ""
    ai: AiSnapshot = field(default_factory=AiSnapshot)


def clean_text(value: object, what: str, max_chars: int, *, required: bool) -> str:
    """Strip ``value`` and check it is text of at most ``max_chars`` characters.

    Raises:
        ConfigError: Not a string, empty when required, too long, or has control
            characters (newlines and tabs are allowed only in comments).
    """
    if not isinstance(value, str):
        raise ConfigError(f"The {what} must be text; got {type(value).__name__}.")
    text = value.strip()
    if required and not text:
        raise ConfigError(f"The {what} is empty; enter it (at most {max_chars} characters).")
    if len(text) > max_chars:
        raise ConfigError(
            f"The {what} has {len(text)} characters; at most {max_chars} are allowed."
        )
    return text


def clean_name(value: object, what: str, max_chars: int) -> str:
    """A required one-line name (reviewer, case id): :func:`clean_text` without control chars."""
    text = clean_text(value, what, max_chars, required=True)
    if _CONTROL.search(text):
        raise ConfigError(f"The {what} {text!r} contains control characters; use plain text.")
    return text


def normalise_birads(value: object) -> str:
    """The canonical BI-RADS category (``"4a"`` -> ``"4A"``, ``3`` -> ``"3"``).

    Raises:
        ConfigError: Not one of :data:`BIRADS_CATEGORIES`.
    """
    if value is None:
        raise ConfigError(
            f"No BI-RADS category was chosen; choose one of {', '.join(BIRADS_CATEGORIES)}."
        )
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool)
    text = str(int(value)) if is_int else value.strip().upper() if isinstance(value, str) else None
    if text not in BIRADS_CATEGORIES:
        raise ConfigError(
            f"The BI-RADS category {value!r} is not valid; allowed: {', '.join(BIRADS_CATEGORIES)}."
        )
    return text


def check_class(value: object) -> str:
    """The reviewer's class, if it is one of :data:`REVIEW_CLASSES`.

    Raises:
        ConfigError: Any other value.
    """
    if value is None:
        raise ConfigError(f"No class was chosen; choose one of {', '.join(REVIEW_CLASSES)}.")
    if value not in REVIEW_CLASSES:
        raise ConfigError(
            f"The class {value!r} is not valid; allowed: {', '.join(REVIEW_CLASSES)}."
        )
    return str(value)


def check_snapshot(snapshot: AiSnapshot) -> AiSnapshot:
    """Check the AI snapshot's numbers (probabilities in [0, 1], a positive shape).

    Raises:
        ConfigError: A probability is not a finite number in [0, 1], the mask area is
            negative, or the image shape is not two positive integers.
    """
    for name, probability in snapshot.probabilities.items():
        if not isinstance(probability, float | int) or not 0.0 <= probability <= 1.0:
            raise ConfigError(
                f"The AI probability of {name!r} is {probability!r}; it must be in [0, 1]."
            )
        if math.isnan(probability):
            raise ConfigError(f"The AI probability of {name!r} is NaN.")
    if snapshot.mask_area_px is not None and snapshot.mask_area_px < 0:
        raise ConfigError(f"The AI mask area is {snapshot.mask_area_px}; it cannot be negative.")
    shape = snapshot.image_shape
    if shape is not None and (len(shape) != 2 or min(shape) < 1):
        raise ConfigError(f"The image shape {shape!r} must be two positive sizes (H, W).")
    return snapshot
