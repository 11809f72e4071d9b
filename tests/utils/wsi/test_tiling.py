from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.utils.wsi.fixtures import SLIDE_H, SLIDE_W
from utils.errors import ConfigError, ImageDimensionError
from utils.wsi.reader import open_slide
from utils.wsi.tiling import Tile, TileGrid, iter_tile_batches
from utils.wsi.tissue import TissueMask


def test_grid_covers_the_slide_with_overlap(synthetic_slide: Path) -> None:
    with open_slide(synthetic_slide) as slide:
        grid = TileGrid.for_slide(slide, tile_px=100, target_mpp=1.0, overlap=0.5)
    assert grid.size_level0 == 200  # 100 px at 1 µm/px over 0.5 µm/px pixels
    assert grid.stride_level0 == 100
    covered = np.zeros((SLIDE_H, SLIDE_W), bool)
    for tile in grid.tiles:
        assert tile.x + tile.size <= SLIDE_W and tile.y + tile.size <= SLIDE_H
        covered[tile.y : tile.y + tile.size, tile.x : tile.x + tile.size] = True
    assert covered.all()
    xs = sorted({tile.x for tile in grid.tiles})
    assert xs == list(range(0, SLIDE_W - 200 + 1, 100))


def test_last_window_is_flush_with_the_edge(synthetic_slide: Path) -> None:
    with open_slide(synthetic_slide) as slide:
        grid = TileGrid.for_slide(slide, tile_px=300, target_mpp=0.5, overlap=0.0)
    xs = sorted({tile.x for tile in grid.tiles})
    assert xs == [0, 300, 600, 900, 1200, 1300]


def test_tile_larger_than_the_slide(synthetic_slide: Path) -> None:
    with open_slide(synthetic_slide) as slide, pytest.raises(ImageDimensionError, match="smaller"):
        TileGrid.for_slide(slide, tile_px=256, target_mpp=4.0)


@pytest.mark.parametrize("overlap", [-0.1, 0.95])
def test_bad_overlap(synthetic_slide: Path, overlap: float) -> None:
    with open_slide(synthetic_slide) as slide, pytest.raises(ConfigError, match="overlap"):
        TileGrid.for_slide(slide, tile_px=64, target_mpp=1.0, overlap=overlap)


def test_background_tiles_are_skipped(synthetic_slide: Path) -> None:
    mask = np.zeros((120, 160), bool)
    mask[:60, :80] = True  # tissue only in the top-left quarter
    tissue = TissueMask(mask, (10.0, 10.0), 30.0)
    with open_slide(synthetic_slide) as slide:
        grid = TileGrid.for_slide(slide, tile_px=100, target_mpp=1.0, overlap=0.0)
    kept = grid.tissue_tiles(tissue, 0.5)
    assert kept and len(kept) < len(grid.tiles)
    assert all(tile.x < 800 and tile.y < 600 for tile in kept)


def test_batches_read_only_the_tiles(synthetic_slide: Path) -> None:
    tiles = [Tile(0, 0, 128), Tile(128, 0, 128), Tile(640, 480, 128)]
    with open_slide(synthetic_slide) as slide:
        reads = []
        original = slide.read_region

        def spy(x, y, width, height, out_size):
            reads.append((x, y, width, height, out_size))
            return original(x, y, width, height, out_size)

        slide.read_region = spy
        batches = list(iter_tile_batches(slide, tiles, 64, batch_size=2))
    assert [len(batch.tiles) for batch in batches] == [2, 1]
    assert batches[0].pixels.shape == (2, 64, 64, 3)
    assert sorted(reads) == sorted((t.x, t.y, 128, 128, 64) for t in tiles)


def test_bad_batch_size(synthetic_slide: Path) -> None:
    with open_slide(synthetic_slide) as slide, pytest.raises(ConfigError, match="batch size"):
        list(iter_tile_batches(slide, [Tile(0, 0, 64)], 64, batch_size=0))
