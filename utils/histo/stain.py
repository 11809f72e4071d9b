"""H&E stain handling: Macenko and Reinhard normalisation, HED stain augmentation.

* :class:`MacenkoNormalizer` (Macenko et al., ISBI 2009): estimates the two stain vectors
  (hematoxylin, eosin) of an image from its optical density (OD) and maps its stain
  concentrations onto a reference's stain vectors and concentration ranges.
* :class:`ReinhardNormalizer` (Reinhard et al., 2001): matches the per-channel mean and
  standard deviation in CIE L*a*b*.
* :func:`hed_augment`: random scaling and shifting of the hematoxylin, eosin and DAB
  channels of the colour deconvolution of Ruifrok and Johnston (skimage ``rgb2hed``),
  the "HED" augmentation of Tellez et al. (2018), so a model sees stain variation
  between laboratories during training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Self

import cv2
import numpy as np
from skimage.color import rgb2hed
from skimage.color.colorconv import hed_from_rgb, rgb_from_hed

from utils.errors import ConfigError, NoTissueError
from utils.histo._checks import check_rgb_uint8

__all__ = [
    "MacenkoNormalizer",
    "ReinhardNormalizer",
    "hed_augment",
    "hematoxylin_channel",
    "optical_density",
]

#: Light intensity of an empty slide (transmitted light) in 8-bit units.
BACKGROUND_INTENSITY: Final = 240.0
#: Pixels whose OD is below this in any channel are background (Macenko's beta).
OD_THRESHOLD: Final = 0.15
#: Percentile of the angle distribution that defines the extreme stain vectors (alpha).
ANGLE_PERCENTILE: Final = 1.0
#: At least this many tissue pixels are needed for a stable estimate.
MIN_TISSUE_PIXELS: Final = 500
#: Reference H&E stain matrix (columns H, E; rows R, G, B OD) and 99th-percentile
#: concentrations, the widely used defaults of Macenko's reference implementation.
REFERENCE_STAINS: Final = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
REFERENCE_MAX_CONCENTRATIONS: Final = np.array([1.9705, 1.0308])


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Optical density ``-log((I + 1) / I0)`` of a uint8 RGB image, as float (H, W, 3)."""
    pixels = check_rgb_uint8(rgb)
    return np.clip(-np.log((pixels.astype(np.float64) + 1.0) / BACKGROUND_INTENSITY), 0.0, None)


def _tissue_od(rgb: np.ndarray) -> np.ndarray:
    od = optical_density(rgb).reshape(-1, 3)
    tissue = od[np.all(od > OD_THRESHOLD, axis=1)]
    if len(tissue) < MIN_TISSUE_PIXELS:
        raise NoTissueError(
            f"The image has {len(tissue)} stained pixels (optical density above "
            f"{OD_THRESHOLD} in every channel); at least {MIN_TISSUE_PIXELS} are needed to "
            "estimate the H&E stains. Is it blank, all white or not an H&E image?"
        )
    return tissue


def estimate_stain_matrix(rgb: np.ndarray) -> np.ndarray:
    """Macenko estimate of the (3, 2) stain matrix: unit columns hematoxylin, eosin.

    Raises:
        NoTissueError: Too few stained pixels.
        InvalidImageError, ImageDimensionError: ``rgb`` is not a uint8 RGB image.
    """
    tissue = _tissue_od(rgb)
    # The two leading eigenvectors of the OD covariance span the plane of the two stains.
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(tissue, rowvar=False))
    if eigenvalues[1] < 1e-8:
        raise NoTissueError(
            "The image has no colour variation between stained pixels (e.g. all black or "
            "one flat colour); two stains cannot be separated. Is it an H&E image?"
        )
    plane = eigenvectors[:, [2, 1]]
    if plane[0, 0] < 0:
        plane[:, 0] *= -1
    if plane[0, 1] < 0:
        plane[:, 1] *= -1
    projected = tissue @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [ANGLE_PERCENTILE, 100 - ANGLE_PERCENTILE])
    vector_low = plane @ np.array([np.cos(low), np.sin(low)])
    vector_high = plane @ np.array([np.cos(high), np.sin(high)])
    # Hematoxylin absorbs red light more than eosin does: it is the one with larger red OD.
    if vector_low[0] > vector_high[0]:
        stains = np.stack([vector_low, vector_high], axis=1)
    else:
        stains = np.stack([vector_high, vector_low], axis=1)
    stains = np.abs(stains)  # OD is non-negative; tiny negative entries are estimation noise.
    return stains / np.linalg.norm(stains, axis=0, keepdims=True)


def _concentrations(rgb: np.ndarray, stains: np.ndarray) -> np.ndarray:
    od = optical_density(rgb).reshape(-1, 3)
    return np.linalg.lstsq(stains, od.T, rcond=None)[0]  # (2, N)


