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

from utils.evaluation.descriptors import DESCRIPTORS

#: Where the section lives in a segmenter card.
DESCRIPTORS_PATH: Final = ("cv_pooled", "native_resolution", "measurement_agreement", "descriptors")
#: A descriptor whose malignant-vs-benign separation falls by at least this much from the
#: expert outline to the model's outline is reported as having lost its meaning.
LOST_SEPARATION: Final = 0.1
#: ... and one within this much of the expert outline's separation as having kept it.
KEPT_SEPARATION: Final = 0.05


def _separations(card: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    """``{descriptor: (separation from reference, from mask, median |difference|)}``.

    A separation is ``max(AUC, 1 - AUC)``: 0.5 means none, 1 perfect, whichever way the
    descriptor runs. Descriptors without both AUCs are left out.
    """
    section: Any = card
    for key in DESCRIPTORS_PATH:
        section = section.get(key) if isinstance(section, dict) else None
    if not isinstance(section, dict):
        return {}
    found = {}
    for name in DESCRIPTORS:
        entry = section.get(name)
        aucs = entry.get("auc_malignant_vs_benign") if isinstance(entry, dict) else None
        if not isinstance(aucs, dict):
            continue
        reference, mask = aucs.get("reference"), aucs.get("mask")
        difference = entry.get("median_absolute_difference")
        if all(isinstance(v, int | float) for v in (reference, mask, difference)):
            found[name] = (max(reference, 1 - reference), max(mask, 1 - mask), difference)
    return found


def descriptor_fidelity_rows(card: dict[str, Any]) -> list[dict[str, str]] | None:
    """Table rows: each descriptor's separation from expert and model outlines.

    Returns:
        One row per descriptor, or ``None`` when the card has no such section.
    """
    separations = _separations(card)
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


def lost_descriptors(card: dict[str, Any]) -> list[str]:
    """Measurement-table names of the descriptors that lose their meaning on the outline.

    Those whose separation falls by at least :data:`LOST_SEPARATION`; empty when the card
    has no section.
    """
    return [
        DESCRIPTORS[name]
        for name, (reference, mask, _) in _separations(card).items()
        if reference - mask >= LOST_SEPARATION
    ]


def star_lost_descriptors(
    rows: list[dict[str, str]], card: dict[str, Any]
) -> tuple[list[dict[str, str]], bool]:
    """Measurement-table rows with `` *`` after each descriptor in :func:`lost_descriptors`.

    Returns:
        The rows (copies where starred) and whether any row was starred.
    """
    lost = set(lost_descriptors(card))
    starred = [{**row, "name": f"{row['name']} *"} if row["name"] in lost else row for row in rows]
    return starred, any(row["name"] in lost for row in rows)


def descriptor_fidelity_note(card: dict[str, Any]) -> str | None:
    """One warning naming the descriptors that lose their meaning on the model's outline.

    Returns:
        The sentence, or ``None`` when the card has no section or nothing was lost.
    """
    separations = _separations(card)
    lost = [
        f"{DESCRIPTORS[name].lower()} {mask:.2f} against {reference:.2f}"
        for name, (reference, mask, _) in separations.items()
        if reference - mask >= LOST_SEPARATION
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
