"""The whole-slide analysis: tissue, tiles, batched scoring, heatmaps, regions.

:func:`analyse_slide` is what the CLI, the app and the benchmark call. Memory stays
bounded: the slide is read tile by tile (:mod:`utils.wsi.tiling`) and scores go
straight into low-resolution accumulators (:mod:`utils.wsi.aggregate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from utils.errors import ConfigError, NoTissueError
from utils.wsi.aggregate import HeatmapAccumulator, RegionSummary, find_regions
from utils.wsi.reader import Slide
from utils.wsi.scorers import MapSpec, TileScorer
from utils.wsi.tiling import TileGrid, iter_tile_batches
from utils.wsi.tissue import TissueMask, detect_tissue

__all__ = ["DEFAULT_TARGET_MPP", "ProgressCallback", "WsiOptions", "WsiResult", "analyse_slide"]

#: Tile scale when neither the user nor the model card gives one (20x).
DEFAULT_TARGET_MPP: Final = 0.5

#: ``progress(tiles_done, tiles_total)``, called after every batch.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class WsiOptions:
    """Settings of one analysis (``None``: the model's or the module's default).

    Attributes:
        threshold: Detection threshold on the scorer's detection map.
        target_mpp: Microns per tile pixel; default the model card's, else 0.5.
        overlap: Share of a tile overlapping its neighbour.
        batch_size: Tiles per forward pass.
        min_tissue: Tiles with less tissue than this share are skipped unread.
        min_region_mm2: Smaller detected regions are dropped.
        sigma_um: Gaussian smoothing of the heatmaps, in microns (0: none); default
            half a tile.
        heatmap_max_side: Longer side of the heatmap and tissue grid, in cells.
    """

    threshold: float | None = None
    target_mpp: float | None = None
    overlap: float = 0.25
    batch_size: int = 16
    min_tissue: float = 0.25
    min_region_mm2: float = 0.01
    sigma_um: float | None = None
    heatmap_max_side: int = 1024

    def validate(self) -> None:
        """Raise ConfigError on an out-of-range option."""
        if not 0.0 <= self.min_tissue <= 1.0:
            raise ConfigError(f"min tissue share must be in [0, 1]; got {self.min_tissue!r}.")
        if self.sigma_um is not None and not self.sigma_um >= 0:
            raise ConfigError(f"smoothing sigma must be >= 0 µm; got {self.sigma_um!r}.")
        if not 16 <= self.heatmap_max_side <= 8192:
            raise ConfigError(
                f"heatmap side must be between 16 and 8192 cells; got {self.heatmap_max_side!r}."
            )


@dataclass
class WsiResult:
    """Everything one analysis produced (arrays at the heatmap grid resolution)."""

    slide: dict[str, Any]
    model: str
    map_specs: tuple[MapSpec, ...]
    detection_map: str
    threshold: float
    target_mpp: float
    tile_px: int
    thumbnail: np.ndarray
    tissue: TissueMask
    maps: np.ndarray
    summary: RegionSummary
    tiles_total: int
    tiles_scored: int
    seconds: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def map(self, name: str) -> np.ndarray:
        """The (h, w) heatmap called ``name``."""
        names = [spec.name for spec in self.map_specs]
        if name not in names:
            raise ConfigError(f"No map {name!r}; this analysis has {', '.join(names)}.")
        return self.maps[names.index(name)]

    @property
    def tiles_per_second(self) -> float:
        """Scored tiles per second of reading + inference."""
        elapsed = self.seconds.get("tiles", 0.0)
        return self.tiles_scored / elapsed if elapsed > 0 else 0.0

    def map_statistics(self) -> dict[str, dict[str, Any]]:
        """Unit, mean, median and 95th percentile of every map over scored tissue."""
        stats: dict[str, dict[str, Any]] = {}
        for spec, values in zip(self.map_specs, self.maps, strict=True):
            inside = values[self.tissue.mask & np.isfinite(values)]
            stats[spec.name] = {
                "unit": spec.unit,
                "mean": float(inside.mean()) if inside.size else None,
                "median": float(np.median(inside)) if inside.size else None,
                "p95": float(np.percentile(inside, 95)) if inside.size else None,
            }
        return stats

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable summary written to ``results.json``."""
        return {
            "slide": self.slide,
            "model": self.model,
            "tile_px": self.tile_px,
            "target_mpp": self.target_mpp,
            "options": self.options,
            "detection_map": self.detection_map,
            "threshold": self.threshold,
            "tiles": {
                "total": self.tiles_total,
                "scored": self.tiles_scored,
                "skipped_background": self.tiles_total - self.tiles_scored,
                "per_second": round(self.tiles_per_second, 2),
            },
            "seconds": {key: round(value, 3) for key, value in self.seconds.items()},
            "tissue": {
                "area_mm2": self.summary.tissue_area_mm2,
                "fraction_of_slide": self.tissue.fraction,
                "saturation_threshold": self.tissue.threshold,
            },
            "maps": self.map_statistics(),
            "burden_percent": self.summary.burden_percent,
            "detected_area_mm2": self.summary.region_area_mm2,
            "regions": [region.to_dict() for region in self.summary.regions],
        }


