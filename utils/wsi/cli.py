r"""Command line of the whole-slide pipeline (``python -m utils.wsi``).

Example::

    python -m utils.wsi --image ../shared/datasets/wsi/CMU-1-Small-Region.svs \
        --model nuclei_segmenter --threshold 0.3 --device cpu --out runs/cmu1
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from utils.errors import ConfigError, TumorLensError

__all__ = ["MPP_AT_1X", "build_parser", "main"]

#: Microns per pixel at 1x, by the scanner convention 40x = 0.25 µm/px, 20x = 0.5 µm/px.
MPP_AT_1X = 10.0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m utils.wsi``."""
    parser = argparse.ArgumentParser(
        prog="python -m utils.wsi",
        description="Tile a whole-slide image, score every tissue tile with a model, and "
        "write heatmaps, detected regions (PNG, JSON, GeoJSON) and a six-panel report.",
    )
    parser.add_argument("--image", required=True, help="SVS, pyramidal TIFF, PNG or JPEG")
    parser.add_argument(
        "--model",
        default="nuclei_segmenter",
        help="bundle name in saved_models/ or a .keras path: the nuclei segmenter "
        "(default: cellularity and pleomorphism maps) or an RGB classification bundle",
    )
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="detection threshold on the model's detection map (default: the model's; "
        "nuclear area fraction 0.3 for the nuclei model, probability 0.5 for classifiers)",
    )
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument(
        "--mpp",
        type=float,
        default=None,
        help="microns per level-0 pixel; required when the file has no scale metadata",
    )
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument(
        "--target-mpp",
        type=float,
        default=None,
        help="microns per tile pixel (default: the model card's, else 0.5)",
    )
    scale.add_argument(
        "--magnification",
        type=float,
        default=None,
        help="tile magnification instead of --target-mpp, as 10 / mpp (40x = 0.25 µm/px)",
    )
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap share")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--min-tissue", type=float, default=0.25, help="skip tiles with a smaller tissue share"
    )
    parser.add_argument("--min-region-mm2", type=float, default=0.01)
    parser.add_argument(
        "--sigma-um",
        type=float,
        default=None,
        help="Gaussian smoothing of the heatmaps in µm (default: half a tile)",
    )
    parser.add_argument(
        "--positive-class",
        default=None,
        help="classifier class to map (default: tumour-like name, else last)",
    )
    return parser


def _select_device(device: str) -> None:
    """Hide GPUs for ``cpu``; for ``gpu`` fail early when the backend sees none."""
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        return
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        found = any(d.platform == "gpu" for d in jax.devices())
    else:
        import tensorflow as tf

        found = bool(tf.config.list_physical_devices("GPU"))
    if not found:
        raise ConfigError(f"--device gpu: the {backend} backend sees no GPU; use --device cpu.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline; exit status 0 on success, 2 on a TumorLens error."""
    args = build_parser().parse_args(argv)
    try:
        _select_device(args.device)
        from tqdm import tqdm

        from utils.wsi.outputs import write_outputs
        from utils.wsi.pipeline import WsiOptions, analyse_slide
        from utils.wsi.reader import open_slide
        from utils.wsi.scorers import load_scorer

        target_mpp = args.target_mpp
        if args.magnification is not None:
            if not args.magnification > 0:
                raise ConfigError(f"--magnification must be positive; got {args.magnification}.")
            target_mpp = MPP_AT_1X / args.magnification
        options = WsiOptions(
            threshold=args.threshold,
            target_mpp=target_mpp,
            overlap=args.overlap,
            batch_size=args.batch_size,
            min_tissue=args.min_tissue,
            min_region_mm2=args.min_region_mm2,
            sigma_um=args.sigma_um,
        )
        options.validate()
        # The slide first: a bad file fails in milliseconds, before the model loads.
        with open_slide(args.image, mpp=args.mpp) as slide:
            scorer = load_scorer(
                args.model, positive_class=args.positive_class, batch_size=args.batch_size
            )
            with tqdm(unit="tile", desc="tiles", file=sys.stderr) as bar:

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                result = analyse_slide(slide, scorer, options, progress=progress)
        paths = write_outputs(result, args.out)
    except TumorLensError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = result.summary
    print(
        f"{result.tiles_scored} of {result.tiles_total} tiles scored "
        f"({result.tiles_per_second:.1f} tiles/s); tissue {summary.tissue_area_mm2:.2f} mm²; "
        f"{len(summary.regions)} regions, {summary.region_area_mm2:.3f} mm², burden "
        f"{summary.burden_percent:.1f}%. Files in {paths['results.json'].parent}"
    )
    return 0
