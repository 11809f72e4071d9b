from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.utils.inference.test_bundle import save_segmenter_bundle
from utils.errors import ConfigError, InvalidImageError, ModelError
from utils.image_quality import (
    CARD_KEY,
    assess_texture,
    fit_texture_reference,
    main,
    texture_index,
)


def speckle(shape: tuple[int, int] = (120, 160), seed: int = 0) -> np.ndarray:
    """Gamma speckle, like B-mode texture."""
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 40.0, size=shape).clip(0, 255).astype(np.uint8)


def blurred(image: np.ndarray, fraction: float) -> np.ndarray:
    sigma = fraction * image.shape[1]
    return cv2.GaussianBlur(image, (0, 0), sigma)


def _card(p01: float) -> dict:
    return {CARD_KEY: {"percentiles": {"p01": p01, "p50": 2 * p01}}}


def test_smoothing_lowers_the_index_step_by_step() -> None:
    image = speckle()
    indices = [
        texture_index(blurred(image, f)) if f else texture_index(image)
        for f in (0, 0.008, 0.016, 0.03)
    ]
    assert indices == sorted(indices, reverse=True)
    assert indices[0] > 3 * indices[2]


def test_the_index_ignores_brightness_contrast_and_size() -> None:
    image = speckle()
    darker = (image.astype(np.float32) * 0.5 + 20).astype(np.uint8)
    assert texture_index(darker) == pytest.approx(texture_index(image), rel=0.05)
    # The index is taken at 96 px, so a larger copy of the same scene reads alike.
    larger = cv2.resize(image, (320, 240), interpolation=cv2.INTER_LINEAR)
    assert texture_index(larger) == pytest.approx(texture_index(image), rel=0.2)
    assert texture_index(np.full((30, 30), 90, np.uint8)) == 0.0


@pytest.mark.parametrize(
    "image",
    [np.zeros((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8), np.zeros((0, 5), np.uint8)],
)
def test_bad_images_are_refused(image: np.ndarray) -> None:
    with pytest.raises(InvalidImageError, match=r"needs a uint8 \(H, W\) grey image; received"):
        texture_index(image)


def test_the_reference_holds_the_training_percentiles() -> None:
    reference = fit_texture_reference(np.linspace(0.0, 1.0, 101))
    assert reference["n"] == 101 and reference["flag_below_percentile"] == 1
    assert reference["percentiles"]["p01"] == pytest.approx(0.01)
    assert reference["percentiles"]["p50"] == pytest.approx(0.5)


@pytest.mark.parametrize("indices", [[1.0] * 99, [1.0] * 99 + [float("nan")], [[1.0] * 100]])
def test_a_reference_needs_100_finite_indices(indices: list) -> None:
    with pytest.raises(ConfigError, match="at least 100 finite indices"):
        fit_texture_reference(indices)


def test_assessment_flags_only_images_below_the_first_percentile() -> None:
    image = speckle()
    threshold = texture_index(blurred(image, 0.008))
    sharp = assess_texture(image, _card(threshold))
    smooth = assess_texture(blurred(image, 0.02), _card(threshold))
    assert sharp is not None and not sharp.too_smooth and sharp.threshold == threshold
    assert smooth is not None and smooth.too_smooth
    assert assess_texture(image, {}) is None


@pytest.mark.parametrize("reference", [{}, {"percentiles": {"p50": 1.0}}, {"percentiles": 3}])
def test_a_malformed_card_reference_is_a_model_error(reference: dict) -> None:
    with pytest.raises(ModelError, match=r"'input_texture' must hold percentiles\.p01"):
        assess_texture(speckle(), {CARD_KEY: reference})


def _class_folders(root: Path, count: int) -> Path:
    for index in range(count):
        folder = root / ("benign" if index % 2 else "malignant")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"image_{index:03d}.png"), speckle((24, 32), seed=index))
    return root


def test_cli_writes_the_reference_into_the_card(tmp_path: Path) -> None:
    save_segmenter_bundle(tmp_path / "models", "seg")
    data = _class_folders(tmp_path / "data", 100)
    assert (
        main(["--data", str(data), "--bundle", "seg", "--models-dir", str(tmp_path / "models")])
        == 0
    )
    card = json.loads((tmp_path / "models" / "seg.json").read_text())
    assert card[CARD_KEY]["n"] == 100 and card[CARD_KEY]["percentiles"]["p01"] > 0


def test_cli_exits_2_with_the_reason_on_too_few_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_segmenter_bundle(tmp_path / "models", "seg")
    data = _class_folders(tmp_path / "data", 10)
    assert (
        main(["--data", str(data), "--bundle", "seg", "--models-dir", str(tmp_path / "models")])
        == 2
    )
    assert "at least 100 finite indices" in capsys.readouterr().err
    assert CARD_KEY not in json.loads((tmp_path / "models" / "seg.json").read_text())


def test_a_bundle_with_a_malformed_texture_reference_fails_to_load(tmp_path: Path) -> None:
    from utils.inference.bundle import load_bundle

    save_segmenter_bundle(tmp_path, "seg", **{CARD_KEY: {"percentiles": {"p50": 1.0}}})
    with pytest.raises(ModelError, match=r"seg\.json: The card's 'input_texture' must hold"):
        load_bundle("seg", models_dir=tmp_path)
