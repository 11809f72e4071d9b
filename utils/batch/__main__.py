"""``python -m utils.batch --input DIR --task classify|segment|analyze|wsi --out results.parquet``.

Processes a whole folder or cohort on Dask (a local cluster by default, or
``--scheduler tcp://host:port``), with a progress bar. Re-running the same command
after an interruption skips the finished images. Exit status: 0 when done (bad images
are rows with ``status == "error"``), 2 on a configuration or input-folder error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from utils.batch.runner import SYNCHRONOUS, BatchConfig, run_batch
from utils.batch.tasks import PENDING_TASKS, TASKS, TaskOptions
from utils.errors import TumorLensError
from utils.explain import CAM_METHODS
from utils.inference.bundle import DEFAULT_CLASSIFIER_BUNDLE, DEFAULT_SEGMENTER_BUNDLE
from utils.paths import SAVED_MODELS_DIR


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m utils.batch", description=__doc__.split("\n\n")[1].replace("\n", " ")
    )
    parser.add_argument("--input", required=True, type=Path, help="Folder of images (recursive).")
    parser.add_argument("--task", required=True, choices=[*TASKS, *PENDING_TASKS])
    parser.add_argument("--out", required=True, type=Path, help="Output .parquet file.")
    parser.add_argument(
        "--scheduler",
        default=None,
        help=f"tcp://host:port of a Dask scheduler, or '{SYNCHRONOUS}' to run in this "
        "process; default: a local cluster.",
    )
    parser.add_argument("--workers", type=int, default=2, help="Local cluster worker processes.")
    parser.add_argument("--chunk-size", type=int, default=8, help="Images per unit of work.")
    parser.add_argument("--models-dir", type=Path, default=SAVED_MODELS_DIR)
    parser.add_argument("--segmenter", default=DEFAULT_SEGMENTER_BUNDLE, help="Bundle name.")
    parser.add_argument("--classifier", default=DEFAULT_CLASSIFIER_BUNDLE, help="Bundle name.")
    parser.add_argument("--threshold", type=float, default=None, help="Mask threshold.")
    parser.add_argument("--pixel-spacing-mm", type=float, default=None, help="For measurements.")
    parser.add_argument("--cam-method", choices=CAM_METHODS, default="gradcam")
    parser.add_argument(
        "--wsi-model", default="nuclei_segmenter", help="Tile model of the wsi task (bundle)."
    )
    parser.add_argument(
        "--mpp", type=float, default=None, help="wsi: microns per pixel for slides without it."
    )
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    config = BatchConfig(
        input_dir=args.input,
        task=args.task,
        out=args.out,
        options=TaskOptions(
            models_dir=args.models_dir,
            segmenter=args.segmenter,
            classifier=args.classifier,
            threshold=args.threshold,
            pixel_spacing_mm=args.pixel_spacing_mm,
            cam_method=args.cam_method,
            wsi_model=args.wsi_model,
            wsi_mpp=args.mpp,
        ),
        scheduler=args.scheduler,
        n_workers=args.workers,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    try:
        table = run_batch(config)
    except TumorLensError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = int((table["status"] == "error").sum())
    print(f"{len(table)} images, {len(table) - failed} ok, {failed} errors -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
