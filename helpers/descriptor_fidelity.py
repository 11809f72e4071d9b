"""How far the segmenter's descriptors can be trusted, as its model card records it.

The card's ``cv_pooled.native_resolution.measurement_agreement.descriptors`` section
(:func:`utils.evaluation.descriptors.descriptor_agreement`) compares each descriptor read
from the model's out-of-fold masks with the same descriptor read from expert outlines.
These helpers turn it into a table for the Models page and one warning for the Analyse
page, so that a reader knows which rows of the measurement table carry their BI-RADS
meaning and which do not.
"""

from __future__ import annotations

from typing import Any, Final

from utils.evaluation.descriptors import (
    DESCRIPTORS,
    descriptor_separations,
    lost_descriptors,
)

#: A descriptor within this much of the expert outline's separation has kept its meaning.
KEPT_SEPARATION: Final = 0.05


def descriptor_fidelity_rows(card: dict[str, Any]) -> list[dict[str, str]] | None:
    """Table rows: each descriptor's separation from expert and model outlines.

    Returns:
        One row per descriptor, or ``None`` when the card has no such section.
    """
    separations = descriptor_separations(card)
    if not separations:
        return None
    return [
        {
            "Descriptor": DESCRIPTORS[name],
            "Separates malignant from benign (AUC), expert outline": f"{reference:.2f}",
            "... model's outline": f"{mask:.2f}",
            "Median |model - expert|": f"{difference:.3g}",
        }
        for name, (reference, mask, difference) in separations.items()
    ]


def star_lost_descriptors(
    rows: list[dict[str, str]], card: dict[str, Any]
) -> tuple[list[dict[str, str]], bool]:
    """Measurement-table rows with `` *`` after each descriptor that lost its meaning.

    Returns:
        The rows (copies where starred) and whether any row was starred.
    """
    lost = {DESCRIPTORS[name] for name in lost_descriptors(card)}
    starred = [{**row, "name": f"{row['name']} *"} if row["name"] in lost else row for row in rows]
    return starred, any(row["name"] in lost for row in rows)


def descriptor_fidelity_note(card: dict[str, Any]) -> str | None:
    """One warning naming the descriptors that lose their meaning on the model's outline.

    Returns:
        The sentence, or ``None`` when the card has no section or nothing was lost.
    """
    separations = descriptor_separations(card)
    lost = [
        f"{DESCRIPTORS[name].lower()} {separations[name][1]:.2f} against {separations[name][0]:.2f}"
        for name in lost_descriptors(card)
    ]
    if not lost:
        return None
    kept = [
        DESCRIPTORS[name].lower()
        for name, (reference, mask, _) in separations.items()
        if reference - mask < KEPT_SEPARATION
    ]
    kept_sentence = f" These kept it: {', '.join(kept)}." if kept else ""
    return (
        "The model's outline is smoother than a lesion's real margin. In cross-validation, "
        "these descriptors separated malignant from benign lesions less well when read "
        "from the model's outline than from an expert's (AUC, where 0.5 is no separation): "
        f"{'; '.join(lost)}.{kept_sentence} Judge the margin on the image itself."
    )
