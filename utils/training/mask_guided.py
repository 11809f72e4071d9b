"""Mask-guided classifier experiment: the segmenter's output as extra input channels.

Malignancy shows in a lesion's shape and margin, which a 96-px whole-image classifier
may miss. This variant feeds the classifier three channels instead of one:

0. the grey-scale image;
1. the segmenter's lesion-probability map (x 255);
2. the image inside the dilated predicted lesion region (zero elsewhere), a
   lesion-centred view that keeps the margin and the tissue just around it.

Grouped cross-validation must not leak: each fold's masks come from the segmenter
trained on that same fold's training images (a segmenter CV run with the same folds,
see :func:`utils.training.common.grouped_cv_folds`). Validation images get that
model's out-of-fold predictions, as at deployment; training images get its in-sample
predictions, the closest stand-in for what the shipped segmenter gives on its own
training data. Normal images take part with whatever the segmenter predicts for them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np

from utils.errors import ConfigError
from utils.models.mask_guided import (
    build_mask_guided_classifier,
    build_mask_guided_front_end,
    lesion_view_pool_size,
)
from utils.training.arrays import TrainingArrays
from utils.training.classification import (
    ClassifierTrainConfig,
    _cv_temperature,
    check_classifier_config,
    classifier_fold_metrics,
    collect_classifier_cv_results,
    train_classifier,
    train_final_classifier,
)
from utils.training.classifier_card import ship_classifier
from utils.training.common import (
    config_from_saved,
    fold_finished,
    grouped_cv_folds,
    predict_in_batches,
    require_grouped_fold,
    run_grouped_cv,
    write_json,
)
from utils.training.segmentation import (
    SegmenterTrainConfig,
    _build_architecture,
    predict_probability_maps,
)

LOGGER = logging.getLogger(__name__)

#: Channels of a mask-guided input.
MASK_GUIDED_CHANNELS = 3


def mask_guided_images(
    images: np.ndarray, probability_maps: np.ndarray, threshold: float = 0.5
) -> np.ndarray:
    """Stack image, probability map and lesion view into (N, H, W, 3) uint8 inputs.

    Args:
        images: (N, H, W, 1) uint8 grey-scale images.
        probability_maps: (N, H, W) lesion probabilities in [0, 1], same H and W.
        threshold: Probability above which a pixel counts as lesion for the view.

    Returns:
        (N, H, W, 3) uint8 array (see the module docstring for the channels).

    Raises:
        ConfigError: The shapes do not match.
    """
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ConfigError(f"images must be (N, H, W, 1); received shape {images.shape}.")
    if probability_maps.shape != images.shape[:3]:
        raise ConfigError(
            f"probability_maps must be {images.shape[:3]} to match the images; received "
            f"{probability_maps.shape}."
        )
    side = lesion_view_pool_size(images.shape[1])
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    gray = images[..., 0]
    probability = np.clip(probability_maps, 0.0, 1.0)
    lesion_view = np.empty_like(gray)
    for index, (image, prob) in enumerate(zip(gray, probability, strict=True)):
        region = cv2.dilate((prob >= threshold).astype(np.uint8), kernel)
        lesion_view[index] = image * region
    prob_channel = np.round(probability * 255.0).astype(np.uint8)
    return np.stack([gray, prob_channel, lesion_view], axis=-1)


def _segmenter_config(segmenter_cv_dir: Path) -> SegmenterTrainConfig:
    """The configuration of a finished segmenter CV run (its ``cv.json``)."""
    cv_path = segmenter_cv_dir / "cv.json"
    if not cv_path.is_file():
        raise ConfigError(f"{cv_path} is missing: pass a finished `train segment --folds` run.")
    return config_from_saved(SegmenterTrainConfig, json.loads(cv_path.read_text())["config"])


def fold_segmenter(
    segmenter_cv_dir: Path, fold: int, n_val: int, image_size: int
) -> tuple[keras.Model, float]:
    """Fold ``fold``'s segmenter of a CV run, with its tuned threshold.

    Raises:
        ConfigError: The segmenter run lacks the fold, has another image size, or its
            fold held out a different number of images (the folds do not match).
    """
    config = _segmenter_config(segmenter_cv_dir)
    fold_dir = segmenter_cv_dir / f"fold_{fold}"
    require_grouped_fold(fold_dir)
    metrics_path, weights_path = fold_dir / "metrics.json", fold_dir / "best.weights.h5"
    if not metrics_path.is_file() or not weights_path.is_file():
        raise ConfigError(f"{fold_dir} has no finished segmenter fold (metrics and weights).")
    metrics = json.loads(metrics_path.read_text())
    if metrics.get("n_val") != n_val:
        raise ConfigError(
            f"Segmenter fold {fold} held out {metrics.get('n_val')} images but this fold holds "
            f"out {n_val}: the runs do not share folds (same data, order, --folds and --seed)."
        )
    if config.image_size != image_size:
        raise ConfigError(
            f"The segmenter run is {config.image_size} px but the images are "
            f"{image_size} px; use the same --image-size."
        )
    model = _build_architecture(config)
    model.load_weights(weights_path)
    return model, float(metrics["threshold"])


def fold_probability_maps(
    arrays: TrainingArrays, segmenter_cv_dir: Path, fold: int, n_val: int
) -> tuple[np.ndarray, float]:
    """Probability maps of every image from fold ``fold``'s segmenter, and its threshold.

    Raises:
        ConfigError: See :func:`fold_segmenter`.
    """
    model, threshold = fold_segmenter(segmenter_cv_dir, fold, n_val, arrays.images.shape[1])
    return predict_probability_maps(model, arrays.images), threshold


def cross_validate_mask_guided(
    arrays: TrainingArrays,
    config: ClassifierTrainConfig,
    out_dir: Path,
    segmenter_cv_dir: Path,
    *,
    n_folds: int = 5,
    only_folds: list[int] | None = None,
) -> dict[str, Any]:
    """Grouped k-fold CV of the mask-guided classifier; writes ``cv.json`` like the plain one.

    Args:
        arrays: All examples as (N, H, W, 1) grey-scale images.
        config: Classifier configuration; its channels become 3.
        out_dir: Run folder (``fold_<k>/`` per fold, then ``cv.json``); resumable.
        segmenter_cv_dir: Finished segmenter CV run on the same data, folds and seed.
        n_folds: Number of folds (must match the segmenter run).
        only_folds: Run just these folds.

    Returns:
        The CV summary (see :func:`~utils.training.classification.cross_validate_classifier`).

    Raises:
        ConfigError: Bad configuration, or the segmenter run does not match.
    """
    config = head_config(config)
    check_classifier_config(config)
    arrays = replace(arrays, masks=None)
    folds = grouped_cv_folds(arrays, n_folds, config.seed)
    for fold, (_, val_idx) in enumerate(folds):
        if only_folds is not None and fold not in only_folds:
            continue
        if fold_finished(out_dir / f"fold_{fold}"):
            LOGGER.info("fold %d already finished; skipping", fold)
            continue
        maps, threshold = fold_probability_maps(arrays, segmenter_cv_dir, fold, len(val_idx))
        fold_arrays = replace(arrays, images=mask_guided_images(arrays.images, maps, threshold))

        run_grouped_cv(
            fold_arrays,
            out_dir,
            lambda train, val, fold_dir: classifier_fold_metrics(
                train_classifier(train, val, config, fold_dir)
            ),
            n_folds=n_folds,
            seed=config.seed,
            only_folds=[fold],
            deadline=config.deadline,
        )
    cv = collect_classifier_cv_results(out_dir, config)
    cv["mask_source"] = str(segmenter_cv_dir)
    write_json(out_dir / "cv.json", cv)
    return cv


def head_config(config: ClassifierTrainConfig) -> ClassifierTrainConfig:
    """The configuration of the classifier head: ``config`` with three input channels."""
    return replace(config, channels=MASK_GUIDED_CHANNELS)


def front_end_images(
    front_end: keras.Model, images: np.ndarray, batch_size: int = 32
) -> np.ndarray:
    """The front end's three-channel head inputs of uint8 (N, H, W, 1) images, as uint8."""
    stacked = predict_in_batches(front_end, images, batch_size)
    return np.round(np.clip(stacked, 0.0, 1.0) * 255.0).astype(np.uint8)


