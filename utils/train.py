r"""Training CLI: ``python -m utils.train {segment,classify,baseline} --data DIR [...]``.

A thin adapter over :mod:`utils.training`: it parses options, loads the data once
(cached as ``.npz``), runs grouped k-fold cross-validation and/or trains the final
model on all data, and writes the model with its card to ``--out``.

Examples::

    # 5-fold grouped CV of the default attention ResUNet on BUSI + BUS-BRA
    python -m utils.train segment --data ../shared/datasets/busi \\
        --data ../shared/datasets/bus-bra --folds 5 --out runs/seg_cv

    # 5-fold CV, then the final classifier, fine-tuned from a local weights file
    python -m utils.train classify --data ../shared/datasets/busi --folds 5 --final \\
        --weights efficientnetb0_notop.h5 --out runs/cls

    # H&E patches: 5-fold CV, then the final PCam classifier and its bundle
    python -m utils.train patch --dataset pcam --data /data/pcam --arch compact_cnn \\
        --folds 5 --out runs/pcam --export

    # one model averaging a plain run and a mask-guided run (both finished, same folds)
    python -m utils.train combine --data ../shared/datasets/busi --plain-run runs/cls \
        --mask-guided-run runs/cls_mg --mask-guided-from runs/seg_cv96 --out runs/cls_both \
        --folds --final

    # resume after a crash: run the same command again (state is in --out)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from utils.augment_config import augment_with_overrides
from utils.errors import ConfigError, TumorLensError
from utils.splits import CV_SPLITS

if TYPE_CHECKING:
    from utils.training.arrays import TrainingArrays
    from utils.training.classification import ClassifierTrainConfig

LOGGER = logging.getLogger("tumorlens.train")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", action="append", type=Path, help="dataset folder (repeatable)")
    source.add_argument(
        "--arrays", type=Path, help="pre-decoded .npz cache (utils.training.arrays)"
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumable)")
    parser.add_argument("--cache-dir", type=Path, default=Path(".devdata"))
    parser.add_argument("--log-file", type=Path, default=None, help="default: OUT/train.log")


def _add_ultrasound_cv_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--augment",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change one training augmentation setting of utils.augment_config.AugmentConfig "
        "(repeatable), e.g. contrast_range=0.6,1.4 or elastic_probability=0",
    )
    parser.add_argument(
        "--split",
        choices=CV_SPLITS,
        default="grouped",
        help="CV folds: grouped k folds over patients (--folds K), or dataset: hold out one "
        "whole dataset per fold (another hospital; needs 2+ --data, ignores --folds)",
    )


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    _add_data_options(parser)
    parser.add_argument("--arch", help="architecture name (see the model registry)")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=0, help="grouped k-fold CV (0: none)")
    parser.add_argument("--only-fold", type=int, action="append", help="run just these folds")
    parser.add_argument("--final", action="store_true", help="train the final model on all data")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument(
        "--backup-every-steps",
        type=int,
        default=None,
        help="save resume state every N batches (default: every epoch)",
    )
    parser.add_argument(
        "--deadline-minutes",
        type=float,
        default=None,
        help="stop at the first epoch end after this many minutes (lent machines)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m utils.train``."""
    parser = argparse.ArgumentParser(
        prog="python -m utils.train", description=__doc__.split("\n")[0]
    )
    tasks = parser.add_subparsers(dest="task", required=True)
    segment = tasks.add_parser("segment", help="ultrasound lesion segmenter")
    _add_common_options(segment)
    _add_ultrasound_cv_options(segment)
    segment.add_argument(
        "--loss",
        default=None,
        help="dice_bce | dice_bce_presence | dice_bce_boundary | dice | focal_tversky",
    )
    segment.add_argument("--base-filters", type=int, default=None)
    segment.add_argument(
        "--normal-oversample",
        type=int,
        default=None,
        help="repeat each training image with an empty mask K times per epoch (default 1)",
    )
    segment.add_argument(
        "--presence-weight",
        type=float,
        default=None,
        help="weight of the image-level term of --loss dice_bce_presence (default 1.0)",
    )
    segment.add_argument(
        "--boundary-weight",
        type=float,
        default=None,
        help="weight of the outline term of --loss dice_bce_boundary (default 1.0)",
    )
    classify = tasks.add_parser("classify", help="ultrasound lesion classifier")
    _add_common_options(classify)
    _add_ultrasound_cv_options(classify)
    classify.add_argument(
        "--weights",
        default=None,
        help="'imagenet' or a local weights file (backbone or whole model); "
        "turns on two-phase fine-tuning",
    )
    classify.add_argument("--channels", type=int, choices=(1, 3), default=None)
    classify.add_argument("--dropout", type=float, default=None)
    classify.add_argument(
        "--class-weighting",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="balanced class weights in the training loss (default: on)",
    )
    classify.add_argument(
        "--two-phase",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="head-only phase before fine-tuning (default: when --weights is given)",
    )
    classify.add_argument("--head-epochs", type=int, default=None, help="epochs of the head phase")
    classify.add_argument(
        "--ensemble-members",
        type=int,
        default=None,
        help="train K models with seeds SEED..SEED+K-1 and ship their average (default: 1)",
    )
    classify.add_argument(
        "--tta",
        dest="evaluate_tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="evaluate the refer-to-a-human rule with test-time augmentation (default: on)",
    )
    classify.add_argument(
        "--mask-guided-from",
        type=Path,
        default=None,
        help="the mask-guided variant: --folds takes each fold's masks from this finished "
        "`segment --folds` run on the same data, folds and seed; --final embeds "
        "--segmenter-bundle",
    )
    classify.add_argument(
        "--segmenter-bundle",
        default="ultrasound_segmenter",
        help="segmenter embedded in a final mask-guided model: a bundle name, or the path "
        "of a .keras file with its card, such as a segment run's final/model.keras "
        "(default: ultrasound_segmenter)",
    )
    baseline = tasks.add_parser(
        "baseline", help="pixel baselines (logistic regression, random forest) under grouped CV"
    )
    _add_data_options(baseline)
    baseline.add_argument(
        "--model", default="logistic_regression", help="logistic_regression | random_forest"
    )
    baseline.add_argument("--pixels", type=int, default=32, help="images are shrunk to this side")
    baseline.add_argument("--folds", type=int, default=5, help="grouped k-fold CV")
    baseline.add_argument("--seed", type=int, default=0)
    ship = tasks.add_parser(
        "ship-classifier",
        help="write a finished classify run (CV + --final) to saved_models/ with its card",
    )
    _add_data_options(ship)
    ship.add_argument("--name", default="ultrasound_classifier", help="bundle name")
    ship.add_argument("--models-dir", type=Path, default=None, help="default: saved_models/")
    ship.add_argument(
        "--card-extra", type=Path, default=None, help="JSON of further card fields (limitations...)"
    )
    ship.add_argument(
        "--mask-guided-from",
        type=Path,
        default=None,
        help="the run is mask-guided: the segmenter CV run its folds took their masks from",
    )
    ship_segmenter = tasks.add_parser(
        "ship-segmenter",
        help="write a finished segment run (CV + --final into OUT/final) to saved_models/",
    )
    _add_data_options(ship_segmenter)
    ship_segmenter.add_argument("--name", default="ultrasound_segmenter", help="bundle name")
    ship_segmenter.add_argument(
        "--models-dir", type=Path, default=None, help="default: saved_models/"
    )
    ship_segmenter.add_argument(
        "--card-extra", type=Path, default=None, help="JSON of further card fields (limitations...)"
    )
    combine = tasks.add_parser(
        "combine",
        help="one mask-guided model whose head averages a plain run and a mask-guided run",
    )
    _add_data_options(combine)
    combine.add_argument("--plain-run", type=Path, required=True, help="plain classify run")
    combine.add_argument(
        "--mask-guided-run",
        type=Path,
        required=True,
        help="classify --mask-guided-from run on the same data, image size, folds and seed",
    )
    combine.add_argument(
        "--mask-guided-from",
        type=Path,
        required=True,
        help="the segmenter CV run the mask-guided run took its masks from",
    )
    combine.add_argument("--folds", action="store_true", help="combine and score every CV fold")
    combine.add_argument(
        "--final", action="store_true", help="compose the two runs' final models into OUT/final"
    )
    attach = tasks.add_parser(
        "attach-cv",
        help="record a finished cross-validation run (OUT/cv.json) in a shipped model's card",
    )
    attach.add_argument("--out", type=Path, required=True, help="run folder holding cv.json")
    attach.add_argument("--bundle", required=True, help="bundle name, e.g. ultrasound_segmenter")
    attach.add_argument("--key", default="cv", help="card key to write the summary under")
    attach.add_argument(
        "--note", required=True, help="what the run was, and how it differs from the shipped model"
    )
    attach.add_argument("--models-dir", type=Path, default=None, help="default: saved_models/")
    attach.add_argument("--log-file", type=Path, default=None, help="default: OUT/train.log")
    _add_patch_parser(tasks)
    from utils.training.nuclei_cli import add_nuclei_parser

    add_nuclei_parser(tasks)
    from utils.training.familiarity_cli import add_familiarity_parser

    add_familiarity_parser(tasks)
    return parser


