"""Synthetic breast-ultrasound phantoms: B-mode-like images with ground-truth lesion masks.

The phantoms let the dashboard, the tests and the tutorials run out of the box without
the real datasets (which may not be redistributed with the repository). They are
*physics-flavoured*, not a wave simulation: each step below mimics one stage of a real
scanner, so the images show the cues a radiologist reads (speckle, tissue layers, dark
lesions, posterior enhancement and shadowing), cheaply and deterministically. They are
teaching and test material: never train or validate a clinical model on them.

Coordinates. As everywhere in TumorLens, row 0 is the skin side and depth grows
downward. The echoes are formed in *beam space* (rows = depth samples along a scan line,
1 px apart; columns = scan lines), where sound travels straight down each column, and
then scan-converted to the Cartesian image, as a scanner does:

* ``"linear"`` probe (the usual breast probe): parallel vertical scan lines, so beam
  space is the rectangular field of view itself; the image is black in bands left and
  right (4 % of the width each) and at the bottom (3 % of the height).
* ``"sector"`` (curvilinear) probe: scan lines fan out (up to +-30 degrees) from a
  virtual apex 0.8 image heights above the image; the probe face is an arc whose ends
  touch the top row; the field of view is an annular sector, black outside.

The anatomy is laid out in fractions of the field of view, so any image size shows the
whole layered breast; ``pixel_spacing_mm`` labels the physical size (a 400x500 image at
0.1 mm is a 40 mm deep, 50 mm wide scan) and sets the speckle grain size in pixels.

Steps of :func:`generate_phantom`, in order:

1. **Random streams.** The seed is split (``numpy.random.SeedSequence.spawn``) into
   independent streams for the tissue, the lesion and the speckle, so the same seed gives
   the same breast and the same speckle for every kind: the ``"normal"`` phantom of a
   seed is the lesion phantoms of that seed without their lesion.
2. **Layered tissue** (beam space), as a *diffuse* backscatter amplitude map (tissue
   with many sub-resolution scatterers, the source of speckle) and a *specular* map
   (smooth interfaces that reflect coherently and show as continuous bright lines,
   broken up by smooth noise as only stretches facing the beam reflect). From the skin
   down, each boundary a smooth random curve blended over about a pixel (logistic ramp):

   * **skin** (top 4.5 %): bright entry echo, echogenic dermis, bright dermis/fat line;
   * **subcutaneous fat** (to about 27 % depth, undulating): hypoechoic (-13 dB) lobules,
     Voronoi cells wider than tall, separated by thin echogenic septa (Cooper's
     ligaments);
   * **fibroglandular layer** (to about 72 %): hyperechoic (0 dB), textured by
     horizontally stretched log-normal noise (bands), with hypoechoic fat islands and
     thin meandering bright lines (ligaments, duct walls: the zero level set of
     horizontally stretched noise);
   * **retromammary fat**: a thin hypoechoic band;
   * **pectoral fascia and muscle**: a bright fascia line, then hypoechoic (-14 dB)
     muscle with thin, slightly oblique echogenic striations (fibre bundles).

   Amplitudes are in dB relative to fibroglandular tissue (0 dB = amplitude 1).
3. **Attenuation map.** Round-trip attenuation per depth sample, the same in every
   tissue but fat (15 % less): ``TISSUE_ATTENUATION_DB`` (80 dB) over the whole depth,
   i.e. 2 dB/mm on a 40 mm scan, breast tissue at about 13 MHz.
4. **Lesion** (every kind but ``"normal"``). Its outline is a polygon drawn in the
   Cartesian image (sub-pixel vertices, ``cv2.fillPoly``): that is the ground-truth mask.
   The mask is blurred by the margin sharpness, sampled into beam space (bilinear) and
   replaces the tissue there with the lesion's own amplitude and attenuation. Sizes are
   fractions of the image's shorter side ``s``; the centre lies at 36-46 % depth, within
   6 % of the width from the middle:

   * ``"benign_oval"`` (fibroadenoma-like): ellipse 26-32 % of ``s`` wide, depth/width
     0.55-0.68 (wider than tall, parallel to the skin), tilted up to 8 degrees, gently
     macrolobulated (2 % harmonics), sharp margin; hypoechoic (-23 dB), homogeneous;
     faint echogenic capsule; attenuates 10 % as much as tissue, hence posterior
     acoustic *enhancement*; thin refraction shadows below its steep lateral edges.
   * ``"malignant_irregular"`` (carcinoma-like): angular polygon of 9-13 jittered
     vertices around an ellipse 1.4-1.7 times taller than wide (24-30 % of ``s`` tall),
     with 6-10 spicules (triangular spikes, longer up and down than sideways), stretched
     vertically if needed so depth/width >= 1.2 (taller than wide, *not parallel*);
     indistinct margin; hypoechoic (-15 dB) and heterogeneous; a thick echogenic halo
     (+6 dB, fading over 4 % of ``s``) crossed by 16 thin hypoechoic lines radiating
     past the margin (spiculation, not in the mask); attenuates 2.2 times as much as
     tissue, with streaky variations, hence posterior acoustic *shadowing*.
   * ``"cyst"`` (simple cyst): near-round (depth/width 0.85-0.95, 18-22 % of ``s``
     wide), very sharp margin, anechoic (-60 dB), no attenuation, hence strong posterior
     enhancement; refraction edge shadows.

   Edge shadows: attenuation is added on the margin where its normal is horizontal
   (the beam grazes a steep wall and is refracted away).
5. **Speckle.** A circular complex Gaussian white field (the random phasors of the
   scatterers) is weighted by the diffuse amplitude and convolved with a Gaussian
   point-spread function (sigma ``PSF_AXIAL_SIGMA_MM`` along and ``PSF_LATERAL_SIGMA_MM``
   across the beam, clamped to 0.5-6 px), and normalised by the PSF's energy. Its
   magnitude, the envelope, is then Rayleigh distributed with a local RMS equal to the
   amplitude: fully developed speckle, equivalent to multiplicative Rayleigh noise on
   the amplitude map. (An axial carrier modulation of the PSF would not change these
   statistics, as the noise is white and circular, so it is left out.) The specular
   map, smoothed by the same PSF, is added in phase: coherent, without speckle.
6. **Attenuation and time-gain compensation (TGC).** The field is multiplied by
   ``exp(-A)``, ``A`` being the attenuation accumulated from the skin down each scan line
   and smoothed across lines by the lateral PSF (the beam has a width). Band-limited
   electronic noise (``NOISE_FLOOR_DB``) is added, then the TGC gain
   ``exp(TGC_COMPENSATION * mean A of the lesion-free tissue at that depth)``. It undoes
   95 % of the tissue's depth loss (the image darkens slightly with depth, as on a real
   scanner) but *not* the lesion's excess or deficit: that is what leaves a bright
   (enhancement) or dark (shadowing) column below a lesion, where the amplified noise
   floor shows as grain.
7. **Display.** The envelope is smoothed by a small Gaussian (``DISPLAY_SMOOTHING_PX``,
   the scanner's video filter and scan-line interpolation; without it, the speckle's
   zeros show as one-pixel black cracks after the log), log-compressed, and the
   ``DYNAMIC_RANGE_DB`` (55 dB) below ``DISPLAY_TOP_DB`` (+24 dB) mapped linearly onto
   gray levels 0-255.
8. **Scan conversion.** Beam space is resampled (bilinear, ``cv2.remap``) onto the
   Cartesian image and quantised to ``uint8``; pixels outside the field of view are
   black (0). The mask is the lesion polygon within the field of view.

At the default size and spacing the cues come out as
:func:`utils.measurements.measure_lesion` reads them for every seed tried (0-24, both
probes): mean echogenicity ratio 0.35-0.49 (benign oval), 0.22-0.35 (malignant),
0.12-0.19 (cyst); posterior ratio 1.19-1.71 (benign oval), 1.25-1.77 (cyst),
0.23-0.64 (malignant); depth/width 0.56-0.73 (benign oval), 1.19-2.01 (malignant);
circularity 0.86-0.94 (benign oval) against 0.35-0.65 (malignant). Very
small (64 px) or very elongated images still generate, but the lesion is then a few
PSF widths across and the cues weaken.

Run ``python -m utils.phantoms --out examples`` to (re)write the shipped example set:
``<name>.png`` images, ``<name>_mask.png`` masks (BUSI's mask naming), ``index.json``
(what each file is) and ``README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
from scipy import ndimage, special
from scipy.spatial import cKDTree

from utils.errors import ConfigError, TumorLensError

__all__ = [
    "DEFAULT_EXAMPLES",
    "DESCRIPTIONS",
    "KINDS",
    "LABELS",
    "PROBES",
    "ExampleSpec",
    "Phantom",
    "build_parser",
    "generate_phantom",
    "main",
    "write_examples",
]

KINDS: Final[tuple[str, ...]] = ("benign_oval", "malignant_irregular", "cyst", "normal")
"""Phantom kinds accepted by :func:`generate_phantom`."""

LABELS: Final[dict[str, str]] = {
    "benign_oval": "benign",
    "malignant_irregular": "malignant",
    "cyst": "benign",  # simple cysts are benign findings (BI-RADS 2)
    "normal": "normal",
}
"""Class label of each kind, in the BUSI vocabulary (benign / malignant / normal)."""

DESCRIPTIONS: Final[dict[str, str]] = {
    "benign_oval": (
        "Circumscribed hypoechoic oval mass, wider than tall (parallel), faint capsule, "
        "posterior acoustic enhancement, thin lateral edge shadows (fibroadenoma-like)."
    ),
    "malignant_irregular": (
        "Irregular, spiculated, angular hypoechoic mass, taller than wide (not parallel), "
        "echogenic halo, posterior acoustic shadowing (carcinoma-like)."
    ),
    "cyst": (
        "Round anechoic mass with a sharp margin, strong posterior acoustic enhancement "
        "and lateral edge shadows (simple cyst)."
    ),
    "normal": "Layered breast without a lesion: skin, fat lobules, fibroglandular tissue, "
    "retromammary fat and pectoral muscle.",
}
"""One-line description of each kind, as shown in the examples' index and README."""

