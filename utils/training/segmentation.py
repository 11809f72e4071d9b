"""Training, threshold selection and grouped cross-validation of the lesion segmenter."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from utils.augment_config import AugmentConfig
from utils.errors import ConfigError
from utils.evaluation.segmentation import segmentation_report
from utils.models.losses import dice_coefficient, get_segmentation_loss
from utils.models.segmentation import DEFAULT_SEGMENTATION_ARCH, build_segmentation_model
from utils.postprocess import PostprocessConfig, choose_threshold, postprocess_mask
from utils.training.arrays import TrainingArrays
from utils.training.callbacks import standard_callbacks
from utils.training.common import (
    collect_cv_results,
    configure_precision,
    make_feeds,
    predict_in_batches,
    run_grouped_cv,
    set_global_seed,
    write_json,
)

LOGGER = logging.getLogger(__name__)


@dataclass
class SegmenterTrainConfig:
    """Hyper-parameters of one segmenter training run (stored in the model card).

    ``normal_oversample`` repeats every training image with an empty mask (normal
    tissue) that many times per epoch, to weigh "draw nothing" more against the
    lesion images; validation data are never repeated. ``presence_weight`` scales the
    image-level term of the ``dice_bce_presence`` loss and ``boundary_weight`` the
    outline term of ``dice_bce_boundary`` (each ignored by the other losses).
    """

    arch: str = DEFAULT_SEGMENTATION_ARCH
    image_size: int = 256
    base_filters: int = 16
    depth: int = 4
    dropout: float = 0.1
    loss: str = "dice_bce"
    epochs: int = 60
    batch_size: int = 16
    learning_rate: float = 1e-3
    patience: int = 12
    seed: int = 0
    mixed_precision: bool = False
    backup_every_steps: int | None = None
    deadline: float | None = None
    min_component_area_fraction: float = 0.002
    normal_oversample: int = 1
    presence_weight: float = 1.0
    boundary_weight: float = 1.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy of the configuration."""
        return asdict(self)


@dataclass
class TrainedSegmenter:
    """Result of :func:`train_segmenter`."""

    model: keras.Model
    postprocess: PostprocessConfig
    validation: dict[str, Any]
    epochs_run: int
    seconds: float


def _build_architecture(config: SegmenterTrainConfig) -> keras.Model:
    return build_segmentation_model(
        config.arch,
        input_shape=(config.image_size, config.image_size, 1),
        base_filters=config.base_filters,
        depth=config.depth,
        dropout=config.dropout,
    )


def _loss_options(config: SegmenterTrainConfig) -> dict[str, float]:
    """Loss options tied to the rest of the config (the presence term's blob size)."""
    if config.loss == "dice_bce_presence":
        # The presence score looks at as many pixels as post-processing's smallest kept
        # component, so "present" in training means "survives post-processing".
        return {
            "min_area_fraction": config.min_component_area_fraction,
            "presence_weight": config.presence_weight,
        }
    if config.loss == "dice_bce_boundary":
        return {"boundary_weight": config.boundary_weight}
    return {}


def build_and_compile(config: SegmenterTrainConfig, steps_per_epoch: int) -> keras.Model:
    """Build the configured architecture and compile it with a cosine-decayed Adam."""
    configure_precision(config.mixed_precision)
    model = _build_architecture(config)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.05
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=get_segmentation_loss(config.loss, **_loss_options(config)),
        metrics=[dice_coefficient],
    )
    return model