def _add_patch_parser(tasks: argparse._SubParsersAction) -> None:
    patch = tasks.add_parser("patch", help="H&E patch classifier (PCam, BreakHis)")
    _add_common_options(patch)
    patch.add_argument("--dataset", required=True, help="pcam | breakhis")
    patch.add_argument(
        "--subtypes", action="store_true", help="BreakHis: the 8 subtypes, not benign/malignant"
    )
    patch.add_argument("--weights", default=None, help="'imagenet' or a local weights file")
    patch.add_argument("--dropout", type=float, default=None)
    patch.add_argument("--class-weighting", action=argparse.BooleanOptionalAction, default=None)
    patch.add_argument(
        "--tta", dest="evaluate_tta", action=argparse.BooleanOptionalAction, default=None
    )
    # The final model is trained unless --no-final (--final is accepted and a no-op).
    patch.set_defaults(final=True)
    for action in patch._actions:
        if action.option_strings == ["--final"]:
            action.help = "train the final model on all data (the default here)"
    patch.add_argument("--no-final", dest="final", action="store_false", help="cross-validate only")
    patch.add_argument(
        "--export", action="store_true", help="also write the bundle to saved_models/"
    )


def _setup_logging(log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(log_file)],
        force=True,
    )


def _overrides(args: argparse.Namespace, names: Sequence[str]) -> dict:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _deadline(minutes: float | None) -> float | None:
    return None if minutes is None else time.time() + 60.0 * minutes


