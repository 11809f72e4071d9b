"""How faithfully a segmenter's masks reproduce the BI-RADS-style descriptors.

The dashboard reads shape, margin and echo descriptors (``utils.measurements``) from the
model's mask, not from an expert outline. Dice says how much the two overlap; it does not
say whether the *descriptors* survive: a smooth blob can overlap a spiculated outline well
and still erase the margin. This module compares, over lesion images with both outlines,
each descriptor read from the mask with the same descriptor read from the reference, and
how well each separates malignant from benign lesions when read from either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from sklearn.metrics import roc_auc_score

from utils.errors import ConfigError
from utils.measurements import LesionMeasurements

#: Descriptors compared (attributes of :class:`~utils.measurements.LesionMeasurements`),
#: with the names the dashboard's measurement table gives them. Size is covered by the
#: relative diameter and area errors, and convexity deficit is ``1 - solidity``.
DESCRIPTORS: Final = {
    "depth_width_ratio": "Depth/width ratio",
    "circularity": "Circularity",
    "solidity": "Solidity",
    "margin_lobulations": "Margin lobulations",
    "boundary_roughness": "Boundary roughness",
    "mean_echogenicity_ratio": "Echogenicity ratio",
    "posterior_ratio": "Posterior ratio",
}

MeasurementPair = tuple[LesionMeasurements, LesionMeasurements]


def _auc(values: np.ndarray, malignant: np.ndarray) -> float | None:
    """AUC of ``values`` for malignant against benign; ``None`` without both classes."""
    if malignant.all() or not malignant.any():
        return None
    return round(float(roc_auc_score(malignant, values)), 4)


def descriptor_agreement(pairs: Sequence[MeasurementPair], labels: Sequence[str]) -> dict[str, Any]:
    """Agreement of mask and reference descriptors, and their malignant-vs-benign AUCs.

    Args:
        pairs: ``(from_mask, from_reference)`` measurements of each lesion image where
            both outlines exist.
        labels: Each pair's class name; only ``benign`` and ``malignant`` enter the AUCs.

    Returns:
        ``{descriptor: {"n", "median_difference", "median_absolute_difference",
        "auc_malignant_vs_benign": {"reference", "mask"}}}``, differences as mask minus
        reference. An AUC above 0.5 means the descriptor runs higher in malignant lesions,
        below 0.5 lower; 0.5 means it does not separate them. ``None`` where a descriptor
        has no values (echo descriptors without an image) or a class is missing.

    Raises:
        ConfigError: ``pairs`` and ``labels`` differ in length.
    """
    if len(pairs) != len(labels):
        raise ConfigError(
            f"descriptor_agreement needs one label per pair; received {len(pairs)} pairs "
            f"and {len(labels)} labels."
        )
    label_array = np.asarray(labels, dtype=object)
    report: dict[str, Any] = {}
    for name in DESCRIPTORS:
        rows = [
            (getattr(mask, name), getattr(reference, name), label)
            for (mask, reference), label in zip(pairs, label_array, strict=True)
            if getattr(mask, name) is not None and getattr(reference, name) is not None
        ]
        if not rows:
            report[name] = None
            continue
        from_mask = np.array([row[0] for row in rows], dtype=float)
        from_reference = np.array([row[1] for row in rows], dtype=float)
        lesion_labels = np.array([row[2] for row in rows], dtype=object)
        graded = np.isin(lesion_labels, ("benign", "malignant"))
        malignant = lesion_labels[graded] == "malignant"
        difference = from_mask - from_reference
        report[name] = {
            "n": len(rows),
            "median_difference": round(float(np.median(difference)), 4),
            "median_absolute_difference": round(float(np.median(np.abs(difference))), 4),
            "auc_malignant_vs_benign": {
                "reference": _auc(from_reference[graded], malignant),
                "mask": _auc(from_mask[graded], malignant),
            },
        }
    return report


#: Where the section lives in a segmenter card.
DESCRIPTORS_PATH: Final = ("cv_pooled", "native_resolution", "measurement_agreement", "descriptors")
#: A descriptor whose malignant-vs-benign separation falls by at least this much from the
#: expert outline to the model's outline is reported as having lost its meaning.
LOST_SEPARATION: Final = 0.1


def descriptor_separations(card: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    """Read a segmenter card's descriptor section (see :func:`descriptor_agreement`).

    Returns:
        ``{descriptor: (separation from reference, from mask, median |difference|)}``;
        empty when the card has no such section. A separation is ``max(AUC, 1 - AUC)``:
        0.5 means none, 1 perfect, whichever way the descriptor runs. Descriptors
        without both AUCs are left out.
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


def lost_descriptors(card: dict[str, Any]) -> list[str]:
    """Descriptors (attribute names) whose meaning the card shows lost on the model's outline.

    Those whose separation falls by at least :data:`LOST_SEPARATION` from the expert
    outlines to the model's; empty when the card has no section.
    """
    return [
        name
        for name, (reference, mask, _) in descriptor_separations(card).items()
        if reference - mask >= LOST_SEPARATION
    ]
