"""From a finished segmenter run to a shipped bundle with an honest model card.

A run folder made by ``python -m utils.train segment --folds K`` (then ``--final`` into
``RUN/final``) holds one ``fold_<k>/best.weights.h5`` per fold, ``cv.json`` and
``final/model.keras``. This module:

* rebuilds each fold's best model and predicts the images that fold held out, giving an
  out-of-fold probability map for every image, post-processed at that fold's threshold;
* scores those masks pooled over all folds, at the model's resolution and at each
  image's own resolution (bilinear upsampling, as the app does), with bootstrap 95% CIs
  over patient groups, and compares the lesion measurements read from the masks with
  those read from the reference outlines;
* writes ``saved_models/<name>.{keras,json,md}`` with the card.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from utils.datasets.masks import load_mask
from utils.errors import ConfigError
from utils.evaluation.bootstrap import bootstrap_ci
from utils.evaluation.descriptors import MeasurementPair, descriptor_agreement
from utils.image_io import load_image
from utils.measurements import measure_lesion_or_none
from utils.model_card import save_model_bundle
from utils.paths import SAVED_MODELS_DIR
from utils.postprocess import PostprocessConfig, dice_score, postprocess_mask
from utils.resize import resize_probabilities
from utils.training.arrays import TrainingArrays
from utils.training.common import cv_card_section, describe_training_data, grouped_cv_folds
from utils.training.mask_guided import fold_probability_maps
from utils.training.segmentation import SegmenterTrainConfig

LOGGER = logging.getLogger(__name__)

#: Resamples of the patient-group bootstrap behind every pooled interval.
N_RESAMPLES = 2000


def out_of_fold_maps(
    arrays: TrainingArrays, run_dir: Path, n_folds: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every image's probability map from the fold model that held it out.

    Returns:
        ``(maps, thresholds)``: float32 (N, H, W) maps at the model's size, and each
        image's fold threshold.

    Raises:
        ConfigError: A fold is missing or the run's folds differ from these arrays'.
    """
    maps = np.zeros(arrays.images.shape[:3], dtype=np.float32)
    thresholds = np.zeros(len(arrays), dtype=np.float64)
    for fold, (_, val_idx) in enumerate(grouped_cv_folds(arrays, n_folds, seed)):
        fold_maps, threshold = fold_probability_maps(
            arrays.subset(val_idx), run_dir, fold, len(val_idx)
        )
        maps[val_idx] = fold_maps[..., 0] if fold_maps.ndim == 4 else fold_maps
        thresholds[val_idx] = threshold
    return maps, thresholds


def _at_threshold(postprocess: PostprocessConfig, threshold: float) -> PostprocessConfig:
    """``postprocess`` at one fold's threshold."""
    return replace(postprocess, threshold=float(threshold))


def _grouped_rate(values: Sequence[float], groups: Sequence[str]) -> dict[str, Any]:
    """Mean of per-image values with a bootstrap 95% CI that resamples whole groups."""
    per_group: dict[str, list[float]] = {}
    for value, group in zip(values, groups, strict=True):
        per_group.setdefault(group, []).append(float(value))
    rows = np.array([(sum(v), len(v)) for v in per_group.values()], dtype=float)
    if len(rows) == 0:
        return {"mean": None, "ci95": None, "n_images": 0, "n_groups": 0}
    low, high = bootstrap_ci(
        rows, lambda sample: sample[:, 0].sum() / sample[:, 1].sum(), n_resamples=N_RESAMPLES
    )
    return {
        "mean": round(float(rows[:, 0].sum() / rows[:, 1].sum()), 4),
        "ci95": [round(low, 4), round(high, 4)],
        "n_images": int(rows[:, 1].sum()),
        "n_groups": len(rows),
    }


def _scores(
    masks: Sequence[np.ndarray], truths: Sequence[np.ndarray], labels: Sequence[str]
) -> tuple[list[int], list[float], list[int]]:
    """Lesion image indices with their Dice, and normal images' "any mask" flags."""
    lesion_idx, dices, flagged = [], [], []
    for index, (mask, truth) in enumerate(zip(masks, truths, strict=True)):
        if truth.any():
            lesion_idx.append(index)
            dices.append(dice_score(mask, truth))
        elif labels[index] == "normal":
            flagged.append(int(mask.any()))
    return lesion_idx, dices, flagged


def pooled_section(
    masks: Sequence[np.ndarray], truths: Sequence[np.ndarray], arrays: TrainingArrays
) -> dict[str, Any]:
    """Pooled lesion Dice (overall and per label) and normal false-positive rate."""
    lesion_idx, dices, flagged = _scores(masks, truths, arrays.labels)
    normal_groups = [
        g for g, label in zip(arrays.groups, arrays.labels, strict=True) if label == "normal"
    ]
    per_label = {}
    for label in sorted({arrays.labels[i] for i in lesion_idx}):
        picked = [k for k, i in enumerate(lesion_idx) if arrays.labels[i] == label]
        per_label[label] = round(float(np.mean([dices[k] for k in picked])), 4)
    return {
        "lesion_dice": _grouped_rate(dices, [arrays.groups[i] for i in lesion_idx]),
        "lesion_dice_by_label": per_label,
        "normal_false_positive_rate": _grouped_rate(flagged, normal_groups),
    }


