"""Sliding-window tiles at a target magnification, streamed batch by batch.

A :class:`TileGrid` places square windows of ``tile_px`` pixels at ``target_mpp`` over
the slide, ``overlap`` apart, with the last row and column pushed back to end on the
slide's edge (every pixel is covered, no window reads outside the slide). Windows whose
tissue share is below a floor are skipped before any pixel is read.
:func:`iter_tile_batches` then reads region by region through
:meth:`utils.wsi.reader.Slide.read_region`, one batch at a time, with one batch read
ahead in a thread while the model scores the previous one. Peak memory is a few
batches, whatever the slide size.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from utils.errors import ConfigError, ImageDimensionError
from utils.wsi.reader import Slide
from utils.wsi.tissue import TissueMask

__all__ = ["Tile", "TileBatch", "TileGrid", "iter_tile_batches"]


@dataclass(frozen=True)
class Tile:
    """One window in level-0 pixels."""

    x: int
    y: int
    size: int


@dataclass(frozen=True)
class TileBatch:
    """Tiles and their pixels, (N, tile_px, tile_px, 3) uint8."""

    tiles: list[Tile]
    pixels: np.ndarray


def _positions(length: int, window: int, stride: int) -> list[int]:
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)  # last window flush with the edge
    return starts


@dataclass(frozen=True)
class TileGrid:
    """Where the windows of a slide lie.

    Attributes:
        tile_px: Window side in model pixels.
        target_mpp: Microns per model pixel.
        overlap: Share of a window shared with its neighbour, in [0, 0.9].
        size_level0: Window side in level-0 pixels.
        stride_level0: Step between windows in level-0 pixels.
        tiles: Every window (before tissue filtering).
    """

    tile_px: int
    target_mpp: float
    overlap: float
    size_level0: int
    stride_level0: int
    tiles: tuple[Tile, ...]

    @classmethod
    def for_slide(
        cls, slide: Slide, *, tile_px: int, target_mpp: float, overlap: float = 0.25
    ) -> TileGrid:
        """Lay out windows of ``tile_px`` at ``target_mpp`` over ``slide``.

        Raises:
            ConfigError: ``overlap`` is outside [0, 0.9] or ``target_mpp`` is not positive.
            ImageDimensionError: The slide is smaller than one window.
        """
        if not 0.0 <= overlap <= 0.9:
            raise ConfigError(f"overlap must be between 0 and 0.9; got {overlap!r}.")
        if not target_mpp > 0:
            raise ConfigError(f"target mpp must be positive; got {target_mpp!r}.")
        size = max(1, round(tile_px * target_mpp / slide.mpp))
        if size > min(slide.width, slide.height):
            raise ImageDimensionError(
                f"Slide {slide.path.name} is {slide.width} x {slide.height} px at "
                f"{slide.mpp:.3f} µm/px, smaller than one {tile_px}-px tile at "
                f"{target_mpp:.3f} µm/px ({size} px at level 0)."
            )
        stride = max(1, round(size * (1.0 - overlap)))
        tiles = tuple(
            Tile(x, y, size)
            for y in _positions(slide.height, size, stride)
            for x in _positions(slide.width, size, stride)
        )
        return cls(tile_px, target_mpp, overlap, size, stride, tiles)

    def tissue_tiles(self, tissue: TissueMask, min_tissue: float) -> list[Tile]:
        """The windows whose tissue share is at least ``min_tissue`` (background skipped)."""
        return [
            tile
            for tile in self.tiles
            if tissue.fraction_in(tile.x, tile.y, tile.size, tile.size) >= min_tissue
        ]


def _read_batch(slide: Slide, tiles: list[Tile], tile_px: int) -> TileBatch:
    pixels = np.empty((len(tiles), tile_px, tile_px, 3), dtype=np.uint8)
    for index, tile in enumerate(tiles):
        pixels[index] = slide.read_region(tile.x, tile.y, tile.size, tile.size, tile_px)
    return TileBatch(tiles, pixels)


def iter_tile_batches(
    slide: Slide, tiles: list[Tile], tile_px: int, batch_size: int
) -> Iterator[TileBatch]:
    """Read ``tiles`` in batches of ``batch_size``, reading the next batch ahead.

    Raises:
        ConfigError: ``batch_size`` is not a positive integer.
        CorruptImageError: A tile cannot be decoded.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer; got {batch_size!r}.")
    chunks = [tiles[start : start + batch_size] for start in range(0, len(tiles), batch_size)]
    if not chunks:
        return
    # Decoding (JPEG tiles, resizing) releases the GIL, so it overlaps model inference.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsi-read") as pool:
        pending = pool.submit(_read_batch, slide, chunks[0], tile_px)
        for chunk in chunks[1:]:
            batch = pending.result()
            pending = pool.submit(_read_batch, slide, chunk, tile_px)
            yield batch
        yield pending.result()
