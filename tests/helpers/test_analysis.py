"""Tests of the Analyse page's helpers: inputs, the analysis pipeline and display."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers.analysis import (
    ANALYSE_MAX_PIXELS,
    DISPLAY_MAX_SIDE,
    MASK_COLOUR,
    AnalysisSettings,
    ImageChoice,
    analyse_ultrasound,
    cam_target,
    dataset_choices,
    display_image,
    example_choices,
    image_digest,
    inference_count,
    load_choice,
    load_upload,
    mask_overlay,
    measurement_rows,
    probability_figure,
    reference_dice,
    resolve_pixel_spacing,
    timing_rows,
)
from tests.utils.inference.test_bundle import (
    CLASS_NAMES,
    loaded_image,
    save_classifier_bundle,
    write_busi_folder,
)
from utils.errors import ConfigError, CorruptImageError, ImageTooLargeError, InvalidImageError
from utils.image_io import LoadedImage, load_image
from utils.inference.classifier import LesionClassifier
from utils.inference.segmenter import LesionSegmenter
from utils.phantoms import DEFAULT_EXAMPLES, Phantom, generate_phantom

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def segmenter() -> LesionSegmenter:
    return LesionSegmenter.default()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> LesionClassifier:
    path = save_classifier_bundle(tmp_path_factory.mktemp("models"))
    return LesionClassifier.from_bundle(path)


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return generate_phantom("benign_oval", size=(300, 360), seed=11)


@pytest.fixture(scope="module")
def phantom_image(phantom: Phantom) -> LoadedImage:
    return load_image(cv2.imencode(".png", phantom.image)[1].tobytes())


@pytest.fixture(scope="module")
def phantom_analysis(segmenter: LesionSegmenter, phantom_image: LoadedImage):
    return analyse_ultrasound(
        phantom_image, AnalysisSettings(pixel_spacing_mm=0.1), segmenter=segmenter
    )


# ----------------------------------------------------------------------------- analysis


def test_segmenter_only_analysis_finds_and_measures_the_lesion(
    phantom_analysis, phantom: Phantom, segmenter: LesionSegmenter
) -> None:
    result = phantom_analysis
    mask = result.segmentation.mask
    assert mask.shape == phantom.image.shape
    assert mask.any()
    assert reference_dice(result, phantom.mask) > 0.5
    assert result.segmentation.measurements is not None
    assert result.segmentation.measurements.unit == "mm"
    assert result.classification is None and result.classifier_cam is None
    assert result.segmenter_cam.shape == segmenter.input_shape[:2]
    assert result.segmenter_cam.dtype == np.float32
    assert result.segmenter_cam.min() >= 0.0 and result.segmenter_cam.max() == pytest.approx(1.0)
    assert set(result.timings) == {"segmentation", "segmenter_cam", "total"}
    assert result.timings["total"] >= result.timings["segmentation"] > 0


def test_threshold_and_layer_settings_are_used(
    segmenter: LesionSegmenter, phantom_image: LoadedImage, phantom_analysis
) -> None:
    strict = analyse_ultrasound(
        phantom_image,
        AnalysisSettings(threshold=0.95, segmenter_layer="enc4_out_relu"),
        segmenter=segmenter,
    )
    assert strict.segmentation.threshold == 0.95
    assert strict.segmentation.mask.sum() <= phantom_analysis.segmentation.mask.sum()
    assert strict.segmentation.measurements is None or strict.segmentation.measurements.unit == "px"
    assert not np.allclose(strict.segmenter_cam, phantom_analysis.segmenter_cam)


def test_bad_settings_are_config_errors(
    segmenter: LesionSegmenter, phantom_image: LoadedImage
) -> None:
    with pytest.raises(ConfigError, match="CAM method"):
        analyse_ultrasound(
            phantom_image, AnalysisSettings(cam_method="saliency"), segmenter=segmenter
        )
    with pytest.raises(ConfigError):
        analyse_ultrasound(phantom_image, AnalysisSettings(threshold=1.5), segmenter=segmenter)


def test_analysis_with_a_classifier_gives_calibrated_probabilities_and_a_cam(
    segmenter: LesionSegmenter, classifier: LesionClassifier, phantom_image: LoadedImage
) -> None:
    result = analyse_ultrasound(
        phantom_image, AnalysisSettings(), segmenter=segmenter, classifier=classifier
    )
    classification = result.classification
    assert classification is not None
    assert list(classification.probabilities) == CLASS_NAMES
    assert sum(classification.probabilities.values()) == pytest.approx(1.0)
    assert classification.uncertainty is not None and classification.refer is not None
    assert result.classifier_cam_class == classification.predicted_class
    assert result.classifier_cam is not None
    assert result.classifier_cam.shape == classifier.input_shape[:2]
    assert {"classification", "classifier_cam"} <= set(result.timings)

    explicit = analyse_ultrasound(
        phantom_image,
        AnalysisSettings(target_class=2, cam_method="gradcam++"),
        segmenter=segmenter,
        classifier=classifier,
    )
    assert explicit.classifier_cam_class == CLASS_NAMES[2]
    with pytest.raises(ConfigError, match="target class index 3 "):
        analyse_ultrasound(
            phantom_image,
            AnalysisSettings(target_class=3),
            segmenter=segmenter,
            classifier=classifier,
        )


def test_every_model_step_is_counted(
    segmenter: LesionSegmenter, classifier: LesionClassifier
) -> None:
    image = loaded_image(np.full((64, 64), 90, np.uint8))
    before = inference_count()
    analyse_ultrasound(image, AnalysisSettings(), segmenter=segmenter)
    assert inference_count() == before + 2  # segmentation and its CAM
    analyse_ultrasound(image, AnalysisSettings(), segmenter=segmenter, classifier=classifier)
    assert inference_count() == before + 6  # and the classification and its CAM


def test_cam_target_defaults_to_the_predicted_class(classifier: LesionClassifier) -> None:
    from utils.inference.classifier import ClassificationResult

    result = ClassificationResult(
        {"normal": 0.2, "benign": 0.1, "malignant": 0.7}, "malignant", 0.7
    )
    assert cam_target(classifier, result, None) == 2
    assert cam_target(classifier, result, np.int64(1)) == 1
    for bad in (3, -1, True, "benign"):
        with pytest.raises(ConfigError, match="target class"):
            cam_target(classifier, result, bad)


# ----------------------------------------------------------------------------- inputs


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
