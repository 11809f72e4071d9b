"""Cross-validated checks of the familiarity flag (:mod:`utils.familiarity`).

Given every image's penultimate features under each grouped-CV fold model, the flag
is fitted on each fold's training images only and measured on:

* the fold's held-out images (same hospitals, other patients): the share flagged is
  the false-alarm rate a user would see, nominally ``1 - quantile``;
* images from outside the training distribution (other stains, photographs...): the
  share flagged and the AUROC of the distance against the held-out images;
* the other site: a flag fitted on one dataset's training images only, scored on
  held-out images of the same dataset and of each other dataset. The fold models saw
  both datasets, so this is a proxy for a new hospital, not a leave-one-site-out test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from utils.errors import ConfigError
from utils.familiarity import DEFAULT_N_COMPONENTS, DEFAULT_QUANTILE, fit_familiarity

__all__ = ["familiarity_cv_report"]


def _auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    truth = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(truth, np.r_[inside, outside]))


def _spread(values: Sequence[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=float)
    return {
        "mean": float(array.mean()),
        "sd": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
        "per_fold": [round(float(v), 4) for v in array],
    }


def _check_inputs(
    fold_features: Sequence[np.ndarray], fold_of: np.ndarray, datasets: Sequence[str]
) -> np.ndarray:
    fold_of = np.asarray(fold_of)
    n_folds = len(fold_features)
    if n_folds < 2:
        raise ConfigError(f"Need the features of 2 or more folds; received {n_folds}.")
    if len(datasets) != len(fold_of):
        raise ConfigError(
            f"datasets has {len(datasets)} entries but fold_of has {len(fold_of)}; give one "
            "per image."
        )
    for fold, features in enumerate(fold_features):
        if np.asarray(features).shape[0] != len(fold_of):
            raise ConfigError(
                f"Fold {fold}'s features have {np.asarray(features).shape[0]} rows but there "
                f"are {len(fold_of)} images; give every image's features under every fold."
            )
    if set(np.unique(fold_of)) != set(range(n_folds)):
        raise ConfigError(
            f"fold_of must use every fold index 0..{n_folds - 1}; received "
            f"{sorted(set(np.unique(fold_of).tolist()))}."
        )
    return fold_of


def familiarity_cv_report(
    fold_features: Sequence[np.ndarray],
    fold_of: np.ndarray,
    datasets: Sequence[str],
    outside: Mapping[str, Sequence[np.ndarray]] | None = None,
    *,
    n_components: int = DEFAULT_N_COMPONENTS,
    quantile: float = DEFAULT_QUANTILE,
    held_out_correct: np.ndarray | None = None,
) -> dict[str, Any]:
    """Flag rates and AUROCs of the familiarity flag in grouped cross-validation.

    Args:
        fold_features: Per fold ``k``, the (N, D) features of *all* N images under fold
            ``k``'s model.
        fold_of: (N,) the fold in which each image is held out.
        datasets: (N,) each image's dataset name.
        outside: Named sets of images from outside the training distribution: per set,
            one (M, D) feature array per fold.
        n_components: See :func:`utils.familiarity.fit_familiarity`.
        quantile: See :func:`utils.familiarity.fit_familiarity`.
        held_out_correct: (N,) whether each image's held-out fold model classified it
            correctly; adds ``held_out_accuracy`` of the flagged and unflagged images.

    Returns:
        ``held_out_flagged`` (mean, sd, per fold), ``outside`` (per set: ``n``,
        ``flagged`` and ``auroc``, each mean, sd, per fold) and ``cross_site`` (per
        ordered dataset pair), with the settings.

    Raises:
        ConfigError: Inputs that do not line up, or bad settings.
    """
    fold_of = _check_inputs(fold_features, fold_of, datasets)
    if held_out_correct is not None and len(held_out_correct) != len(fold_of):
        raise ConfigError(
            f"held_out_correct has {len(held_out_correct)} entries but there are "
            f"{len(fold_of)} images; give one per image."
        )
    flagged_held_out = np.zeros(len(fold_of), dtype=bool)
    datasets = np.asarray(datasets)
    outside = dict(outside or {})
    held_out_flagged: list[float] = []
    outside_rates: dict[str, dict[str, list[float]]] = {
        name: {"flagged": [], "auroc": []} for name in outside
    }
    pairs = [(a, b) for a in np.unique(datasets) for b in np.unique(datasets) if a != b]
    cross: dict[str, dict[str, list[float]]] = {
        f"{a}->{b}": {"flagged_same_site": [], "flagged_other_site": [], "auroc": []}
        for a, b in pairs
    }
    for fold, features in enumerate(fold_features):
        features = np.asarray(features, dtype=np.float64)
        train, held = fold_of != fold, fold_of == fold
        reference = fit_familiarity(features[train], n_components=n_components, quantile=quantile)
        held_distances = reference.distances(features[held])
        flagged_held_out[held] = held_distances > reference.threshold
        held_out_flagged.append(float(flagged_held_out[held].mean()))
        for name, per_fold in outside.items():
            distances = reference.distances(np.asarray(per_fold[fold]))
            outside_rates[name]["flagged"].append(float((distances > reference.threshold).mean()))
            outside_rates[name]["auroc"].append(_auroc(held_distances, distances))
        for a, b in pairs:
            site = fit_familiarity(
                features[train & (datasets == a)], n_components=n_components, quantile=quantile
            )
            same = site.distances(features[held & (datasets == a)])
            other = site.distances(features[held & (datasets == b)])
            entry = cross[f"{a}->{b}"]
            entry["flagged_same_site"].append(float((same > site.threshold).mean()))
            entry["flagged_other_site"].append(float((other > site.threshold).mean()))
            entry["auroc"].append(_auroc(same, other))
    report: dict[str, Any] = {
        "n_folds": len(fold_features),
        "n_images": len(fold_of),
        "n_components": n_components,
        "quantile": quantile,
        "held_out_flagged": _spread(held_out_flagged),
        "outside": {
            name: {
                "n": int(np.asarray(outside[name][0]).shape[0]),
                **{key: _spread(values) for key, values in rates.items()},
            }
            for name, rates in outside_rates.items()
        },
        "cross_site": {
            pair: {key: _spread(values) for key, values in entry.items()}
            for pair, entry in cross.items()
        },
    }
    if held_out_correct is not None:
        correct = np.asarray(held_out_correct, dtype=bool)
        report["held_out_accuracy"] = {
            group: {
                "n": int(mask.sum()),
                "accuracy": float(correct[mask].mean()) if mask.any() else None,
            }
            for group, mask in (("flagged", flagged_held_out), ("unflagged", ~flagged_held_out))
        }
    return report