PROBES: Final[tuple[str, ...]] = ("linear", "sector")
"""Probe geometries: parallel scan lines, or a fan from an apex above the image."""

MIN_SIDE_PX: Final = 64
"""Smallest accepted image height or width, in pixels."""

MAX_SIDE_PX: Final = 2048
"""Largest accepted image height or width, in pixels."""

TISSUE_ATTENUATION_DB: Final = 80.0
"""Round-trip tissue attenuation over the whole field-of-view depth, in dB."""

PSF_AXIAL_SIGMA_MM: Final = 0.12
"""Gaussian sigma of the point-spread function along the beam (depth), in mm."""

PSF_LATERAL_SIGMA_MM: Final = 0.3
"""Gaussian sigma of the point-spread function across the beam, in mm."""

DYNAMIC_RANGE_DB: Final = 55.0
"""Displayed dynamic range of the log-compressed envelope, in dB."""

DISPLAY_TOP_DB: Final = 24.0
"""Envelope level (dB relative to fibroglandular tissue) shown as white (255)."""

DISPLAY_SMOOTHING_PX: Final = 1.2
"""Gaussian sigma (pixels) of the display filter applied to the envelope before the log."""

NOISE_FLOOR_DB: Final = -85.0
"""Electronic noise RMS before the TGC gain, in dB relative to fibroglandular tissue."""

TGC_COMPENSATION: Final = 0.95
"""Fraction of the tissue's depth attenuation that the time-gain compensation undoes."""

_PSF_SIGMA_LIMITS_PX: Final = (0.5, 6.0)  # finer is sub-pixel, coarser hides the anatomy
_LINEAR_SIDE_MARGIN: Final = 0.04  # black band left and right of a linear field of view
_BOTTOM_MARGIN: Final = 0.03  # black band below the field of view
_SECTOR_APEX_DISTANCE: Final = 0.8  # virtual apex above the skin, in image heights
_SECTOR_MAX_HALF_ANGLE: Final = math.radians(30.0)
_DB_TO_NEPER: Final = math.log(10.0) / 20.0
_MIN_MALIGNANT_DEPTH_WIDTH: Final = 1.2  # smallest depth/width of a malignant outline


