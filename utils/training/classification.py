"""Training, calibration and grouped cross-validation of the ultrasound lesion classifier.

One run of :func:`train_classifier`:

1. **Class weighting.** Balanced weights ``n / (k * n_c)`` from the training labels
   (``k`` classes present, ``n_c`` examples of class ``c``; sklearn's ``"balanced"``) go
   to ``fit(class_weight=...)``. Keras 3 turns them into per-sample weights of the
   training loss for both feeds, ``tf.data`` and the JAX :class:`ArrayFeed`
   (``PyDataset``), so no feed has to yield weights. The validation loss stays
   unweighted.
2. **Two-phase fine-tuning** when starting from pretrained weights (``weights`` given):
   phase 1 trains the head for ``head_epochs`` with the backbone frozen, so the random
   head cannot wreck the pretrained features with large gradients; phase 2 unfreezes
   the backbone (:func:`set_backbone_trainable`, BatchNorm kept frozen) and trains
   everything with the learning rate times ``fine_tune_lr_factor`` (0.1).
3. **Early stopping and best-epoch selection on the validation loss**, not the
   validation AUC: the loss (negative log-likelihood) is a proper scoring rule, so it
   rewards the calibrated probabilities that temperature scaling and the referral rule
   build on; the AUC of a ~300-image fold moves in coarse steps and often ties, and
   Keras's ``AUC`` metric needs one-hot labels, which the feeds do not yield.
4. **Temperature scaling** on the validation logits, then
   :func:`~utils.evaluation.classification.classification_report` on the calibrated
   probabilities, with the ECE before and after scaling.
5. **Refer-to-a-human rule** (optional, ``evaluate_tta``): cheap test-time augmentation
   (4 passes) and :func:`~utils.calibration.should_refer`; the fold reports the
   referral rate and the accuracy on the images that are not referred.

Run folders are resumable: re-running with the same folder continues from the last
backup (:func:`utils.training.callbacks.standard_callbacks`); with two phases, the head
phase lives in ``RUN/head/`` and is skipped once finished; cross-validation skips folds
whose ``metrics.json`` is written.

TensorFlow is never imported here, so the same code trains with ``KERAS_BACKEND=jax``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from utils.augment_config import AugmentConfig
from utils.calibration import (
    REFER_MAX_ENTROPY,
    REFER_MIN_CONFIDENCE,
    apply_temperature,
    cross_fitted_probabilities,
    expected_calibration_error,
    fit_temperature,
    should_refer,
    tta_predict,
)
from utils.errors import ConfigError, ModelError
from utils.evaluation.classification import classification_report
from utils.inference.compiled import compile_forward
from utils.labels import ULTRASOUND_CLASSES, encode_labels
from utils.models.classification import (
    CLASSIFIER_BUILDERS,
    DEFAULT_CLASSIFIER_ARCH,
    build_classifier,
    logits_model,
    set_backbone_trainable,
)
from utils.models.ensemble import build_classifier_ensemble
from utils.training.arrays import TrainingArrays
from utils.training.callbacks import DeadlineStop, standard_callbacks
from utils.training.common import (
    FeedBuilder,
    collect_cv_results,
    configure_precision,
    make_feeds,
    run_grouped_cv,
    set_global_seed,
    write_json,
)

LOGGER = logging.getLogger(__name__)


#: Headline metrics of a fold, summarised as mean ± sd over folds in ``cv.json``.
CV_SUMMARY_KEYS = (
    "accuracy",
    "balanced_accuracy",
    "macro_auc",
    "auc_malignant",
    "ece",
    "ece_floor",
    "ece_before",
    "ece_in_sample",
    "temperature",
    "tta_accuracy",
    "referral_rate",
    "accuracy_non_referred",
)

# Written by a finished head phase: its epoch count; the weights sit beside it.
_HEAD_DONE = "head_done.json"
_HEAD_WEIGHTS = "head_final.weights.h5"


@dataclass
class ClassifierTrainConfig:
    """Hyper-parameters of one classifier training run (stored in the model card).

    Attributes:
        arch: Classifier architecture (see :data:`CLASSIFIER_BUILDERS`).
        image_size: Square input side, in pixels.
        channels: 1 (grayscale; ImageNet backbones repeat it to RGB inside) or 3.
        weights: ``None`` (random init), ``"imagenet"`` or the path of a local weights
            file (backbone alone or whole classifier).
        dropout: Dropout rate before the logits.
        epochs: Epoch budget of the main phase (phase 2 when two-phase); early
            stopping may end it sooner during cross-validation.
        batch_size: Examples per batch.
        learning_rate: Initial Adam learning rate (cosine-decayed within a phase).
        patience: Epochs without a lower validation loss before stopping.
        seed: Seed of initialisation, shuffling, augmentation and TTA.
        mixed_precision: Train in ``mixed_float16`` (GPU); the export is float32.
        class_weighting: Weight the training loss with balanced class weights.
        two_phase: Head-only phase, then fine-tuning; ``None`` means "when ``weights``
            is given".
        head_epochs: Epochs of the head-only phase.
        fine_tune_lr_factor: Learning-rate multiplier of the fine-tuning phase.
        backup_every_steps: Save the resume state every this many batches.
        deadline: ``time.time()`` after which training stops at an epoch end.
        evaluate_tta: Evaluate the refer-to-a-human rule with test-time augmentation.
        tta_passes: Forward passes of that test-time augmentation.
        augment: Training augmentation.
        class_names: Class names in label-index order.
        ensemble_members: 1 for one model; K >= 2 trains K models of ``arch`` with
            seeds ``seed``, ``seed + 1``... and ships their average
            (:mod:`utils.training.ensemble`).
    """

    arch: str = DEFAULT_CLASSIFIER_ARCH
    image_size: int = 224
    channels: int = 1
    weights: str | None = None
    dropout: float = 0.3
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 8
    seed: int = 0
    mixed_precision: bool = False
    class_weighting: bool = True
    two_phase: bool | None = None
    head_epochs: int = 5
    fine_tune_lr_factor: float = 0.1
    backup_every_steps: int | None = None
    deadline: float | None = None
    evaluate_tta: bool = True
    tta_passes: int = 4
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    class_names: tuple[str, ...] = ULTRASOUND_CLASSES
    ensemble_members: int = 1

    def __post_init__(self) -> None:
        # Paths become strings so the configuration stays JSON-ready.
        if isinstance(self.weights, os.PathLike):
            self.weights = os.fspath(self.weights)
        self.class_names = tuple(self.class_names)

    @property
    def uses_two_phase(self) -> bool:
        """Whether training runs a head-only phase before fine-tuning."""
        return self.weights is not None if self.two_phase is None else self.two_phase

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Model input shape ``(H, W, C)``."""
        return (self.image_size, self.image_size, self.channels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy of the configuration, with ``two_phase`` resolved."""
        return {**asdict(self), "two_phase": self.uses_two_phase}


@dataclass
class TrainedClassifier:
    """Result of :func:`train_classifier`.

    Attributes:
        model: The trained classifier (best validation-loss epoch), outputting the
            uncalibrated probabilities.
        temperature: Temperature fitted on the validation logits.
        validation: Report on the validation set (calibrated), with ``ece_before``,
            ``temperature`` and, with ``evaluate_tta``, the referral results.
        class_weights: Class name -> weight of the training loss (all 1 when off).
        epochs_run: Epochs completed over all phases (resumed epochs included).
        seconds: Training time in this process.
        stopped_by_deadline: Training ended at the deadline, not by itself.
    """

    model: keras.Model
    temperature: float
    validation: dict[str, Any]
    class_weights: dict[str, float]
    epochs_run: int
    seconds: float
    stopped_by_deadline: bool = False


# ----------------------------------------------------------------------------- checks


def check_classifier_config(config: ClassifierTrainConfig) -> None:
    """Reject a configuration before any data is loaded or model built.

    Raises:
        ConfigError: Unknown architecture or an out-of-range option.
        ModelError: ``weights`` names a file that does not exist.
    """
    if config.arch not in CLASSIFIER_BUILDERS:
        valid = ", ".join(sorted(CLASSIFIER_BUILDERS))
        raise ConfigError(f"Unknown classifier architecture {config.arch!r}; valid names: {valid}.")
    if config.channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3; received {config.channels!r}.")
    if config.weights not in (None, "imagenet") and not Path(config.weights).is_file():
        raise ModelError(
            f"Weights file not found: {config.weights}. Pass 'imagenet' or the path of "
            f"an existing weights file."
        )
    for option in (
        "image_size",
        "epochs",
        "batch_size",
        "head_epochs",
        "tta_passes",
        "ensemble_members",
    ):
        value = getattr(config, option)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{option} must be a positive integer; received {value!r}.")
    if not config.learning_rate > 0:
        raise ConfigError(f"learning_rate must be positive; received {config.learning_rate!r}.")
    if not 0 < config.fine_tune_lr_factor <= 1:
        raise ConfigError(
            f"fine_tune_lr_factor must be in (0, 1]; received {config.fine_tune_lr_factor!r}."
        )
    if len(config.class_names) < 2 or len(set(config.class_names)) != len(config.class_names):
        raise ConfigError(
            f"class_names must hold at least 2 distinct names; received {config.class_names}."
        )


def _check_arrays(arrays: TrainingArrays, config: ClassifierTrainConfig) -> None:
    """Raise ConfigError when the images do not have the configured input shape."""
    if tuple(arrays.images.shape[1:]) != config.input_shape:
        raise ConfigError(
            f"The training images are {tuple(arrays.images.shape[1:])} (H, W, C) but the "
            f"classifier is configured for {config.input_shape}; set image_size / channels "
            f"to match or re-decode the data."
        )


# ----------------------------------------------------------------------------- pieces


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """sklearn-style balanced weights ``n / (k * n_c)`` over the ``k`` classes present.

    Every class gets a key (Keras's ``tf.data`` adapter indexes a dense table); a class
    absent from ``labels`` gets 1.0, which never applies.

    Args:
        labels: (N,) class indices of the training examples.
        n_classes: Number of classes.

    Returns:
        Class index -> weight; the weights average to 1 over the examples.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)
    present = int(np.count_nonzero(counts))
    return {
        index: float(len(labels) / (present * count)) if count else 1.0
        for index, count in enumerate(counts)
    }


def _class_weights(
    labels: np.ndarray, config: ClassifierTrainConfig
) -> tuple[dict[int, float] | None, dict[str, float]]:
    """The ``class_weight`` argument of ``fit`` and its by-name copy for reports."""
    if not config.class_weighting:
        return None, dict.fromkeys(config.class_names, 1.0)
    weights = balanced_class_weights(labels, len(config.class_names))
    return weights, {config.class_names[index]: weight for index, weight in weights.items()}


def class_weights_by_name(train: TrainingArrays, config: ClassifierTrainConfig) -> dict[str, float]:
    """Class name -> weight of the training loss on ``train`` (all 1 when weighting is off)."""
    return _class_weights(encode_labels(train.labels, config.class_names), config)[1]


def build_architecture(config: ClassifierTrainConfig, weights: str | None) -> keras.Model:
    """The configured classifier, built with ``weights`` (None: random initialisation).

    With ``ensemble_members >= 2``, the untrained ensemble of that many members.
    """
    options = {
        "input_shape": config.input_shape,
        "num_classes": len(config.class_names),
        "weights": weights,
        "dropout": config.dropout,
    }
    if config.ensemble_members > 1:
        return build_classifier_ensemble(config.arch, config.ensemble_members, **options)
    return build_classifier(config.arch, **options)


def _compile(model: keras.Model, learning_rate: float, decay_steps: int) -> None:
    """(Re)compile with a cosine-decayed Adam; needed again after (un)freezing layers."""
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(1, decay_steps), alpha=0.05
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def _unit_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


def logit_function(
    model: keras.Model, input_shape: tuple[int, int, int], batch_size: int = 32
) -> Callable[[np.ndarray], np.ndarray]:
    """Batched, compiled ``images in [0, 1] -> logits`` of a classifier.

    Build it after the final weights are in place: with JAX the compiled forward
    captures the variable values.
    """
    forward = compile_forward(logits_model(model), input_shape)

    def logits_of(images: np.ndarray) -> np.ndarray:
        chunks = [forward(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return np.concatenate(chunks).astype(np.float64)

    return logits_of


def referral_report(
    predict_probs: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n_augment: int,
    seed: int,
) -> dict[str, Any]:
    """Referral rate and accuracy of the kept images under the refer-to-a-human rule.

    Args:
        predict_probs: Calibrated ``images -> (N, C) probabilities``.
        images: (N, H, W, C) float images in [0, 1].
        labels: (N,) true class indices.
        n_augment: TTA passes.
        seed: TTA seed.

    Returns:
        ``referral_rule`` (the thresholds and passes), ``tta_accuracy``,
        ``referral_rate``, ``n_referred`` and ``accuracy_non_referred`` (``None`` when
        every image is referred).
    """
    tta = tta_predict(predict_probs, images, n_augment=n_augment, seed=seed)
    refer = should_refer(tta.mean_probs, tta.normalized_entropy)
    correct = tta.predicted == labels
    kept = ~refer
    return {
        "referral_rule": {
            "min_confidence": REFER_MIN_CONFIDENCE,
            "max_entropy": REFER_MAX_ENTROPY,
            "tta_passes": n_augment,
        },
        "tta_accuracy": float(correct.mean()),
        "referral_rate": float(refer.mean()),
        "n_referred": int(refer.sum()),
        "accuracy_non_referred": float(correct[kept].mean()) if kept.any() else None,
    }


def calibrate_and_evaluate(
    model: keras.Model, val: TrainingArrays, config: ClassifierTrainConfig
) -> tuple[float, dict[str, Any]]:
    """Fit the temperature on ``val`` and report the calibrated validation metrics.

    Returns:
        The temperature and the report: :func:`classification_report` of the
        probabilities temperature-scaled by cross-fitting over two group halves of
        ``val`` (:func:`utils.calibration.cross_fitted_probabilities`, so ``ece`` is
        held out), ``ece_in_sample`` (ECE with the temperature fitted on all of
        ``val``), ``ece_before`` (ECE
        of the raw softmax), ``temperature`` and, with ``evaluate_tta``, the
        :func:`referral_report` keys.
    """
    labels = encode_labels(val.labels, config.class_names)
    images = _unit_float(val.images)
    logits_of = logit_function(model, config.input_shape, config.batch_size)
    logits = logits_of(images)
    temperature = fit_temperature(logits, labels)
    # Metrics use cross-fitted temperatures: the fold never calibrates itself.
    report = classification_report(
        cross_fitted_probabilities(logits, labels, val.groups, seed=config.seed),
        labels,
        config.class_names,
    )
    report["ece_before"] = expected_calibration_error(apply_temperature(logits, 1.0), labels)
    report["ece_in_sample"] = expected_calibration_error(
        apply_temperature(logits, temperature), labels
    )
    report["temperature"] = temperature
    if config.evaluate_tta:
        report.update(
            referral_report(
                lambda batch: apply_temperature(logits_of(batch), temperature),
                images,
                labels,
                n_augment=config.tta_passes,
                seed=config.seed,
            )
        )
    return temperature, report


# ----------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class _Phase:
    """One ``fit`` call: its folder, epochs, learning rate and backbone state."""

    run_dir: Path
    epochs: int
    learning_rate: float
    backbone_trainable: bool | None  # None: leave the layers as built
    is_head: bool = False


def _phases(config: ClassifierTrainConfig, run_dir: Path) -> list[_Phase]:
    if not config.uses_two_phase:
        return [_Phase(run_dir, config.epochs, config.learning_rate, None)]
    fine_tune_rate = config.learning_rate * config.fine_tune_lr_factor
    return [
        _Phase(run_dir / "head", config.head_epochs, config.learning_rate, False, is_head=True),
        _Phase(run_dir, config.epochs, fine_tune_rate, True),
    ]


def _epochs_done(history: keras.callbacks.History, run_dir: Path) -> int:
    """Epochs this phase has completed, including those before a resume."""
    if history.epoch:
        return history.epoch[-1] + 1
    # Nothing left to run: the backup knows how far the phase got.
    metadata = run_dir / "backup" / "training_metadata.json"
    return int(json.loads(metadata.read_text())["epoch"]) if metadata.exists() else 0


def _fit_phase(
    model: keras.Model,
    phase: _Phase,
    config: ClassifierTrainConfig,
    feeds: tuple[Any, Any | None],
    class_weight: dict[int, float] | None,
) -> tuple[int, bool]:
    """Run one phase; returns (epochs completed, stopped by the deadline)."""
    train_feed, val_feed = feeds
    monitor = None if val_feed is None else "val_loss"
    callbacks = standard_callbacks(
        phase.run_dir,
        monitor=monitor,
        mode="min",
        patience=config.patience,
        backup_every_steps=config.backup_every_steps,
        deadline=config.deadline,
    )
    history = model.fit(
        train_feed,
        validation_data=val_feed,
        epochs=phase.epochs,
        class_weight=class_weight,
        shuffle=False,  # the feeds shuffle themselves, reproducibly
        callbacks=callbacks,
        verbose=2,
    )
    best = phase.run_dir / "best.weights.h5"
    if monitor is not None and best.exists():
        model.load_weights(best)
    deadline_hit = any(isinstance(c, DeadlineStop) and c.stopped_by_deadline for c in callbacks)
    return _epochs_done(history, phase.run_dir), deadline_hit


def _fit_all_phases(
    model: keras.Model,
    config: ClassifierTrainConfig,
    feeds: tuple[Any, Any | None],
    run_dir: Path,
    *,
    class_weight: dict[int, float] | None,
    steps_per_epoch: int,
) -> tuple[int, bool]:
    """Run the one or two phases; returns (epochs completed, stopped by the deadline)."""
    epochs_run = 0
    for phase in _phases(config, run_dir):
        if phase.backbone_trainable is not None:
            set_backbone_trainable(model, phase.backbone_trainable)
        done_file = phase.run_dir / _HEAD_DONE
        if phase.is_head and done_file.exists():
            # Resumed after the head phase finished: start phase 2 from its weights.
            model.load_weights(phase.run_dir / _HEAD_WEIGHTS)
            epochs_run += json.loads(done_file.read_text())["epochs_run"]
            continue
        _compile(model, phase.learning_rate, phase.epochs * steps_per_epoch)
        epochs, deadline_hit = _fit_phase(model, phase, config, feeds, class_weight)
        epochs_run += epochs
        if deadline_hit:
            # An unfinished head phase must not be marked done; the next run resumes it.
            return epochs_run, True
        if phase.is_head:
            model.save_weights(phase.run_dir / _HEAD_WEIGHTS)
            write_json(done_file, {"epochs_run": epochs})
    return epochs_run, False


def _prepare(
    train: TrainingArrays, config: ClassifierTrainConfig
) -> tuple[np.ndarray, dict[int, float] | None, dict[str, float]]:
    check_classifier_config(config)
    _check_arrays(train, config)
    labels = encode_labels(train.labels, config.class_names)
    return labels, *_class_weights(labels, config)


def train_classifier(
    train: TrainingArrays,
    val: TrainingArrays,
    config: ClassifierTrainConfig,
    run_dir: Path,
    *,
    feed_builder: FeedBuilder = make_feeds,
) -> TrainedClassifier:
    """Train one classifier, calibrate it on ``val`` and report validation metrics.

    Re-running with the same ``run_dir`` resumes (see the module docstring).

    Args:
        train: Training examples (images and labels are used).
        val: Validation examples: early stopping, temperature and the report.
        config: Training configuration.
        run_dir: Run folder: ``backup/``, ``best.weights.h5``, ``history.csv`` (and
            ``head/`` with two phases).
        feed_builder: Builds the training and validation feeds (signature of
            :func:`~utils.training.common.make_feeds`, the default); e.g. the H&E patch
            trainer plugs in its own augmentation.

    Returns:
        The model (best validation-loss epoch), its temperature and the report.

    Raises:
        ConfigError: Bad configuration, image shape or labels.
        ModelError: Missing or incompatible weights file.
    """
    if config.ensemble_members > 1:
        from utils.training.ensemble import train_ensemble  # it builds on this module

        return train_ensemble(train, val, config, run_dir, feed_builder=feed_builder)
    labels, class_weight, weights_by_name = _prepare(train, config)
    _check_arrays(val, config)
    val_labels = encode_labels(val.labels, config.class_names)
    set_global_seed(config.seed)
    feeds = feed_builder(
        train.images,
        labels,
        val.images,
        val_labels,
        batch_size=config.batch_size,
        seed=config.seed,
        augment_config=config.augment,
    )
    configure_precision(config.mixed_precision)
    model = build_architecture(config, config.weights)
    started = time.perf_counter()
    epochs_run, deadline_hit = _fit_all_phases(
        model,
        config,
        feeds,
        run_dir,
        class_weight=class_weight,
        steps_per_epoch=int(np.ceil(len(train) / config.batch_size)),
    )
    seconds = time.perf_counter() - started
    temperature, report = calibrate_and_evaluate(model, val, config)
    return TrainedClassifier(
        model=model,
        temperature=temperature,
        validation=report,
        class_weights=weights_by_name,
        epochs_run=epochs_run,
        seconds=seconds,
        stopped_by_deadline=deadline_hit,
    )


# ----------------------------------------------------------------------------- CV


def classifier_fold_metrics(trained: TrainedClassifier) -> dict[str, Any]:
    """The ``metrics.json`` of one CV fold: bookkeeping plus the validation report."""
    return {
        "epochs_run": trained.epochs_run,
        "seconds": trained.seconds,
        "stopped_by_deadline": trained.stopped_by_deadline,
        "class_weights": trained.class_weights,
        **trained.validation,
    }


def cross_validate_classifier(
    arrays: TrainingArrays,
    config: ClassifierTrainConfig,
    out_dir: Path,
    *,
    n_folds: int = 5,
    only_folds: list[int] | None = None,
    feed_builder: FeedBuilder = make_feeds,
    split: str = "grouped",
) -> dict[str, Any]:
    """Grouped k-fold CV stratified by ``dataset:label``; writes ``cv.json``.

    Args:
        arrays: All examples (masks, if any, are ignored; groups are never split).
        config: Training configuration, shared by all folds.
        out_dir: Receives one ``fold_<k>/`` run folder (with ``metrics.json``) per fold
            and ``cv.json``.
        n_folds: Number of folds.
        only_folds: Run just these fold indices (e.g. to spread folds over machines).
        feed_builder: Builds each fold's feeds (see :func:`train_classifier`).
        split: ``grouped`` (default) or ``dataset``: leave one whole dataset out per
            fold (see :func:`utils.training.common.cv_folds`).

    Returns:
        Per-fold reports and mean ± sd of :data:`CV_SUMMARY_KEYS`.

    Raises:
        ConfigError: Bad configuration, image shape, labels or fold count.
        ModelError: Missing or incompatible weights file.
    """
    check_classifier_config(config)
    _check_arrays(arrays, config)
    arrays = replace(arrays, masks=None)  # classification never reads them

    def train_fold(train: TrainingArrays, val: TrainingArrays, fold_dir: Path) -> dict[str, Any]:
        return classifier_fold_metrics(
            train_classifier(train, val, config, fold_dir, feed_builder=feed_builder)
        )

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
    return collect_classifier_cv_results(out_dir, config)


def collect_classifier_cv_results(out_dir: Path, config: ClassifierTrainConfig) -> dict[str, Any]:
    """Summarise every fold under ``out_dir`` into ``cv.json`` (see :func:`collect_cv_results`)."""
    return collect_cv_results(out_dir, CV_SUMMARY_KEYS, config.to_dict())


# ----------------------------------------------------------------------------- final


def train_final_classifier(
    arrays: TrainingArrays,
    config: ClassifierTrainConfig,
    run_dir: Path,
    *,
    temperature: float | None = None,
    feed_builder: FeedBuilder = make_feeds,
) -> tuple[keras.Model, float]:
    """Train the shipped classifier on all examples for ``config.epochs`` epochs.

    There is no validation data left, so there is no early stopping and no
    calibration set; the temperature comes from cross-validation (the mean of the
    per-fold temperatures in ``run_dir.parent / "cv.json"``, 1.0 without one).
    With ``ensemble_members >= 2`` every member trains in ``run_dir/member_<m>/`` and
    the assembled ensemble is exported (nothing is exported until all members are done).

    Writes ``run_dir / "model.keras"`` (float32, uncompiled) and ``run_dir /
    "final.json"`` (temperature, class names and weights, input shape, configuration:
    what the model card needs).

    Args:
        arrays: All examples.
        config: Training configuration.
        run_dir: Run folder of the final model.
        temperature: Temperature to ship; ``None`` reads it from the CV summary.
        feed_builder: Builds the training feed (see :func:`train_classifier`).

    Returns:
        The trained model and its temperature.

    Raises:
        ConfigError: Bad configuration, image shape or labels.
        ModelError: Missing or incompatible weights file.
    """
    weights_by_name = class_weights_by_name(arrays, config)
    if temperature is None:
        temperature = _cv_temperature(run_dir.parent / "cv.json")
    member_epochs = None
    if config.ensemble_members > 1:
        from utils.training.ensemble import fit_ensemble_on_all_data  # builds on this module

        model, member_epochs, deadline_hit = fit_ensemble_on_all_data(
            arrays, config, run_dir, feed_builder=feed_builder
        )
        epochs_run = max(member_epochs)
        if deadline_hit:
            LOGGER.warning("deadline: final ensemble incomplete; rerun to resume it")
            return model, temperature
    else:
        model, epochs_run, deadline_hit = fit_on_all_data(arrays, config, run_dir, feed_builder)
    export_classifier(model, config).save(run_dir / "model.keras")
    write_json(
        run_dir / "final.json",
        {
            "task": "classification",
            "architecture": config.arch,
            "input_shape": list(config.input_shape),
            "class_names": list(config.class_names),
            "temperature": temperature,
            "class_weights": weights_by_name,
            "epochs_run": epochs_run,
            "stopped_by_deadline": deadline_hit,
            "ensemble_members": config.ensemble_members,
            "member_epochs_run": member_epochs,
            "n_images": len(arrays),
            "config": config.to_dict(),
        },
    )
    return model, temperature


def fit_on_all_data(
    arrays: TrainingArrays,
    config: ClassifierTrainConfig,
    run_dir: Path,
    feed_builder: FeedBuilder = make_feeds,
) -> tuple[keras.Model, int, bool]:
    """Fit one model on every example for ``config.epochs`` (no validation, no stopping).

    Returns:
        The model, the epochs completed and whether the deadline stopped it.
    """
    labels, class_weight, _ = _prepare(arrays, config)
    set_global_seed(config.seed)
    # A feed builder always builds a validation feed too; a one-image stand-in is unused.
    train_feed, _ = feed_builder(
        arrays.images,
        labels,
        arrays.images[:1],
        labels[:1],
        batch_size=config.batch_size,
        seed=config.seed,
        augment_config=config.augment,
    )
    configure_precision(config.mixed_precision)
    model = build_architecture(config, config.weights)
    epochs_run, deadline_hit = _fit_all_phases(
        model,
        config,
        (train_feed, None),
        run_dir,
        class_weight=class_weight,
        steps_per_epoch=int(np.ceil(len(arrays) / config.batch_size)),
    )
    return model, epochs_run, deadline_hit


def export_classifier(model: keras.Model, config: ClassifierTrainConfig) -> keras.Model:
    """A float32, uncompiled copy of ``model`` for shipping.

    Drops the optimizer state and mixed-precision casts, and is rebuilt without
    ``weights`` so exporting never downloads ImageNet weights again.
    """
    configure_precision(False)
    exported = build_architecture(config, None)
    exported.set_weights(model.get_weights())
    return exported


def _cv_temperature(cv_path: Path) -> float:
    """Mean per-fold temperature from a ``cv.json``; 1.0 (no scaling) without one."""
    if not cv_path.exists():
        LOGGER.warning("no %s: using temperature 1.0 (uncalibrated)", cv_path)
        return 1.0
    mean = json.loads(cv_path.read_text())["summary"]["temperature"]["mean"]
    return 1.0 if mean is None else float(mean)
