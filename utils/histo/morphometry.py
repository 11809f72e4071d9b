"""Nuclear morphometry of an H&E tile or region: measured quantities only.

Per nucleus (``skimage.measure.regionprops_table``): area, perimeter, equivalent
diameter, eccentricity, solidity, major/minor axis, mean hematoxylin density (colour
deconvolution, :func:`utils.histo.stain.hematoxylin_channel`). Sizes are in um / um^2
when microns-per-pixel is known, else in pixels.

Per region (:attr:`NucleiMorphometry.summary`):

* ``count`` and ``density_per_mm2`` (cellularity; needs ``mpp``) or, without ``mpp``,
  ``density_per_megapixel`` with ``density_per_mm2`` listed as not measurable;
* distributions (mean, sd, quartiles) of area, perimeter, eccentricity and solidity;
* ``pleomorphism_index`` = CV(area) + sd(eccentricity), where CV is the coefficient of
  variation sd/mean of nuclear area (size variation, unit-free) and sd(eccentricity)
  the spread of shape (0 for identical shapes). 0 means identical nuclei; values of
  0.3-0.5 are typical of uniform tissue and larger ones of pleomorphic nuclei. It is a
  descriptive measure, not a graded score;
* chromatin texture: grey-level co-occurrence (GLCM) contrast, homogeneity and entropy
  of the hematoxylin channel inside nuclei (pixels outside nuclei are excluded from the
  co-occurrence counts), averaged over 4 directions at distance 1.

Every feature that cannot be measured (no nuclei, too few nuclei for a spread, no mpp)
is reported in :attr:`NucleiMorphometry.not_measured` with the reason, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import regionprops_table

from utils.errors import ConfigError, ImageDimensionError
from utils.histo._checks import check_labels, check_rgb_uint8
from utils.histo.stain import hematoxylin_channel

__all__ = ["MIN_NUCLEI_FOR_SPREAD", "NucleiMorphometry", "measure_nuclei"]

#: Spreads (sd, quartiles, pleomorphism) need at least this many nuclei.
MIN_NUCLEI_FOR_SPREAD: Final = 3
#: Grey levels of the hematoxylin channel for the GLCM (level 0 marks pixels outside nuclei).
GLCM_LEVELS: Final = 32
_DISTRIBUTED: Final = ("area", "perimeter", "eccentricity", "solidity", "mean_hematoxylin")


@dataclass
class NucleiMorphometry:
    """Morphometry of one region.

    Attributes:
        per_nucleus: One row per nucleus (label, centroid, sizes, shape, intensity).
        summary: Region-level measurements (see the module docstring).
        not_measured: ``{feature: reason}`` for every feature that could not be measured.
        mpp: Microns per pixel used for physical units (None: pixel units).
    """

    per_nucleus: pd.DataFrame
    summary: dict[str, Any]
    not_measured: dict[str, str] = field(default_factory=dict)
    mpp: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: summary, not-measured reasons, units and per-nucleus rows."""
        return {
            "mpp": self.mpp,
            "units": "um" if self.mpp else "px",
            "summary": self.summary,
            "not_measured": self.not_measured,
            "per_nucleus": self.per_nucleus.to_dict(orient="records"),
        }


def _distribution(values: np.ndarray) -> dict[str, float]:
    quartiles = np.percentile(values, [25, 50, 75])
    return {
        "mean": float(np.mean(values)),
        "sd": float(np.std(values, ddof=1)),
        "q1": float(quartiles[0]),
        "median": float(quartiles[1]),
        "q3": float(quartiles[2]),
    }


def _check_mpp(mpp: float | None) -> float | None:
    if mpp is None:
        return None
    if isinstance(mpp, bool) or not isinstance(mpp, int | float) or not 0.01 <= mpp <= 20:
        raise ConfigError(f"mpp (microns per pixel) must be in [0.01, 20] or None; got {mpp!r}.")
    return float(mpp)


def _per_nucleus(labels: np.ndarray, hema: np.ndarray, mpp: float | None) -> pd.DataFrame:
    table = pd.DataFrame(
        regionprops_table(
            labels,
            intensity_image=hema,
            properties=(
                "label", "centroid", "area", "perimeter", "equivalent_diameter_area",
                "eccentricity", "solidity", "axis_major_length", "axis_minor_length",
                "intensity_mean",
            ),
        )
    ).rename(
        columns={
            "centroid-0": "centroid_row",
            "centroid-1": "centroid_col",
            "equivalent_diameter_area": "equivalent_diameter",
            "axis_major_length": "major_axis",
            "axis_minor_length": "minor_axis",
            "intensity_mean": "mean_hematoxylin",
        }
    )  # fmt: skip
    if mpp is not None:
        table["area"] *= mpp**2
        for column in ("perimeter", "equivalent_diameter", "major_axis", "minor_axis"):
            table[column] *= mpp
    return table