@dataclass(frozen=True, eq=False)  # arrays have no single truth value: compare fields
class Phantom:
    """One synthetic breast-ultrasound image and its ground truth.

    Attributes:
        image: ``uint8`` ``(H, W)`` B-mode-like grayscale image (0 outside the field of
            view).
        mask: ``bool`` ``(H, W)`` lesion mask; all ``False`` for ``"normal"``.
        kind: The phantom kind, one of :data:`KINDS`.
        label: ``"benign"``, ``"malignant"`` or ``"normal"`` (see :data:`LABELS`).
        pixel_spacing_mm: Physical size of one (square) pixel, in mm.
        seed: The seed that reproduces this phantom.
        probe: ``"linear"`` or ``"sector"`` field of view.
    """

    image: np.ndarray
    mask: np.ndarray
    kind: str
    label: str
    pixel_spacing_mm: float
    seed: int
    probe: str = "linear"


@dataclass(frozen=True)
class ExampleSpec:
    """One example of the shipped set: file name stem, kind, seed and probe."""

    name: str
    kind: str
    seed: int
    probe: str = "linear"


DEFAULT_EXAMPLES: Final[tuple[ExampleSpec, ...]] = (
    ExampleSpec("benign_oval_01", "benign_oval", seed=11),
    ExampleSpec("malignant_irregular_01", "malignant_irregular", seed=12),
    ExampleSpec("cyst_01", "cyst", seed=13),
    ExampleSpec("normal_01", "normal", seed=14),
    ExampleSpec("benign_oval_02", "benign_oval", seed=21, probe="sector"),
    ExampleSpec("malignant_irregular_02", "malignant_irregular", seed=22, probe="sector"),
    ExampleSpec("cyst_02", "cyst", seed=23, probe="sector"),
    ExampleSpec("normal_02", "normal", seed=24, probe="sector"),
)
"""The example set written by ``python -m utils.phantoms`` (shipped in ``examples/``)."""


@dataclass(frozen=True)
class _LesionStyle:
    """How one lesion kind looks and attenuates (amplitudes in dB re fibroglandular)."""

    echo_db: float  # mean internal amplitude
    heterogeneity: float  # relative std of the internal amplitude (smooth noise)
    attenuation_ratio: float  # lesion attenuation over tissue attenuation
    margin_blur_px: float  # Gaussian blur of the margin: sharp (circumscribed) or not
    capsule_db: float | None  # thin specular rim, or None
    halo_db: float | None  # echogenic halo outside the lesion, or None
    edge_shadow: float  # extra attenuation at steep lateral edges (refraction)
    radiating_lines: int  # thin hypoechoic spicules drawn beyond the mask


_STYLES: Final[dict[str, _LesionStyle]] = {
    "benign_oval": _LesionStyle(
        echo_db=-23.0,
        heterogeneity=0.25,
        attenuation_ratio=0.1,
        margin_blur_px=0.7,
        capsule_db=-14.0,
        halo_db=None,
        edge_shadow=0.1,
        radiating_lines=0,
    ),
    "malignant_irregular": _LesionStyle(
        echo_db=-15.0,
        heterogeneity=0.6,
        attenuation_ratio=2.2,
        margin_blur_px=1.6,
        capsule_db=None,
        halo_db=6.0,
        edge_shadow=0.0,
        radiating_lines=16,
    ),
    "cyst": _LesionStyle(
        echo_db=-60.0,
        heterogeneity=0.0,
        attenuation_ratio=0.0,
        margin_blur_px=0.5,
        capsule_db=None,
        halo_db=None,
        edge_shadow=0.2,
        radiating_lines=0,
    ),
}


@dataclass(frozen=True)
class _ScanGeometry:
    """Where each beam-space sample lies in the image, and the way back.

    ``sample_rows``/``sample_cols`` give the Cartesian position (pixels) of every beam
    sample; ``map_depth``/``map_line`` give, for every image pixel, its beam-space
    position (float32, for ``cv2.remap``); ``fov`` is the field of view; ``skin_row`` is
    the image row of the skin in the middle of the view.
    """

    image_shape: tuple[int, int]
    skin_row: float
    sample_rows: np.ndarray
    sample_cols: np.ndarray
    map_depth: np.ndarray
    map_line: np.ndarray
    fov: np.ndarray

    @property
    def beam_shape(self) -> tuple[int, int]:
        """``(depth samples, scan lines)``."""
        return self.sample_rows.shape


# ----------------------------------------------------------------------------- public API


def generate_phantom(
    kind: str,
    *,
    size: tuple[int, int] = (400, 500),
    seed: int = 0,
    pixel_spacing_mm: float = 0.1,
    probe: str = "linear",
) -> Phantom:
    """Generate one synthetic breast-ultrasound phantom (see the module docstring).

    Args:
        kind: One of :data:`KINDS`: ``"benign_oval"``, ``"malignant_irregular"``,
            ``"cyst"`` or ``"normal"``.
        size: ``(height, width)`` in pixels, integers from 64 to 2048.
        seed: Non-negative integer; the same arguments always give the same phantom.
        pixel_spacing_mm: Size of one square pixel in mm (positive); sets the speckle
            grain and is stored on the result for measurements.
        probe: ``"linear"`` (rectangular field of view) or ``"sector"`` (fan).

    Returns:
        The phantom: ``uint8`` image, ``bool`` mask and its metadata.

    Raises:
        ConfigError: Unknown kind or probe, or a bad size, seed or pixel spacing.
    """
    kind = _check_choice("phantom kind", kind, KINDS)
    probe = _check_choice("probe", probe, PROBES)
    height, width = _check_size(size)
    seed = _check_seed(seed)
    spacing = _check_spacing(pixel_spacing_mm)

    tissue_rng, lesion_rng, speckle_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(3)
    )
    geometry = _scan_geometry(probe, height, width)
    diffuse, specular, attenuation = _layered_tissue(geometry.beam_shape, tissue_rng)
    background_attenuation = attenuation.copy()
    mask = np.zeros((height, width), dtype=bool)
    if kind != "normal":
        mask = _lesion_mask(kind, geometry, lesion_rng)
        _insert_lesion(_STYLES[kind], mask, geometry, lesion_rng, diffuse, specular, attenuation)
    envelope = _echo_envelope(
        diffuse, specular, attenuation, background_attenuation, speckle_rng, spacing
    )
    image = _scan_convert(_log_compress(envelope), geometry)
    return Phantom(
        image=image,
        mask=mask & geometry.fov,
        kind=kind,
        label=LABELS[kind],
        pixel_spacing_mm=spacing,
        seed=seed,
        probe=probe,
    )


