"""Stitching tile scores into slide heatmaps, and heatmaps into measured regions.

:class:`HeatmapAccumulator` keeps, on a low-resolution grid covering the slide, a sum of
scores and a sum of weights per channel: each tile adds its (g x g) score map, resized
to its footprint, with weight 1 per covered cell, so overlapping tiles are averaged.
:meth:`HeatmapAccumulator.finalize` smooths with a Gaussian by normalised convolution
(smoothed sums over smoothed weights), so uncovered background neither drags the
average down nor leaves holes. :func:`find_regions` thresholds one map inside the
tissue, labels connected components, drops the small ones and measures the rest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from scipy import ndimage
from skimage.measure import label, regionprops

from utils.errors import ConfigError
from utils.wsi.tiling import Tile

__all__ = ["HeatmapAccumulator", "Region", "RegionSummary", "find_regions"]


class HeatmapAccumulator:
    """Overlap-weighted averages of tile score maps on a (height, width) grid.

    Args:
        shape: (height, width) of the heatmap grid.
        downsample: Level-0 pixels per grid cell (x, y).
        channels: Number of score maps.
    """

    def __init__(
        self, shape: tuple[int, int], downsample: tuple[float, float], channels: int
    ) -> None:
        """Allocate the sums: 2 x channels float32 grids of ``shape``."""
        self.shape = shape
        self.downsample = downsample
        self._sums = np.zeros((channels, *shape), dtype=np.float32)
        self._weights = np.zeros((channels, *shape), dtype=np.float32)

    def add(self, tiles: list[Tile], scores: np.ndarray) -> None:
        """Add (N, C, g, g) ``scores`` of ``tiles``; NaN cells add nothing."""
        sx, sy = self.downsample
        height, width = self.shape
        for tile, maps in zip(tiles, scores, strict=True):
            x0, y0 = round(tile.x / sx), round(tile.y / sy)
            x1 = min(width, max(x0 + 1, round((tile.x + tile.size) / sx)))
            y1 = min(height, max(y0 + 1, round((tile.y + tile.size) / sy)))
            for channel, values in enumerate(maps):
                # Nearest keeps each grid cell's own value (no blur across NaN cells).
                patch = cv2.resize(values, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
                valid = np.isfinite(patch)
                self._sums[channel, y0:y1, x0:x1] += np.where(valid, patch, 0.0)
                self._weights[channel, y0:y1, x0:x1] += valid

    @property
    def coverage(self) -> np.ndarray:
        """(h, w) bool: cells that any tile scored."""
        return self._weights.max(axis=0) > 0

    def finalize(self, sigma_cells: float) -> np.ndarray:
        """(C, h, w) float32 smoothed averages; NaN where no tile reached.

        Args:
            sigma_cells: Gaussian sigma in grid cells (0: no smoothing).
        """
        sums, weights = self._sums, self._weights
        if sigma_cells > 0:
            sigma = (0, sigma_cells, sigma_cells)
            sums = ndimage.gaussian_filter(sums, sigma, mode="constant")
            weights = ndimage.gaussian_filter(weights, sigma, mode="constant")
        with np.errstate(invalid="ignore", divide="ignore"):
            maps = sums / weights
        maps[:, ~self.coverage] = np.nan
        maps[weights <= 1e-6] = np.nan
        return maps.astype(np.float32)


@dataclass(frozen=True)
class Region:
    """One detected region, coordinates in level-0 pixels.

    Attributes:
        id: 1-based index, largest region first.
        bbox: (x, y, width, height) in level-0 pixels.
        area_mm2: Area in mm².
        mean_score: Mean of the detection map inside.
        max_score: Its maximum.
        polygon: Outer contour as [[x, y], ...] in level-0 pixels, closed.
    """

    id: int
    bbox: tuple[int, int, int, int]
    area_mm2: float
    mean_score: float
    max_score: float
    polygon: list[list[float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class RegionSummary:
    """The regions of a slide with their total burden."""

    regions: list[Region]
    mask: np.ndarray
    tissue_area_mm2: float
    region_area_mm2: float

    @property
    def burden_percent(self) -> float:
        """Detected area as a percentage of the tissue area."""
        if self.tissue_area_mm2 <= 0:
            return 0.0
        return 100.0 * self.region_area_mm2 / self.tissue_area_mm2


def _outer_polygon(component: np.ndarray, offset: tuple[int, int], scale: tuple[float, float]):
    contours, _ = cv2.findContours(
        component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    # Half-cell tolerance drops the staircase of the cell grid, keeps the shape.
    contour = cv2.approxPolyDP(max(contours, key=cv2.contourArea), 0.5, True)
    contour = contour.reshape(-1, 2).astype(np.float64)
    if len(contour) < 3:  # a one-cell or one-line region: its bounding box
        rows, cols = np.nonzero(component)
        x0, x1 = cols.min(), cols.max() + 1
        y0, y1 = rows.min(), rows.max() + 1
        contour = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64) - 0.5
    # Contour points are cell indices: +0.5 puts them on the cell centres in level 0.
    points = [
        [
            round(float((x + 0.5 + offset[0]) * scale[0]), 1),
            round(float((y + 0.5 + offset[1]) * scale[1]), 1),
        ]
        for x, y in contour
    ]
    return [*points, points[0]]


def find_regions(
    score_map: np.ndarray,
    tissue: np.ndarray,
    *,
    threshold: float,
    downsample: tuple[float, float],
    mpp: float,
    min_area_mm2: float = 0.0,
) -> RegionSummary:
    """Threshold ``score_map`` inside ``tissue`` into connected regions and measure them.

    Args:
        score_map: (h, w) detection map (NaN: not scored).
        tissue: (h, w) bool tissue mask on the same grid.
        threshold: Cells with score >= threshold are detected.
        downsample: Level-0 pixels per grid cell (x, y).
        mpp: Microns per level-0 pixel.
        min_area_mm2: Smaller regions are dropped.

    Returns:
        The regions, largest first, and the burden.

    Raises:
        ConfigError: ``threshold`` is not finite or ``min_area_mm2`` is negative.
    """
    if not np.isfinite(threshold):
        raise ConfigError(f"threshold must be a finite number; got {threshold!r}.")
    if not min_area_mm2 >= 0:
        raise ConfigError(f"minimum region area must be >= 0 mm²; got {min_area_mm2!r}.")
    if score_map.shape != tissue.shape:
        raise ConfigError(f"score map {score_map.shape} and tissue {tissue.shape} differ.")
    cell_mm2 = downsample[0] * downsample[1] * (mpp / 1000.0) ** 2
    detected = np.nan_to_num(score_map, nan=-np.inf) >= threshold
    detected &= tissue
    labels = label(detected, connectivity=2)
    kept: list[tuple[float, Any]] = []
    for props in regionprops(labels):
        area = float(props.area) * cell_mm2
        if area >= min_area_mm2:
            kept.append((area, props))
    kept.sort(key=lambda item: -item[0])
    regions = []
    mask = np.zeros(detected.shape, dtype=bool)
    for index, (area, props) in enumerate(kept, start=1):
        row0, col0, row1, col1 = props.bbox
        values = score_map[props.coords[:, 0], props.coords[:, 1]]
        mask[props.coords[:, 0], props.coords[:, 1]] = True
        sx, sy = downsample
        regions.append(
            Region(
                id=index,
                bbox=(
                    round(col0 * sx),
                    round(row0 * sy),
                    round((col1 - col0) * sx),
                    round((row1 - row0) * sy),
                ),
                area_mm2=area,
                mean_score=float(np.mean(values)),
                max_score=float(np.max(values)),
                polygon=_outer_polygon(props.image, (col0, row0), downsample),
            )
        )
    tissue_mm2 = float(tissue.sum()) * cell_mm2
    return RegionSummary(regions, mask, tissue_mm2, float(sum(r.area_mm2 for r in regions)))