def predict_probability_maps(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Lesion probability maps (N, H, W) for uint8 images (N, H, W, 1)."""
    return predict_in_batches(model, images)[..., 0]


def oversample_normals(arrays: TrainingArrays, factor: int) -> TrainingArrays:
    """``arrays`` with every empty-mask example repeated ``factor`` times in all.

    Raises:
        ConfigError: ``factor`` is not a positive integer, or the arrays hold no masks.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ConfigError(f"normal_oversample must be a positive integer; received {factor!r}.")
    if arrays.masks is None:
        raise ConfigError("Oversampling normal images needs masks; the arrays hold none.")
    if factor == 1:
        return arrays
    empty = np.flatnonzero(~arrays.masks.reshape(len(arrays), -1).any(axis=1))
    order = np.concatenate([np.arange(len(arrays)), np.repeat(empty, factor - 1)])
    return arrays.subset(order)


def train_segmenter(
    train: TrainingArrays,
    val: TrainingArrays,
    config: SegmenterTrainConfig,
    run_dir: Path,
) -> TrainedSegmenter:
    """Train one segmenter, pick its threshold on ``val`` and report validation metrics.

    Re-running with the same ``run_dir`` resumes from the last backup (see
    :func:`utils.training.callbacks.standard_callbacks`).
    """
    if train.masks is None or val.masks is None:
        raise ConfigError("Segmenter training needs masks; the arrays hold none.")
    train = oversample_normals(train, config.normal_oversample)
    set_global_seed(config.seed)
    train_feed, val_feed = make_feeds(
        train.images,
        train.masks,
        val.images,
        val.masks,
        batch_size=config.batch_size,
        seed=config.seed,
        augment_config=config.augment,
    )
    steps = int(np.ceil(len(train) / config.batch_size))
    model = build_and_compile(config, steps)
    model.build((None, config.image_size, config.image_size, 1))
    started = time.perf_counter()
    history = model.fit(
        train_feed,
        validation_data=val_feed,
        epochs=config.epochs,
        shuffle=False,  # the feeds shuffle themselves, reproducibly
        callbacks=standard_callbacks(
            run_dir,
            monitor="val_dice_coefficient",
            mode="max",
            patience=config.patience,
            backup_every_steps=config.backup_every_steps,
            deadline=config.deadline,
        ),
        verbose=2,
    )
    best = run_dir / "best.weights.h5"
    if best.exists():
        model.load_weights(best)
    seconds = time.perf_counter() - started
    probabilities = predict_probability_maps(model, val.images)
    truths = [mask[..., 0].astype(bool) for mask in val.masks]
    threshold, _ = choose_threshold(list(probabilities), truths)
    postprocess = PostprocessConfig(
        threshold=float(threshold),
        min_component_area_fraction=config.min_component_area_fraction,
    )
    predicted = [postprocess_mask(p, postprocess) for p in probabilities]
    report = segmentation_report(predicted, truths, val.labels, sources=val.sources)
    report.pop("per_image")
    # The threshold was tuned on these images, which flatters them a little; the
    # untuned 0.5 result is kept beside it so the size of that optimism is on record.
    untuned_config = dataclasses.replace(postprocess, threshold=UNTUNED_THRESHOLD)
    untuned = segmentation_report(
        [postprocess_mask(p, untuned_config) for p in probabilities],
        truths,
        val.labels,
        sources=val.sources,
    )
    for key in ("dice_mean", "normal_false_positive_rate"):
        report[f"{key}_untuned"] = untuned.get(key)
    return TrainedSegmenter(
        model=model,
        postprocess=postprocess,
        validation=report,
        epochs_run=len(history.history.get("loss", [])),
        seconds=seconds,
    )


def cross_validate_segmenter(
    arrays: TrainingArrays,
    config: SegmenterTrainConfig,
    out_dir: Path,
    *,
    n_folds: int = 5,
    only_folds: list[int] | None = None,
    split: str = "grouped",
) -> dict[str, Any]:
    """Grouped, label-stratified k-fold CV; writes ``cv.json`` and returns the summary.

    Args:
        arrays: All examples (groups are never split across folds).
        config: Training configuration, shared by all folds.
        out_dir: Receives one ``fold_<k>/`` run folder per fold and ``cv.json``.
        n_folds: Number of folds.
        only_folds: Run just these fold indices (e.g. to spread folds over machines).
        split: ``grouped`` (default) or ``dataset``: leave one whole dataset out per
            fold, an estimate for images from another hospital (see
            :func:`utils.training.common.cv_folds`).

    Returns:
        Per-fold validation reports and mean ± sd of the headline metrics.
    """

    def train_fold(train: TrainingArrays, val: TrainingArrays, fold_dir: Path) -> dict[str, Any]:
        trained = train_segmenter(train, val, config, fold_dir)
        return {
            "threshold": trained.postprocess.threshold,
            "epochs_run": trained.epochs_run,
            "seconds": trained.seconds,
            "stopped_by_deadline": _deadline_passed(config.deadline),
            **trained.validation,
        }

    run_grouped_cv(
        arrays,
        out_dir,
        train_fold,
        n_folds=n_folds,
        seed=config.seed,
        only_folds=only_folds,
        deadline=config.deadline,
        split=split,
    )
    return collect_segmenter_cv_results(out_dir, config)


#: Headline metrics of a fold, summarised as mean ± sd over folds in ``cv.json``.
CV_SUMMARY_KEYS = (
    "dice_mean",
    "iou_mean",
    "hd95_mean",
    "normal_false_positive_rate",
    "threshold",
    "dice_mean_untuned",
    "normal_false_positive_rate_untuned",
)

#: The threshold every fold is also scored at, untuned, to show the tuning's optimism.
UNTUNED_THRESHOLD = 0.5


def collect_segmenter_cv_results(out_dir: Path, config: SegmenterTrainConfig) -> dict[str, Any]:
    """Summarise every fold under ``out_dir`` into ``cv.json`` (see :func:`collect_cv_results`)."""
    return collect_cv_results(out_dir, CV_SUMMARY_KEYS, config.to_dict())


def _deadline_passed(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline


def train_final_segmenter(
    arrays: TrainingArrays,
    config: SegmenterTrainConfig,
    run_dir: Path,
    *,
    threshold: float | None = None,
) -> tuple[keras.Model, PostprocessConfig]:
    """Train the shipped segmenter on all examples for ``config.epochs`` epochs.

    There is no validation data left, so there is no early stopping; the threshold
    comes from cross-validation (the mean of the per-fold thresholds, read from
    ``run_dir.parent / "cv.json"`` when not given).

    Returns:
        The trained model and its post-processing configuration; the model is also saved
        to ``run_dir / "model.keras"``.
    """
    if arrays.masks is None:
        raise ConfigError("Segmenter training needs masks; the arrays hold none.")
    if threshold is None:
        threshold = _cv_threshold(run_dir.parent / "cv.json")
    arrays = oversample_normals(arrays, config.normal_oversample)
    set_global_seed(config.seed)
    feed, _ = make_feeds(
        arrays.images,
        arrays.masks,
        arrays.images[:1],
        arrays.masks[:1],
        batch_size=config.batch_size,
        seed=config.seed,
        augment_config=config.augment,
    )
    model = build_and_compile(config, int(np.ceil(len(arrays) / config.batch_size)))
    model.build((None, config.image_size, config.image_size, 1))
    model.fit(
        feed,
        epochs=config.epochs,
        shuffle=False,  # the feeds shuffle themselves, reproducibly
        callbacks=standard_callbacks(
            run_dir,
            monitor=None,
            backup_every_steps=config.backup_every_steps,
            deadline=config.deadline,
        ),
        verbose=2,
    )
    export_model(model, config).save(run_dir / "model.keras")
    postprocess = PostprocessConfig(
        threshold=threshold, min_component_area_fraction=config.min_component_area_fraction
    )
    # A minimal card beside it makes the run's model loadable by path (e.g. to embed in
    # a mask-guided classifier: classify --final --segmenter-bundle RUN/final/model.keras).
    write_json(
        run_dir / "model.json",
        {
            "task": "segmentation",
            "title": "final model of a training run (not a shipped bundle)",
            "architecture": config.arch,
            "input_shape": [config.image_size, config.image_size, 1],
            "postprocess": asdict(postprocess),
            "n_images": len(arrays),
            "config": config.to_dict(),
        },
    )
    return model, postprocess


def export_model(model: keras.Model, config: SegmenterTrainConfig) -> keras.Model:
    """A float32, uncompiled copy of ``model`` for shipping.

    Drops the optimizer state (a third of the file) and mixed-precision casts, so the
    shipped file is small and runs in float32 on any CPU.
    """
    configure_precision(False)
    exported = _build_architecture(config)
    exported.set_weights(model.get_weights())
    return exported


def _cv_threshold(cv_path: Path) -> float:
    """Mean per-fold threshold from a ``cv.json``; 0.5 when no CV was run."""
    if not cv_path.exists():
        LOGGER.warning("no %s: using threshold 0.5", cv_path)
        return 0.5
    summary = json.loads(cv_path.read_text())
    return float(summary["summary"]["threshold"]["mean"])