def _relative_errors(pair: MeasurementPair) -> tuple[float, float]:
    """Relative errors of the longest diameter and the area, mask against reference."""
    predicted, reference = pair
    return (
        (predicted.longest_diameter - reference.longest_diameter) / reference.longest_diameter,
        (predicted.area - reference.area) / reference.area,
    )


def _error_summary(errors: np.ndarray) -> dict[str, float]:
    return {
        "median": round(float(np.median(errors)), 4),
        "median_absolute": round(float(np.median(np.abs(errors))), 4),
        "p90_absolute": round(float(np.quantile(np.abs(errors), 0.9)), 4),
    }


def native_resolution_section(
    arrays: TrainingArrays,
    maps: np.ndarray,
    thresholds: np.ndarray,
    mask_paths: Mapping[str, Sequence[Path]],
    postprocess: PostprocessConfig,
) -> dict[str, Any]:
    """Pooled scores of the out-of-fold masks at each image's own size, as the app shows them.

    Args:
        arrays: The CV's examples (``sources`` are the image paths).
        maps: Out-of-fold maps at the model's size (:func:`out_of_fold_maps`).
        thresholds: Each image's fold threshold.
        mask_paths: Image path -> its reference mask files (none for normal images).
        postprocess: Post-processing of the shipped card; its threshold is replaced by
            each image's fold threshold.

    Returns:
        The :func:`pooled_section` scores plus ``measurement_agreement``: relative
        errors of the longest diameter and the area against the reference outline, and
        the agreement of the shape, margin and echo descriptors
        (:func:`~utils.evaluation.descriptors.descriptor_agreement`).

    Raises:
        ConfigError: A lesion image of ``arrays`` has no mask file in ``mask_paths``.
    """
    masks, truths = [], []
    pairs: list[MeasurementPair] = []
    pair_labels: list[str] = []
    for index, source in enumerate(arrays.sources):
        gray = load_image(source).gray
        height, width = gray.shape
        paths = mask_paths.get(source, ())
        if not paths and arrays.masks is not None and arrays.masks[index].any():
            raise ConfigError(
                f"{source} has a lesion mask in the training arrays but no mask file in "
                "mask_paths: pass the same --data folders the run was trained on."
            )
        truths.append(
            load_mask(paths, shape=(height, width)).astype(bool)
            if paths
            else np.zeros((height, width), bool)
        )
        upsampled = resize_probabilities(maps[index], (height, width))  # as the app does
        masks.append(postprocess_mask(upsampled, _at_threshold(postprocess, thresholds[index])))
        # Measured here, while the image is loaded: the echo descriptors need it.
        from_mask = measure_lesion_or_none(masks[-1], gray)
        from_reference = measure_lesion_or_none(truths[-1], gray)
        if from_mask is not None and from_reference is not None:
            pairs.append((from_mask, from_reference))
            pair_labels.append(arrays.labels[index])
    section = pooled_section(masks, truths, arrays)
    errors_array = np.array([_relative_errors(p) for p in pairs], dtype=float).reshape(-1, 2)
    section["measurement_agreement"] = {
        "what": "relative error (mask - reference) / reference, over lesion images where "
        "both outlines exist",
        "n_images": len(errors_array),
        "longest_diameter": _error_summary(errors_array[:, 0]) if len(errors_array) else None,
        "area": _error_summary(errors_array[:, 1]) if len(errors_array) else None,
        "descriptors": descriptor_agreement(pairs, pair_labels),
    }
    return section


def _cv_section(cv: dict[str, Any]) -> dict[str, Any]:
    section = cv_card_section(
        cv,
        "Grouped k-fold CV (patient / near-duplicate groups) with exactly the shipped "
        "model's configuration; Dice, IoU and HD95 on masks at the model's resolution, "
        "each fold's threshold tuned on its own held-out images.",
    )
    return {
        "protocol": section["note"],
        "n_folds": section["n_folds"],
        "summary": section["summary"],
        "folds": section["per_fold"],
        "config": section["config"],
    }


def headline_metrics(pooled: dict[str, Any]) -> dict[str, Any]:
    """The pooled scores the Models page tabulates: value and 95% CI per metric.

    Args:
        pooled: ``{"model_resolution": ..., "native_resolution": ...}`` sections of
            :func:`pooled_section` / :func:`native_resolution_section`.
    """
    native, small = pooled["native_resolution"], pooled["model_resolution"]
    picked = {
        "lesion_dice": native["lesion_dice"],
        "lesion_dice_at_model_resolution": small["lesion_dice"],
        "normal_false_positive_rate": native["normal_false_positive_rate"],
    }
    n_images = native["lesion_dice"]["n_images"] + native["normal_false_positive_rate"]["n_images"]
    return {
        "n": n_images,
        **{key: rate["mean"] for key, rate in picked.items()},
        "ci95": {key: rate["ci95"] for key, rate in picked.items()},
    }


