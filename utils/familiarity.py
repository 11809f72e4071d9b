"""How familiar an image looks to a classifier: distance to its training images' features.

A model trained on two hospitals' scanners answers every image with confident-looking
probabilities, including an H&E tile, a photograph or a scan from a machine it never
saw. This module flags such inputs with the feature-space Mahalanobis distance of
Lee et al. (NeurIPS 2018), on the classifier's *penultimate* features (the input of
its ``logits`` layer):

1. the training images' features are centred and projected on their first
   ``n_components`` principal axes (scikit-learn ``PCA``);
2. a shrunk covariance of the projections (scikit-learn ``LedoitWolf``) gives the
   precision matrix;
3. an image's distance is ``sqrt(z^T P z)`` for its projection ``z``; it is
   *unfamiliar* when the distance exceeds the ``quantile`` of the training images' own
   distances.

Why the projection: with 768 features and ~1,500 images the full covariance fits the
training images too closely, so new images from the *same* hospitals already look far
away (in grouped CV 62% of held-out images were flagged at the 95th percentile); 64
axes keep the held-out rate near its nominal 5%.

The flag says "this image is unlike the training images"; it is not an error
predictor (see the model card's ``familiarity.validation`` for what it was checked on).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from utils.errors import ConfigError, ModelError

__all__ = [
    "DEFAULT_N_COMPONENTS",
    "DEFAULT_QUANTILE",
    "FamiliarityReference",
    "FamiliarityResult",
    "check_fit_options",
    "familiarity_path",
    "fit_familiarity",
    "load_familiarity",
    "save_familiarity",
]

#: Principal axes kept (chosen in grouped CV, see the module docstring).
DEFAULT_N_COMPONENTS: Final = 64
#: Training-distance quantile above which an image is flagged.
DEFAULT_QUANTILE: Final = 0.95
#: File suffix of a bundle's reference, next to its ``.keras`` file.
FAMILIARITY_SUFFIX: Final = ".familiarity.npz"

_ARRAY_KEYS: Final = ("mean", "components", "precision", "reference_distances")


@dataclass(frozen=True)
class FamiliarityResult:
    """How one image compares with the training images.

    Attributes:
        distance: Mahalanobis distance of its features to the training images'.
        percentile: Share of training images (in %) that lie closer than it.
        unfamiliar: Whether the distance exceeds the reference's threshold.
    """

    distance: float
    percentile: float
    unfamiliar: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "distance": round(self.distance, 3),
            "percentile": round(self.percentile, 1),
            "unfamiliar": self.unfamiliar,
        }


@dataclass(frozen=True)
class FamiliarityReference:
    """The training images' feature statistics, and the flagging threshold.

    Attributes:
        mean: (D,) mean feature vector.
        components: (K, D) principal axes, rows orthonormal.
        precision: (K, K) inverse of the shrunk covariance of the projections.
        reference_distances: Sorted distances of the training images themselves.
        quantile: Quantile of ``reference_distances`` used as the threshold.
        weights_fingerprint: Fingerprint of the model whose features these are (empty
            when unknown), so a reference is never applied to other weights.
    """

    mean: np.ndarray
    components: np.ndarray
    precision: np.ndarray
    reference_distances: np.ndarray
    quantile: float
    weights_fingerprint: str = ""

    @property
    def n_features(self) -> int:
        """Feature dimension D the reference expects."""
        return int(self.mean.shape[0])

    @property
    def threshold(self) -> float:
        """Distance above which an image is unfamiliar."""
        return float(np.quantile(self.reference_distances, self.quantile))

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of (N, D) ``features``.

        Raises:
            ConfigError: ``features`` is not a finite (N, D) array of this dimension.
        """
        features = _check_features(features, "features")
        if features.shape[1] != self.n_features:
            raise ConfigError(
                f"features have {features.shape[1]} columns but this familiarity reference "
                f"was fitted on {self.n_features}."
            )
        return _mahalanobis(features, self.mean, self.components, self.precision)

    def assess(self, features: np.ndarray) -> list[FamiliarityResult]:
        """One :class:`FamiliarityResult` per row of (N, D) ``features``."""
        distances = self.distances(features)
        closer = np.searchsorted(self.reference_distances, distances, side="left")
        percentiles = 100.0 * closer / len(self.reference_distances)
        threshold = self.threshold
        return [
            FamiliarityResult(float(d), float(p), bool(d > threshold))
            for d, p in zip(distances, percentiles, strict=True)
        ]