# ----------------------------------------------------------------------------- validation


def _check_choice(what: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; valid: {', '.join(allowed)}.")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _check_size(size: object) -> tuple[int, int]:
    valid = (
        isinstance(size, tuple | list)
        and len(size) == 2
        and all(_is_int(side) and MIN_SIDE_PX <= side <= MAX_SIDE_PX for side in size)
    )
    if not valid:
        raise ConfigError(
            f"size must be (height, width) with integers from {MIN_SIDE_PX} to "
            f"{MAX_SIDE_PX} pixels; got {size!r}."
        )
    return int(size[0]), int(size[1])


def _check_seed(seed: object) -> int:
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}.")
    return int(seed)


def _check_spacing(spacing: object) -> float:
    valid = (
        isinstance(spacing, int | float | np.floating)
        and not isinstance(spacing, bool)
        and math.isfinite(spacing)
        and spacing > 0
    )
    if not valid:
        raise ConfigError(f"pixel_spacing_mm must be a positive number of mm; got {spacing!r}.")
    return float(spacing)


# ----------------------------------------------------------------------------- geometry


def _scan_geometry(probe: str, height: int, width: int) -> _ScanGeometry:
    """Beam-space sample positions and the scan-conversion maps of one probe."""
    n_depth = height - max(1, round(_BOTTOM_MARGIN * height))
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    if probe == "linear":
        side = max(1, round(_LINEAR_SIDE_MARGIN * width))
        n_lines = width - 2 * side
        sample_rows, sample_cols = np.mgrid[0:n_depth, side : side + n_lines].astype(np.float64)
        map_depth, map_line = rows, cols - side
        skin_row = 0.0
    else:
        # Scan lines are rays from an apex above the skin; the skin is the arc at radius
        # ``apex`` (the curved probe face), and depth samples are 1 px apart along a ray.
        apex = _SECTOR_APEX_DISTANCE * height
        centre = (width - 1) / 2
        half_angle = min(
            _SECTOR_MAX_HALF_ANGLE, math.asin(min(1.0, 0.48 * width / (apex + n_depth)))
        )
        # The probe face is the arc at radius ``apex``; it sags below the image top by
        # ``face_sag`` in the middle, so its ends touch row 0 and the whole skin is seen.
        face_sag = apex * (1 - math.cos(half_angle))
        n_depth -= math.ceil(face_sag)
        skin_row = face_sag
        # About one scan line per pixel at mid depth.
        n_lines = max(8, math.ceil(2 * half_angle * (apex + n_depth / 2)))
        angles = np.linspace(-half_angle, half_angle, n_lines)
        radii = apex + np.arange(n_depth, dtype=np.float64)
        sample_rows = radii[:, None] * np.cos(angles)[None, :] - apex + face_sag
        sample_cols = centre + radii[:, None] * np.sin(angles)[None, :]
        map_depth = np.hypot(rows + apex - face_sag, cols - centre) - apex
        map_line = (np.arctan2(cols - centre, rows + apex - face_sag) + half_angle) / (
            2 * half_angle / (n_lines - 1)
        )
    fov = (map_depth >= 0) & (map_depth <= n_depth - 1) & (map_line >= 0)
    fov &= map_line <= n_lines - 1
    return _ScanGeometry(
        image_shape=(height, width),
        skin_row=skin_row,
        sample_rows=sample_rows,
        sample_cols=sample_cols,
        map_depth=map_depth.astype(np.float32),
        map_line=map_line.astype(np.float32),
        fov=fov,
    )