def train_final_mask_guided(
    arrays: TrainingArrays,
    segmenter: keras.Model,
    threshold: float,
    config: ClassifierTrainConfig,
    run_dir: Path,
) -> keras.Model:
    """Train the head on all images and save the composed model as ``run_dir/model.keras``.

    The head trains on what the composed model's own front end makes of each image
    (the embedded segmenter's in-sample maps, as in the cross-validation), so training
    and inference see the same inputs. ``run_dir/head/`` keeps the head's run;
    ``run_dir/final.json`` describes the composed model.

    Args:
        arrays: All examples as (N, H, W, 1) uint8 images at the segmenter's input size.
        segmenter: The segmenter to embed (e.g. the shipped bundle's model).
        threshold: Its lesion threshold.
        config: Head configuration (``image_size`` is the head's input side).
        run_dir: Final-model folder (``OUT/final``); the temperature is read from
            ``run_dir.parent / "cv.json"``.

    Returns:
        The composed model.

    Raises:
        ConfigError: The images do not match the segmenter's input.
        ModelError: The segmenter or head cannot be composed.
    """
    config = head_config(config)
    check_classifier_config(config)
    expected = tuple(segmenter.input_shape[1:])
    if tuple(arrays.images.shape[1:]) != expected:
        raise ConfigError(
            f"The images are {tuple(arrays.images.shape[1:])} but the segmenter takes "
            f"{expected}; load them at the segmenter's size."
        )
    front_end = build_mask_guided_front_end(segmenter, config.image_size, threshold)
    head_arrays = replace(arrays, images=front_end_images(front_end, arrays.images), masks=None)
    head, temperature = train_final_classifier(
        head_arrays,
        config,
        run_dir / "head",
        temperature=_cv_temperature(run_dir.parent / "cv.json"),
    )
    model = build_mask_guided_classifier(segmenter, head, threshold)
    model.save(run_dir / "model.keras")
    final = json.loads((run_dir / "head" / "final.json").read_text())
    final.update(
        input_shape=list(expected),
        head_input_shape=list(config.input_shape),
        mask_guided={"segmenter_threshold": threshold, "segmenter": segmenter.name},
        temperature=temperature,
    )
    write_json(run_dir / "final.json", final)
    return model


def ship_mask_guided(
    run_dir: Path,
    arrays: TrainingArrays,
    config: ClassifierTrainConfig,
    segmenter_cv_dir: Path,
    **options: Any,
) -> Path:
    """Ship a mask-guided run (CV + final) with :func:`ship_classifier`.

    The out-of-fold probabilities of the card use, for each fold, the masks of that
    fold's segmenter, exactly as the CV did.

    Args:
        run_dir: The run folder (``cv.json``, ``fold_<k>/``, ``final/``).
        arrays: All examples as (N, H, W, 1) uint8 images at the head's input size.
        config: The run's configuration.
        segmenter_cv_dir: The segmenter CV run the CV used.
        **options: ``name``, ``models_dir`` and card fields of :func:`ship_classifier`.
    """

    def fold_inputs(fold: int, val_idx: np.ndarray) -> np.ndarray:
        # Only the held-out images need maps; the fold's own count checks the folds match.
        held_out = arrays.subset(val_idx)
        maps, threshold = fold_probability_maps(held_out, segmenter_cv_dir, fold, len(val_idx))
        return mask_guided_images(held_out.images, maps, threshold)

    return ship_classifier(run_dir, arrays, head_config(config), fold_inputs=fold_inputs, **options)
