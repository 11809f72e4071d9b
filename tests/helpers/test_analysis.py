"""Tests of the Analyse page's helpers: inputs and display.

The analysis core itself is tested in tests/utils/test_analysis.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import helpers.analysis
from helpers.analysis import (
    ANALYSE_MAX_PIXELS,
    DISPLAY_MAX_SIDE,
    MASK_COLOUR,
    AnalysisSettings,
    ImageChoice,
    analyse_ultrasound,
    dataset_choices,
    display_image,
    example_choices,
    image_digest,
    load_choice,
    load_upload,
    mask_overlay,
    measurement_rows,
    probability_figure,
    resolve_pixel_spacing,
    timing_rows,
)
from tests.utils.inference.test_bundle import loaded_image, write_busi_folder
from utils.errors import CorruptImageError, ImageTooLargeError, InvalidImageError
from utils.image_io import load_image
from utils.inference.segmenter import LesionSegmenter
from utils.phantoms import DEFAULT_EXAMPLES, Phantom, generate_phantom

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def segmenter() -> LesionSegmenter:
    return LesionSegmenter.default()


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return generate_phantom("benign_oval", size=(300, 360), seed=11)


@pytest.fixture(scope="module")
def phantom_analysis(segmenter: LesionSegmenter, phantom: Phantom):
    image = load_image(cv2.imencode(".png", phantom.image)[1].tobytes())
    return analyse_ultrasound(image, AnalysisSettings(pixel_spacing_mm=0.1), segmenter=segmenter)


def test_helpers_re_export_the_shared_analysis_core() -> None:
    import utils.analysis

    for name in (
        "AnalysisSettings",
        "AnalysisResult",
        "Step",
        "analyse_ultrasound",
        "reference_dice",
        "inference_count",
        "segment_step",
        "cam_target",
    ):
        assert getattr(helpers.analysis, name) is getattr(utils.analysis, name)


def test_missing_examples_folder_falls_back_to_generated_phantoms(tmp_path: Path) -> None:
    choices = example_choices(tmp_path / "nowhere")
    assert [choice.source for choice in choices] == ["phantom"] * len(DEFAULT_EXAMPLES)
    picked = load_choice(choices[0])
    assert picked.image.pixels.shape[:2] == picked.reference_mask.shape
    assert picked.reference_mask.any()
    assert picked.pixel_spacing_mm == 0.1
    assert picked.label == "benign"
    assert picked.description.startswith("Synthetic phantom")


def test_examples_are_read_from_the_index(tmp_path: Path, phantom: Phantom) -> None:
    cv2.imwrite(str(tmp_path / "case.png"), phantom.image)
    cv2.imwrite(str(tmp_path / "case_mask.png"), phantom.mask.astype(np.uint8) * 255)
    entries = [
        {"name": "case", "label": "benign", "image": "case.png", "mask": "case_mask.png"},
        {"name": "gone", "label": "benign", "image": "gone.png"},  # skipped: no file
    ]
    entries[0]["pixel_spacing_mm"] = 0.2
    (tmp_path / "index.json").write_text(json.dumps({"synthetic": True, "examples": entries}))
    [choice] = example_choices(tmp_path)
    assert choice.title == "case (benign)" and choice.source == "example"
    assert choice.description.startswith("Synthetic phantom")
    picked = load_choice(choice)
    np.testing.assert_array_equal(picked.reference_mask, phantom.mask)
    assert picked.pixel_spacing_mm == 0.2


def test_unreadable_index_falls_back_to_phantoms(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{not json")
    assert {choice.source for choice in example_choices(tmp_path)} == {"phantom"}


def test_dataset_choices_list_a_few_busi_images_per_class(tmp_path: Path) -> None:
    write_busi_folder(tmp_path / "busi")
    choices = dataset_choices(tmp_path, per_label=1)
    assert [choice.label for choice in choices] == ["benign", "malignant", "normal"]
    picked = load_choice(choices[1])
    assert picked.reference_mask is not None and picked.reference_mask.any()
    assert dataset_choices(tmp_path / "nowhere") == []


def test_load_choice_without_a_file_is_an_error() -> None:
    with pytest.raises(InvalidImageError):
        load_choice(ImageChoice(key="x", title="x", source="example", image_path=Path("/no.png")))


def test_uploads_report_bad_input_and_load_16_bit_tiff() -> None:
    with pytest.raises(CorruptImageError):
        load_upload(cv2.imencode(".png", np.zeros((20, 20), np.uint8))[1].tobytes()[:60])
    huge_side = int(np.sqrt(ANALYSE_MAX_PIXELS)) + 10
    huge = cv2.imencode(".png", np.zeros((huge_side, huge_side), np.uint8))[1].tobytes()
    with pytest.raises(ImageTooLargeError):
        load_upload(huge)
    sixteen_bit = np.linspace(0, 60000, 40 * 50, dtype=np.uint16).reshape(40, 50)
    loaded = load_upload(cv2.imencode(".tiff", sixteen_bit)[1].tobytes())
    assert loaded.metadata.original_bit_depth == 16
    assert loaded.metadata.source == "<bytes>"  # the upload's file name is never kept


def test_pixel_spacing_precedence() -> None:
    plain = loaded_image(np.zeros((8, 8), np.uint8))
    dicom = loaded_image(np.zeros((8, 8), np.uint8), spacing=(0.1, 0.12))
    assert resolve_pixel_spacing(0.3, dicom, 0.2)[0] == 0.3
    assert resolve_pixel_spacing(0.0, dicom, 0.2)[0] == (0.1, 0.12)
    assert "DICOM" in resolve_pixel_spacing(None, dicom)[1]
    assert resolve_pixel_spacing(0.0, plain, 0.2)[0] == 0.2
    spacing, note = resolve_pixel_spacing(0.0, plain)
    assert spacing is None and "pixels" in note


def test_image_digest_depends_on_pixels_and_spacing() -> None:
    pixels = np.zeros((8, 8), np.uint8)
    assert image_digest(loaded_image(pixels)) == image_digest(loaded_image(pixels.copy()))
    assert image_digest(loaded_image(pixels)) != image_digest(loaded_image(pixels + 1))
    assert image_digest(loaded_image(pixels)) != image_digest(loaded_image(pixels, (0.1, 0.1)))


# ----------------------------------------------------------------------------- display


def test_display_image_shrinks_large_images_and_enhances_on_request() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(60, 80, size=(1500, 600), dtype=np.uint8)
    image = loaded_image(pixels)
    shown = display_image(image)
    assert shown.shape == (DISPLAY_MAX_SIDE, 410, 3)
    enhanced = display_image(image, enhance=True)
    assert enhanced.shape == shown.shape and enhanced.std() > 2 * shown.std()
    np.testing.assert_array_equal(image.gray, pixels)  # the analysed pixels are untouched


def test_mask_overlay_tints_inside_and_outlines() -> None:
    base = np.full((40, 40, 3), 100, np.uint8)
    mask = np.zeros((80, 80), bool)  # twice the display size: resized to fit
    mask[20:60, 20:60] = True
    clear = mask_overlay(base, mask, opacity=0.0)
    solid = mask_overlay(base, mask, opacity=1.0)
    assert tuple(clear[20, 20]) == (100, 100, 100)  # inside, away from the outline
    assert tuple(solid[20, 20]) == MASK_COLOUR
    assert tuple(clear[10, 10]) == MASK_COLOUR  # the outline shows at any opacity
    assert tuple(solid[2, 2]) == (100, 100, 100)


def test_probability_figure_and_tables(phantom_analysis) -> None:
    from utils.inference.classifier import ClassificationResult

    classification = ClassificationResult(
        {"normal": 0.1, "benign": 0.7, "malignant": 0.2}, "benign", 0.7, 0.3, 0.05, False
    )
    [bar] = probability_figure(classification).data
    assert list(bar.y) == ["normal", "benign", "malignant"]
    assert list(bar.x) == [0.1, 0.7, 0.2]
    rows = measurement_rows(phantom_analysis.segmentation)
    assert rows is not None and rows[0]["name"] == "Area" and rows[0]["unit"] == "mm²"
    steps = [row["step"] for row in timing_rows({"total": 2.0, "segmentation": 1.5})]
    assert steps == ["Segmentation and measurements", "Total"]
