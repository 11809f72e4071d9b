r"""The ``nuclei`` subcommand of ``python -m utils.train``.

Examples::

    # 3-fold leave-images-out CV, then the final model on all tiles, shipped to saved_models/
    python -m utils.train nuclei --data ../shared/datasets/monuseg/MoNuSegTrainingData \\
        --folds 3 --final --ship --out runs/nuclei

    # continue every model of that run (warm restart, fresh schedule) in a new run folder
    python -m utils.train nuclei --data ../shared/datasets/monuseg/MoNuSegTrainingData \\
        --folds 3 --final --init-from runs/nuclei --learning-rate 0.001 --out runs/nuclei_more
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("tumorlens.train")


def add_nuclei_parser(tasks: Any) -> argparse.ArgumentParser:
    """Add the ``nuclei`` subcommand to the subparsers of ``python -m utils.train``."""
    parser = tasks.add_parser("nuclei", help="H&E nuclei segmenter (MoNuSeg layout)")
    parser.add_argument("--data", type=Path, required=True, help="MoNuSeg-layout folder")
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumable)")
    parser.add_argument("--arch", default=None, help="nuclei_unet | nuclei_resunet")
    for option, kind in (
        ("--base-filters", int),
        ("--depth", int),
        ("--crop-size", int),
        ("--batch-size", int),
        ("--steps-per-epoch", int),
        ("--epochs", int),
        ("--learning-rate", float),
        ("--backup-every-steps", int),
    ):
        parser.add_argument(option, type=kind, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stain-augment", action=argparse.BooleanOptionalAction, default=None,
        help="HED stain augmentation (default: on)",
    )  # fmt: skip
    parser.add_argument(
        "--mask-instances", choices=("components", "split"), default=None,
        help="instances of tiles without XML: mask components (default) or components split "
        "at distance-transform necks, so touching nuclei are separate training targets",
    )  # fmt: skip
    parser.add_argument(
        "--init-from", default=None,
        help="warm restart: start each model (fold_k, final) from that of this finished run "
        "folder, with a fresh learning-rate schedule",
    )  # fmt: skip
    parser.add_argument("--folds", type=int, default=0, help="grouped k-fold CV (0: none)")
    parser.add_argument("--only-fold", type=int, action="append", help="run just these folds")
    parser.add_argument("--final", action="store_true", help="train the final model on all tiles")
    parser.add_argument(
        "--ship", action="store_true", help="save the final model as saved_models/nuclei_segmenter"
    )
    parser.add_argument(
        "--rescore", action="store_true",
        help="re-score finished CV folds on a wider post-processing grid (needs --folds)",
    )  # fmt: skip
    parser.add_argument("--deadline-minutes", type=float, default=None)
    parser.add_argument("--log-file", type=Path, default=None, help="default: OUT/train.log")
    return parser


def run_nuclei(args: argparse.Namespace) -> int:
    """Cross-validate, train and ship the nuclei segmenter as the parsed options say."""
    import json

    from utils.histo.data import load_nuclei_tiles
    from utils.training.nuclei import NucleiTrainConfig, cross_validate, summarise_cv
    from utils.training.nuclei_final import ship_bundle, train_final

    names = (
        "arch", "base_filters", "depth", "crop_size", "batch_size", "steps_per_epoch", "epochs",
        "learning_rate", "backup_every_steps", "stain_augment", "seed", "mask_instances",
        "init_from",
    )  # fmt: skip
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    deadline = None if args.deadline_minutes is None else time.time() + 60 * args.deadline_minutes
    config = NucleiTrainConfig(**overrides, deadline=deadline)
    tiles = load_nuclei_tiles(args.data, config.mask_instances)
    LOGGER.info("%d tiles, %d patients", len(tiles), len(set(tiles.groups)))
    summary = None
    if args.final:
        model, info = train_final(tiles, config, args.out / "final")
        LOGGER.info("final model: %s", info)
    if args.rescore:
        from utils.training.nuclei import rescore_folds

        summary = rescore_folds(tiles, config, args.out, n_folds=args.folds)
        LOGGER.info("rescored CV: %s %s", summary.get("best_setting"), summary.get("best"))
    elif args.folds:
        summary = cross_validate(
            tiles, config, args.out, n_folds=args.folds, only_folds=args.only_fold
        )
        LOGGER.info("CV summary: %s", json.dumps(summary.get("best"), default=str))
    elif (args.out / "cv.json").exists():
        summary = summarise_cv(args.out, config)
    if args.ship:
        import keras

        model_path = args.out / "final" / "model.keras"
        if not model_path.exists():
            from utils.errors import ConfigError

            raise ConfigError(f"--ship needs a final model at {model_path}; add --final.")
        model = keras.saving.load_model(model_path, compile=False)
        info = json.loads((args.out / "final" / "final.json").read_text())
        info.pop("config", None)
        ship_bundle(model, tiles, config, info, summary)
    return 0
