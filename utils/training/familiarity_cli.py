r"""The ``familiarity`` subcommand of ``python -m utils.train``.

Fits the "unfamiliar image" reference of a shipped classifier (:mod:`utils.familiarity`)
on its training images, writes it next to the bundle (``NAME.familiarity.npz``) and
records it in the card. With ``--cv-run`` it also checks the flag in grouped CV, on the
run's fold models (:mod:`utils.evaluation.familiarity`), and on the images of each
``--outside`` folder (images the model should find unfamiliar).

Example::

    python -m utils.train familiarity --data ../shared/datasets/busi \\
        --data ../shared/datasets/bus-bra --bundle ultrasound_classifier \\
        --cv-run runs/cls_comb_e20 --cv-masks-from runs/seg_e20_os4 \\
        --outside ../shared/datasets/monuseg --outside ../shared/datasets/breakhis_sample \\
        --out runs/familiarity
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from utils.errors import ConfigError
from utils.familiarity import (
    DEFAULT_N_COMPONENTS,
    DEFAULT_QUANTILE,
    FamiliarityReference,
    check_fit_options,
    familiarity_path,
    fit_familiarity,
    save_familiarity,
)

LOGGER = logging.getLogger("tumorlens.train")

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def add_familiarity_parser(tasks: Any) -> argparse.ArgumentParser:
    """Add the ``familiarity`` subcommand to the subparsers of ``python -m utils.train``."""
    parser = tasks.add_parser(
        "familiarity", help="fit (and check in CV) a classifier's unfamiliar-image flag"
    )
    parser.add_argument(
        "--data", action="append", type=Path, required=True, help="training dataset (repeatable)"
    )
    parser.add_argument("--bundle", default="ultrasound_classifier", help="classifier bundle")
    parser.add_argument("--models-dir", type=Path, default=None, help="default: saved_models/")
    parser.add_argument("--out", type=Path, required=True, help="folder for familiarity.json")
    parser.add_argument("--cache-dir", type=Path, default=Path(".devdata"))
    parser.add_argument("--log-file", type=Path, default=None, help="default: OUT/train.log")
    parser.add_argument("--n-components", type=int, default=DEFAULT_N_COMPONENTS)
    parser.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE)
    parser.add_argument("--cv-run", type=Path, default=None, help="classify run to check in CV")
    parser.add_argument(
        "--cv-masks-from",
        type=Path,
        default=None,
        help="segmenter CV run whose fold masks the --cv-run's mask-guided folds used",
    )
    parser.add_argument(
        "--outside",
        action="append",
        type=Path,
        default=[],
        help="folder of images from outside the training distribution (repeatable)",
    )
    return parser


def _outside_images(folder: Path, size: int) -> np.ndarray:
    """Every image under ``folder`` as (M, size, size, 1) uint8 model inputs."""
    from utils.image_io import load_image
    from utils.inference.bundle import images_for_model

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not paths:
        raise ConfigError(
            f"--outside {folder} holds no images ({', '.join(_IMAGE_SUFFIXES)}); give a "
            "folder of images the model was not trained on."
        )
    return images_for_model([load_image(path) for path in paths], (size, size, 1))


def _fold_input_maker(
    masks_from: Path | None, fold: int, n_val: int, size: int
) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 images -> the fold model's uint8 input (mask-guided: with fold masks)."""
    if masks_from is None:
        return lambda images: images
    from utils.training.mask_guided import (
        fold_segmenter,
        mask_guided_images,
        predict_probability_maps,
    )

    segmenter, threshold = fold_segmenter(masks_from, fold, n_val, size)
    return lambda images: mask_guided_images(
        images, predict_probability_maps(segmenter, images), threshold
    )