def _grid_shape(slide: Slide, max_side: int) -> tuple[tuple[int, int], tuple[float, float]]:
    scale = min(1.0, max_side / max(slide.width, slide.height))
    width = max(1, round(slide.width * scale))
    height = max(1, round(slide.height * scale))
    return (height, width), (slide.width / width, slide.height / height)


def analyse_slide(
    slide: Slide,
    scorer: TileScorer,
    options: WsiOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> WsiResult:
    """Run the whole-slide analysis.

    Args:
        slide: The open slide.
        scorer: The tile model.
        options: Settings; defaults when ``None``.
        progress: Called with ``(done, total)`` tiles after every batch.

    Returns:
        Heatmaps, regions, burden and timings.

    Raises:
        NoTissueError: No tissue, or no tile has enough tissue to score.
        ConfigError: An option is out of range.
        ImageDimensionError: The slide is smaller than one tile.
        CorruptImageError: The slide's data cannot be decoded.
    """
    options = options or WsiOptions()
    options.validate()
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    shape, downsample = _grid_shape(slide, options.heatmap_max_side)
    thumbnail = slide.thumbnail(max(shape))
    if thumbnail.shape[:2] != shape:
        import cv2

        thumbnail = cv2.resize(thumbnail, shape[::-1], interpolation=cv2.INTER_AREA)
    tissue = detect_tissue(thumbnail, downsample)
    seconds["tissue"] = time.perf_counter() - started

    target_mpp = options.target_mpp or scorer.mpp or DEFAULT_TARGET_MPP
    grid = TileGrid.for_slide(
        slide, tile_px=scorer.tile_px, target_mpp=target_mpp, overlap=options.overlap
    )
    tiles = grid.tissue_tiles(tissue, options.min_tissue)
    if not tiles:
        raise NoTissueError(
            f"No tile of {grid.size_level0} px has at least {options.min_tissue:.0%} tissue; "
            f"the tissue covers {tissue.fraction:.2%} of the slide. Lower the minimum "
            "tissue share or check the slide."
        )
    accumulator = HeatmapAccumulator(shape, downsample, len(scorer.maps))
    tile_start = time.perf_counter()
    done = 0
    if progress is not None:
        progress(0, len(tiles))
    for batch in iter_tile_batches(slide, tiles, grid.tile_px, options.batch_size):
        accumulator.add(batch.tiles, scorer.score(batch.pixels, target_mpp))
        done += len(batch.tiles)
        if progress is not None:
            progress(done, len(tiles))
    seconds["tiles"] = time.perf_counter() - tile_start

    sigma_um = options.sigma_um
    if sigma_um is None:
        sigma_um = 0.5 * grid.size_level0 * slide.mpp
    sigma_cells = sigma_um / (slide.mpp * float(np.mean(downsample)))
    maps = accumulator.finalize(sigma_cells)
    names = [spec.name for spec in scorer.maps]
    threshold = scorer.default_threshold if options.threshold is None else options.threshold
    summary = find_regions(
        maps[names.index(scorer.detection_map)],
        tissue.mask,
        threshold=threshold,
        downsample=downsample,
        mpp=slide.mpp,
        min_area_mm2=options.min_region_mm2,
    )
    seconds["total"] = time.perf_counter() - started
    return WsiResult(
        slide=slide.properties(),
        model=scorer.name,
        map_specs=tuple(scorer.maps),
        detection_map=scorer.detection_map,
        threshold=float(threshold),
        target_mpp=float(target_mpp),
        tile_px=grid.tile_px,
        thumbnail=thumbnail,
        tissue=tissue,
        maps=maps,
        summary=summary,
        tiles_total=len(grid.tiles),
        tiles_scored=len(tiles),
        seconds=seconds,
        options={
            "overlap": options.overlap,
            "batch_size": options.batch_size,
            "min_tissue": options.min_tissue,
            "min_region_mm2": options.min_region_mm2,
            "sigma_um": float(sigma_um),
            "tile_level0_px": grid.size_level0,
            "stride_level0_px": grid.stride_level0,
            "heatmap_downsample": [float(d) for d in downsample],
        },
    )