def _load_arrays(
    args: argparse.Namespace, *, image_size: int, channels: int, with_masks: bool
) -> TrainingArrays:
    """The ``--arrays`` cache, or the ``--data`` folders decoded (and cached)."""
    from utils.training.arrays import TrainingArrays

    if args.arrays:
        return TrainingArrays.load(args.arrays)
    from utils.training.data import load_training_arrays

    return load_training_arrays(
        args.data,
        image_size=image_size,
        channels=channels,
        with_masks=with_masks,
        cache_dir=args.cache_dir,
    )


def _cross_validate_if_asked(
    args: argparse.Namespace,
    cross_validate: Callable[..., dict],
    arrays: TrainingArrays,
    config: object,
) -> None:
    """Run ``cross_validate`` when ``--folds K`` or ``--split dataset`` asks for CV."""
    if args.folds or args.split == "dataset":
        summary = cross_validate(
            arrays,
            config,
            args.out,
            n_folds=args.folds,
            only_folds=args.only_fold,
            split=args.split,
        )
        LOGGER.info("CV summary: %s", summary["summary"])


def run_segment(args: argparse.Namespace) -> int:
    """Cross-validate and/or train the segmenter as the parsed options say."""
    from utils.training.segmentation import (
        SegmenterTrainConfig,
        cross_validate_segmenter,
        train_final_segmenter,
    )

    config = SegmenterTrainConfig(
        **_overrides(
            args,
            (
                "arch",
                "image_size",
                "epochs",
                "batch_size",
                "learning_rate",
                "patience",
                "seed",
                "loss",
                "base_filters",
                "normal_oversample",
                "presence_weight",
                "boundary_weight",
                "backup_every_steps",
            ),
        ),
        mixed_precision=args.mixed_precision,
        deadline=_deadline(args.deadline_minutes),
    )
    config.augment = augment_with_overrides(config.augment, args.augment)
    arrays = _load_arrays(args, image_size=config.image_size, channels=1, with_masks=True)
    _cross_validate_if_asked(args, cross_validate_segmenter, arrays, config)
    if args.final:
        train_final_segmenter(arrays, config, args.out / "final")
    return 0


