"""From a finished classifier run to a shipped bundle with an honest model card.

A run folder made by ``python -m utils.train classify --folds K --final`` holds one
``fold_<k>/best.weights.h5`` per fold, ``cv.json`` and ``final/`` (model and
``final.json``). This module:

* rebuilds each fold's best model and predicts the images that fold held out, giving
  out-of-fold probabilities for every image (temperature cross-fitted within the fold,
  as in training), from which pooled CV metrics and the ROC, reliability and confusion
  plots of the model card are computed;
* writes ``saved_models/<name>.{keras,json,md}`` with the card: what the model was
  trained from and on, CV mean ± sd per fold, pooled metrics, calibration, the refer
  rule, and known limitations.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from utils.calibration import (
    cross_fitted_probabilities,
    ece_sampling_floor,
    expected_calibration_error,
)
from utils.errors import ConfigError
from utils.evaluation.classification import classification_plot_data, classification_report
from utils.labels import encode_labels
from utils.model_card import save_model_bundle
from utils.paths import SAVED_MODELS_DIR
from utils.training.arrays import TrainingArrays
from utils.training.classification import (
    ClassifierTrainConfig,
    build_architecture,
    logit_function,
)
from utils.training.common import (
    describe_training_data,
    grouped_cv_folds,
    mean_and_sd,
    require_grouped_fold,
)
from utils.training.ensemble import MEMBER_REPORT_KEYS

LOGGER = logging.getLogger(__name__)

#: ``(fold, val_idx) -> uint8 model inputs`` of the images a fold held out.
FoldInputs = Callable[[int, np.ndarray], np.ndarray]


def out_of_fold_probabilities(
    arrays: TrainingArrays,
    config: ClassifierTrainConfig,
    cv_dir: Path,
    n_folds: int,
    *,
    fold_inputs: FoldInputs | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities of every image from the fold model that never saw it.

    Args:
        arrays: The examples the CV ran on (same order, as loaded for training).
        config: The run's configuration (architecture, input shape, seed).
        cv_dir: Folder holding ``fold_<k>/best.weights.h5``.
        n_folds: Number of folds of the run.
        fold_inputs: ``(fold, val_idx) -> uint8 model inputs`` when a fold's inputs are
            not simply ``arrays.images[val_idx]`` (the mask-guided variant).

    Returns:
        (N, C) probabilities and (N,) true class indices.

    Raises:
        ConfigError: A fold's weights are missing.
    """
    labels = encode_labels(arrays.labels, config.class_names)
    probabilities = np.zeros((len(arrays), len(config.class_names)))
    for fold, (_, val_idx) in enumerate(grouped_cv_folds(arrays, n_folds, config.seed)):
        require_grouped_fold(cv_dir / f"fold_{fold}")
        model = load_fold_model(config, cv_dir / f"fold_{fold}")
        raw = arrays.images[val_idx] if fold_inputs is None else fold_inputs(fold, val_idx)
        images = raw.astype(np.float32) / 255.0
        logits = logit_function(model, config.input_shape, config.batch_size)(images)
        val_groups = [arrays.groups[i] for i in val_idx]
        probabilities[val_idx] = cross_fitted_probabilities(
            logits, labels[val_idx], val_groups, seed=config.seed
        )
    return probabilities, labels


def load_fold_model(config: ClassifierTrainConfig, fold_dir: Path) -> keras.Model:
    """The fold's whole saved model (a combined run), else the architecture + its weights."""
    if (fold_dir / "model.keras").is_file():
        return keras.models.load_model(fold_dir / "model.keras", compile=False)
    weights = fold_dir / "best.weights.h5"
    if not weights.exists():
        fold = fold_dir.name.removeprefix("fold_")
        raise ConfigError(f"Fold {fold} has no weights at {weights}; finish the CV first.")
    model = build_architecture(config, None)
    model.load_weights(weights)
    return model


def pooled_cv_section(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    fold_of: np.ndarray | None = None,
) -> dict[str, Any]:
    """Pooled out-of-fold metrics and plot data for the card.

    Args:
        probabilities: (N, C) out-of-fold probabilities.
        labels: (N,) true class indices.
        class_names: Name of each column.
        fold_of: (N,) fold that held each image out; adds ``fold_calibration``.
    """
    report = classification_report(probabilities, labels, class_names)
    section = {
        "what": "every image predicted by the fold model that held it out; temperature "
        "cross-fitted within its fold",
        "metrics": report,
        "plots": classification_plot_data(probabilities, labels, class_names),
    }
    if fold_of is not None:
        section["fold_calibration"] = fold_calibration(probabilities, labels, fold_of)
    return section


