"""Synthetic pyramidal H&E-like TIFFs for tests and the memory benchmark.

:func:`write_synthetic_slide` writes a tiled, JPEG-compressed BigTIFF with a pyramid
in SubIFDs (the layout tiffslide reads as levels) tile by tile from a generator, so a
20,000 x 20,000 slide is written without ever holding it in memory. The picture is a
pale background with pink tissue ellipses sprinkled with purple "nuclei"; the densely
cellular ellipse is the one a cellularity or tumour map should find.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import numpy as np
import tifffile

__all__ = ["TISSUE_ELLIPSES", "write_synthetic_slide"]

#: (centre x, centre y, radius x, radius y, nuclei per 1000 px² at level 0), in slide
#: fractions. The second ellipse is densely cellular.
TISSUE_ELLIPSES: Final = (
    (0.32, 0.40, 0.22, 0.28, 1.0),
    (0.72, 0.62, 0.16, 0.20, 5.0),
)
_BACKGROUND: Final = (236, 234, 240)
_STROMA: Final = (226, 160, 200)
_NUCLEUS: Final = (92, 48, 140)
_TILE: Final = 256


def _tile_pixels(
    x0: int, y0: int, size: int, width: int, height: int, scale: float, seed: int, blank: bool
) -> np.ndarray:
    """One (size, size, 3) tile at pyramid scale ``scale`` (level-0 px per px)."""
    tile = np.empty((size, size, 3), dtype=np.uint8)
    tile[:] = _BACKGROUND
    if blank:
        return tile
    yy, xx = np.mgrid[y0 : y0 + size, x0 : x0 + size].astype(np.float32) * scale
    rng = np.random.default_rng([seed, x0, y0, int(scale)])
    for cx, cy, rx, ry, density in TISSUE_ELLIPSES:
        inside = ((xx / width - cx) / rx) ** 2 + ((yy / height - cy) / ry) ** 2 <= 1.0
        if not inside.any():
            continue
        tile[inside] = _STROMA
        count = rng.poisson(density * inside.sum() * scale * scale / 1000.0)
        if count == 0:
            continue
        rows = rng.integers(0, size, count)
        cols = rng.integers(0, size, count)
        radius = max(1, round(3.5 / scale))
        for row, col in zip(rows, cols, strict=True):
            if inside[row, col]:
                tile[max(0, row - radius) : row + radius, max(0, col - radius) : col + radius] = (
                    _NUCLEUS
                )
    return tile


def _tiles(
    level_w: int, level_h: int, width: int, height: int, scale: float, seed: int, blank: bool
) -> Iterator[np.ndarray]:
    for y0 in range(0, level_h, _TILE):
        for x0 in range(0, level_w, _TILE):
            yield _tile_pixels(x0, y0, _TILE, width, height, scale, seed, blank)


def write_synthetic_slide(
    path: str | Path,
    width: int,
    height: int,
    *,
    mpp: float | None = 0.25,
    levels: int | None = None,
    blank: bool = False,
    seed: int = 0,
) -> Path:
    """Write a synthetic tiled pyramidal TIFF.

    Args:
        path: Output file.
        width: Level-0 width in pixels.
        height: Level-0 height in pixels.
        mpp: Microns per pixel written as the TIFF resolution; ``None`` writes none
            (a slide without scale metadata).
        levels: Pyramid levels, each half the previous (default: halve until the
            longer side is under 512 px).
        blank: Background only (a slide without tissue).
        seed: Seed of the nuclei positions.

    Returns:
        ``path``.
    """
    path = Path(path)
    if levels is None:
        levels = 1
        while max(width, height) >> levels >= 512:
            levels += 1
    resolution = {}
    if mpp is not None:
        resolution = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    options = {"tile": (_TILE, _TILE), "compression": "jpeg", "photometric": "rgb"}
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for level in range(levels):
            level_w, level_h = max(1, width >> level), max(1, height >> level)
            tif.write(
                _tiles(level_w, level_h, width, height, float(2**level), seed, blank),
                shape=(level_h, level_w, 3),
                dtype=np.uint8,
                subifds=levels - 1 if level == 0 else None,
                subfiletype=1 if level else 0,
                metadata=None,
                **options,
                **resolution,
            )
    return path