def run_classify(args: argparse.Namespace) -> int:
    """Cross-validate and/or train the classifier as the parsed options say.

    The configuration is checked before any data is read. With ``--arrays``, the image
    size and channels default to those of the cache.
    """
    from utils.training.classification import (
        ClassifierTrainConfig,
        check_classifier_config,
        cross_validate_classifier,
        train_final_classifier,
    )

    config = ClassifierTrainConfig(
        **_overrides(
            args,
            (
                "arch",
                "image_size",
                "channels",
                "weights",
                "dropout",
                "epochs",
                "batch_size",
                "learning_rate",
                "patience",
                "seed",
                "class_weighting",
                "two_phase",
                "head_epochs",
                "evaluate_tta",
                "backup_every_steps",
                "ensemble_members",
            ),
        ),
        mixed_precision=args.mixed_precision,
        deadline=_deadline(args.deadline_minutes),
    )
    check_classifier_config(config)
    config.augment = augment_with_overrides(config.augment, args.augment)
    if args.mask_guided_from is not None:
        if config.ensemble_members > 1:
            raise ConfigError(
                f"--ensemble-members {config.ensemble_members} cannot be combined with "
                "--mask-guided-from: ensembles are built from plain classifiers only."
            )
        return _run_mask_guided(args, config)
    arrays = _load_arrays(
        args, image_size=config.image_size, channels=config.channels, with_masks=False
    )
    height, _, channels = arrays.images.shape[1:]
    config.image_size = args.image_size or height
    config.channels = args.channels or channels
    _cross_validate_if_asked(args, cross_validate_classifier, arrays, config)
    if args.final:
        _, temperature = train_final_classifier(arrays, config, args.out / "final")
        LOGGER.info("final model in %s (temperature %.3f)", args.out / "final", temperature)
    return 0


def _run_mask_guided(args: argparse.Namespace, config: ClassifierTrainConfig) -> int:
    """CV and/or final model of the mask-guided classifier (:mod:`utils.training.mask_guided`)."""
    from utils.training.mask_guided import cross_validate_mask_guided, train_final_mask_guided

    if args.split != "grouped":
        raise ConfigError(
            f"--split {args.split} cannot be combined with --mask-guided-from: its fold masks "
            "come from a grouped segmenter CV run; use the default --split grouped."
        )
    if not args.folds and not args.final:
        raise ConfigError("--mask-guided-from needs --folds K and/or --final.")
    if config.channels != 1:
        raise ConfigError(
            f"--mask-guided-from reads grey-scale images; received --channels {config.channels}."
        )
    if args.folds:
        arrays = _load_arrays(args, image_size=config.image_size, channels=1, with_masks=False)
        config.image_size = arrays.images.shape[1]
        summary = cross_validate_mask_guided(
            arrays,
            config,
            args.out,
            args.mask_guided_from,
            n_folds=args.folds,
            only_folds=args.only_fold,
        )
        LOGGER.info("mask-guided CV summary: %s", summary["summary"])
    if args.final:
        from utils.inference.segmenter import LesionSegmenter

        segmenter = LesionSegmenter.from_bundle(args.segmenter_bundle, warm_up=False)
        full_size = _load_arrays(
            args, image_size=segmenter.input_shape[0], channels=1, with_masks=False
        )
        train_final_mask_guided(
            full_size, segmenter.model, segmenter.threshold, config, args.out / "final"
        )
        LOGGER.info("final mask-guided model in %s", args.out / "final")
    return 0


