"""Benchmark of the whole-slide pipeline: tiles per second and peak memory.

Prints numbers; asserts nothing. Each measurement runs in a fresh subprocess, which
loads the model, resets the kernel's peak-RSS counter (``/proc/self/clear_refs``) and
then analyses one slide, so the reported peak is that of the analysis alone, next to
the resident size right before it.

Examples::

    # Throughput and memory of the default nuclei model on the real Aperio slide
    python -m utils.wsi.bench --slide ../shared/datasets/wsi/CMU-1-Small-Region.svs

    # Peak memory against slide size, on synthetic pyramidal TIFFs up to 20,000 px
    python -m utils.wsi.bench --synthetic 5000 10000 20000 --model untrained-tiny

``--model untrained-tiny`` builds a small untrained RGB classifier (a pipeline fixture:
its scores mean nothing) so the memory curve shows the reader, tiler and heatmaps
rather than a slow model. ``--model untrained-nuclei`` builds an untrained network of
the nuclei model's architecture and tile size, for a throughput estimate before the
trained bundle is installed; its maps mean nothing either.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

UNTRAINED = "untrained-tiny"
#: An untrained network of the shipped nuclei architecture and tile size: same compute
#: per tile as the trained one (the watershed's cost still depends on the output).
UNTRAINED_NUCLEI = "untrained-nuclei"


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _untrained_nuclei_bundle(folder: Path) -> Path:
    import keras

    from utils.model_card import save_model_bundle
    from utils.models.nuclei import build_nuclei_model

    keras.utils.set_random_seed(0)
    model = build_nuclei_model("nuclei_unet", input_shape=(256, 256, 3))
    card = {
        "task": "segmentation",
        "subtask": "nuclei_instances",
        "architecture": "nuclei_unet",
        "input_shape": [256, 256, 3],
        "postprocess": {},
        "training_mpp": 0.25,
        "status": "untrained benchmark fixture",
    }
    return save_model_bundle(model, "nuclei_segmenter", card, models_dir=folder)


def _untrained_bundle(folder: Path) -> Path:
    import keras

    from utils.model_card import save_model_bundle
    from utils.models.classification import build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier("compact_cnn", input_shape=(96, 96, 3), num_classes=2)
    card = {
        "task": "classification",
        "architecture": "compact_cnn",
        "input_shape": [96, 96, 3],
        "class_names": ["normal", "tumor"],
        "mpp": 1.0,
        "status": "untrained benchmark fixture",
    }
    return save_model_bundle(model, "untrained_tiny", card, models_dir=folder)


def _child(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    from utils.wsi.pipeline import WsiOptions, analyse_slide
    from utils.wsi.reader import open_slide
    from utils.wsi.scorers import load_scorer

    with tempfile.TemporaryDirectory() as tmp:
        builders = {UNTRAINED: _untrained_bundle, UNTRAINED_NUCLEI: _untrained_nuclei_bundle}
        model = builders[args.model](Path(tmp)) if args.model in builders else args.model
        scorer = load_scorer(model, batch_size=args.batch_size)
    options = WsiOptions(target_mpp=args.target_mpp, batch_size=args.batch_size)
    baseline = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: peak of what follows
    started = time.perf_counter()
    with open_slide(args.slide, mpp=args.mpp) as slide:
        result = analyse_slide(slide, scorer, options)
    return {
        "slide": Path(args.slide).name,
        "size": f"{result.slide['width']} x {result.slide['height']}",
        "model": result.model,
        "tile_px": result.tile_px,
        "target_mpp": result.target_mpp,
        "tiles_scored": result.tiles_scored,
        "tiles_total": result.tiles_total,
        "tiles_per_s": round(result.tiles_per_second, 2),
        "seconds_total": round(time.perf_counter() - started, 2),
        "rss_before_mib": round(baseline / 1024, 1),
        "peak_rss_mib": round(_rss_kib("VmHWM") / 1024, 1),
        "regions": len(result.summary.regions),
        "burden_percent": round(result.summary.burden_percent, 2),
    }


def _measure(slide: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "utils.wsi.bench",
        "--child",
        "--slide",
        str(slide),
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
    ]
    if args.target_mpp:
        command += ["--target-mpp", str(args.target_mpp)]
    if args.mpp:
        command += ["--mpp", str(args.mpp)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one JSON line per measurement, then a table."""
    parser = argparse.ArgumentParser(prog="python -m utils.wsi.bench", description=__doc__)
    parser.add_argument("--slide", type=Path, help="a slide to measure")
    parser.add_argument(
        "--synthetic",
        type=int,
        nargs="*",
        default=[],
        help="sides of square synthetic pyramidal TIFFs to generate and measure",
    )
    parser.add_argument(
        "--model",
        default="nuclei_segmenter",
        help=f"bundle name or path, '{UNTRAINED}' or '{UNTRAINED_NUCLEI}'",
    )
    parser.add_argument("--target-mpp", type=float, default=None)
    parser.add_argument("--mpp", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    rows = []
    if args.slide:
        rows.append(_measure(args.slide, args))
    if args.synthetic:
        from utils.wsi.synthetic import write_synthetic_slide

        with tempfile.TemporaryDirectory() as tmp:
            for side in args.synthetic:
                started = time.perf_counter()
                path = write_synthetic_slide(Path(tmp) / f"synthetic_{side}.tif", side, side)
                size_mib = path.stat().st_size / 2**20
                print(
                    f"wrote {path.name} ({size_mib:.0f} MiB) in "
                    f"{time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                )
                rows.append(_measure(path, args))
                path.unlink()
    for row in rows:
        print(json.dumps(row))
    print(
        f"\n{'slide':<28}{'size':>14}{'tiles':>8}{'tiles/s':>9}{'RSS before':>12}{'peak RSS':>10}"
    )
    for row in rows:
        print(
            f"{row['slide']:<28}{row['size']:>14}{row['tiles_scored']:>8}"
            f"{row['tiles_per_s']:>9}{row['rss_before_mib']:>10} M{row['peak_rss_mib']:>8} M"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
