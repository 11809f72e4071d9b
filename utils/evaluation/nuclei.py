"""Nucleus segmentation metrics: pixel Dice and the Aggregated Jaccard Index (AJI).

AJI (Kumar et al., IEEE TMI 2017), the MoNuSeg challenge metric, scores instances::

    for each ground-truth nucleus G_i:
        S_j = the predicted nucleus with the highest IoU with G_i (if any overlaps)
        C += |G_i ∩ S_j|;  U += |G_i ∪ S_j|   (U += |G_i| when nothing overlaps)
    U += |S_k| for every predicted nucleus never chosen above
    AJI = C / U

As in the original definition a predicted nucleus may be chosen by several ground-truth
nuclei (a merge is penalised through the unions, not by exclusivity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from utils.datasets.monuseg import read_monuseg
from utils.errors import DatasetError, ImageDimensionError
from utils.histo._checks import check_labels
from utils.image_io import load_image

__all__ = [
    "aggregated_jaccard_index",
    "dice_score",
    "evaluate_nuclei_folder",
    "nuclei_report",
]


def _same_shape(truth: np.ndarray, predicted: np.ndarray) -> None:
    if truth.shape != predicted.shape:
        raise ImageDimensionError(
            f"Ground truth {truth.shape} and prediction {predicted.shape} differ in shape."
        )


def dice_score(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Pixel Dice of two masks or label maps (foreground = non-zero).

    Returns 1.0 when both are empty (nothing to find, nothing found).

    Raises:
        ImageDimensionError: The shapes differ or are not 2-D.
    """
    truth_fg = check_labels(np.asarray(truth) > 0, "ground truth") > 0
    predicted_fg = check_labels(np.asarray(predicted) > 0, "prediction") > 0
    _same_shape(truth_fg, predicted_fg)
    total = int(truth_fg.sum()) + int(predicted_fg.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(truth_fg, predicted_fg).sum()) / total


def aggregated_jaccard_index(truth: np.ndarray, predicted: np.ndarray) -> float:
    """AJI of two instance label maps (0 = background), see the module docstring.

    Returns 1.0 when both are empty and 0.0 when only one is.

    Raises:
        ImageDimensionError: The shapes differ or are not 2-D.
        InvalidImageError: A map is not integer-valued or has negative labels.
    """
    gt = check_labels(truth, "ground-truth instances")
    pred = check_labels(predicted, "predicted instances")
    _same_shape(gt, pred)
    gt_ids, gt_flat = np.unique(gt, return_inverse=True)
    pred_ids, pred_flat = np.unique(pred, return_inverse=True)
    # Contingency table of (ground-truth label, predicted label) pixel counts, row/col 0
    # being background when present.
    table = sparse.coo_matrix(
        (np.ones(gt_flat.size, dtype=np.int64), (gt_flat.ravel(), pred_flat.ravel())),
        shape=(len(gt_ids), len(pred_ids)),
    ).toarray()
    gt_rows = np.flatnonzero(gt_ids > 0)
    pred_cols = np.flatnonzero(pred_ids > 0)
    if len(gt_rows) == 0 and len(pred_cols) == 0:
        return 1.0
    gt_area = table.sum(axis=1)
    pred_area = table.sum(axis=0)
    intersection = table[np.ix_(gt_rows, pred_cols)].astype(np.float64)
    union = gt_area[gt_rows, None] + pred_area[None, pred_cols] - intersection
    if len(pred_cols) == 0:
        return 0.0
    iou = np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
    best = iou.argmax(axis=1)
    has_overlap = intersection[np.arange(len(gt_rows)), best] > 0
    rows = np.arange(len(gt_rows))
    overlap_total = float(intersection[rows, best][has_overlap].sum())
    union_total = float(union[rows, best][has_overlap].sum())
    union_total += float(gt_area[gt_rows][~has_overlap].sum())
    used = np.zeros(len(pred_cols), dtype=bool)
    used[best[has_overlap]] = True
    union_total += float(pred_area[pred_cols][~used].sum())
    return overlap_total / union_total if union_total > 0 else 0.0


def _mean_sd(values: Sequence[float]) -> dict[str, float | None]:
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return {"mean": None, "sd": None, "n": 0}
    sd = float(np.std(clean, ddof=1)) if len(clean) > 1 else 0.0
    return {"mean": float(np.mean(clean)), "sd": sd, "n": len(clean)}


