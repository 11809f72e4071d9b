"""Training of H&E patch classifiers (PCam normal/tumour, BreakHis benign/malignant or subtypes).

The ultrasound classifier trainer (:mod:`utils.training.classification`: class
weighting, resumable runs, grouped cross-validation, temperature scaling) does the work;
this module supplies what differs for histology:

* the configuration: RGB input, per-dataset class names and input size
  (:func:`patch_train_config`);
* the feeds: histology augmentation with a stain-augmentation hook
  (:mod:`utils.training.patch_feeds`);
* the bundle: after the final fit, ``RUN/final/<name>.{keras,json,md}`` with a model card
  that says what the model was trained on, whether its splits were patient-level (BreakHis)
  or not (PCam has no patient ids), and, for small training sets such as the shared
  samples, that its numbers are not evidence of quality. The bundle loads with
  :func:`utils.inference.bundle.load_bundle` and
  :class:`~utils.inference.classifier.LesionClassifier`, so it can score WSI tiles.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from utils.errors import DatasetError
from utils.model_card import save_model_bundle
from utils.training.arrays import TrainingArrays
from utils.training.classification import (
    ClassifierTrainConfig,
    check_classifier_config,
    cross_validate_classifier,
    export_classifier,
    train_final_classifier,
)
from utils.training.common import FeedBuilder, describe_training_data
from utils.training.patch_data import (
    DEFAULT_PATCH_IMAGE_SIZE,
    check_patch_dataset,
    patch_class_names,
)
from utils.training.patch_feeds import (
    HISTO_AUGMENT_CONFIG,
    PatchAugmentConfig,
    make_patch_feed_builder,
)

LOGGER = logging.getLogger(__name__)

#: Default architecture: trains from scratch on a CPU in minutes on small sets.
DEFAULT_PATCH_ARCH: Final = "compact_cnn"
#: Below this many training images a model card is marked as a demonstration only.
MIN_IMAGES_FOR_EVIDENCE: Final = 1000
#: Bundle names of the shipped patch classifiers.
PATCH_BUNDLE_NAMES: Final = {
    "pcam": "pcam_patch_classifier",
    "breakhis": "breakhis_patch_classifier",
}

_TITLES = {
    "pcam": "H&E patch classifier, PCam (normal vs tumour, 96x96 px)",
    "breakhis": "H&E image classifier, BreakHis (benign vs malignant)",
    "breakhis-subtypes": "H&E image classifier, BreakHis (8 histological subtypes)",
}
_GROUPING = {
    "pcam": (
        "PCam (Kaggle release) carries no patient or slide ids: each patch is its own group, "
        "so cross-validation folds are NOT patient-level and patches of one slide can sit on "
        "both sides of a split; CV scores are optimistic."
    ),
    "breakhis": (
        "Patient-level grouped splits: the patient number is parsed from each file name "
        "(SOB_<B|M>_<subtype>-<year>-<patient>-<mag>-<seq>.png); suffixes of one number are "
        "merged, so no patient is on both sides of a fold."
    ),
}
_FULL_DATA_COMMANDS = {
    "pcam": (
        "python -m utils.train patch --dataset pcam --data /path/to/histopathologic-cancer-"
        "detection --arch compact_cnn --folds 5 --epochs 30 --batch-size 128 --out runs/pcam "
        "--export"
    ),
    "breakhis": (
        "python -m utils.train patch --dataset breakhis --data /path/to/BreaKHis_v1 --arch "
        "compact_cnn --folds 5 --epochs 40 --out runs/breakhis --export"
    ),
}


def patch_train_config(
    dataset: str, *, subtypes: bool = False, **overrides: Any
) -> ClassifierTrainConfig:
    """The classifier configuration of a patch dataset, with ``overrides`` applied.

    Defaults: ``compact_cnn``, RGB, the dataset's input size and class names, 30 epochs,
    batch 64, histology augmentation settings for non-TensorFlow backends.

    Raises:
        ConfigError: Unknown dataset, ``subtypes`` on PCam, or a bad option.
        ModelError: ``weights`` names a missing file.
    """
    check_patch_dataset(dataset, subtypes)
    options: dict[str, Any] = {
        "arch": DEFAULT_PATCH_ARCH,
        "image_size": DEFAULT_PATCH_IMAGE_SIZE[dataset],
        "epochs": 30,
        "batch_size": 64,
        **{key: value for key, value in overrides.items() if value is not None},
    }
    config = ClassifierTrainConfig(
        **options,
        channels=3,
        class_names=patch_class_names(dataset, subtypes),
        augment=HISTO_AUGMENT_CONFIG,
    )
    check_classifier_config(config)
    return config


def _check_training_labels(arrays: TrainingArrays, config: ClassifierTrainConfig) -> None:
    present = sorted(set(arrays.labels))
    unknown = [label for label in present if label not in config.class_names]
    if unknown:
        raise DatasetError(
            f"Labels {', '.join(unknown)} are not classes of this model "
            f"({', '.join(config.class_names)}); was the cache made with other options?"
        )
    if len(present) < 2:
        raise DatasetError(
            f"The training data hold only the class {present[0] if present else '(none)'}; "
            f"a classifier needs examples of at least 2 of {', '.join(config.class_names)}."
        )


def train_patch_classifier(
    arrays: TrainingArrays,
    config: ClassifierTrainConfig,
    out_dir: Path,
    *,
    dataset: str,
    n_folds: int = 0,
    only_folds: list[int] | None = None,
    final: bool = True,
    models_dir: Path | None = None,
    patch_augment: PatchAugmentConfig | None = None,
    feed_builder: FeedBuilder | None = None,
) -> dict[str, Any]:
    """Cross-validate and/or train the final patch classifier and write its bundle.

    Args:
        arrays: Decoded patches (see :func:`utils.training.patch_data.load_patch_arrays`).
        config: From :func:`patch_train_config`.
        out_dir: Run folder (resumable): ``fold_<k>/``, ``cv.json``, ``final/``.
        dataset: ``"pcam"`` or ``"breakhis"`` (for the card's grouping note).
        n_folds: Grouped k-fold CV first (0: none).
        only_folds: Run just these folds.
        final: Train the final model on all data and write its bundle to ``out_dir/final``.
        models_dir: Also write the bundle there (e.g. ``saved_models/``).
        patch_augment: Histology augmentation settings.
        feed_builder: Overrides the feeds (default: histology feeds of ``patch_augment``).

    Returns:
        ``{"cv": cv summary or None, "bundle": path of the .keras file or None, "card": card
        or None}``.

    Raises:
        ConfigError: Bad configuration, fold count or image shape.
        DatasetError: The labels are not the model's classes or hold a single class.
    """
    _check_training_labels(arrays, config)
    patch_augment = patch_augment or PatchAugmentConfig()
    feeds = feed_builder or make_patch_feed_builder(patch_augment)
    cv = None
    if n_folds:
        if dataset == "pcam":
            LOGGER.warning("PCam has no patient ids: the %d CV folds are patch-level", n_folds)
        cv = cross_validate_classifier(
            arrays, config, out_dir, n_folds=n_folds, only_folds=only_folds, feed_builder=feeds
        )
        LOGGER.info("CV summary: %s", json.dumps(cv["summary"], default=str))
    if not final:
        return {"cv": cv, "bundle": None, "card": None}
    model, temperature = train_final_classifier(
        arrays, config, out_dir / "final", feed_builder=feeds
    )
    final_info = json.loads((out_dir / "final" / "final.json").read_text())
    card = build_patch_card(
        arrays, config, dataset=dataset, temperature=temperature, cv=cv, final_info=final_info
    )
    card["patch_augment"] = asdict(patch_augment)
    exported = export_classifier(model, config)
    name = PATCH_BUNDLE_NAMES[dataset] + ("_subtypes" if len(config.class_names) > 2 else "")
    bundle = save_model_bundle(exported, name, card, models_dir=out_dir / "final")
    if models_dir is not None:
        bundle = save_model_bundle(exported, name, card, models_dir=Path(models_dir))
    LOGGER.info("bundle written: %s", bundle)
    return {"cv": cv, "bundle": bundle, "card": card}


def build_patch_card(
    arrays: TrainingArrays,
    config: ClassifierTrainConfig,
    *,
    dataset: str,
    temperature: float,
    cv: dict[str, Any] | None,
    final_info: dict[str, Any],
) -> dict[str, Any]:
    """The model card of a final patch classifier (see :mod:`utils.model_card`)."""
    check_patch_dataset(dataset)
    n_images = len(arrays)
    kind = "breakhis-subtypes" if len(config.class_names) > 2 else dataset
    trained_from = (
        "random initialisation (trained from scratch, no pretrained weights)"
        if config.weights is None
        else f"pretrained weights: {config.weights}"
    )
    card: dict[str, Any] = {
        "title": _TITLES[kind],
        "task": "classification",
        "architecture": config.arch,
        "input_shape": list(config.input_shape),
        "class_names": list(config.class_names),
        "temperature": float(temperature),
        "trained_from": trained_from,
        "training_data": {
            **describe_training_data(arrays),
            "dataset": dataset,
            "grouping": _GROUPING[dataset],
        },
        "preprocessing": (
            "RGB uint8 / 255 in [0, 1]; images whose size differs from the input are "
            "stretched to it (area interpolation when shrinking). PCam patches are used at "
            "their native 96x96 px."
        ),
        "epochs_run": final_info.get("epochs_run"),
        "stopped_by_deadline": final_info.get("stopped_by_deadline"),
        "calibration": (
            "temperature = mean of the per-fold validation temperatures"
            if cv
            else "none (no cross-validation run; temperature 1.0)"
        ),
        "limitations": [
            _GROUPING[dataset],
            "Stain and scanner variation between labs is only partly covered by colour "
            "jitter; expect lower accuracy on slides from other centres.",
            "Patch-level output: it says nothing about a whole slide or a patient without an "
            "aggregation step validated for that purpose.",
        ],
        "full_data_command": _FULL_DATA_COMMANDS[dataset],
        "config": config.to_dict(),
        "augmentation": (
            "TensorFlow training applies patch_augment (dihedral flips/rotations and colour "
            "jitter); config.augment is the fallback used only on other Keras backends."
        ),
        "version": "0.1.0",
    }
    if cv is not None:
        # The ultrasound summary keys include auc_malignant, meaningless without that class.
        card["cv_metrics"] = {
            key: value
            for key, value in cv["summary"].items()
            if key != "auc_malignant" or "malignant" in config.class_names
        }
        card["cv_folds"] = cv["n_folds"]
    if dataset == "pcam":
        card["limitations"].append(
            "PCam labels describe the centre 32x32 px of a patch (tumour if any pixel there "
            "is tumour); patches are 96x96 px at 10x (0.97 um/px): other magnifications are "
            "out of distribution."
        )
    if n_images < MIN_IMAGES_FOR_EVIDENCE:
        how = "Trained from scratch" if config.weights is None else "Fine-tuned"
        unit = "patches" if dataset == "pcam" else "images"
        card["status"] = (
            f"DEMONSTRATION ONLY. {how} on {n_images} shared sample {unit} "
            f"({len(set(arrays.groups))} groups). It proves that the readers, training loop, "
            "evaluation and model card work end to end; its numbers are NOT evidence of "
            f"quality. Train a real model on the full dataset with: {_FULL_DATA_COMMANDS[dataset]}"
        )
        card["limitations"].insert(
            0,
            f"Trained on only {n_images} images: its predictions cannot be expected to "
            "generalise, whatever its sample metrics say.",
        )
    return card