def run_baseline(args: argparse.Namespace) -> int:
    """Grouped k-fold CV of a pixel baseline on the same folds as the CNNs."""
    from utils.training.baselines import (
        BaselineConfig,
        check_baseline_config,
        cross_validate_baseline,
    )

    config = BaselineConfig(model=args.model, pixels=args.pixels, seed=args.seed)
    check_baseline_config(config)
    arrays = _load_arrays(args, image_size=128, channels=1, with_masks=False)
    summary = cross_validate_baseline(arrays, config, args.out, n_folds=args.folds)
    LOGGER.info("CV summary: %s", summary["summary"])
    return 0


def run_ship_classifier(args: argparse.Namespace) -> int:
    """Ship the run in ``--out``: out-of-fold CV plots and metrics, then the bundle.

    The data options must name the same data as the run (it is re-read in the same
    order, at the run's image size, to rebuild the folds).
    """
    import json

    from utils.paths import SAVED_MODELS_DIR
    from utils.training.classification import ClassifierTrainConfig
    from utils.training.classifier_card import ship_classifier
    from utils.training.common import config_from_saved

    cv_path = args.out / "cv.json"
    if not cv_path.exists():
        raise ConfigError(f"{cv_path} is missing: --out must be a finished classify run.")
    config = config_from_saved(ClassifierTrainConfig, json.loads(cv_path.read_text())["config"])
    guided = args.mask_guided_from is not None
    # A mask-guided run stacks its channels itself, from grey-scale images.
    channels = 1 if guided else config.channels
    arrays = _load_arrays(args, image_size=config.image_size, channels=channels, with_masks=False)
    extra = json.loads(args.card_extra.read_text()) if args.card_extra else {}
    options = {"name": args.name, "models_dir": args.models_dir or SAVED_MODELS_DIR, **extra}
    if guided:
        from utils.training.mask_guided import ship_mask_guided

        path = ship_mask_guided(args.out, arrays, config, args.mask_guided_from, **options)
    else:
        path = ship_classifier(args.out, arrays, config, **options)
    LOGGER.info("wrote %s", path)
    return 0


def run_ship_segmenter(args: argparse.Namespace) -> int:
    """Ship the segment run in ``--out``: pooled out-of-fold scores, then the bundle.

    The ``--data`` folders must be the run's (re-read in the same order, at the run's
    image size, to rebuild the folds); their original images and masks are read again to
    score the out-of-fold masks at each image's own resolution.
    """
    import json

    from utils.paths import SAVED_MODELS_DIR
    from utils.training.common import config_from_saved
    from utils.training.data import read_training_records
    from utils.training.segmentation import SegmenterTrainConfig
    from utils.training.segmenter_card import ship_segmenter

    if args.arrays:
        raise ConfigError(
            "ship-segmenter needs --data, not --arrays: it re-reads the original images and "
            "masks to score the out-of-fold masks at their own resolution."
        )
    cv_path = args.out / "cv.json"
    if not cv_path.exists():
        raise ConfigError(f"{cv_path} is missing: --out must be a finished segment run.")
    config = config_from_saved(SegmenterTrainConfig, json.loads(cv_path.read_text())["config"])
    arrays = _load_arrays(args, image_size=config.image_size, channels=1, with_masks=True)
    mask_paths = {str(r.image_path): r.mask_paths for r in read_training_records(args.data)}
    extra = json.loads(args.card_extra.read_text()) if args.card_extra else {}
    models_dir = args.models_dir or SAVED_MODELS_DIR
    path = ship_segmenter(
        args.out, arrays, config, mask_paths, name=args.name, models_dir=models_dir, **extra
    )
    LOGGER.info("wrote %s", path)
    return 0


