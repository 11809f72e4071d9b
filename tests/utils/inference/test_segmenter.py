from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.utils.inference.test_bundle import SEGMENTER_CARD, loaded_image, save_segmenter_bundle
from utils.errors import ConfigError, ImageDimensionError, ModelError
from utils.inference.bundle import load_bundle
from utils.inference.segmenter import LesionSegmenter, SegmentationResult
from utils.postprocess import PostprocessConfig


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> LesionSegmenter:
    models_dir = tmp_path_factory.mktemp("models")
    save_segmenter_bundle(models_dir)
    return LesionSegmenter.from_bundle("tiny_segmenter", models_dir=models_dir)


@pytest.fixture
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [
        rng.integers(0, 256, (50, 70), dtype=np.uint8),
        rng.integers(0, 256, (45, 30, 3), dtype=np.uint8),
        rng.integers(0, 256, (32, 32), dtype=np.uint8),
    ]


def test_segment_returns_outputs_at_the_original_size(
    segmenter: LesionSegmenter, images: list[np.ndarray]
) -> None:
    for image in (images[0], images[1], loaded_image(images[1])):
        result = segmenter.segment(image)
        assert isinstance(result, SegmentationResult)
        assert result.probabilities.shape == result.mask.shape == image_shape(image)
        assert result.probabilities.dtype == np.float32 and result.mask.dtype == bool
        assert 0.0 <= result.probabilities.min() <= result.probabilities.max() <= 1.0
        assert result.threshold == SEGMENTER_CARD["postprocess"]["threshold"]
        # Post-processing may only add pixels here (fill holes; min_component_px is 0).
        assert result.mask[result.probabilities >= result.threshold].all()


def image_shape(image: object) -> tuple[int, int]:
    pixels = image.pixels if hasattr(image, "pixels") else image
    return pixels.shape[:2]


def test_threshold_controls_the_mask(segmenter: LesionSegmenter, images: list[np.ndarray]) -> None:
    everything = segmenter.segment(images[0], threshold=0.0001)
    nothing = segmenter.segment(images[0], threshold=0.9999)
    assert everything.threshold == 0.0001 and everything.mask.mean() > 0.99
    assert nothing.mask.mean() < 0.01 and nothing.measurements is None
    assert everything.measurements is not None and everything.measurements.unit == "px"
    with pytest.raises(ConfigError, match="threshold must be strictly between 0 and 1"):
        segmenter.segment(images[0], threshold=1.5)


def test_postprocess_override_and_pixel_spacing(
    segmenter: LesionSegmenter, images: list[np.ndarray]
) -> None:
    config = PostprocessConfig(threshold=0.0001, keep_largest_only=True)
    result = segmenter.segment(loaded_image(images[0], spacing=(0.1, 0.1)), postprocess=config)
    assert result.threshold == 0.0001 and result.measurements is not None
    assert result.measurements.unit == "mm"
    explicit = segmenter.segment(images[0], threshold=0.0001, pixel_spacing_mm=0.2)
    assert explicit.measurements.unit == "mm"
    assert explicit.measurements.area == pytest.approx(4 * result.measurements.area, rel=1e-3)
    unmeasured = segmenter.segment(images[0], threshold=0.0001, measure=False)
    assert unmeasured.measurements is None


def test_segment_batch_equals_per_image_segment(
    segmenter: LesionSegmenter, images: list[np.ndarray]
) -> None:
    batch = segmenter.segment_batch(images, threshold=0.5)
    assert len(batch) == len(images)
    for image, batched in zip(images, batch, strict=True):
        single = segmenter.segment(image, threshold=0.5)
        np.testing.assert_allclose(batched.probabilities, single.probabilities, atol=1e-5)
        assert (batched.mask != single.mask).mean() < 0.001
    assert segmenter.segment_batch([]) == []
    with pytest.raises(ConfigError, match="one spacing per image"):
        segmenter.segment_batch(images, pixel_spacings_mm=[0.1])


def test_predict_probabilities_takes_model_size_batches(segmenter: LesionSegmenter) -> None:
    batch = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    probabilities = segmenter.predict_probabilities(batch)
    assert probabilities.shape == (3, 32, 32) and probabilities.dtype == np.float32
    np.testing.assert_allclose(segmenter.predict_probabilities(batch[..., None]), probabilities)
    with pytest.raises(ImageDimensionError, match="at the model size"):
        segmenter.predict_probabilities(np.zeros((1, 64, 64), np.uint8))


def test_card_postprocess_is_validated(tmp_path: Path) -> None:
    save_segmenter_bundle(tmp_path)
    model, card = load_bundle("tiny_segmenter", models_dir=tmp_path)
    with pytest.raises(ModelError, match="unknown fields \\['min_size'\\]"):
        LesionSegmenter(model, {**card, "postprocess": {"min_size": 3}}, warm_up=False)
    with pytest.raises(ModelError, match="postprocess is invalid: threshold"):
        LesionSegmenter(model, {**card, "postprocess": {"threshold": 2}}, warm_up=False)
    with pytest.raises(ModelError, match="a segmentation model is needed"):
        LesionSegmenter(model, {**card, "task": "classification", "class_names": ["a", "b"]})
