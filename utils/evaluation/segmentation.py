"""Segmentation metrics over a set of images: Dice, IoU, HD95, normal false positives.

Dice, IoU and HD95 are averaged over *lesion* images (non-empty ground truth), as in
the BUSI literature; images labelled ``normal`` (or with an empty ground truth) feed
``normal_false_positive_rate`` instead: the share given a non-empty predicted mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from utils.evaluation.bootstrap import bootstrap_ci
from utils.postprocess import dice_score, hd95, iou


def _mean(values: Sequence[float]) -> float | None:
    array = np.asarray(values, dtype=float)
    if array.size == 0 or np.all(np.isnan(array)):
        return None
    return float(np.nanmean(array))


def segmentation_report(
    predicted_masks: Sequence[np.ndarray],
    true_masks: Sequence[np.ndarray],
    labels: Sequence[str | None],
    *,
    sources: Sequence[str] | None = None,
    bootstrap_seed: int = 0,
) -> dict:
    """Summarise predicted masks against ground truth.

    Args:
        predicted_masks: Boolean (H, W) masks after post-processing.
        true_masks: Boolean (H, W) ground-truth masks, same sizes.
        labels: Class per image (``"normal"`` images count as lesion-free).
        sources: Optional image names, copied into ``per_image``.
        bootstrap_seed: Seed of the bootstrap CIs.

    Returns:
        JSON-ready dict with ``n``, ``n_lesion``, ``dice_mean``, ``iou_mean``,
        ``hd95_mean`` (pixels), ``per_class``, ``normal_false_positive_rate`` (``None``
        without normal images), bootstrap 95% CIs and ``per_image`` rows.
    """
    rows = []
    for index, (predicted, truth, label) in enumerate(
        zip(predicted_masks, true_masks, labels, strict=True)
    ):
        predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
        lesion = bool(truth.any()) and label != "normal"
        row = {
            "index": index,
            "source": sources[index] if sources is not None else None,
            "label": label,
            "lesion": lesion,
            "predicted_empty": not bool(predicted.any()),
        }
        if lesion:
            row.update(
                dice=float(dice_score(predicted, truth)),
                iou=float(iou(predicted, truth)),
                hd95=float(hd95(predicted, truth)),
            )
        rows.append(row)

    lesion_rows = [row for row in rows if row["lesion"]]
    dice = np.array([row["dice"] for row in lesion_rows], dtype=float)
    ious = np.array([row["iou"] for row in lesion_rows], dtype=float)
    normal_fp = np.array(
        [not row["predicted_empty"] for row in rows if not row["lesion"]], dtype=float
    )
    per_class = {}
    for label in sorted({row["label"] for row in lesion_rows if row["label"] is not None}):
        members = [row for row in lesion_rows if row["label"] == label]
        per_class[label] = {
            "n": len(members),
            "dice_mean": _mean([row["dice"] for row in members]),
            "iou_mean": _mean([row["iou"] for row in members]),
            "hd95_mean": _mean([row["hd95"] for row in members]),
        }
    return {
        "n": len(rows),
        "n_lesion": len(lesion_rows),
        "n_normal": int(normal_fp.size),
        "dice_mean": _mean(dice),
        "iou_mean": _mean(ious),
        "hd95_mean": _mean([row["hd95"] for row in lesion_rows]),
        "per_class": per_class,
        "normal_false_positive_rate": _mean(normal_fp),
        "ci95": {
            "dice_mean": bootstrap_ci(dice, seed=bootstrap_seed),
            "iou_mean": bootstrap_ci(ious, seed=bootstrap_seed),
            "normal_false_positive_rate": bootstrap_ci(normal_fp, seed=bootstrap_seed),
        },
        "per_image": rows,
    }
