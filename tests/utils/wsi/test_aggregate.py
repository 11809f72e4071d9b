from __future__ import annotations

import numpy as np
import pytest

from utils.errors import ConfigError
from utils.wsi.aggregate import HeatmapAccumulator, find_regions
from utils.wsi.tiling import Tile


def test_overlapping_tiles_are_averaged() -> None:
    acc = HeatmapAccumulator((10, 20), (10.0, 10.0), channels=1)
    acc.add([Tile(0, 0, 100), Tile(50, 0, 100)], np.array([1.0, 3.0]).reshape(2, 1, 1, 1))
    maps = acc.finalize(0)
    assert maps[0, 0, 0] == 1.0
    assert maps[0, 0, 7] == 2.0  # cells 5..9 are covered by both tiles
    assert maps[0, 0, 12] == 3.0
    assert np.isnan(maps[0, 0, 17])  # no tile there
    assert acc.coverage.sum() == 10 * 15


def test_grid_maps_land_in_their_cells_and_nan_adds_nothing() -> None:
    acc = HeatmapAccumulator((4, 4), (1.0, 1.0), channels=2)
    values = np.array([[[[1.0, 2.0], [3.0, np.nan]], [[5.0, 5.0], [5.0, 5.0]]]])
    acc.add([Tile(0, 0, 4)], values)
    maps = acc.finalize(0)
    assert maps[0, 0, 0] == 1.0 and maps[0, 0, 3] == 2.0 and maps[0, 3, 0] == 3.0
    assert np.isnan(maps[0, 3, 3])
    assert np.all(maps[1] == 5.0)


def test_smoothing_keeps_a_constant_map_constant() -> None:
    acc = HeatmapAccumulator((30, 30), (1.0, 1.0), channels=1)
    acc.add([Tile(5, 5, 20)], np.full((1, 1, 1, 1), 0.7))
    maps = acc.finalize(3.0)
    covered = acc.coverage
    assert np.allclose(maps[0][covered], 0.7, atol=1e-5)
    assert np.isnan(maps[0][~covered]).all()


def test_regions_are_measured_in_mm2_and_burden() -> None:
    score = np.zeros((100, 100), np.float32)
    score[10:30, 10:40] = 0.9  # 600 cells
    score[60:62, 60:62] = 0.9  # 4 cells: below the minimum area
    tissue = np.zeros((100, 100), bool)
    tissue[:, :50] = True
    tissue[60:70, 60:70] = True
    # 1 cell = 10 x 10 level-0 px at 0.5 µm/px = 25 µm² = 2.5e-5 mm².
    summary = find_regions(
        score, tissue, threshold=0.5, downsample=(10.0, 10.0), mpp=0.5, min_area_mm2=0.001
    )
    assert len(summary.regions) == 1
    region = summary.regions[0]
    assert region.area_mm2 == pytest.approx(600 * 2.5e-5)
    assert region.bbox == (100, 100, 300, 200)
    assert region.mean_score == pytest.approx(0.9)
    assert summary.tissue_area_mm2 == pytest.approx(5100 * 2.5e-5)
    assert summary.burden_percent == pytest.approx(100 * 600 / 5100)
    xs = [point[0] for point in region.polygon]
    ys = [point[1] for point in region.polygon]
    assert region.polygon[0] == region.polygon[-1]
    assert min(xs) >= 100 and max(xs) <= 400 and min(ys) >= 100 and max(ys) <= 300


def test_detections_outside_tissue_or_unscored_are_ignored() -> None:
    score = np.full((20, 20), np.nan, np.float32)
    score[:10] = 0.9
    tissue = np.zeros((20, 20), bool)
    tissue[:, :5] = True
    summary = find_regions(score, tissue, threshold=0.5, downsample=(1.0, 1.0), mpp=1.0)
    assert len(summary.regions) == 1
    assert summary.regions[0].bbox == (0, 0, 5, 10)
    assert summary.burden_percent == pytest.approx(50.0)


def test_single_cell_region_gets_a_box_polygon() -> None:
    score = np.zeros((5, 5), np.float32)
    score[2, 2] = 1.0
    summary = find_regions(
        score, np.ones((5, 5), bool), threshold=0.5, downsample=(4.0, 4.0), mpp=1
    )
    assert len(summary.regions[0].polygon) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"threshold": float("nan")}, "threshold"), ({"min_area_mm2": -1.0}, "minimum region")],
)
def test_bad_region_settings(kwargs: dict, message: str) -> None:
    options = {"threshold": 0.5, "downsample": (1.0, 1.0), "mpp": 1.0, **kwargs}
    with pytest.raises(ConfigError, match=message):
        find_regions(np.zeros((4, 4)), np.ones((4, 4), bool), **options)