def _scan_convert(beam_image: np.ndarray, geometry: _ScanGeometry) -> np.ndarray:
    """Resample a beam-space image onto the Cartesian grid; black outside the view."""
    image = cv2.remap(
        beam_image.astype(np.float32),
        geometry.map_line,
        geometry.map_depth,
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    image[~geometry.fov] = 0.0
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _to_beam_space(field: np.ndarray, geometry: _ScanGeometry) -> np.ndarray:
    """Sample a Cartesian image-sized field at every beam-space sample (bilinear)."""
    coordinates = np.stack([geometry.sample_rows, geometry.sample_cols])
    return ndimage.map_coordinates(field, coordinates, order=1, mode="nearest")


# ----------------------------------------------------------------------------- tissue


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: Any) -> np.ndarray:
    """Gaussian-smoothed white noise, rescaled to zero mean and unit standard deviation.

    Wide blurs are computed on a grid coarser by about a quarter of the sigma along each
    axis and upsampled linearly: the same look at a fraction of the cost.
    """
    sigmas = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(shape),))
    factors = np.maximum(1, sigmas // 4).astype(int)
    coarse_shape = tuple(max(4, math.ceil(n / f)) for n, f in zip(shape, factors, strict=True))
    noise = ndimage.gaussian_filter(
        rng.standard_normal(coarse_shape), sigmas * np.array(coarse_shape) / shape, mode="wrap"
    )
    if coarse_shape != shape:
        zoom = [n / c for n, c in zip(shape, coarse_shape, strict=True)]
        noise = ndimage.zoom(noise, zoom, order=1, mode="grid-wrap", grid_mode=True)
    return (noise - noise.mean()) / (noise.std() + 1e-12)


def _boundary(rng: np.random.Generator, n_lines: int, mean: float, amplitude: float) -> np.ndarray:
    """A smooth random interface depth (samples) for every scan line."""
    return mean + amplitude * _smooth_noise(rng, (n_lines,), n_lines / 8)


def _db(level_db: float | np.ndarray) -> Any:
    """Amplitude ratio of a level in dB (20 log10 convention)."""
    return 10.0 ** (np.asarray(level_db) / 20.0)


def _line(depth: np.ndarray, at: np.ndarray, width: float) -> np.ndarray:
    """A Gaussian ridge of unit height along the interface ``at`` (one depth per line)."""
    return np.exp(-0.5 * ((depth - at[None, :]) / width) ** 2)


def _layered_tissue(
    shape: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diffuse amplitude, specular amplitude and attenuation maps of the layered breast."""
    n_depth, n_lines = shape
    scale = min(shape)
    depth = np.arange(n_depth, dtype=np.float64)[:, None]

    skin_end = _boundary(rng, n_lines, 0.045 * n_depth, 0.004 * n_depth)
    fat_end = _boundary(rng, n_lines, 0.27 * n_depth, 0.05 * n_depth)
    gland_end = _boundary(rng, n_lines, 0.72 * n_depth, 0.035 * n_depth)
    fascia = gland_end + 0.04 * n_depth + 0.01 * n_depth * _smooth_noise(rng, (n_lines,), 20)
    fat_end = np.maximum(fat_end, skin_end + 0.08 * n_depth)

    fat, septa = _fat_lobules(shape, rng, scale)
    gland = _fibroglandular(shape, rng, scale)
    muscle, striations = _muscle(shape, rng, scale)
    ligaments = _wavy_lines(shape, rng, scale)

    # Blend the layers top to bottom over about a pixel, so boundaries are not jagged.
    diffuse = np.full(shape, _db(-2.0)) * (1 + 0.2 * _smooth_noise(rng, shape, (1, 6)))
    for boundary, layer in (
        (skin_end, fat),
        (fat_end, gland),
        (gland_end, 0.8 * fat),  # retromammary fat: a thin, slightly darker band
        (fascia, muscle),
    ):
        weight = special.expit(depth - boundary[None, :])
        diffuse = (1 - weight) * diffuse + weight * layer

    # Specular reflectors: skin entry and dermis/fat lines, fat septa, the pectoral fascia
    # and the muscle striations (weaker).
    in_fat = (depth > skin_end[None, :]) & (depth < fat_end[None, :] + 2)
    in_retro = (depth > gland_end[None, :]) & (depth < fascia[None, :])
    in_gland = (depth > fat_end[None, :]) & (depth < gland_end[None, :])
    in_muscle = depth > fascia[None, :] + 1
    specular = (
        _db(6.0) * _line(depth, np.full(n_lines, 1.0), 1.0)
        + _db(0.0) * _line(depth, skin_end, 1.2)
        + _db(-4.0) * septa * (in_fat | in_retro)
        + _db(16.0) * ligaments * in_gland
        + _db(2.0) * _line(depth, fascia, 1.3)
        + _db(-10.0) * striations * in_muscle
    )
    # Real interfaces are not perfectly smooth mirrors: break the lines up a little.
    specular *= np.clip(1 + 0.6 * _smooth_noise(rng, shape, (1.0, 4.0)), 0.1, None)
    # Round-trip attenuation in nepers per sample; fat attenuates a little less.
    per_sample = TISSUE_ATTENUATION_DB * _DB_TO_NEPER / n_depth
    attenuation = np.full(shape, per_sample)
    attenuation[in_fat | in_retro] *= 0.85
    return diffuse, specular, attenuation


def _fat_lobules(
    shape: tuple[int, int], rng: np.random.Generator, scale: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hypoechoic fat lobules (Voronoi cells, wider than tall) and their septa (0..1)."""
    lobule_width, lobule_height = 0.16 * scale, 0.06 * scale
    n_seeds = max(4, round(shape[0] * shape[1] / (lobule_width * lobule_height)))
    stretch = np.array([lobule_width / lobule_height, 1.0])  # rows count more: flat cells
    seeds = rng.uniform(0, 1, (n_seeds, 2)) * np.array(shape) * stretch
    points = np.indices(shape).reshape(2, -1).T * stretch
    distances, _ = cKDTree(seeds).query(points, k=2)
    gap = (distances[:, 1] - distances[:, 0]).reshape(shape) / stretch[0]  # ~ rows to edge
    nearest = distances[:, 0].reshape(shape) / (lobule_width / 2)
    # Not every septum is seen: the ones parallel to the beam reflect little.
    septa = np.exp(-0.5 * (gap / 1.3) ** 2)
    septa *= np.clip(0.7 + 0.6 * _smooth_noise(rng, shape, 0.04 * scale), 0, None)
    # Lobules are a little darker in their centres, with some smooth variation.
    fat = _db(-13.0) * (0.75 + 0.25 * np.clip(nearest, 0, 1))
    fat *= 1 + 0.15 * _smooth_noise(rng, shape, (3, 8))
    return fat, septa


def _wavy_lines(shape: tuple[int, int], rng: np.random.Generator, scale: int) -> np.ndarray:
    """Thin meandering, mostly horizontal bright lines (0..1): ligaments and ducts walls."""
    # The zero level set of horizontally stretched noise meanders mostly sideways;
    # dividing by the gradient turns the noise into a distance to that line.
    field = _smooth_noise(rng, shape, (0.02 * scale, 0.15 * scale))
    gradient = np.hypot(*np.gradient(field))
    distance = np.abs(field) / (gradient + 1e-9)
    # Only some stretches of each line are seen (they must face the beam to reflect).
    seen = np.clip(_smooth_noise(rng, shape, (0.02 * scale, 0.05 * scale)), 0, None)
    return np.exp(-0.5 * (distance / 1.0) ** 2) * np.clip(seen, 0, 1)


def _fibroglandular(shape: tuple[int, int], rng: np.random.Generator, scale: int) -> np.ndarray:
    """Hyperechoic glandular tissue with horizontal bands and a few fat islands."""
    bands = _smooth_noise(rng, shape, (max(1.0, 0.006 * scale), 0.04 * scale))
    gland = _db(0.0) * np.exp(0.5 * bands)
    islands = _smooth_noise(rng, shape, (0.025 * scale, 0.06 * scale))
    fat_share = special.expit((islands - 1.3) / 0.15)
    return (1 - fat_share) * gland + fat_share * _db(-12.0)


def _muscle(
    shape: tuple[int, int], rng: np.random.Generator, scale: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hypoechoic pectoral muscle and its thin, slightly oblique striations (0..1)."""
    rows, cols = np.indices(shape, dtype=np.float64)
    tilt = math.tan(math.radians(rng.uniform(-12.0, 12.0)))
    period = max(4.0, 0.035 * scale)
    wobble = 2.0 * _smooth_noise(rng, shape, (0.02 * scale, 0.08 * scale))
    phase = 2 * math.pi * (rows - tilt * cols) / period + wobble
    striations = (0.5 + 0.5 * np.cos(phase)) ** 8
    striations *= np.clip(1 + 0.6 * _smooth_noise(rng, shape, (2, 0.05 * scale)), 0, None)
    muscle = _db(-14.0) * (1 + 3.0 * striations)
    return muscle, striations


# ----------------------------------------------------------------------------- lesions


def _lesion_mask(kind: str, geometry: _ScanGeometry, rng: np.random.Generator) -> np.ndarray:
    """Draw the lesion outline in the Cartesian image; the result is the ground truth."""
    height, width = geometry.image_shape
    n_depth = geometry.beam_shape[0]
    scale = min(height, width)
    angles = np.linspace(0.0, 2 * math.pi, 1440, endpoint=False)
    if kind == "malignant_irregular":
        vertical = rng.uniform(0.12, 0.15) * scale
        horizontal = vertical / rng.uniform(1.4, 1.7)  # taller than wide
        radii = _angular_spiculated_radii(angles, horizontal, vertical, rng)
        tilt = math.radians(rng.uniform(-10, 10))
        centre_depth = rng.uniform(0.36, 0.42) * n_depth
    else:
        if kind == "cyst":
            horizontal = rng.uniform(0.09, 0.11) * scale
            vertical = horizontal * rng.uniform(0.85, 0.95)
            lobulation = 0.0
        else:  # benign_oval: wider than tall, gently undulating (macrolobulated) margin
            horizontal = rng.uniform(0.13, 0.16) * scale
            vertical = horizontal * rng.uniform(0.55, 0.68)
            lobulation = 0.02
        radii = _ellipse_radii(angles, horizontal, vertical)
        for harmonic in (2, 3, 4):
            radii *= 1 + lobulation * np.cos(harmonic * angles + rng.uniform(0, 2 * math.pi))
        tilt = math.radians(rng.uniform(-8, 8))
        centre_depth = rng.uniform(0.38, 0.46) * n_depth
    centre_col = (width - 1) / 2 + rng.uniform(-0.06, 0.06) * width
    row_offsets = -radii * np.sin(angles + tilt)  # minus: rows grow downward
    col_offsets = radii * np.cos(angles + tilt)
    if kind == "malignant_irregular":
        # Taller than wide is this kind's defining cue: stretch vertically when random
        # vertices and spicules happened to make it too wide.
        aspect = np.ptp(row_offsets) / np.ptp(col_offsets)
        row_offsets *= max(1.0, _MIN_MALIGNANT_DEPTH_WIDTH / aspect)
    rows = geometry.skin_row + centre_depth + row_offsets
    return _fill_polygon(rows, centre_col + col_offsets, (height, width))


def _ellipse_radii(angles: np.ndarray, horizontal: float, vertical: float) -> np.ndarray:
    """Polar radius of an axis-aligned ellipse in each direction."""
    return 1.0 / np.sqrt((np.cos(angles) / horizontal) ** 2 + (np.sin(angles) / vertical) ** 2)


def _angular_spiculated_radii(
    angles: np.ndarray, horizontal: float, vertical: float, rng: np.random.Generator
) -> np.ndarray:
    """Polar radius of an angular polygon with spicules, around a tall ellipse."""
    # Angular margin: straight segments between a dozen jittered vertices.
    n_vertices = int(rng.integers(9, 14))
    vertex_angles = np.sort(
        (np.arange(n_vertices) + rng.uniform(-0.3, 0.3, n_vertices)) * 2 * math.pi / n_vertices
    )
    vertex_radii = _ellipse_radii(vertex_angles, horizontal, vertical) * rng.uniform(
        0.8, 1.15, n_vertices
    )
    vertex_points = vertex_radii * np.exp(1j * vertex_angles)
    radii = _polygon_radii(angles, vertex_points)
    # Spicules: short triangular spikes, longer up and down than sideways so the lesion
    # stays taller than wide.
    for _ in range(int(rng.integers(6, 11))):
        direction = rng.uniform(0, 2 * math.pi)
        half_width = rng.uniform(0.06, 0.12)
        length = rng.uniform(0.2, 0.45) * (0.4 + 0.6 * abs(math.sin(direction)))
        offset = np.angle(np.exp(1j * (angles - direction)))  # wrapped to (-pi, pi]
        radii = radii * (1 + length * np.clip(1 - np.abs(offset) / half_width, 0, None))
    return radii


def _polygon_radii(angles: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Polar radius, in each direction, of a star-shaped polygon (complex vertices)."""
    vertex_angles = np.mod(np.angle(vertices), 2 * math.pi)
    order = np.argsort(vertex_angles)
    vertices, vertex_angles = vertices[order], vertex_angles[order]
    # The edge whose angular span holds each direction (index -1 is the wrap-around edge).
    edge = np.searchsorted(vertex_angles, np.mod(angles, 2 * math.pi), side="right") - 1
    start = vertices[edge]
    along = vertices[(edge + 1) % len(vertices)] - start
    ray = np.exp(1j * angles)
    # Ray t * ray meets the edge start + s * along where t = (start x along) / (ray x along).
    return np.abs(_cross(start, along) / _cross(ray, along))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2-D cross product of points stored as complex numbers."""
    return (np.conjugate(a) * b).imag


def _fill_polygon(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a closed polygon with sub-pixel vertex accuracy."""
    shift = 4  # cv2 fixed-point vertices: 1/16 px
    points = np.round(np.column_stack([cols, rows]) * (1 << shift)).astype(np.int32)
    canvas = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(canvas, [points], 1, lineType=cv2.LINE_8, shift=shift)
    return canvas.astype(bool)


def _insert_lesion(
    style: _LesionStyle,
    mask: np.ndarray,
    geometry: _ScanGeometry,
    rng: np.random.Generator,
    diffuse: np.ndarray,
    specular: np.ndarray,
    attenuation: np.ndarray,
) -> None:
    """Write the lesion's amplitude and attenuation into the beam-space maps (in place)."""
    soft = ndimage.gaussian_filter(mask.astype(np.float64), style.margin_blur_px)
    inside = np.clip(_to_beam_space(soft, geometry), 0.0, 1.0)
    shape = geometry.beam_shape
    scale = min(shape)

    texture = np.clip(1 + style.heterogeneity * _smooth_noise(rng, shape, 0.02 * scale), 0.1, None)
    diffuse *= 1 - inside
    diffuse += inside * _db(style.echo_db) * texture
    specular *= 1 - inside
    if style.capsule_db is not None:
        specular += _db(style.capsule_db) * 4 * inside * (1 - inside)  # peaks on the margin
    if style.halo_db is not None:
        outside = ndimage.distance_transform_edt(~mask)
        halo_width = 0.04 * min(mask.shape)
        halo = np.exp(-outside / halo_width) * (outside > 0)
        halo = _to_beam_space(halo, geometry)
        irregular = np.clip(1 + 0.5 * _smooth_noise(rng, shape, 0.01 * scale), 0, None)
        diffuse += _db(style.halo_db) * halo * irregular
    if style.radiating_lines:
        lines = _to_beam_space(_radiating_lines(mask, style.radiating_lines, rng), geometry)
        diffuse *= 1 - 0.95 * lines * (1 - inside)

    tissue = attenuation.mean()
    lesion_attenuation = (
        style.attenuation_ratio
        * tissue
        * np.clip(1 + 0.5 * _smooth_noise(rng, shape, (0.01 * scale, 2.0)), 0.2, None)
    )
    attenuation *= 1 - inside
    attenuation += inside * lesion_attenuation
    if style.edge_shadow > 0:
        # Refraction at steep (near-vertical) lateral margins casts thin edge shadows.
        d_depth, d_line = np.gradient(inside)
        steepness = d_line**2 / (d_line**2 + d_depth**2 + 1e-9)
        attenuation += style.edge_shadow * steepness**4 * np.hypot(d_depth, d_line)


def _radiating_lines(mask: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Thin lines (0..1) radiating from the lesion centre past its margin: spicules."""
    rows, cols = np.nonzero(mask)
    centre = np.array([cols.mean(), rows.mean()])
    radius = math.sqrt(mask.sum() / math.pi)
    canvas = np.zeros(mask.shape, dtype=np.float32)
    for direction in rng.uniform(0, 2 * math.pi, count):
        length = radius * rng.uniform(1.2, 1.9)
        end = centre + length * np.array([math.cos(direction), -math.sin(direction)])
        start_point = tuple(int(v) for v in np.round(centre))
        end_point = tuple(int(v) for v in np.round(end))
        cv2.line(canvas, start_point, end_point, 1.0, thickness=3, lineType=cv2.LINE_AA)
    return np.clip(ndimage.gaussian_filter(canvas, 0.6) * 1.5, 0.0, 1.0)


# ----------------------------------------------------------------------------- echo formation


def _psf_sigma_px(sigma_mm: float, spacing_mm: float) -> float:
    low, high = _PSF_SIGMA_LIMITS_PX
    return float(np.clip(sigma_mm / spacing_mm, low, high))


def _echo_envelope(
    diffuse: np.ndarray,
    specular: np.ndarray,
    attenuation: np.ndarray,
    background_attenuation: np.ndarray,
    rng: np.random.Generator,
    spacing_mm: float,
) -> np.ndarray:
    """Speckle, attenuation, noise and TGC: the echo envelope in beam space."""
    sigma = (
        _psf_sigma_px(PSF_AXIAL_SIGMA_MM, spacing_mm),
        _psf_sigma_px(PSF_LATERAL_SIGMA_MM, spacing_mm),
    )
    field = _speckle(rng, diffuse, sigma)
    field += ndimage.gaussian_filter(specular, sigma)  # coherent: no random phase
    accumulated = _accumulate(attenuation, sigma[1])
    tissue_loss = _accumulate(background_attenuation, sigma[1]).mean(axis=1, keepdims=True)
    # Electronic noise, band-limited by the receiver like the echoes.
    noise = _speckle(rng, np.full(diffuse.shape, _db(NOISE_FLOOR_DB)), sigma)
    received = field * np.exp(-accumulated) + noise
    return np.abs(received) * np.exp(TGC_COMPENSATION * tissue_loss)


def _speckle(
    rng: np.random.Generator, amplitude: np.ndarray, sigma: tuple[float, float]
) -> np.ndarray:
    """Complex echo field of random scatterers of the given amplitude, seen through the PSF.

    Circular complex white noise with ``E|n|² = 1`` (the scatterers' random phasors) is
    weighted by ``amplitude``, convolved with the Gaussian PSF and divided by the PSF's
    energy gain, so the RMS of the result equals the amplitude where it is uniform.
    """
    phasors = rng.standard_normal(amplitude.shape) + 1j * rng.standard_normal(amplitude.shape)
    weighted = amplitude * phasors / math.sqrt(2)
    field = ndimage.gaussian_filter(weighted.real, sigma) + 1j * ndimage.gaussian_filter(
        weighted.imag, sigma
    )
    return field / _psf_energy_gain(sigma)


def _psf_energy_gain(sigma: tuple[float, float]) -> float:
    """RMS gain of the PSF on unit white noise (the L2 norm of the sampled kernel)."""
    size = 2 * math.ceil(4 * max(sigma)) + 1
    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1.0
    return float(np.linalg.norm(ndimage.gaussian_filter(impulse, sigma)))


def _accumulate(attenuation: np.ndarray, beam_sigma: float) -> np.ndarray:
    """Attenuation accumulated from the skin down each line, blurred by the beam width."""
    return ndimage.gaussian_filter1d(np.cumsum(attenuation, axis=0), beam_sigma, axis=1)


def _log_compress(envelope: np.ndarray) -> np.ndarray:
    """Envelope to display gray levels (float, 0..255) over the dynamic range."""
    # Scanners low-pass the detected envelope (video filter, scan-line interpolation);
    # without it the speckle's zeros show as one-pixel black cracks after the log.
    envelope = ndimage.gaussian_filter(envelope, DISPLAY_SMOOTHING_PX)
    level_db = 20.0 * np.log10(np.maximum(envelope, 1e-12))
    gray = (level_db - (DISPLAY_TOP_DB - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB
    return 255.0 * np.clip(gray, 0.0, 1.0)


# ----------------------------------------------------------------------------- example set


def write_examples(
    out_dir: str | Path,
    examples: Sequence[ExampleSpec] = DEFAULT_EXAMPLES,
    *,
    size: tuple[int, int] = (400, 500),
    pixel_spacing_mm: float = 0.1,
) -> list[dict[str, Any]]:
    """Write example phantoms with their masks, ``index.json`` and ``README.md``.

    Each example gives ``<name>.png`` (8-bit grayscale) and ``<name>_mask.png`` (0/255,
    all black for ``"normal"``, as in BUSI), described in ``index.json``.

    Args:
        out_dir: Folder to write into (created if missing).
        examples: The examples to generate.
        size: ``(height, width)`` of every image.
        pixel_spacing_mm: Pixel spacing of every image, in mm.

    Returns:
        The index entries, one dict per example, as written to ``index.json``.

    Raises:
        ConfigError: An example has a bad kind, probe or seed, or the size or spacing is
            invalid.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for spec in examples:
        phantom = generate_phantom(
            spec.kind,
            size=size,
            seed=spec.seed,
            pixel_spacing_mm=pixel_spacing_mm,
            probe=spec.probe,
        )
        image_name, mask_name = f"{spec.name}.png", f"{spec.name}_mask.png"
        _write_png(out_dir / image_name, phantom.image)
        _write_png(out_dir / mask_name, phantom.mask.astype(np.uint8) * 255)
        entries.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "label": phantom.label,
                "image": image_name,
                "mask": mask_name,
                "seed": spec.seed,
                "probe": spec.probe,
                "size": [phantom.image.shape[0], phantom.image.shape[1]],
                "pixel_spacing_mm": phantom.pixel_spacing_mm,
                "description": DESCRIPTIONS[spec.kind],
                "reference_measurements": _reference_measurements(phantom),
            }
        )
    index = {
        "generator": "utils.phantoms",
        "command": _command(out_dir, size, pixel_spacing_mm),
        "synthetic": True,
        "examples": entries,
    }
    (out_dir / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out_dir / "README.md").write_text(_readme(entries, index["command"]))
    return entries


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {path}")


def _reference_measurements(phantom: Phantom) -> dict[str, Any] | None:
    """Key measurements of the phantom's lesion, or ``None`` for a normal phantom."""
    # Imported here: the generator itself needs only numpy, scipy and OpenCV.
    from utils.measurements import measure_lesion_or_none

    result = measure_lesion_or_none(phantom.mask, phantom.image, phantom.pixel_spacing_mm)
    if result is None:
        return None
    keys = (
        "area",
        "longest_diameter",
        "depth_width_ratio",
        "orientation",
        "circularity",
        "margin_lobulations",
        "mean_echogenicity_ratio",
        "posterior_ratio",
        "posterior_acoustic_feature",
    )
    values = result.to_dict()
    return {key: _rounded(values[key]) for key in keys}


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def _command(out_dir: Path, size: tuple[int, int], pixel_spacing_mm: float) -> str:
    """The command line that rewrites this folder (default options left out)."""
    command = f"python -m utils.phantoms --out {out_dir.as_posix()}"
    if tuple(size) != (400, 500):
        command += f" --size {size[0]} {size[1]}"
    if pixel_spacing_mm != 0.1:
        command += f" --pixel-spacing {pixel_spacing_mm}"
    return command


def _readme(entries: list[dict[str, Any]], command: str) -> str:
    """The examples folder's README: what the files are and how they were made."""
    lines = [
        "# Built-in examples (synthetic phantoms)",
        "",
        "These images are **synthetic** breast-ultrasound phantoms made by",
        "`utils/phantoms.py`, not patient data. They let the dashboard and the tutorials run",
        "without the real datasets, which may not be redistributed with the repository.",
        "They show the textbook cues (speckle, tissue layers, hypoechoic lesions, posterior",
        "enhancement and shadowing) but are far simpler than real scans: never use them to",
        "train or evaluate a model meant for patients.",
        "",
        "Regenerate them (deterministic: with the pinned library versions the same seeds",
        "give the same images) from the repository root with:",
        "",
        "```bash",
        f".venv/bin/{command}",
        "```",
        "",
        "Each example is `<name>.png` (8-bit grayscale B-mode image, black outside the field",
        "of view) with its ground-truth mask `<name>_mask.png` (255 = lesion; all black for",
        "normal). `index.json` lists name, kind, label, image and mask files, seed, probe,",
        "size, pixel spacing (mm) and reference measurements from `utils.measurements`.",
        "",
        "| Name | Kind | Label | Probe | Seed | Spacing (mm) | Orientation | "
        "Echo ratio | Posterior |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        measured = entry["reference_measurements"] or {}
        posterior = measured.get("posterior_acoustic_feature")
        if posterior is not None:
            posterior = f"{posterior} ({measured['posterior_ratio']:.2f})"
        echo = measured.get("mean_echogenicity_ratio")
        lines.append(
            f"| {entry['name']} | {entry['kind']} | {entry['label']} | {entry['probe']} | "
            f"{entry['seed']} | {entry['pixel_spacing_mm']} | "
            f"{measured.get('orientation', '-')} | "
            f"{'-' if echo is None else f'{echo:.2f}'} | {posterior or '-'} |"
        )
    lines += ["", "Kinds:", ""]
    lines += [f"* `{kind}`: {DESCRIPTIONS[kind]}" for kind in KINDS]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m utils.phantoms``."""
    parser = argparse.ArgumentParser(
        prog="python -m utils.phantoms",
        description="Write the built-in synthetic breast-ultrasound examples.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(400, 500),
        metavar=("HEIGHT", "WIDTH"),
        help="image size in pixels (default: 400 500)",
    )
    parser.add_argument(
        "--pixel-spacing",
        type=float,
        default=0.1,
        help="pixel spacing in mm (default: 0.1)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example-writing CLI.

    Args:
        argv: Arguments without the program name (``sys.argv[1:]`` when None).

    Returns:
        0 on success, 2 on a bad option.
    """
    args = build_parser().parse_args(argv)
    try:
        entries = write_examples(
            args.out, size=tuple(args.size), pixel_spacing_mm=args.pixel_spacing
        )
    except TumorLensError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {len(entries)} phantoms, index.json and README.md to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
