"""Tile scorers: a batch of RGB tiles in, one small score map per tile and channel out.

A :class:`TileScorer` declares its tile size, the magnification it was trained at, and
the maps it produces; :mod:`utils.wsi.aggregate` stitches them into slide heatmaps.

* :class:`NucleiScorer` (the default) runs the shipped nuclei segmenter and turns each
  tile into label-free maps: cellularity (nuclei per mm²), nuclear area fraction and
  pleomorphism (coefficient of variation of nuclear areas, a proxy of anisonucleosis).
* :class:`ClassifierScorer` plugs in any RGB classification bundle (e.g. a PCam
  tumour/normal patch classifier) and maps the probability of one class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from utils.errors import ConfigError, ModelError
from utils.histo.nuclei import DEFAULT_NUCLEI_BUNDLE
from utils.inference.bundle import load_bundle, resolve_bundle_paths
from utils.paths import SAVED_MODELS_DIR

__all__ = [
    "DEFAULT_NUCLEI_BUNDLE",
    "ClassifierScorer",
    "MapSpec",
    "NucleiScorer",
    "TileScorer",
    "load_scorer",
]

#: Card keys that may record the microns per pixel a model was trained at.
_CARD_MPP_KEYS: Final = ("mpp", "training_mpp", "microns_per_pixel", "target_mpp")
#: Class names read as "the positive class" when none is chosen.
_POSITIVE_NAMES: Final = ("tumor", "tumour", "malignant", "cancer", "positive", "metastasis")
_TILE_PX_RANGE: Final = (32, 2048)
#: Grid cells per tile side of the nuclei maps (finer than one value per tile).
NUCLEI_GRID: Final = 4
#: Fewest nuclei in a tile for its area spread to mean anything.
_MIN_NUCLEI_FOR_PLEOMORPHISM: Final = 3


@dataclass(frozen=True)
class MapSpec:
    """One output map of a scorer: name, display label and unit."""

    name: str
    label: str
    unit: str


class TileScorer(Protocol):
    """What the pipeline needs from a model.

    Attributes:
        name: Model name for reports.
        tile_px: Side of the square RGB tiles it takes.
        mpp: Microns per pixel it was trained at, or ``None`` (the caller chooses).
        maps: The maps :meth:`score` returns, in channel order.
        detection_map: Name of the map thresholded into regions.
        default_threshold: Threshold on it when the user gives none.
    """

    name: str
    tile_px: int
    mpp: float | None
    maps: tuple[MapSpec, ...]
    detection_map: str
    default_threshold: float

    def score(self, tiles: np.ndarray, mpp: float) -> np.ndarray:
        """(N, tile_px, tile_px, 3) uint8 tiles at ``mpp`` -> (N, C, g, g) float32 maps.

        NaN marks "no value" (e.g. too few nuclei); it gets no weight in the heatmap.
        """
        ...


def _card_mpp(card: dict[str, Any]) -> float | None:
    for key in _CARD_MPP_KEYS:
        value = card.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def check_tile_input(input_shape: tuple[int, ...], source: str) -> int:
    """The tile side of a model taking ``(H, W, C)``, or ModelError if it cannot take tiles."""
    height, width, channels = (int(side) for side in input_shape)
    low, high = _TILE_PX_RANGE
    if channels != 3 or height != width or not low <= height <= high:
        raise ModelError(
            f"Model {source} takes inputs of {height} x {width} x {channels}; whole-slide "
            f"tiles are square RGB, so a slide model needs (S, S, 3) with S between {low} "
            f"and {high}. A grayscale or non-square model (e.g. the ultrasound models) "
            "cannot score H&E tiles."
        )
    return height


class ClassifierScorer:
    """Probability of one class of a classification bundle, one value per tile."""

    default_threshold = 0.5

    def __init__(self, classifier: Any, *, positive_class: str | None = None) -> None:
        """Wrap a :class:`~utils.inference.classifier.LesionClassifier`.

        Raises:
            ModelError: The model does not take square RGB tiles.
            ConfigError: ``positive_class`` is not one of its classes.
        """
        self._classifier = classifier
        card = classifier.card
        self.name = str(card.get("name", "classifier"))
        self.tile_px = check_tile_input(classifier.input_shape, self.name)
        self.mpp = _card_mpp(card)
        names = list(classifier.class_names)
        if positive_class is None:
            matches = [n for n in names if n.lower() in _POSITIVE_NAMES]
            positive_class = matches[0] if matches else names[-1]
        if positive_class not in names:
            raise ConfigError(
                f"Class {positive_class!r} is not a class of {self.name}; choose one of "
                f"{', '.join(names)}."
            )
        self._column = names.index(positive_class)
        self.detection_map = f"p_{positive_class}"
        self.maps = (MapSpec(self.detection_map, f"P({positive_class})", "probability"),)

    def score(self, tiles: np.ndarray, mpp: float) -> np.ndarray:
        """Calibrated probability of the positive class, (N, 1, 1, 1)."""
        probabilities = self._classifier.predict_probabilities(tiles)
        return probabilities[:, self._column].astype(np.float32).reshape(-1, 1, 1, 1)


class NucleiScorer:
    """Cellularity, nuclear fraction and pleomorphism maps from a nuclei segmenter."""

    default_threshold = 0.3
    detection_map = "nuclear_fraction"
    maps = (
        MapSpec("cellularity", "Cellularity", "nuclei/mm²"),
        MapSpec("nuclear_fraction", "Nuclear area fraction", "fraction"),
        MapSpec("pleomorphism", "Pleomorphism", "CV of nuclear area"),
    )

    def __init__(self, segmenter: Any, *, name: str = DEFAULT_NUCLEI_BUNDLE) -> None:
        """Wrap a ``utils.histo.nuclei.NucleiSegmenter``.

        Raises:
            ModelError: The model does not take square RGB tiles.
        """
        self._segmenter = segmenter
        card = getattr(segmenter, "card", {}) or {}
        self.name = str(card.get("name", name))
        shape = getattr(segmenter, "input_shape", None) or card.get("input_shape")
        if shape is None:
            raise ModelError(f"Nuclei model {self.name} does not state its input shape.")
        self.tile_px = check_tile_input(tuple(shape), self.name)
        self.mpp = _card_mpp(card)

    def score(self, tiles: np.ndarray, mpp: float) -> np.ndarray:
        """(N, 3, g, g): nuclei/mm², nuclear area fraction, CV of nuclear areas."""
        results = self._segmenter.segment_batch(tiles, mpp=mpp)
        grid = NUCLEI_GRID
        cell = tiles.shape[1] / grid
        cell_mm2 = (cell * mpp / 1000.0) ** 2
        out = np.full((len(tiles), 3, grid, grid), np.nan, dtype=np.float32)
        for index, result in enumerate(results):
            instances = np.asarray(result.instances)
            out[index, 1] = _block_mean(instances > 0, grid)
            areas, rows, cols = _instance_areas_and_centres(instances)
            counts = np.zeros((grid, grid), dtype=np.float32)
            if areas.size:
                np.add.at(
                    counts,
                    (
                        np.minimum(rows // cell, grid - 1).astype(int),
                        np.minimum(cols // cell, grid - 1).astype(int),
                    ),
                    1.0,
                )
            out[index, 0] = counts / cell_mm2
            if areas.size >= _MIN_NUCLEI_FOR_PLEOMORPHISM:
                out[index, 2] = float(areas.std() / areas.mean())
        return out


def _block_mean(mask: np.ndarray, grid: int) -> np.ndarray:
    """Mean of ``mask`` over a grid x grid split (sides need not divide evenly)."""
    edges_y = np.linspace(0, mask.shape[0], grid + 1).astype(int)
    edges_x = np.linspace(0, mask.shape[1], grid + 1).astype(int)
    sums = np.add.reduceat(
        np.add.reduceat(mask.astype(np.float32), edges_y[:-1], 0), edges_x[:-1], 1
    )
    areas = np.outer(np.diff(edges_y), np.diff(edges_x))
    return sums / areas


def _instance_areas_and_centres(instances: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pixel area and centroid row/column of every labelled instance (label > 0)."""
    labels = instances.ravel()
    count = int(labels.max()) + 1 if labels.size else 1
    areas = np.bincount(labels, minlength=count).astype(np.float64)
    rows_idx, cols_idx = np.indices(instances.shape)
    rows = np.bincount(labels, weights=rows_idx.ravel(), minlength=count)
    cols = np.bincount(labels, weights=cols_idx.ravel(), minlength=count)
    present = areas > 0
    present[0] = False  # background
    return areas[present], rows[present] / areas[present], cols[present] / areas[present]