def build_segmenter_card(
    cv: dict[str, Any],
    config: SegmenterTrainConfig,
    postprocess: PostprocessConfig,
    pooled: dict[str, Any],
    training_data: dict[str, Any],
    n_parameters: int,
    **fields: Any,
) -> dict[str, Any]:
    """The card of a cross-validated, finally trained segmenter.

    Args:
        cv: The run's ``cv.json``.
        config: The run's configuration (the final model was trained with it).
        postprocess: The shipped post-processing (threshold from the CV).
        pooled: ``{"model_resolution": ..., "native_resolution": ...}`` pooled scores.
        training_data: :func:`utils.training.common.describe_training_data`.
        n_parameters: The model's parameter count.
        **fields: More card fields (title, status, version, limitations, ...); they
            override the defaults.
    """
    size = config.image_size
    card = {
        "task": "segmentation",
        "architecture": f"{config.arch} (base {config.base_filters} filters, depth "
        f"{config.depth}, {n_parameters:,} parameters)",
        "input_shape": [size, size, 1],
        "input": f"grey-scale B-mode image resized to {size}x{size} (area interpolation), "
        "float in [0, 1]",
        "output": f"per-pixel lesion probability (sigmoid), {size}x{size}; the app resizes it "
        "bilinearly to the image's own size before thresholding",
        "trained_from": "random initialisation (no pretrained weights of any kind)",
        "training_data": training_data,
        "final_training": {
            "epochs": config.epochs,
            "normal_oversample": config.normal_oversample,
            "loss": config.loss,
            "config": config.to_dict(),
        },
        "postprocess": asdict(postprocess),
        "cv": _cv_section(cv),
        "cv_pooled": {
            "what": "every image segmented by the fold model that held it out, at that "
            "fold's threshold; 95% CIs from a bootstrap over patient groups "
            f"({N_RESAMPLES} resamples)",
            "metrics": headline_metrics(pooled),
            **pooled,
        },
    }
    card.update(fields)
    return card


def ship_segmenter(
    run_dir: Path,
    arrays: TrainingArrays,
    config: SegmenterTrainConfig,
    mask_paths: Mapping[str, Sequence[Path]],
    *,
    name: str = "ultrasound_segmenter",
    models_dir: Path = SAVED_MODELS_DIR,
    **fields: Any,
) -> Path:
    """Write the run's final model and card as ``models_dir/name.{keras,json,md}``.

    Args:
        run_dir: A finished ``segment --folds K`` run with ``final/model.keras``.
        arrays: The examples the CV ran on, loaded as for training.
        config: The run's configuration.
        mask_paths: Image path -> reference mask files, for native-resolution scoring.
        name: Bundle name.
        models_dir: Destination folder.
        **fields: Further card fields (see :func:`build_segmenter_card`).

    Returns:
        Path of the ``.keras`` file.

    Raises:
        ConfigError: The run has no ``cv.json`` or final model, or fold weights are missing.
    """
    cv_path, model_path = run_dir / "cv.json", run_dir / "final" / "model.keras"
    for required in (cv_path, model_path):
        if not required.exists():
            raise ConfigError(f"{required} is missing: run the CV and --final first.")
    if arrays.masks is None:
        raise ConfigError("Shipping a segmenter needs the masks; the arrays hold none.")
    cv = json.loads(cv_path.read_text())
    postprocess = PostprocessConfig(
        threshold=round(float(cv["summary"]["threshold"]["mean"]), 4),
        min_component_area_fraction=config.min_component_area_fraction,
    )
    maps, thresholds = out_of_fold_maps(arrays, run_dir, cv["n_folds"], config.seed)
    small_masks = [
        postprocess_mask(m, _at_threshold(postprocess, t))
        for m, t in zip(maps, thresholds, strict=True)
    ]
    pooled = {
        "model_resolution": pooled_section(small_masks, arrays.masks[..., 0].astype(bool), arrays),
        "native_resolution": native_resolution_section(
            arrays, maps, thresholds, mask_paths, postprocess
        ),
    }
    model = keras.models.load_model(model_path, compile=False)
    card = build_segmenter_card(
        cv,
        config,
        postprocess,
        pooled,
        describe_training_data(arrays),
        model.count_params(),
        **fields,
    )
    path = save_model_bundle(model, name, card, models_dir=models_dir)
    native = pooled["native_resolution"]
    LOGGER.info(
        "shipped %s (pooled native-resolution Dice %.3f, normal false-positive rate %.3f)",
        path,
        native["lesion_dice"]["mean"],
        native["normal_false_positive_rate"]["mean"],
    )
    return path