def _embed(
    features_of: Any, prepare: Callable[[np.ndarray], np.ndarray], images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(features, class scores) of uint8 images under one fold model."""
    batch = prepare(images).astype(np.float32) / 255.0
    features, scores = features_of.predict(batch, batch_size=64, verbose=0)
    return np.asarray(features), np.asarray(scores)


class _CvFeatures(NamedTuple):
    fold_features: list[np.ndarray]
    fold_of: np.ndarray
    datasets: list[str]
    outside: dict[str, list[np.ndarray]]
    held_out_correct: np.ndarray


def _cv_features(args: argparse.Namespace) -> _CvFeatures:
    """Features of every training and ``--outside`` image under each fold model of ``--cv-run``.

    Also whether each image's own held-out fold model classified it correctly.
    """
    import keras

    from utils.labels import encode_labels
    from utils.models.classification import penultimate_model
    from utils.training.classification import ClassifierTrainConfig
    from utils.training.classifier_card import load_fold_model
    from utils.training.common import config_from_saved, grouped_cv_folds, require_grouped_fold
    from utils.training.data import load_training_arrays

    cv_path = args.cv_run / "cv.json"
    if not cv_path.is_file():
        raise ConfigError(f"{cv_path} is missing: --cv-run must be a finished classify run.")
    cv = json.loads(cv_path.read_text())
    config = config_from_saved(ClassifierTrainConfig, cv["config"])
    if args.cv_masks_from is None and config.channels != 1:
        raise ConfigError("The familiarity check supports grey-scale classifiers only.")
    arrays = load_training_arrays(
        args.data,
        image_size=config.image_size,
        channels=1,
        with_masks=False,
        cache_dir=args.cache_dir,
    )
    outside = {folder.name: _outside_images(folder, config.image_size) for folder in args.outside}
    folds = grouped_cv_folds(arrays, cv["n_folds"], config.seed)
    fold_of = np.zeros(len(arrays), dtype=int)
    labels = encode_labels(arrays.labels, config.class_names)
    correct = np.zeros(len(arrays), dtype=bool)
    fold_features: list[np.ndarray] = []
    outside_features: dict[str, list[np.ndarray]] = {name: [] for name in outside}
    for fold, (_, val_idx) in enumerate(folds):
        fold_of[val_idx] = fold
        require_grouped_fold(args.cv_run / f"fold_{fold}")
        model = load_fold_model(config, args.cv_run / f"fold_{fold}")
        features = penultimate_model(model)
        features_of = keras.Model(features.input, [features.output, model.output])
        prepare = _fold_input_maker(args.cv_masks_from, fold, len(val_idx), config.image_size)
        embed = partial(_embed, features_of, prepare)
        all_features, scores = embed(arrays.images)
        fold_features.append(all_features)
        correct[val_idx] = scores[val_idx].argmax(axis=1) == labels[val_idx]
        for name, images in outside.items():
            outside_features[name].append(embed(images)[0])
        LOGGER.info("familiarity CV: fold %d features %s", fold, all_features.shape)
        keras.backend.clear_session(free_memory=True)
    return _CvFeatures(fold_features, fold_of, list(arrays.datasets), outside_features, correct)


def _command(args: argparse.Namespace) -> str:
    parts = ["python -m utils.train familiarity"]
    parts += [f"--data {path}" for path in args.data]
    parts += [f"--bundle {args.bundle}", f"--n-components {args.n_components}"]
    parts += [f"--quantile {args.quantile}"]
    if args.cv_run:
        parts.append(f"--cv-run {args.cv_run}")
    if args.cv_masks_from:
        parts.append(f"--cv-masks-from {args.cv_masks_from}")
    parts += [f"--outside {folder}" for folder in args.outside]
    return " ".join([*parts, f"--out {args.out}"])


def familiarity_card_section(
    reference: FamiliarityReference,
    file_name: str,
    data: list[Path],
    validation: dict[str, Any] | None,
    command: str,
) -> dict[str, Any]:
    """The card's ``familiarity`` entry: what was fitted, on what, and how it was checked."""
    section: dict[str, Any] = {
        "file": file_name,
        "method": (
            "Mahalanobis distance of the penultimate features (input of the logits layer) "
            f"to the training images', on their first {reference.components.shape[0]} "
            "principal axes with a Ledoit-Wolf covariance (utils.familiarity)"
        ),
        "n_features": reference.n_features,
        "n_components": int(reference.components.shape[0]),
        "n_reference": len(reference.reference_distances),
        "reference_data": [str(path) for path in data],
        "quantile": reference.quantile,
        "threshold": round(reference.threshold, 4),
        "weights_fingerprint": reference.weights_fingerprint,
        "meaning": (
            "An image is flagged 'unfamiliar' when its distance exceeds that of "
            f"{reference.quantile:.0%} of the training images: it looks unlike what the "
            "model learnt from (another kind of image, scanner or preset), so its "
            "probabilities deserve less trust. The flag does not say the answer is wrong, "
            "and an unflagged image can still be misclassified."
        ),
        "command": command,
    }
    if validation is not None:
        section["validation"] = validation
    return section


def run_familiarity(args: argparse.Namespace) -> int:
    """Fit, optionally check in CV, save the reference and record it in the card."""
    from utils.inference.bundle import resolve_bundle_paths
    from utils.inference.classifier import LesionClassifier
    from utils.model_card import update_model_card
    from utils.paths import SAVED_MODELS_DIR
    from utils.training.data import load_training_arrays

    check_fit_options(args.n_components, args.quantile)
    models_dir = args.models_dir or SAVED_MODELS_DIR
    validation = None
    if args.cv_run is not None:  # first: it is the step whose inputs may be wrong
        from utils.evaluation.familiarity import familiarity_cv_report

        features = _cv_features(args)
        validation = familiarity_cv_report(
            features.fold_features,
            features.fold_of,
            features.datasets,
            features.outside,
            n_components=args.n_components,
            quantile=args.quantile,
            held_out_correct=features.held_out_correct,
        )
        validation["cv_run"] = str(args.cv_run)
    # Never load the old reference: it may belong to weights that were replaced.
    classifier = LesionClassifier.from_bundle(
        args.bundle, models_dir=models_dir, familiarity=None, warm_up=False
    )
    size = classifier.input_shape[0]
    arrays = load_training_arrays(
        args.data, image_size=size, channels=1, with_masks=False, cache_dir=args.cache_dir
    )
    features = classifier.embed(list(arrays.images[..., 0]))
    reference = fit_familiarity(
        features,
        n_components=args.n_components,
        quantile=args.quantile,
        weights_fingerprint=classifier.weights_fingerprint,
    )
    model_path, _ = resolve_bundle_paths(args.bundle, models_dir=models_dir)
    sidecar = save_familiarity(reference, familiarity_path(model_path))
    section = familiarity_card_section(
        reference, sidecar.name, list(args.data), validation, _command(args)
    )
    update_model_card(model_path.stem, {"familiarity": section}, models_dir=model_path.parent)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "familiarity.json").write_text(json.dumps(section, indent=2) + "\n")
    LOGGER.info(
        "familiarity: %d reference images, threshold %.3f; wrote %s",
        len(reference.reference_distances),
        reference.threshold,
        sidecar,
    )
    return 0
