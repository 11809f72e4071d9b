from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import helpers.histopathology as histo
from tests.utils.wsi.fixtures import ThresholdNucleiSegmenter
from utils.errors import ConfigError, EmptyFileError, ImageTooLargeError
from utils.wsi.pipeline import WsiOptions
from utils.wsi.scorers import NucleiScorer


@pytest.fixture
def in_models_dir(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(histo, "MODELS_DIR", models_dir)
    return models_dir


@pytest.fixture(scope="module")
def result(synthetic_slide: Path):
    scorer = NucleiScorer(ThresholdNucleiSegmenter(tile_px=64, mpp=0.5))
    return histo.run_slide_analysis(
        synthetic_slide, scorer, WsiOptions(threshold=0.12, heatmap_max_side=300)
    )


def test_only_rgb_tile_models_are_offered(in_models_dir: Path) -> None:
    choices = histo.slide_model_choices()
    assert [choice.bundle for choice in choices] == ["tiny_patch"]  # not the grayscale one
    assert choices[0].kind == "classifier" and "32 px tiles" in choices[0].label
    assert choices[0].default_threshold == 0.5
    assert not histo.nuclei_installed()


def test_save_upload_keeps_one_private_copy(synthetic_slide: Path) -> None:
    data = synthetic_slide.read_bytes()
    path = histo.save_upload(data, "Slide.TIF")
    assert path.suffix == ".tif" and path.read_bytes() == data
    assert histo.save_upload(data, "again.tif") == path


@pytest.mark.parametrize(
    ("data", "name", "error", "message"),
    [
        (b"", "empty.svs", EmptyFileError, "is empty"),
        (b"II*\x00", "notes.docx", ConfigError, "not a slide type"),
    ],
)
def test_save_upload_rejects(data: bytes, name: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        histo.save_upload(data, name)


def test_save_upload_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(histo, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(ImageTooLargeError, match="the limit is"):
        histo.save_upload(b"x" * 11, "big.svs")


def test_views_and_tables(result) -> None:
    view = histo.heatmap_view(result, "cellularity", 0.5)
    assert view.shape == result.thumbnail.shape and view.dtype == np.uint8
    assert not np.array_equal(view, result.thumbnail)  # the map is drawn on the tissue
    assert histo.detections_view(result).shape == result.thumbnail.shape
    rows = histo.region_rows(result)
    assert rows is not None and len(rows) == len(result.summary.regions)
    assert rows["area (mm²)"].iloc[0] == pytest.approx(result.summary.regions[0].area_mm2, abs=1e-4)
    files = histo.results_files(result)
    assert json.loads(files["regions.geojson"])["type"] == "FeatureCollection"
    assert json.loads(files["results.json"])["model"] == "threshold_nuclei"


def test_region_crop_is_centred_at_the_analysis_scale(synthetic_slide: Path, result) -> None:
    crop, mpp = histo.region_crop(synthetic_slide, result, 1)
    assert crop.shape == (histo.REGION_CROP_PX, histo.REGION_CROP_PX, 3)
    assert mpp == pytest.approx(result.target_mpp)
    with pytest.raises(ConfigError, match="No region 99"):
        histo.region_crop(synthetic_slide, result, 99)


def test_nuclei_view_draws_boundaries_and_measures(result, synthetic_slide: Path) -> None:
    pytest.importorskip("utils.histo.morphometry")
    crop, mpp = histo.region_crop(synthetic_slide, result, 1)
    segmenter = ThresholdNucleiSegmenter()
    segmenter.segment = lambda rgb, mpp=None: segmenter.segment_batch(rgb[None])[0]
    overlay, morphometry = histo.nuclei_view(segmenter, crop, mpp)
    assert overlay.shape == crop.shape
    assert (overlay == (0, 255, 0)).all(axis=2).any()
    assert len(morphometry.per_nucleus) > 0


def test_nuclei_model_is_offered_first(nuclei_models_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(histo, "MODELS_DIR", nuclei_models_dir)
    choices = histo.slide_model_choices()
    assert [choice.kind for choice in choices] == ["nuclei", "classifier"]
    assert choices[0].default_threshold == NucleiScorer.default_threshold
    assert histo.nuclei_installed()