def _mahalanobis(
    features: np.ndarray, mean: np.ndarray, components: np.ndarray, precision: np.ndarray
) -> np.ndarray:
    projected = (features - mean) @ components.T
    squared = np.einsum("ij,jk,ik->i", projected, precision, projected)
    return np.sqrt(np.maximum(squared, 0.0))


def _check_features(features: Any, what: str) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ConfigError(f"{what} must be a non-empty (N, D) array; received shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ConfigError(f"{what} contain NaN or infinite values.")
    return array


def check_fit_options(n_components: object, quantile: object) -> None:
    """Refuse settings :func:`fit_familiarity` cannot use, before any costly work.

    Raises:
        ConfigError: ``n_components`` is not a positive integer or ``quantile`` not in (0, 1).
    """
    if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
        raise ConfigError(f"n_components must be a positive integer; received {n_components!r}.")
    if isinstance(quantile, bool) or not isinstance(quantile, int | float) or not 0 < quantile < 1:
        raise ConfigError(f"quantile must be a number in (0, 1); received {quantile!r}.")


def fit_familiarity(
    features: np.ndarray,
    *,
    n_components: int = DEFAULT_N_COMPONENTS,
    quantile: float = DEFAULT_QUANTILE,
    weights_fingerprint: str = "",
) -> FamiliarityReference:
    """Fit the reference on the training images' (N, D) penultimate features.

    Args:
        features: One row per training image.
        n_components: Principal axes kept; at most ``min(N - 1, D)``.
        quantile: Training-distance quantile that becomes the threshold, in (0, 1).
        weights_fingerprint: The model's weights fingerprint, stored with the reference.

    Returns:
        The fitted reference.

    Raises:
        ConfigError: Bad features, ``n_components`` or ``quantile``.
    """
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    check_fit_options(n_components, quantile)
    features = _check_features(features, "features")
    n_images, n_features = features.shape
    limit = min(n_images - 1, n_features)
    if not n_components <= limit:
        raise ConfigError(
            f"n_components must be from 1 to {limit} for {n_images} images of {n_features} "
            f"features; received {n_components}."
        )
    mean = features.mean(axis=0)
    components = PCA(n_components=n_components, random_state=0).fit(features - mean).components_
    projected = (features - mean) @ components.T
    precision = LedoitWolf().fit(projected).precision_
    return FamiliarityReference(
        mean=mean,
        components=components,
        precision=precision,
        reference_distances=np.sort(_mahalanobis(features, mean, components, precision)),
        quantile=float(quantile),
        weights_fingerprint=weights_fingerprint,
    )


def familiarity_path(model_path: Path | str) -> Path:
    """Where a bundle's reference lives: ``NAME.familiarity.npz`` next to ``NAME.keras``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + FAMILIARITY_SUFFIX)


def save_familiarity(reference: FamiliarityReference, path: Path | str) -> Path:
    """Write the reference as a compressed ``.npz`` (float32 arrays, no pickles)."""
    path = Path(path)
    arrays = {key: np.asarray(getattr(reference, key), dtype=np.float32) for key in _ARRAY_KEYS}
    np.savez_compressed(
        path,
        quantile=np.float64(reference.quantile),
        weights_fingerprint=np.str_(reference.weights_fingerprint),
        **arrays,
    )
    return path


def load_familiarity(path: Path | str) -> FamiliarityReference:
    """Read a reference written by :func:`save_familiarity`.

    Raises:
        ModelError: The file is missing, unreadable, or its arrays do not fit together.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Familiarity reference {path} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as data:
            fields = {key: np.asarray(data[key], dtype=np.float64) for key in _ARRAY_KEYS}
            quantile = float(data["quantile"])
            fingerprint = str(data["weights_fingerprint"])
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(
            f"Familiarity reference {path} is unreadable or incomplete (needs "
            f"{', '.join(_ARRAY_KEYS)}, quantile, weights_fingerprint): {error}"
        ) from error
    mean, components, precision = fields["mean"], fields["components"], fields["precision"]
    k = components.shape[0] if components.ndim == 2 else -1
    if (
        mean.ndim != 1
        or components.shape != (k, mean.shape[0])
        or precision.shape != (k, k)
        or fields["reference_distances"].ndim != 1
        or not 0 < quantile < 1
    ):
        raise ModelError(
            f"Familiarity reference {path} is inconsistent: mean {mean.shape}, components "
            f"{components.shape}, precision {precision.shape}, quantile {quantile}."
        )
    return FamiliarityReference(quantile=quantile, weights_fingerprint=fingerprint, **fields)
