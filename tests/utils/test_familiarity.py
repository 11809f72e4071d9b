from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from utils.errors import ConfigError, ModelError
from utils.familiarity import (
    FamiliarityReference,
    familiarity_path,
    fit_familiarity,
    load_familiarity,
    save_familiarity,
)


def _gaussian(rng: np.random.Generator, n: int, dim: int = 20, shift: float = 0.0) -> np.ndarray:
    # Correlated features: a few strong axes, as penultimate features are.
    scales = np.linspace(3.0, 0.2, dim)
    return rng.normal(size=(n, dim)) * scales + shift


def test_held_out_images_of_the_same_distribution_are_flagged_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    reference = fit_familiarity(_gaussian(rng, 2000), n_components=8, quantile=0.95)
    held_out = reference.assess(_gaussian(rng, 2000))
    rate = np.mean([result.unfamiliar for result in held_out])
    assert 0.03 < rate < 0.08
    assert reference.threshold == pytest.approx(np.quantile(reference.reference_distances, 0.95))


def test_shifted_images_are_flagged_and_lie_at_high_percentiles() -> None:
    rng = np.random.default_rng(1)
    reference = fit_familiarity(_gaussian(rng, 1000), n_components=8)
    shifted = reference.assess(_gaussian(rng, 200, shift=6.0))
    assert np.mean([result.unfamiliar for result in shifted]) > 0.95
    assert np.median([result.percentile for result in shifted]) == pytest.approx(100.0)
    inside = reference.assess(np.zeros((1, 20)) + reference.mean)[0]
    assert inside.distance == pytest.approx(0.0, abs=1e-9)
    assert inside.percentile == 0.0 and not inside.unfamiliar
    assert inside.to_dict() == {"distance": 0.0, "percentile": 0.0, "unfamiliar": False}


def test_a_few_axes_keep_held_out_images_familiar_where_all_axes_overfit() -> None:
    # 300 images of 200 features: the full covariance fits the training images too
    # closely, so new images from the same distribution look far away.
    rng = np.random.default_rng(2)
    train, held_out = _gaussian(rng, 300, dim=200), _gaussian(rng, 500, dim=200)

    def flagged(n_components: int) -> float:
        reference = fit_familiarity(train, n_components=n_components, quantile=0.95)
        return float(np.mean(reference.distances(held_out) > reference.threshold))

    assert flagged(199) > 0.3
    assert flagged(10) < 0.12


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    reference = fit_familiarity(_gaussian(rng, 300), n_components=5, weights_fingerprint="abc")
    path = save_familiarity(reference, familiarity_path(tmp_path / "model.keras"))
    assert path.name == "model.familiarity.npz"
    loaded = load_familiarity(path)
    assert isinstance(loaded, FamiliarityReference)
    assert loaded.weights_fingerprint == "abc" and loaded.quantile == reference.quantile
    features = _gaussian(rng, 10)
    np.testing.assert_allclose(loaded.distances(features), reference.distances(features), rtol=1e-4)


@pytest.mark.parametrize(
    ("features", "options", "match"),
    [
        (np.zeros((0, 4)), {}, r"non-empty \(N, D\) array; received shape \(0, 4\)"),
        (np.zeros(5), {}, r"non-empty \(N, D\) array; received shape \(5,\)"),
        (np.full((10, 3), np.nan), {"n_components": 2}, "NaN or infinite"),
        (np.ones((10, 3)), {"n_components": 4}, "n_components must be from 1 to 3 .* received 4"),
        (np.ones((10, 3)), {"n_components": 2.0}, "n_components must be a positive integer"),
        (np.ones((10, 3)), {"n_components": 0}, "n_components must be a positive integer"),
        (np.ones((10, 3)), {"n_components": 2, "quantile": 1.0}, r"quantile must be .* \(0, 1\)"),
        (np.ones((10, 3)), {"n_components": 2, "quantile": True}, "quantile must be"),
    ],
)
def test_bad_fits_are_refused(features: np.ndarray, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fit_familiarity(features, **options)


def test_features_of_another_size_are_refused() -> None:
    reference = fit_familiarity(_gaussian(np.random.default_rng(4), 100), n_components=3)
    with pytest.raises(ConfigError, match=r"have 7 columns but .* fitted on 20"):
        reference.distances(np.zeros((2, 7)))


def test_missing_and_broken_files_raise_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_familiarity(tmp_path / "absent.familiarity.npz")
    partial = tmp_path / "partial.npz"
    np.savez(partial, mean=np.zeros(3))
    with pytest.raises(ModelError, match="unreadable or incomplete"):
        load_familiarity(partial)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="unreadable or incomplete"):
        load_familiarity(garbage)
    inconsistent = tmp_path / "inconsistent.npz"
    np.savez(
        inconsistent,
        mean=np.zeros(3),
        components=np.zeros((2, 4)),
        precision=np.eye(2),
        reference_distances=np.arange(5.0),
        quantile=0.95,
        weights_fingerprint="",
    )
    with pytest.raises(ModelError, match=r"inconsistent: mean \(3,\), components \(2, 4\)"):
        load_familiarity(inconsistent)
