"""Pieces shared by the classifier and segmenter training loops."""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import keras
import numpy as np

from utils.augment_config import AugmentConfig
from utils.errors import ConfigError
from utils.splits import CV_SPLITS, grouped_stratified_kfold, leave_one_dataset_out
from utils.training.arrays import TrainingArrays

T = TypeVar("T")

LOGGER = logging.getLogger(__name__)


def config_from_saved(config_class: type[T], saved: dict[str, Any]) -> T:
    """Rebuild a training configuration from the ``config`` dict of a run's ``cv.json``.

    Nested or per-run fields (``augment``, ``deadline``) and unknown keys are left at
    their defaults, so older runs still load.
    """
    known = {field.name for field in fields(config_class)} - {"augment", "deadline"}
    return config_class(**{key: value for key, value in saved.items() if key in known})


def set_global_seed(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend for a reproducible run."""
    keras.utils.set_random_seed(seed)


def configure_precision(mixed_precision: bool) -> None:
    """Switch Keras to ``mixed_float16`` (or back to ``float32``) before building a model."""
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")


#: ``(train_images, train_targets, val_images, val_targets, *, batch_size, seed,
#: augment_config) -> (train_feed, val_feed)``, the signature of :func:`make_feeds`.
FeedBuilder = Callable[..., tuple[Any, Any]]


def make_feeds(
    train_images: np.ndarray,
    train_targets: np.ndarray,
    val_images: np.ndarray,
    val_targets: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    augment_config: AugmentConfig,
) -> tuple[Any, Any]:
    """Training and validation feeds for ``model.fit`` on the active Keras backend.

    TensorFlow gets the ``tf.data`` pipelines of :mod:`utils.pipelines`; other backends
    (JAX on a GPU box without TensorFlow) get :class:`utils.training.feeds.ArrayFeed`.
    """
    options = {"batch_size": batch_size, "seed": seed, "augment_config": augment_config}
    if keras.backend.backend() == "tensorflow":
        from utils import pipelines

        builder = (
            pipelines.build_segmentation_dataset
            if train_targets.ndim == 4
            else pipelines.build_classification_dataset
        )
    else:
        from utils.training.feeds import ArrayFeed

        # Threads, not processes: OpenCV releases the GIL and arrays are not copied.
        builder = functools.partial(ArrayFeed, workers=4, use_multiprocessing=False)

    def build(images: np.ndarray, targets: np.ndarray, training: bool) -> Any:
        return builder(images, targets, training=training, **options)

    return build(train_images, train_targets, True), build(val_images, val_targets, False)


def predict_in_batches(model: keras.Model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run ``model`` on uint8 images scaled to [0, 1], batch by batch, as float32 NumPy."""
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32) / 255.0
        outputs.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32))
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


