"""Descriptor agreement between mask and reference outlines, on shapes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import draw

from utils.errors import ConfigError
from utils.evaluation.descriptors import (
    DESCRIPTORS,
    MeasurementPair,
    descriptor_agreement,
    descriptor_separations,
    lost_descriptors,
)
from utils.measurements import measure_lesion

SHAPE = (120, 120)


def _ellipse(row_radius: float, col_radius: float) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    rows, cols = draw.ellipse(60, 60, row_radius, col_radius, shape=SHAPE)
    mask[rows, cols] = True
    return mask


def _star(turn: float) -> np.ndarray:
    angles = turn + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 40.0, 16.0)
    mask = np.zeros(SHAPE, dtype=bool)
    rows, cols = draw.polygon(60 - radii * np.sin(angles), 60 + radii * np.cos(angles), SHAPE)
    mask[rows, cols] = True
    return mask


def _pairs_smoothed_stars() -> tuple[list[MeasurementPair], list[str]]:
    """Benign: ellipses drawn exactly. Malignant: stars the "model" drew as the same ellipses."""
    ellipses = [_ellipse(18 + k, 26 + k) for k in range(4)]
    pairs, labels = [], []
    for ellipse in ellipses:
        pairs.append((measure_lesion(ellipse), measure_lesion(ellipse)))
        labels.append("benign")
    for k, ellipse in enumerate(ellipses):
        pairs.append((measure_lesion(ellipse), measure_lesion(_star(0.1 * k))))
        labels.append("malignant")
    return pairs, labels


def test_a_smoothed_margin_keeps_its_separation_in_the_reference_only() -> None:
    pairs, labels = _pairs_smoothed_stars()
    report = descriptor_agreement(pairs, labels)
    roughness = report["boundary_roughness"]
    assert roughness["n"] == 8
    # Stars are rougher than every ellipse; the masks are the same ellipses in both classes.
    assert roughness["auc_malignant_vs_benign"] == {"reference": 1.0, "mask": 0.5}
    assert roughness["median_difference"] < 0  # the mask understates the roughness
    assert report["solidity"]["auc_malignant_vs_benign"]["reference"] == 0.0  # lower if malignant
    assert report["margin_lobulations"]["auc_malignant_vs_benign"]["mask"] == 0.5


def test_identical_outlines_agree_exactly() -> None:
    masks = [_ellipse(20, 30), _star(0.0), _ellipse(25, 25)]
    pairs = [(measure_lesion(m), measure_lesion(m)) for m in masks]
    report = descriptor_agreement(pairs, ["benign", "malignant", "benign"])
    for name in ("depth_width_ratio", "circularity", "solidity", "boundary_roughness"):
        assert report[name]["median_absolute_difference"] == 0.0


def test_echo_descriptors_are_none_without_an_image_and_aucs_need_both_classes() -> None:
    pairs = [(measure_lesion(_ellipse(20, 30)), measure_lesion(_ellipse(21, 30)))] * 2
    report = descriptor_agreement(pairs, ["benign", "benign"])
    assert set(report) == set(DESCRIPTORS)
    assert report["mean_echogenicity_ratio"] is None and report["posterior_ratio"] is None
    assert report["circularity"]["auc_malignant_vs_benign"] == {"reference": None, "mask": None}


def test_echo_descriptors_are_compared_when_measured_on_the_image() -> None:
    image = np.full(SHAPE, 120, np.uint8)
    lesion = _ellipse(20, 30)
    image[lesion] = 40  # hypoechoic lesion
    pair = (measure_lesion(lesion, image), measure_lesion(_ellipse(19, 29), image))
    report = descriptor_agreement([pair], ["malignant"])
    assert report["mean_echogenicity_ratio"]["n"] == 1
    assert report["mean_echogenicity_ratio"]["median_absolute_difference"] < 0.1


def test_normal_or_unknown_labels_stay_out_of_the_auc() -> None:
    pairs, labels = _pairs_smoothed_stars()
    report = descriptor_agreement(pairs + pairs[:1], [*labels, "normal"])
    assert report["boundary_roughness"]["n"] == 9
    assert report["boundary_roughness"]["auc_malignant_vs_benign"]["reference"] == 1.0


def test_mismatched_labels_are_refused() -> None:
    pairs, labels = _pairs_smoothed_stars()
    with pytest.raises(ConfigError, match=r"one label per pair; received 8 pairs and 7 labels"):
        descriptor_agreement(pairs, labels[:-1])


def _card_with(descriptors: dict) -> dict:
    agreement = {"measurement_agreement": {"descriptors": descriptors}}
    return {"cv_pooled": {"native_resolution": agreement}}


def test_lost_descriptors_reads_the_agreement_back_from_a_card() -> None:
    pairs, labels = _pairs_smoothed_stars()
    card = _card_with(descriptor_agreement(pairs, labels))
    separations = descriptor_separations(card)
    assert separations["boundary_roughness"][:2] == (1.0, 0.5)
    assert separations["solidity"][:2] == (1.0, 0.5)  # runs lower in malignant: same separation
    assert "posterior_ratio" not in separations  # no image, no values
    lost = lost_descriptors(card)
    assert "boundary_roughness" in lost and "solidity" in lost


@pytest.mark.parametrize("card", [{}, {"cv_pooled": []}, _card_with({"solidity": {"n": 3}})])
def test_cards_without_the_check_lose_nothing(card: dict) -> None:
    assert descriptor_separations(card) == {}
    assert lost_descriptors(card) == []