def run_combine(args: argparse.Namespace) -> int:
    """CV and/or final model of a combined head (:mod:`utils.training.combine`)."""
    import json

    from utils.training.combine import combine_final, cross_validate_combined

    if not args.folds and not args.final:
        raise ConfigError("combine needs --folds and/or --final.")
    if args.folds:
        cv_path = args.mask_guided_run / "cv.json"
        if not cv_path.is_file():
            raise ConfigError(f"{cv_path} is missing: --mask-guided-run must be a finished run.")
        image_size = int(json.loads(cv_path.read_text())["config"]["image_size"])
        arrays = _load_arrays(args, image_size=image_size, channels=1, with_masks=False)
        summary = cross_validate_combined(
            arrays, args.plain_run, args.mask_guided_run, args.mask_guided_from, args.out
        )
        LOGGER.info("combined CV summary: %s", summary["summary"])
    if args.final:
        combine_final(args.plain_run, args.mask_guided_run, args.out)
        LOGGER.info("final combined model in %s", args.out / "final")
    return 0


def run_attach_cv(args: argparse.Namespace) -> int:
    """Write ``--out/cv.json``'s summary into the card of ``--bundle`` under ``--key``."""
    import json

    from utils.model_card import update_model_card
    from utils.paths import SAVED_MODELS_DIR
    from utils.training.common import cv_card_section

    cv_path = args.out / "cv.json"
    if not cv_path.is_file():
        raise ConfigError(f"{cv_path} is missing: --out must be a finished cross-validation run.")
    section = cv_card_section(json.loads(cv_path.read_text()), args.note)
    update_model_card(
        args.bundle, {args.key: section}, models_dir=args.models_dir or SAVED_MODELS_DIR
    )
    LOGGER.info("card %s: %s = %d folds", args.bundle, args.key, section["n_folds"])
    return 0


def run_patch(args: argparse.Namespace) -> int:
    """Cross-validate and/or train an H&E patch classifier and write its bundle.

    The configuration is checked before any data is read.
    """
    from utils.paths import SAVED_MODELS_DIR
    from utils.training.arrays import TrainingArrays
    from utils.training.patch import patch_train_config, train_patch_classifier
    from utils.training.patch_data import load_patch_arrays

    config = patch_train_config(
        args.dataset,
        subtypes=args.subtypes,
        **_overrides(
            args,
            (
                "arch",
                "image_size",
                "weights",
                "dropout",
                "epochs",
                "batch_size",
                "learning_rate",
                "patience",
                "seed",
                "class_weighting",
                "evaluate_tta",
                "backup_every_steps",
            ),
        ),
        mixed_precision=args.mixed_precision,
        deadline=_deadline(args.deadline_minutes),
    )
    if args.arrays:
        arrays = TrainingArrays.load(args.arrays)
    else:
        arrays = load_patch_arrays(
            args.dataset,
            args.data,
            image_size=config.image_size,
            subtypes=args.subtypes,
            cache_dir=args.cache_dir,
        )
    result = train_patch_classifier(
        arrays,
        config,
        args.out,
        dataset=args.dataset,
        n_folds=args.folds,
        only_folds=args.only_fold,
        final=args.final,
        models_dir=SAVED_MODELS_DIR if args.export else None,
    )
    if result["bundle"] is not None:
        LOGGER.info("patch classifier bundle: %s", result["bundle"])
    return 0


def _run_nuclei(args: argparse.Namespace) -> int:
    """Train the H&E nuclei segmenter (imported lazily: it pulls in the histology stack)."""
    from utils.training.nuclei_cli import run_nuclei

    return run_nuclei(args)


def _run_familiarity(args: argparse.Namespace) -> int:
    """Fit a classifier's unfamiliar-image reference (imported lazily, like nuclei)."""
    from utils.training.familiarity_cli import run_familiarity

    return run_familiarity(args)


#: The runner of each sub-command.
_TASK_RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "segment": run_segment,
    "classify": run_classify,
    "baseline": run_baseline,
    "ship-classifier": run_ship_classifier,
    "ship-segmenter": run_ship_segmenter,
    "patch": run_patch,
    "attach-cv": run_attach_cv,
    "combine": run_combine,
    "nuclei": _run_nuclei,
    "familiarity": _run_familiarity,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 on bad input)."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_file or args.out / "train.log")
    try:
        return _TASK_RUNNERS[args.task](args)
    except TumorLensError as error:
        LOGGER.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
