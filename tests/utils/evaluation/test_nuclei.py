"""Dice and AJI on synthetic label maps with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from utils.errors import ImageDimensionError, InvalidImageError
from utils.evaluation.nuclei import aggregated_jaccard_index, dice_score, nuclei_report


def _squares(shape: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.int32)
    for label, (top, left, bottom, right) in enumerate(boxes, start=1):
        labels[top:bottom, left:right] = label
    return labels


def test_identical_maps_score_one_even_with_other_label_ids() -> None:
    truth = _squares((20, 20), [(0, 0, 5, 5), (10, 10, 15, 15)])
    predicted = np.where(truth == 1, 7, np.where(truth == 2, 3, 0))
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(1.0)
    assert dice_score(truth, predicted) == pytest.approx(1.0)


def test_partial_overlap_matches_hand_computation() -> None:
    # Truth: a 4x4 square (16 px). Prediction: the same square shifted by 2 columns.
    truth = _squares((10, 10), [(0, 0, 4, 4)])
    predicted = _squares((10, 10), [(0, 2, 4, 6)])
    # Intersection 8 px, union 24 px.
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(8 / 24)
    assert dice_score(truth, predicted) == pytest.approx(2 * 8 / 32)


def test_unmatched_prediction_is_added_to_the_union() -> None:
    truth = _squares((20, 20), [(0, 0, 4, 4)])
    predicted = _squares((20, 20), [(0, 0, 4, 4), (10, 10, 13, 13)])  # a 9 px false positive
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(16 / (16 + 9))


def test_missed_nucleus_adds_its_area_to_the_union() -> None:
    truth = _squares((20, 20), [(0, 0, 4, 4), (10, 10, 12, 12)])
    predicted = _squares((20, 20), [(0, 0, 4, 4)])
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(16 / (16 + 4))


def test_merged_prediction_is_penalised_but_dice_is_not() -> None:
    # Two touching 4x4 nuclei predicted as one 4x8 blob.
    truth = _squares((10, 10), [(0, 0, 4, 4), (0, 4, 4, 8)])
    predicted = _squares((10, 10), [(0, 0, 4, 8)])
    # Each truth picks the blob: C = 16 + 16, U = 32 + 32 (the blob is counted twice).
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(32 / 64)
    assert dice_score(truth, predicted) == pytest.approx(1.0)


def test_split_prediction_counts_the_unused_piece() -> None:
    truth = _squares((10, 10), [(0, 0, 4, 8)])  # one 32 px nucleus
    predicted = _squares((10, 10), [(0, 0, 4, 4), (0, 4, 4, 8)])  # split in two halves
    # Best match: one half (I 16, U 32); the other half (16 px) is unused and added.
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(16 / 48)


def test_best_match_is_by_iou_not_by_overlap() -> None:
    truth = _squares((20, 20), [(0, 0, 4, 4)])  # 16 px
    # Label 1 covers 12 px of the truth but is huge (IoU 12/100+); label 2 covers 4 px exactly.
    predicted = np.zeros((20, 20), dtype=np.int32)
    predicted[0:10, 1:11] = 1
    predicted[0:4, 0:1] = 2
    iou_big = 12 / (16 + 100 - 12)
    iou_small = 4 / 16
    assert iou_small > iou_big
    expected = 4 / (16 + 100)  # C = 4, U = 16 (union with label 2) + 100 (unused label 1)
    assert aggregated_jaccard_index(truth, predicted) == pytest.approx(expected)


def test_empty_maps() -> None:
    empty = np.zeros((8, 8), dtype=np.int32)
    one = _squares((8, 8), [(0, 0, 2, 2)])
    assert aggregated_jaccard_index(empty, empty) == 1.0
    assert dice_score(empty, empty) == 1.0
    assert aggregated_jaccard_index(one, empty) == 0.0
    assert aggregated_jaccard_index(empty, one) == 0.0
    assert dice_score(one, empty) == 0.0


def test_report_has_means_and_rows() -> None:
    truth = _squares((10, 10), [(0, 0, 4, 4)])
    predicted = _squares((10, 10), [(0, 2, 4, 6)])
    report = nuclei_report([truth, truth], [truth, predicted], ["a", "b"], ["x", "y"])
    assert report["n"] == 2
    assert report["aji"] == pytest.approx((1.0 + 8 / 24) / 2)
    assert report["per_image"][1]["n_true_nuclei"] == 1
    assert report["per_image"][1]["ground_truth_instances"] == "y"


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ImageDimensionError, match="differ in shape"):
        aggregated_jaccard_index(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ImageDimensionError, match="differ in shape"):
        dice_score(np.zeros((4, 4), int), np.zeros((5, 4), int))


def test_bad_label_maps_raise() -> None:
    with pytest.raises(InvalidImageError, match="integer labels"):
        aggregated_jaccard_index(np.zeros((4, 4), np.float32), np.zeros((4, 4), int))
    with pytest.raises(InvalidImageError, match="negative labels"):
        aggregated_jaccard_index(np.full((4, 4), -1), np.zeros((4, 4), int))
    with pytest.raises(ImageDimensionError, match=r"\(H, W\)"):
        aggregated_jaccard_index(np.zeros((4, 4, 2), int), np.zeros((4, 4, 2), int))
