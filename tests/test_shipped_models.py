"""The models shipped in saved_models/ load, run and carry honest cards."""

from __future__ import annotations

import numpy as np
import pytest

from utils.inference.bundle import available_bundles, load_bundle
from utils.inference.segmenter import LesionSegmenter
from utils.paths import SAVED_MODELS_DIR

REQUIRED_CARD_FIELDS = ("task", "architecture", "input_shape", "trained_from", "intended_use")

BUNDLES = available_bundles(SAVED_MODELS_DIR)


@pytest.mark.parametrize("name", BUNDLES)
def test_every_shipped_bundle_loads_with_an_honest_card(name: str) -> None:
    model, card = load_bundle(name)
    for field in REQUIRED_CARD_FIELDS:
        assert card.get(field), f"{name}: card lacks {field}"
    assert "not a diagnosis" in card["intended_use"]
    assert card["limitations"], f"{name}: card lists no limitations"
    assert model.input_shape[1:] == tuple(card["input_shape"])


@pytest.mark.skipif("ultrasound_segmenter" not in BUNDLES, reason="no shipped segmenter")
def test_shipped_segmenter_outlines_a_dark_oval_in_speckle() -> None:
    import cv2

    rng = np.random.default_rng(0)
    height, width = 300, 400
    rows, cols = np.mgrid[:height, :width]
    tissue = cv2.GaussianBlur(rng.gamma(2.0, 50.0, (height, width)), (0, 0), 1.5)
    lesion = ((rows - 140) / 45.0) ** 2 + ((cols - 200) / 80.0) ** 2 <= 1
    tissue[lesion] *= 0.2
    image = tissue.clip(0, 255).astype(np.uint8)

    result = LesionSegmenter.from_bundle("ultrasound_segmenter").segment(image)
    assert result.mask.shape == image.shape
    dice = 2 * (result.mask & lesion).sum() / (result.mask.sum() + lesion.sum())
    assert dice > 0.8
    assert result.measurements is not None and result.measurements.unit == "px"


@pytest.mark.skipif("ultrasound_classifier" not in BUNDLES, reason="no shipped classifier")
def test_default_classifier_is_the_combined_head_with_its_own_segmenter() -> None:
    from utils.inference.classifier import LesionClassifier

    model, card = load_bundle("ultrasound_classifier")
    # The card's members are what the model holds: grey-scale members on channel 0 and
    # a mask-guided member, behind an embedded 96-px segmenter at the card's threshold.
    assert [m["member"] for m in card["combined"]["members"]] == ["plain", "mask_guided"]
    assert model.get_layer("lesion_segmenter").input_shape[1:] == (96, 96, 1)
    assert model.get_layer("lesion_view").threshold == pytest.approx(
        card["mask_guided"]["segmenter_threshold"], abs=1e-3
    )
    assert model.get_layer("member0_channels").channels == (0,)
    assert card["cv"]["summary"]["accuracy"]["n"] == 5
    image = np.random.default_rng(0).integers(0, 255, (200, 300), dtype=np.uint8)
    classifier = LesionClassifier.from_bundle("ultrasound_classifier")
    assert classifier.is_mask_guided
    [result] = classifier.predict(image)
    assert sum(result.probabilities.values()) == pytest.approx(1.0)


@pytest.mark.skipif("ultrasound_classifier" not in BUNDLES, reason="no shipped classifier")
def test_shipped_classifier_flags_h_and_e_tiles_but_not_its_own_ultrasound(shared_datasets) -> None:
    from utils.image_io import load_image
    from utils.inference.classifier import LesionClassifier

    classifier = LesionClassifier.from_bundle("ultrasound_classifier")
    # Loading checked the reference belongs to these weights.
    assert classifier.familiarity is not None
    validation = classifier.card["familiarity"]["validation"]
    assert validation["held_out_flagged"]["mean"] < 0.15
    tiles = sorted((shared_datasets / "monuseg").rglob("Tissue_Images/*.png"))[:6]
    # A seeded sample of BUSI scans (all classes): consecutive file numbers come from one
    # session, and the flag marks about 9% of BUSI's own training images (11% of benign).
    scans = sorted(
        path for path in (shared_datasets / "busi").rglob("*.png") if "_mask" not in path.name
    )
    picks = np.random.default_rng(0).choice(len(scans), size=40, replace=False)
    scans = [scans[index] for index in picks]
    flagged_tiles = classifier.assess_familiarity([load_image(path) for path in tiles])
    flagged_scans = classifier.assess_familiarity([load_image(path) for path in scans])
    assert sum(result.unfamiliar for result in flagged_tiles) >= 5
    assert sum(result.unfamiliar for result in flagged_scans) <= 8
