"""NucleiSegmenter: tiled inference, resampling, batching, bundles and bad input."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from utils.errors import ConfigError, ImageDimensionError, InvalidImageError, ModelError
from utils.histo.nuclei import NucleiResult, NucleiSegmenter, tile_starts
from utils.model_card import save_model_bundle
from utils.models.nuclei import build_nuclei_model

TILE = 32


def _card(**extra) -> dict:
    return {
        "task": "segmentation",
        "architecture": "nuclei_unet",
        "input_shape": [TILE, TILE, 3],
        "postprocess": {"foreground_threshold": 0.5, "marker_threshold": 0.4, "min_area": 4},
        "training_mpp": 0.25,
        **extra,
    }


@pytest.fixture(scope="module")
def segmenter() -> NucleiSegmenter:
    model = build_nuclei_model(input_shape=(TILE, TILE, 3), base_filters=4, depth=2)
    return NucleiSegmenter(model, _card(), batch_size=4)


def test_tile_starts_cover_the_length_with_overlap() -> None:
    assert tile_starts(32, 32, 8) == [0]
    assert tile_starts(20, 32, 8) == [0]
    starts = tile_starts(100, 32, 8)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert all(b - a <= 32 - 8 for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize("shape", [(70, 45, 3), (20, 24, 3), (32, 32, 3)])
def test_segment_returns_maps_on_the_input_grid(segmenter, rng, shape) -> None:
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    result = segmenter.segment(image)
    assert isinstance(result, NucleiResult)
    assert result.foreground.shape == shape[:2] and result.foreground.dtype == np.float32
    assert result.instances.shape == shape[:2] and result.instances.dtype == np.int32
    assert result.foreground.min() >= 0.0 and result.foreground.max() <= 1.0
    assert result.count == len(np.unique(result.instances[result.instances > 0]))


def test_overlapping_tiles_blend_to_the_single_tile_answer_inside(segmenter, rng) -> None:
    # A 32x32 image is one tile: the tiled path must reproduce the raw forward pass.
    image = rng.integers(0, 256, size=(TILE, TILE, 3), dtype=np.uint8)
    raw = segmenter._forward(image[None].astype(np.float32) / 255.0)[0]
    np.testing.assert_allclose(segmenter.predict_maps(image), raw, atol=1e-5)


def test_test_time_flips_average_the_four_flipped_predictions(segmenter, rng) -> None:
    image = rng.integers(0, 256, size=(TILE, TILE, 3), dtype=np.uint8)
    pixels = image[None].astype(np.float32) / 255.0
    expected = np.mean(
        [
            np.flip(segmenter._forward(np.ascontiguousarray(np.flip(pixels, axes))), axes)[0]
            for axes in ((), (1,), (2,), (1, 2))
        ],
        axis=0,
    )
    flipping = NucleiSegmenter(segmenter.model, _card(test_time_flips=True), batch_size=4)
    assert flipping.test_time_flips and not segmenter.test_time_flips
    maps = flipping.predict_maps(image)
    np.testing.assert_allclose(maps, expected, atol=1e-5)
    # An untrained network is not flip-equivariant, so averaging must change the maps.
    assert np.abs(maps - segmenter.predict_maps(image)).max() > 1e-4
    off = NucleiSegmenter(segmenter.model, _card(test_time_flips=True), test_time_flips=False)
    assert not off.test_time_flips


def test_segment_resamples_to_the_training_resolution(segmenter, rng) -> None:
    image = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    result = segmenter.segment(image, mpp=0.5)
    assert result.instances.shape == (40, 48) and result.mpp == 0.5


def test_segment_batch_matches_segment(segmenter, rng) -> None:
    tiles = rng.integers(0, 256, size=(5, TILE, TILE, 3), dtype=np.uint8)
    batched = segmenter.segment_batch(tiles)
    assert len(batched) == 5
    for tile, result in zip(tiles, batched, strict=True):
        single = segmenter.segment(tile)
        np.testing.assert_allclose(result.foreground, single.foreground, atol=1e-5)
        np.testing.assert_array_equal(result.instances, single.instances)
    # Other sizes and resolutions fall back to one-by-one segmentation.
    mixed = segmenter.segment_batch([tiles[0], tiles[1][:20]], mpp=0.25)
    assert mixed[1].instances.shape == (20, TILE)


def test_bad_input_raises(segmenter) -> None:
    with pytest.raises(InvalidImageError, match="uint8"):
        segmenter.segment(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ImageDimensionError, match=r"\(H, W, 3\)"):
        segmenter.segment(np.zeros((32, 32), np.uint8))
    with pytest.raises(ConfigError, match="mpp"):
        segmenter.segment(np.zeros((32, 32, 3), np.uint8), mpp=0.0)
    with pytest.raises(ImageDimensionError, match=r"\(N, H, W, 3\)"):
        segmenter.segment_batch(np.zeros((32, 32, 3), np.uint8))


def test_bad_overlap_and_card_raise() -> None:
    model = build_nuclei_model(input_shape=(TILE, TILE, 3), base_filters=2, depth=1)
    with pytest.raises(ConfigError, match="overlap"):
        NucleiSegmenter(model, _card(), overlap=TILE, warm_up=False)
    with pytest.raises(ModelError, match="postprocess"):
        card = _card()
        del card["postprocess"]
        NucleiSegmenter(model, card, warm_up=False)


def test_from_bundle_loads_a_saved_bundle(tmp_path: Path) -> None:
    model = build_nuclei_model(input_shape=(TILE, TILE, 3), base_filters=2, depth=1)
    save_model_bundle(model, "tiny_nuclei", _card(), models_dir=tmp_path)
    loaded = NucleiSegmenter.from_bundle(tmp_path / "tiny_nuclei.keras")
    assert loaded.postprocess.marker_threshold == 0.4
    assert loaded.segment(np.zeros((40, 40, 3), np.uint8)).instances.shape == (40, 40)
    with pytest.raises(ModelError, match="Available bundles"):
        NucleiSegmenter.from_bundle(tmp_path / "missing.keras")


@pytest.mark.slow
@pytest.mark.real_data
def test_shipped_bundle_finds_nuclei_on_a_real_tile(monuseg_root: Path) -> None:
    from utils.datasets import load_mask
    from utils.evaluation.nuclei import dice_score
    from utils.image_io import load_image

    segmenter = NucleiSegmenter.from_bundle()
    name = "TCGA-A7-A13E-01Z-00-DX1"
    image = load_image(monuseg_root / "Tissue_Images" / f"{name}.png").pixels[:512, :512]
    mask = load_mask([monuseg_root / "Binary_masks" / f"{name}.png"])[:512, :512]
    result = segmenter.segment(image, mpp=0.25)
    assert dice_score(mask, result.instances) > 0.6
    assert result.count > 50
