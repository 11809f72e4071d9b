"""Nucleus segmentation of H&E images with a shipped two-head bundle.

:class:`NucleiSegmenter` runs the bundle (see :mod:`utils.models.nuclei`) over an RGB
image of any size by overlapping tiles of the bundle's input size, blends the tiles with
a weight that falls towards the tile edges (where a fully convolutional network sees
the least context), and separates the nuclei with the watershed of
:mod:`utils.histo.instances` using the card's ``postprocess`` parameters.

Images at another resolution than the training one (card ``training_mpp``, about
0.25 um/px at 40x) are resampled to it when ``mpp`` is given, and the maps are mapped
back to the input's pixel grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import cv2
import keras
import numpy as np

from utils.errors import ConfigError, ImageDimensionError
from utils.histo._checks import check_rgb_uint8
from utils.histo.instances import WatershedConfig, separate_instances
from utils.inference.predictor import BundlePredictor

__all__ = ["DEFAULT_NUCLEI_BUNDLE", "NucleiResult", "NucleiSegmenter", "tile_starts"]

DEFAULT_NUCLEI_BUNDLE: Final = "nuclei_segmenter"
#: MoNuSeg's 40x scans are about 0.25 um/px; used when a card does not say.
DEFAULT_TRAINING_MPP: Final = 0.25
#: Resample only when the resolutions differ by more than this fraction.
_MPP_TOLERANCE: Final = 0.1


@dataclass
class NucleiResult:
    """Nuclei found in one image.

    Attributes:
        foreground: float32 (H, W) nucleus probability.
        instances: int32 (H, W) label map, 0 = background, nuclei 1..count.
        count: Number of nuclei.
        distance: float32 (H, W) predicted scaled distance to the nucleus border.
        mpp: Microns per pixel of the input, when known.
    """

    foreground: np.ndarray
    instances: np.ndarray
    count: int
    distance: np.ndarray | None = None
    mpp: float | None = None


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with >= ``overlap``.

    The last tile ends exactly at ``length`` (``length >= tile`` is required).
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _blend_weight(tile: int, overlap: int) -> np.ndarray:
    """(tile, tile) weight: 1 inside, ramping linearly to a small value over ``overlap``."""
    ramp = np.ones(tile, dtype=np.float32)
    if overlap > 0:
        edge = np.linspace(0.05, 1.0, overlap, dtype=np.float32)
        ramp[:overlap] = edge
        ramp[-overlap:] = edge[::-1]
    return np.outer(ramp, ramp)


class NucleiSegmenter(BundlePredictor):
    """Segment and separate nuclei in H&E images with a nuclei bundle.

    Build with :meth:`from_bundle` (``"nuclei_segmenter"`` by default).
    """

    TASK: ClassVar[str] = "segmentation"
    DEFAULT_BUNDLE: ClassVar[str] = DEFAULT_NUCLEI_BUNDLE
    DEFAULT_BATCH_SIZE: ClassVar[int] = 8

    def __init__(
        self,
        model: keras.Model,
        card: dict[str, Any],
        *,
        batch_size: int | None = None,
        warm_up: bool = True,
        overlap: int | None = None,
        test_time_flips: bool | None = None,
    ) -> None:
        """See :class:`~utils.inference.predictor.BundlePredictor`.

        Args:
            model: Model mapping (N, H, W, 3) to (N, H, W, 2) maps.
            card: Its card; ``postprocess`` holds :class:`WatershedConfig` fields.
            batch_size: Tiles per forward pass.
            warm_up: Trace the forward pass now.
            overlap: Pixels shared by neighbouring tiles (default: a quarter of a tile).
            test_time_flips: Average the maps over the four flips of each tile (4x the
                compute); default: the card's ``test_time_flips`` (False when absent).

        Raises:
            ModelError: The card is invalid.
            ConfigError: ``overlap`` is negative or not below half the tile size.
        """
        super().__init__(model, card, batch_size=batch_size, warm_up=warm_up)
        tile = self.input_shape[0]
        overlap = tile // 4 if overlap is None else overlap
        if (
            isinstance(overlap, bool)
            or not isinstance(overlap, int)
            or not 0 <= overlap < tile // 2
        ):
            raise ConfigError(f"overlap must be an integer in [0, {tile // 2}); got {overlap!r}.")
        self.overlap = overlap
        self.postprocess = WatershedConfig.from_dict(card.get("postprocess", {}))
        self.training_mpp = float(card.get("training_mpp", DEFAULT_TRAINING_MPP))
        self._weight = _blend_weight(tile, overlap)
        self.test_time_flips = bool(
            card.get("test_time_flips", False) if test_time_flips is None else test_time_flips
        )

    @classmethod
    def from_bundle(cls, name_or_path: str = DEFAULT_NUCLEI_BUNDLE, **options: Any):  # type: ignore[override]
        """Load a nuclei bundle by name or ``.keras`` path (default ``nuclei_segmenter``).

        Raises:
            ModelError: The bundle is missing or invalid.
        """
        return super().from_bundle(name_or_path, **options)

    # ------------------------------------------------------------------ maps

    def predict_maps(self, rgb: np.ndarray) -> np.ndarray:
        """float32 (H, W, 2) foreground probability and distance maps of one RGB image.

        Raises:
            InvalidImageError, ImageDimensionError, ImageTooLargeError: Bad ``rgb``.
        """
        pixels = check_rgb_uint8(rgb)
        tile = self.input_shape[0]
        height, width = pixels.shape[:2]
        pad_h, pad_w = max(tile - height, 0), max(tile - width, 0)
        if pad_h or pad_w:
            pixels = np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
        full_h, full_w = pixels.shape[:2]
        corners = [
            (top, left)
            for top in tile_starts(full_h, tile, self.overlap)
            for left in tile_starts(full_w, tile, self.overlap)
        ]
        summed = np.zeros((full_h, full_w, 2), dtype=np.float32)
        weights = np.zeros((full_h, full_w, 1), dtype=np.float32)
        for start in range(0, len(corners), self.batch_size):
            chunk = corners[start : start + self.batch_size]
            batch = np.stack([pixels[t : t + tile, c : c + tile] for t, c in chunk])
            outputs = self._forward_maps(batch.astype(np.float32) / 255.0)
            for (top, left), output in zip(chunk, outputs, strict=True):
                summed[top : top + tile, left : left + tile] += output * self._weight[..., None]
                weights[top : top + tile, left : left + tile] += self._weight[..., None]
        return (summed / weights)[:height, :width]

    def _forward_maps(self, batch: np.ndarray) -> np.ndarray:
        """Maps of a (N, tile, tile, 3) batch, averaged over flips when enabled.

        Both maps are flip-equivariant (a flipped nucleus has the flipped mask and
        distances), so each flipped prediction is flipped back before averaging.
        """
        if not self.test_time_flips:
            return np.asarray(self._forward(batch))
        total = np.zeros((*batch.shape[:3], 2), dtype=np.float32)
        for axes in ((), (1,), (2,), (1, 2)):  # np.flip over no axes is the identity
            output = np.asarray(self._forward(np.ascontiguousarray(np.flip(batch, axis=axes))))
            total += np.flip(output, axis=axes)
        return total / 4.0

    # ------------------------------------------------------------------ segmentation

    def _check_mpp(self, mpp: float | None) -> float | None:
        if mpp is None:
            return None
        if isinstance(mpp, bool) or not isinstance(mpp, int | float) or not 0.01 <= mpp <= 20:
            raise ConfigError(f"mpp (microns per pixel) must be in [0.01, 20]; got {mpp!r}.")
        return float(mpp)

    def segment(self, rgb: np.ndarray, mpp: float | None = None) -> NucleiResult:
        """Segment the nuclei of one H&E image.

        Args:
            rgb: uint8 (H, W, 3) RGB image.
            mpp: Microns per pixel; when it differs from the training resolution by more
                than 10 %, the image is resampled to it for the network.

        Returns:
            The maps and instances on ``rgb``'s pixel grid.

        Raises:
            InvalidImageError, ImageDimensionError, ImageTooLargeError: Bad ``rgb``.
            ConfigError: ``mpp`` out of range.
        """
        pixels = check_rgb_uint8(rgb)
        mpp = self._check_mpp(mpp)
        height, width = pixels.shape[:2]
        factor = 1.0 if mpp is None else mpp / self.training_mpp
        if abs(factor - 1.0) > _MPP_TOLERANCE:
            size = (max(round(width * factor), 1), max(round(height * factor), 1))
            shrinking = factor < 1.0
            interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            maps = self.predict_maps(cv2.resize(pixels, size, interpolation=interpolation))
            instances = separate_instances(maps[..., 0], maps[..., 1], self.postprocess)
            maps = cv2.resize(maps, (width, height), interpolation=cv2.INTER_LINEAR)
            instances = cv2.resize(instances, (width, height), interpolation=cv2.INTER_NEAREST)
        else:
            maps = self.predict_maps(pixels)
            instances = separate_instances(maps[..., 0], maps[..., 1], self.postprocess)
        count = int(len(np.unique(instances)) - (instances == 0).any())  # resize may drop some
        return NucleiResult(
            foreground=np.ascontiguousarray(maps[..., 0], dtype=np.float32),
            instances=instances.astype(np.int32),
            count=count,
            distance=np.ascontiguousarray(maps[..., 1], dtype=np.float32),
            mpp=mpp,
        )

    def segment_batch(
        self, tiles: np.ndarray | Sequence[np.ndarray], mpp: float | None = None
    ) -> list[NucleiResult]:
        """Segment several tiles (an (N, H, W, 3) uint8 array or a list of RGB images).

        Tiles of exactly the model's input size at the training resolution go through the
        network in batches of ``batch_size`` (the whole-slide path); others are segmented
        one by one with :meth:`segment`.

        Raises:
            ImageDimensionError: An array input is not (N, H, W, 3).
            InvalidImageError: A tile is not uint8.
            ConfigError: ``mpp`` out of range.
        """
        if isinstance(tiles, np.ndarray) and tiles.ndim != 4:
            raise ImageDimensionError(
                f"segment_batch needs (N, H, W, 3) tiles; got an array of shape {tiles.shape}."
            )
        mpp = self._check_mpp(mpp)
        same_scale = mpp is None or abs(mpp / self.training_mpp - 1.0) <= _MPP_TOLERANCE
        tile_shape = (self.input_shape[0], self.input_shape[1], 3)
        if not same_scale or any(np.shape(tile) != tile_shape for tile in tiles):
            return [self.segment(tile, mpp=mpp) for tile in tiles]
        checked = [check_rgb_uint8(tile, "tile") for tile in tiles]
        results = []
        for start in range(0, len(checked), self.batch_size):
            batch = np.stack(checked[start : start + self.batch_size]).astype(np.float32) / 255.0
            for maps in self._forward(batch):
                instances = separate_instances(maps[..., 0], maps[..., 1], self.postprocess)
                results.append(
                    NucleiResult(
                        foreground=np.ascontiguousarray(maps[..., 0], dtype=np.float32),
                        instances=instances,
                        count=int(instances.max()),
                        distance=np.ascontiguousarray(maps[..., 1], dtype=np.float32),
                        mpp=mpp,
                    )
                )
        return results
