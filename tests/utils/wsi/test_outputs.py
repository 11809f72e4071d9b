from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.utils.wsi.fixtures import SLIDE_H, SLIDE_W, ThresholdNucleiSegmenter
from utils.wsi.outputs import OUTPUT_FILES, colour_map, write_outputs
from utils.wsi.pipeline import WsiOptions, analyse_slide
from utils.wsi.reader import open_slide
from utils.wsi.scorers import NucleiScorer


@pytest.fixture(scope="module")
def written(synthetic_slide: Path, tmp_path_factory: pytest.TempPathFactory):
    scorer = NucleiScorer(ThresholdNucleiSegmenter(tile_px=64, mpp=0.5))
    with open_slide(synthetic_slide) as slide:
        result = analyse_slide(slide, scorer, WsiOptions(threshold=0.12, heatmap_max_side=300))
    return result, write_outputs(result, tmp_path_factory.mktemp("out"))


def test_every_file_is_written(written) -> None:
    result, paths = written
    assert set(paths) == set(OUTPUT_FILES)
    for name in ("heatmap.png", "overlay.png", "detections.png"):
        image = cv2.imread(str(paths[name]), cv2.IMREAD_UNCHANGED)
        assert image.shape[:2] == result.thumbnail.shape[:2]
    assert cv2.imread(str(paths["heatmap.png"]), cv2.IMREAD_UNCHANGED).shape[2] == 4
    report = cv2.imread(str(paths["analysis_report.png"]))
    assert report.shape[0] > 800 and report.shape[1] > 1200
    arrays = np.load(paths["heatmaps.npz"])
    assert arrays["cellularity"].shape == result.thumbnail.shape[:2]


def test_results_json_round_trips(written) -> None:
    result, paths = written
    data = json.loads(paths["results.json"].read_text())
    assert data["burden_percent"] == pytest.approx(result.summary.burden_percent)
    assert len(data["regions"]) == len(result.summary.regions)


def test_geojson_is_a_valid_feature_collection_in_level0_pixels(written) -> None:
    result, paths = written
    data = json.loads(paths["regions.geojson"].read_text())
    assert data["type"] == "FeatureCollection"
    assert len(data["features"]) == len(result.summary.regions) >= 1
    for feature, region in zip(data["features"], result.summary.regions, strict=True):
        assert feature["type"] == "Feature"
        assert feature["geometry"]["type"] == "Polygon"
        [ring] = feature["geometry"]["coordinates"]
        assert len(ring) >= 4 and ring[0] == ring[-1]  # a closed linear ring
        xs, ys = zip(*ring, strict=True)
        assert min(xs) >= 0 and max(xs) <= SLIDE_W and min(ys) >= 0 and max(ys) <= SLIDE_H
        x, y, w, h = region.bbox
        assert x <= min(xs) and max(xs) <= x + w and y <= min(ys) and max(ys) <= y + h
        props = feature["properties"]
        assert props["objectType"] == "annotation"
        assert props["classification"]["name"].startswith("Nuclear area fraction")
        assert props["measurements"]["area_mm2"] == pytest.approx(region.area_mm2, abs=1e-5)


def test_colour_map_is_transparent_outside_the_mask() -> None:
    values = np.array([[0.0, 1.0], [np.nan, 0.5]], np.float32)
    mask = np.array([[True, True], [True, False]])
    rgba = colour_map(values, mask, (0.0, 1.0))
    assert rgba[..., 3].tolist() == [[255, 255], [0, 0]]
    assert not np.array_equal(rgba[0, 0, :3], rgba[0, 1, :3])