def mean_and_sd(values: list[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation of fold results, ignoring missing values."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return {"mean": None, "sd": None, "n": 0}
    sd = float(np.std(clean, ddof=1)) if len(clean) > 1 else 0.0
    return {"mean": float(np.mean(clean)), "sd": sd, "n": len(clean)}


def describe_training_data(arrays: TrainingArrays) -> dict[str, Any]:
    """Counts by dataset and label, and the number of patient groups, for model cards."""
    counts: dict[str, dict[str, int]] = {}
    for dataset, label in zip(arrays.datasets, arrays.labels, strict=True):
        counts.setdefault(dataset, {}).setdefault(label, 0)
        counts[dataset][label] += 1
    return {"n_images": len(arrays), "n_groups": len(set(arrays.groups)), "counts": counts}


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def grouped_cv_folds(
    arrays: TrainingArrays, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped k folds stratified by ``dataset:label``; a group is never split.

    Stratifying by dataset as well keeps every dataset's share (and its label mix)
    similar across folds, so no fold validates mostly on one scanner.
    """
    strata = [
        f"{dataset}:{label}" for dataset, label in zip(arrays.datasets, arrays.labels, strict=True)
    ]
    return grouped_stratified_kfold(strata, arrays.groups, n_splits=n_folds, seed=seed)


def cv_folds(
    arrays: TrainingArrays, n_folds: int, seed: int, split: str = "grouped"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(train_idx, val_idx)`` folds of a ``split`` (one of :data:`CV_SPLITS`).

    ``n_folds`` and ``seed`` apply to the grouped split only.

    Raises:
        ConfigError: Unknown split, or too few datasets for the dataset split.
    """
    if split == "grouped":
        return grouped_cv_folds(arrays, n_folds, seed)
    if split == "dataset":
        return leave_one_dataset_out(arrays.datasets)
    raise ConfigError(f"Unknown CV split {split!r}; valid splits are {', '.join(CV_SPLITS)}.")


def _split_of_fold(metrics_path: Path) -> str:
    """``dataset`` when a finished fold held out a whole dataset, else ``grouped``."""
    return "dataset" if "held_out_dataset" in json.loads(metrics_path.read_text()) else "grouped"


def require_grouped_fold(fold_dir: Path) -> None:
    """Refuse a fold of a leave-one-dataset-out run where grouped folds are rebuilt.

    Out-of-fold predictions, shipping and mask-guided training rebuild the grouped
    folds by index; a dataset fold with the same index holds out other images, so its
    model has seen the images it would be asked to predict.

    Raises:
        ConfigError: The fold's ``metrics.json`` says it held out a whole dataset.
    """
    path = fold_dir / "metrics.json"
    if path.is_file() and _split_of_fold(path) == "dataset":
        raise ConfigError(
            f"{fold_dir} is a leave-one-dataset-out fold (--split dataset); out-of-fold "
            f"predictions, shipping and --mask-guided-from need a grouped CV run "
            f"(--folds K)."
        )


def _check_split_of_finished_folds(out_dir: Path, split: str) -> None:
    """Refuse to add folds of one split to a run folder holding folds of the other."""
    for path in sorted(out_dir.glob("fold_*/metrics.json")):
        found = _split_of_fold(path)
        if found != split:
            raise ConfigError(
                f"{out_dir} already holds {found}-split folds ({path.parent.name}); this run "
                f"asks for the {split} split. Use another --out."
            )


def fold_finished(fold_dir: Path) -> bool:
    """A fold is done when its metrics exist and it was not cut short by a deadline."""
    path = fold_dir / "metrics.json"
    return path.exists() and not json.loads(path.read_text()).get("stopped_by_deadline")


def collect_cv_results(
    out_dir: Path, keys: Sequence[str], config: dict[str, Any]
) -> dict[str, Any]:
    """Summarise every ``fold_*/metrics.json`` under ``out_dir`` into ``cv.json``.

    Folds may have run in separate processes or machines (``--only-fold``); whatever
    folds are present are summarised as mean ± sd of ``keys``.
    """
    results = [json.loads(path.read_text()) for path in sorted(out_dir.glob("fold_*/metrics.json"))]
    summary = {
        "split": "dataset" if any("held_out_dataset" in fold for fold in results) else "grouped",
        "n_folds": len(results),
        "folds": results,
        "summary": {key: mean_and_sd([fold.get(key) for fold in results]) for key in keys},
        "config": config,
    }
    write_json(out_dir / "cv.json", summary)
    return summary


#: Bookkeeping of a fold kept beside its metrics in :func:`cv_card_section`.
FOLD_BOOKKEEPING = (
    "fold",
    "held_out_dataset",
    "n_train",
    "n_val",
    "epochs_run",
    "seconds",
    "stopped_by_deadline",
)


def cv_card_section(cv: dict[str, Any], note: str) -> dict[str, Any]:
    """A model-card block from a ``cv.json`` written by :func:`collect_cv_results`.

    Args:
        cv: The parsed ``cv.json`` (``folds``, ``summary``, ``config``).
        note: What the run was and how it differs from the shipped model's protocol.

    Returns:
        ``{"note", "split", "n_folds", "summary", "per_fold", "config"}``; ``per_fold`` keeps the
        summarised metrics and the fold bookkeeping only (no per-image rows).

    Raises:
        ConfigError: ``cv`` has no folds.
    """
    folds = cv.get("folds") or []
    if not folds:
        raise ConfigError("The cv.json holds no finished folds; run the cross-validation first.")
    keys = [*FOLD_BOOKKEEPING, *cv.get("summary", {})]
    return {
        "note": note,
        "split": cv.get("split", "grouped"),
        "n_folds": len(folds),
        "summary": cv.get("summary", {}),
        "per_fold": [{key: fold.get(key) for key in keys if key in fold} for fold in folds],
        "config": cv.get("config", {}),
    }


def run_grouped_cv(
    arrays: TrainingArrays,
    out_dir: Path,
    train_fold: Callable[[TrainingArrays, TrainingArrays, Path], dict[str, Any]],
    *,
    n_folds: int,
    seed: int,
    only_folds: Sequence[int] | None = None,
    deadline: float | None = None,
    split: str = "grouped",
) -> None:
    """Run ``train_fold`` on every fold and write ``fold_<k>/metrics.json``.

    Finished folds (metrics present, not deadline-cut) are skipped, so a killed CV
    resumes where it stopped; ``only_folds`` spreads folds over processes or machines.

    Args:
        arrays: All examples; groups are never split.
        out_dir: Receives one ``fold_<k>/`` run folder per fold.
        train_fold: ``(train, val, fold_dir) -> metrics`` of one fold.
        n_folds: Number of folds (grouped split).
        seed: Seed of the fold assignment (grouped split).
        only_folds: Run just these fold indices.
        deadline: ``time.time()`` after which no new fold starts.
        split: ``grouped`` k folds, or ``dataset`` (leave one dataset out; the fold's
            ``metrics.json`` then names it as ``held_out_dataset``).

    Raises:
        ConfigError: Unknown split, too few datasets, or ``out_dir`` holds folds of
            the other split.
    """
    folds = cv_folds(arrays, n_folds, seed, split)
    _check_split_of_finished_folds(out_dir, split)
    n_folds = len(folds)
    for fold_index, (train_idx, val_idx) in enumerate(folds):
        fold_dir = out_dir / f"fold_{fold_index}"
        if only_folds is not None and fold_index not in only_folds:
            continue
        if fold_finished(fold_dir):
            LOGGER.info("fold %d already finished; skipping", fold_index)
            continue
        if deadline is not None and time.time() >= deadline:
            LOGGER.warning("deadline passed; fold %d and later folds not run", fold_index)
            break
        LOGGER.info(
            "fold %d/%d: %d train, %d val", fold_index + 1, n_folds, len(train_idx), len(val_idx)
        )
        metrics = train_fold(arrays.subset(train_idx), arrays.subset(val_idx), fold_dir)
        header: dict[str, Any] = {
            "fold": fold_index,
            "n_train": len(train_idx),
            "n_val": len(val_idx),
        }
        if split == "dataset":
            header["held_out_dataset"] = arrays.datasets[int(val_idx[0])]
        write_json(fold_dir / "metrics.json", {**header, **metrics})