@dataclass
class MacenkoNormalizer:
    """Macenko stain normalisation to a reference image (or to the standard reference).

    Usage: ``MacenkoNormalizer().fit(reference_rgb).transform(rgb)``. Without ``fit`` the
    published reference stain matrix and concentrations are used.
    """

    stains: np.ndarray = None  # type: ignore[assignment]
    max_concentrations: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.stains is None:
            self.stains = REFERENCE_STAINS.copy()
        if self.max_concentrations is None:
            self.max_concentrations = REFERENCE_MAX_CONCENTRATIONS.copy()

    def fit(self, reference_rgb: np.ndarray) -> Self:
        """Learn the reference stain matrix and 99th-percentile concentrations.

        Raises:
            NoTissueError: The reference holds too little stained tissue.
        """
        self.stains = estimate_stain_matrix(reference_rgb)
        concentrations = _concentrations(reference_rgb, self.stains)
        self.max_concentrations = np.percentile(concentrations, 99, axis=1)
        return self

    def transform(self, rgb: np.ndarray) -> np.ndarray:
        """Re-render ``rgb`` with the reference stains; returns uint8 (H, W, 3).

        Raises:
            NoTissueError: ``rgb`` holds too little stained tissue.
        """
        pixels = check_rgb_uint8(rgb)
        source_stains = estimate_stain_matrix(pixels)
        concentrations = _concentrations(pixels, source_stains)
        source_max = np.percentile(concentrations, 99, axis=1)
        scale = self.max_concentrations / np.maximum(source_max, 1e-6)
        od = self.stains @ (concentrations * scale[:, None])
        out = BACKGROUND_INTENSITY * np.exp(-od)
        return np.clip(out.T.reshape(pixels.shape), 0, 255).astype(np.uint8)


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


@dataclass
class ReinhardNormalizer:
    """Reinhard colour normalisation: match L*a*b* channel means and standard deviations.

    Only pixels that are not background (lightness below 90) are used for the statistics,
    so the amount of empty glass in a tile does not shift them.
    """

    means: np.ndarray | None = None
    stds: np.ndarray | None = None

    @staticmethod
    def _stats(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lab = _lab(check_rgb_uint8(rgb)).reshape(-1, 3)
        tissue = lab[lab[:, 0] < 90.0]
        if len(tissue) < MIN_TISSUE_PIXELS:
            raise NoTissueError(
                f"The image has {len(tissue)} non-background pixels (L* < 90); at least "
                f"{MIN_TISSUE_PIXELS} are needed for Reinhard statistics. Is it blank?"
            )
        return tissue.mean(axis=0), tissue.std(axis=0) + 1e-6

    def fit(self, reference_rgb: np.ndarray) -> Self:
        """Learn the reference L*a*b* means and standard deviations.

        Raises:
            NoTissueError: The reference is (nearly) all background.
        """
        self.means, self.stds = self._stats(reference_rgb)
        return self

    def transform(self, rgb: np.ndarray) -> np.ndarray:
        """Map ``rgb``'s L*a*b* statistics onto the reference's; returns uint8 (H, W, 3).

        Raises:
            ConfigError: ``fit`` was not called.
            NoTissueError: ``rgb`` is (nearly) all background.
        """
        if self.means is None or self.stds is None:
            raise ConfigError("ReinhardNormalizer.transform needs fit(reference) first.")
        pixels = check_rgb_uint8(rgb)
        means, stds = self._stats(pixels)
        lab = _lab(pixels)
        lab = (lab - means) / stds * self.stds + self.means
        lab[..., 0] = lab[..., 0].clip(0, 100)
        out = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
        return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def hed_augment(
    rgb: np.ndarray,
    rng: np.random.Generator,
    *,
    scale_sigma: float = 0.05,
    shift_sigma: float = 0.02,
) -> np.ndarray:
    """Randomly perturb the H, E and DAB channels of an H&E image (Tellez et al., 2018).

    Each channel ``c`` of the colour deconvolution becomes ``c * a + b`` with
    ``a ~ U(1 - scale_sigma, 1 + scale_sigma)`` and ``b ~ U(-shift_sigma, shift_sigma)``.

    Args:
        rgb: uint8 (H, W, 3) image.
        rng: Random generator (pass a seeded one for reproducibility).
        scale_sigma: Half-width of the multiplicative perturbation.
        shift_sigma: Half-width of the additive perturbation (in stain density units).

    Returns:
        The augmented uint8 (H, W, 3) image.

    Raises:
        ConfigError: A sigma is negative or not below 1.
    """
    for name, value in (("scale_sigma", scale_sigma), ("shift_sigma", shift_sigma)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be in [0, 1); got {value!r}.")
    pixels = check_rgb_uint8(rgb)
    # skimage's rgb2hed/hed2rgb, without rgb2hed's clipping of negative densities, so an
    # unperturbed round trip returns the input exactly (up to rounding).
    log_adjust = np.log(1e-6)
    unit = np.maximum(pixels.astype(np.float64) / 255.0, 1e-6)
    hed = (np.log(unit) / log_adjust) @ hed_from_rgb
    scale = rng.uniform(1 - scale_sigma, 1 + scale_sigma, size=3)
    shift = rng.uniform(-shift_sigma, shift_sigma, size=3)
    out = np.exp(((hed * scale + shift) * log_adjust) @ rgb_from_hed)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def hematoxylin_channel(rgb: np.ndarray) -> np.ndarray:
    """Hematoxylin density of each pixel (colour deconvolution), float32 (H, W), >= 0."""
    return rgb2hed(check_rgb_uint8(rgb))[..., 0].clip(min=0).astype(np.float32)