def _is_nuclei_card(card: dict[str, Any], stem: str) -> bool:
    """Nuclei bundles are segmentation bundles with a nuclei subtask or architecture."""
    return (
        stem == DEFAULT_NUCLEI_BUNDLE
        or "nuclei" in str(card.get("subtask", ""))
        or str(card.get("architecture", "")).startswith("nuclei")
    )


def load_scorer(
    model: str | Path = DEFAULT_NUCLEI_BUNDLE,
    *,
    models_dir: Path | str = SAVED_MODELS_DIR,
    positive_class: str | None = None,
    batch_size: int = 16,
) -> TileScorer:
    """The scorer for a bundle name or ``.keras`` path.

    ``nuclei_segmenter`` (or a bundle whose card has a nuclei subtask or architecture) gives a
    :class:`NucleiScorer`; any classification bundle a :class:`ClassifierScorer`.

    Raises:
        ModelError: The bundle is missing, damaged, of an unusable task, or its input
            is not square RGB tiles.
        ConfigError: ``positive_class`` is not one of the classifier's classes.
    """
    _model_path, card_path = resolve_bundle_paths(model, models_dir=models_dir)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"Model card {card_path} cannot be read as JSON: {error}") from error
    task = str(card.get("task", ""))
    if _is_nuclei_card(card, card_path.stem):
        from utils.histo.nuclei import NucleiSegmenter

        if isinstance(card.get("input_shape"), list):
            check_tile_input(tuple(card["input_shape"]), card_path.stem)
        # Slide heatmaps average thousands of tiles, where test-time flips (if the card
        # turns them on for single regions) would cost 4x the time for no visible change.
        segmenter = NucleiSegmenter.from_bundle(model, models_dir=models_dir, test_time_flips=False)
        return NucleiScorer(segmenter, name=card_path.stem)
    if task == "classification":
        from utils.inference.classifier import LesionClassifier

        if isinstance(card.get("input_shape"), list) and len(card["input_shape"]) == 3:
            check_tile_input(tuple(card["input_shape"]), card_path.stem)
        model_obj, card = load_bundle(model, models_dir=models_dir, task="classification")
        classifier = LesionClassifier(model_obj, card, batch_size=batch_size)
        return ClassifierScorer(classifier, positive_class=positive_class)
    raise ModelError(
        f"Model {card_path.stem} is a {task or 'unknown'}-task bundle; whole-slide analysis "
        f"takes the nuclei segmenter ({DEFAULT_NUCLEI_BUNDLE}) or an RGB classification "
        "bundle (e.g. a PCam patch classifier)."
    )