def fold_calibration(
    probabilities: np.ndarray, labels: np.ndarray, fold_of: np.ndarray
) -> dict[str, Any]:
    """Each fold's ECE beside the ECE perfect calibration would show on that fold.

    The floor (:func:`utils.calibration.ece_sampling_floor`) says how much of a fold's
    ECE the fold's size alone explains, so a calibration goal can be read against it.

    Returns:
        ``folds`` (fold, n, ece, ece_floor, ece_floor_p95), their ``summary`` as mean ±
        sd, and ``folds_within_floor_p95``: how many folds' ECE lies below the 95th
        percentile of perfect calibration's.
    """
    rows = []
    for fold in np.unique(fold_of):
        held = fold_of == fold
        floor, floor_p95 = ece_sampling_floor(probabilities[held])
        rows.append(
            {
                "fold": int(fold),
                "n": int(held.sum()),
                "ece": expected_calibration_error(probabilities[held], labels[held]),
                "ece_floor": floor,
                "ece_floor_p95": floor_p95,
            }
        )
    keys = ("ece", "ece_floor", "ece_floor_p95")
    return {
        "what": "ece_floor: mean 15-bin ECE of a perfectly calibrated model with these "
        "probabilities on this many images (labels drawn from the probabilities); an ECE "
        "below ece_floor_p95 is consistent with perfect calibration at this size",
        "folds": rows,
        "summary": {key: mean_and_sd([row[key] for row in rows]) for key in keys},
        "folds_within_floor_p95": sum(row["ece"] <= row["ece_floor_p95"] for row in rows),
    }