def _chromatin_texture(labels: np.ndarray, hema: np.ndarray) -> dict[str, float]:
    inside = labels > 0
    values = hema[inside]
    low, high = np.percentile(values, [1, 99])
    scaled = np.clip((hema - low) / max(high - low, 1e-6), 0, 1)
    # Levels 1..GLCM_LEVELS-1 inside nuclei, 0 outside; row/column 0 of the GLCM is then
    # dropped so only pairs of two nucleus pixels count.
    quantised = np.where(inside, 1 + np.round(scaled * (GLCM_LEVELS - 2)), 0).astype(np.uint8)
    glcm = graycomatrix(
        quantised,
        distances=[1],
        angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
        levels=GLCM_LEVELS,
        symmetric=True,
    ).astype(np.float64)[1:, 1:]
    totals = glcm.sum(axis=(0, 1), keepdims=True)
    glcm = np.divide(glcm, totals, out=np.zeros_like(glcm), where=totals > 0)
    contrast = float(graycoprops(glcm, "contrast").mean())
    homogeneity = float(graycoprops(glcm, "homogeneity").mean())
    entropies = [
        float(-np.sum(p[p > 0] * np.log2(p[p > 0])))
        for p in np.moveaxis(glcm.reshape(glcm.shape[0], glcm.shape[1], -1), -1, 0)
    ]
    return {
        "glcm_contrast": contrast,
        "glcm_homogeneity": homogeneity,
        "glcm_entropy_bits": float(np.mean(entropies)),
    }


def measure_nuclei(
    instances: np.ndarray, rgb: np.ndarray, mpp: float | None = None
) -> NucleiMorphometry:
    """Measure every nucleus of a label map and summarise the region.

    Args:
        instances: int (H, W) label map, 0 = background (e.g. ``NucleiResult.instances``).
        rgb: uint8 (H, W, 3) H&E image of the same region.
        mpp: Microns per pixel; None gives pixel units and no density per mm^2.

    Returns:
        The per-nucleus table, the region summary and what could not be measured.

    Raises:
        ImageDimensionError: The label map and image differ in size.
        InvalidImageError: Bad label map or image.
        ConfigError: ``mpp`` out of range.
    """
    labels = check_labels(instances)
    pixels = check_rgb_uint8(rgb)
    mpp = _check_mpp(mpp)
    if labels.shape != pixels.shape[:2]:
        raise ImageDimensionError(
            f"The instance map {labels.shape} and the image {pixels.shape[:2]} differ in size."
        )
    hema = hematoxylin_channel(pixels)
    table = _per_nucleus(labels, hema, mpp)
    count = len(table)
    height, width = labels.shape
    not_measured: dict[str, str] = {}
    summary: dict[str, Any] = {
        "count": count,
        "region_pixels": int(height * width),
        "density_per_megapixel": count / (height * width / 1e6),
        "units": "um" if mpp else "px",
    }
    if mpp is not None:
        summary["region_area_mm2"] = height * width * (mpp / 1000.0) ** 2
        summary["density_per_mm2"] = count / summary["region_area_mm2"]
    else:
        not_measured["density_per_mm2"] = "microns per pixel unknown"
        not_measured["physical_units"] = "microns per pixel unknown: sizes are in pixels"
    if count == 0:
        for feature in ("distributions", "pleomorphism_index", "chromatin_texture"):
            not_measured[feature] = "no nuclei in the region"
    elif count < MIN_NUCLEI_FOR_SPREAD:
        for feature in ("distributions", "pleomorphism_index"):
            not_measured[feature] = (
                f"{count} nuclei; at least {MIN_NUCLEI_FOR_SPREAD} are needed for a spread"
            )
    else:
        summary["distributions"] = {
            name: _distribution(table[name].to_numpy()) for name in _DISTRIBUTED
        }
        area = summary["distributions"]["area"]
        summary["area_cv"] = area["sd"] / area["mean"]
        summary["eccentricity_sd"] = summary["distributions"]["eccentricity"]["sd"]
        summary["pleomorphism_index"] = summary["area_cv"] + summary["eccentricity_sd"]
        summary["pleomorphism_formula"] = "CV(area) + sd(eccentricity)"
    if count > 0:
        summary["chromatin_texture"] = _chromatin_texture(labels, hema)
        summary["nuclear_area_fraction"] = float((labels > 0).mean())
    return NucleiMorphometry(table, summary, not_measured, mpp)