def nuclei_report(
    truths: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    sources: Sequence[str],
    truth_kinds: Sequence[str],
) -> dict[str, Any]:
    """Per-image and mean Dice and AJI.

    Args:
        truths: Ground-truth instance label maps.
        predictions: Predicted instance label maps.
        sources: One name per image.
        truth_kinds: Where each image's instances came from (``"xml_polygons"`` or
            ``"mask_connected_components"``).

    Returns:
        ``{"n", "dice", "aji", "dice_sd", "aji_sd", "per_image": [...]}``.
    """
    rows = []
    for truth, predicted, source, kind in zip(
        truths, predictions, sources, truth_kinds, strict=True
    ):
        rows.append(
            {
                "source": source,
                "dice": dice_score(truth, predicted),
                "aji": aggregated_jaccard_index(truth, predicted),
                "n_true_nuclei": int(len(np.unique(truth)) - (truth == 0).any()),
                "n_predicted_nuclei": int(len(np.unique(predicted)) - (predicted == 0).any()),
                "ground_truth_instances": kind,
            }
        )
    dice = _mean_sd([row["dice"] for row in rows])
    aji = _mean_sd([row["aji"] for row in rows])
    return {
        "n": len(rows),
        "dice": dice["mean"],
        "dice_sd": dice["sd"],
        "aji": aji["mean"],
        "aji_sd": aji["sd"],
        "per_image": rows,
    }


def evaluate_nuclei_folder(
    data: Path,
    model: str | Path = "nuclei_segmenter",
    *,
    batch_size: int = 8,
    mask_instances: str = "components",
) -> dict[str, Any]:
    """Segment every tile of a MoNuSeg-layout folder and score Dice and AJI.

    Ground-truth instances come from the Aperio XML polygons when a tile has them, else
    from its binary mask (see :mod:`utils.histo.data`): connected components, or with
    ``mask_instances="split"`` components split where touching nuclei meet. Each row
    says which, and the report gives the means for each kind too.

    Raises:
        DatasetError: Not a MoNuSeg-layout folder, or no tile has ground truth.
        ModelError: The bundle is missing or invalid.
        ConfigError: ``mask_instances`` is not "components" or "split".
    """
    from utils.histo.data import check_mask_instances, load_instances
    from utils.histo.nuclei import NucleiSegmenter

    check_mask_instances(mask_instances)
    records = [
        record
        for record in read_monuseg(data)
        if record.mask_paths or "annotation_xml" in record.metadata
    ]
    if not records:
        raise DatasetError(
            f"No tile in {data} has a Binary_masks/*.png mask or an Annotations/*.xml file; "
            "nucleus evaluation needs ground truth."
        )
    segmenter = NucleiSegmenter.from_bundle(model, batch_size=batch_size)
    truths, predictions, kinds, sources = [], [], [], []
    for record in records:
        image = load_image(record.image_path).pixels
        truth, kind = load_instances(record, image.shape[:2], mask_instances)
        truths.append(truth)
        kinds.append(kind)
        predictions.append(segmenter.segment(image).instances)
        sources.append(record.image_path.name)
    report = nuclei_report(truths, predictions, sources, kinds)
    by_kind = {}
    for kind in sorted(set(kinds)):
        rows = [row for row in report["per_image"] if row["ground_truth_instances"] == kind]
        by_kind[kind] = {
            "n": len(rows),
            "dice": _mean_sd([row["dice"] for row in rows]),
            "aji": _mean_sd([row["aji"] for row in rows]),
        }
    card = segmenter.card
    return {
        "task": "nuclei_segmentation",
        "model": {
            "requested": str(model),
            "name": card.get("name"),
            "architecture": card.get("architecture"),
            "version": card.get("version"),
            "postprocess": segmenter.postprocess.to_dict(),
        },
        "data": str(data),
        "ground_truth_note": (
            "AJI needs ground-truth instances: Aperio XML polygons where present "
            "('xml_polygons'), else 4-connected components of the binary mask "
            "('mask_connected_components', touching nuclei merged) or, with "
            "--mask-instances split, those components split at distance-transform necks "
            "('mask_split_watershed')."
        ),
        "by_ground_truth": by_kind,
        **report,
    }