def _fold_rows(cv: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("fold", "n_train", "n_val", "epochs_run", "accuracy", "balanced_accuracy")
    keys += ("macro_auc", "auc_malignant", "ece", "ece_floor", "ece_in_sample", "temperature")
    return [{key: fold.get(key) for key in keys} for fold in cv["folds"]]


def build_classifier_card(
    cv: dict[str, Any],
    final: dict[str, Any],
    pooled: dict[str, Any],
    training_data: dict[str, Any],
    **fields: Any,
) -> dict[str, Any]:
    """The card of a cross-validated, finally trained classifier.

    Args:
        cv: The run's ``cv.json``.
        final: The run's ``final/final.json``.
        pooled: :func:`pooled_cv_section` of the run.
        training_data: :func:`utils.training.common.describe_training_data`.
        **fields: More card fields (title, status, version, trained_from, training,
            comparisons, limitations, ...); they override the defaults.
    """
    config = final["config"]
    first_fold = cv["folds"][0] if cv["folds"] else {}
    card = {
        "task": "classification",
        "architecture": _architecture_text(final),
        "input_shape": final["input_shape"],
        "class_names": final["class_names"],
        "temperature": final["temperature"],
        "input": f"grey-scale B-mode image resized to {final['input_shape'][0]} px square "
        "(area interpolation), float in [0, 1]",
        "output": "class probabilities (softmax of logits / temperature)",
        "trained_from": "random initialisation (no pretrained weights of any kind)"
        if not config.get("weights")
        else f"weights {config['weights']}",
        "training_data": training_data,
        "cv": {
            "protocol": f"grouped {cv['n_folds']}-fold CV (groups: patients or near-duplicate "
            "families; stratified by dataset and label); early stopping and the temperature "
            "use the held-out fold, and the reported ECE cross-fits the temperature on the "
            "other half of that fold's groups",
            "summary": cv["summary"],
            "folds": _fold_rows(cv),
        },
        "cv_pooled": pooled,
        "calibration": {
            "method": "temperature scaling; shipped temperature = mean of the per-fold "
            "temperatures",
            "temperature": final["temperature"],
            "ece_held_out": cv["summary"].get("ece"),
            "ece_before_scaling": cv["summary"].get("ece_before"),
            **_floor_fields(cv, pooled),
        },
        "refer_rule": first_fold.get("referral_rule"),
        "final_training": {
            "n_images": final["n_images"],
            "epochs_run": final["epochs_run"],
            "class_weights": final["class_weights"],
            "config": config,
        },
    }
    if final.get("ensemble_members", 1) > 1:
        card["ensemble"] = ensemble_card_section(cv, final)
    if "combined" in final:
        card["combined"] = combined_card_section(cv, final)
    card.update(fields)
    return card


def _floor_fields(cv: dict[str, Any], pooled: dict[str, Any]) -> dict[str, Any]:
    """The per-fold ECE floor, from the pooled section or else the CV summary."""
    by_fold = pooled.get("fold_calibration")
    if by_fold is not None:
        return {
            "ece_floor_per_fold": by_fold["summary"]["ece_floor"],
            "ece_floor_p95_per_fold": by_fold["summary"]["ece_floor_p95"],
            "folds_within_floor_p95": by_fold["folds_within_floor_p95"],
        }
    floor = cv["summary"].get("ece_floor")
    return {"ece_floor_per_fold": floor} if floor is not None else {}


def _architecture_text(final: dict[str, Any]) -> str:
    members = final.get("ensemble_members", 1)
    if members <= 1:
        return final["architecture"]
    return f"{final['architecture']} deep ensemble of {members} (logits averaged)"


def ensemble_card_section(cv: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """How the ensemble was made, and its members' own CV metrics beside the ensemble's.

    The members' rows come from each fold's ``members`` report (see
    :func:`utils.training.ensemble.train_ensemble`): every member of every fold is
    scored on that fold's held-out images, without the others.
    """
    seed = final["config"]["seed"]
    members = final["ensemble_members"]
    rows = [member for fold in cv["folds"] for member in fold.get("members", [])]
    single = {
        key: mean_and_sd([row[key] for row in rows if row.get(key) is not None])
        for key in MEMBER_REPORT_KEYS
    }
    return {
        "members": members,
        "seeds": list(range(seed, seed + members)),
        "method": "each member is the same architecture trained independently on the same "
        "folds with its own seed (initialisation, shuffling, augmentation); the shipped "
        "model averages their logits, then applies one temperature",
        "single_member_cv": {"what": "each member alone, every fold", **single},
        "ensemble_cv": {key: cv["summary"].get(key) for key in MEMBER_REPORT_KEYS},
    }


def combined_card_section(cv: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """A combined model's members and each one's own CV metrics beside the whole's.

    See :mod:`utils.training.combine`; each fold's ``members`` report scores both
    members on that fold's held-out images.
    """
    rows = [member for fold in cv["folds"] for member in fold.get("members", [])]
    names = list(dict.fromkeys(row["member"] for row in rows))
    per_member = {
        name: {
            key: mean_and_sd([row[key] for row in rows if row["member"] == name])
            for key in MEMBER_REPORT_KEYS
        }
        for name in names
    }
    return {
        "method": "one head on the mask-guided input averages the calibrated logits "
        "(logits / the member's own CV temperature) of a grey-scale classifier, which reads "
        "the image channel, and a mask-guided head, which reads all three channels; one "
        "temperature is then fitted on the average. The members are the two runs' own "
        "fold models (CV) and final models (shipped): nothing is retrained",
        "members": final["combined"]["members"],
        "member_cv": per_member,
        "combined_cv": {key: cv["summary"].get(key) for key in MEMBER_REPORT_KEYS},
    }


def ship_classifier(
    run_dir: Path,
    arrays: TrainingArrays,
    config: ClassifierTrainConfig,
    *,
    name: str = "ultrasound_classifier",
    models_dir: Path = SAVED_MODELS_DIR,
    fold_inputs: FoldInputs | None = None,
    **fields: Any,
) -> Path:
    """Write the run's final model and card as ``models_dir/name.{keras,json,md}``.

    ``fold_inputs`` is passed to :func:`out_of_fold_probabilities`.

    Raises:
        ConfigError: The run has no ``cv.json``, no final model, or missing fold weights.
    """
    cv_path, final_dir = run_dir / "cv.json", run_dir / "final"
    for required in (cv_path, final_dir / "model.keras", final_dir / "final.json"):
        if not required.exists():
            raise ConfigError(f"{required} is missing: run the CV and --final first.")
    cv = json.loads(cv_path.read_text())
    final = json.loads((final_dir / "final.json").read_text())
    # The final model may have trained before the CV finished: take the CV temperature.
    final["temperature"] = cv["summary"]["temperature"]["mean"] or 1.0
    probabilities, labels = out_of_fold_probabilities(
        arrays, config, run_dir, cv["n_folds"], fold_inputs=fold_inputs
    )
    fold_of = np.zeros(len(arrays), dtype=int)
    for fold, (_, val_idx) in enumerate(grouped_cv_folds(arrays, cv["n_folds"], config.seed)):
        fold_of[val_idx] = fold
    pooled = pooled_cv_section(probabilities, labels, config.class_names, fold_of)
    card = build_classifier_card(cv, final, pooled, describe_training_data(arrays), **fields)
    model = keras.models.load_model(final_dir / "model.keras", compile=False)
    path = save_model_bundle(model, name, card, models_dir=models_dir)
    LOGGER.info("shipped %s (pooled CV accuracy %.3f)", path, pooled["metrics"]["accuracy"])
    return path
