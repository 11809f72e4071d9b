r"""Evaluation CLI: ``python -m utils.evaluate {segment,classify,shortcuts} --data DIR ...``.

Runs a shipped (or any) model bundle over a labelled dataset folder and writes a JSON
report plus figures. ``--data`` takes any folder :func:`utils.datasets.read_dataset`
recognises: the BUSI class-folder root or a folder above it, BUS-BRA's original layout...

* ``segment``: every image with a lesion mask or labelled ``normal`` is segmented at its
  original resolution (several masks of one image are OR-merged); the report holds Dice,
  IoU and HD95 (original pixels) over lesion images, per class, the false-positive rate
  on normal images, bootstrap 95% CIs and per-image rows. A panel figure shows the best
  and the worst lesion case (image | ground truth | prediction).
* ``classify``: every image whose label is one of the card's ``class_names`` (the
  others are counted and skipped) is classified with the card's temperature; the report
  holds accuracy, AUCs, ECE, per-class scores, the confusion matrix and per-image
  predictions; ROC, reliability and confusion figures are written as PNG and HTML.
* ``--smooth F`` (``segment`` and ``classify``): blur every image first, Gaussian sigma
  ``F`` x its width (:mod:`utils.evaluation.robustness`), to see how the model fares on
  images smoother than its training images; the report records ``smooth_fraction``.
* ``shortcuts``: on images with burned-in calipers or text, how much of each model's
  Grad-CAM falls on the marks, and how much the outputs change when the marks are
  inpainted away (:mod:`utils.evaluation.shortcuts`); ``--data`` may repeat.

* ``patch``: an H&E patch classifier (default ``pcam_patch_classifier``) on a labelled
  PCam (Kaggle layout) or BreakHis folder: the ``classify`` metrics, plus the AUC of the
  positive class with its bootstrap interval; ``--features OUT.npy`` also writes the
  pooled CNN features of the evaluated patches (rows in ``per_image`` order).

Examples::

    python -m utils.evaluate segment --data ../shared/datasets/busi --json eval/busi_seg.json
    python -m utils.evaluate classify --data ../shared/datasets/bus-bra \\
        --json eval/busbra_cls.json --model saved_models/ultrasound_classifier.keras
    python -m utils.evaluate patch --data ../shared/datasets/pcam_sample \\
        --json eval/pcam.json --features eval/pcam_features.npy

Exit status: 0 on success, 2 on a bad input (missing folder, unknown model...), with the
reason printed to stderr as ``error: <message>``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from tqdm import tqdm

from utils.datasets import DatasetRecord, load_mask, read_dataset
from utils.errors import ConfigError, DatasetError, TumorLensError
from utils.evaluation.robustness import MAX_SMOOTH_FRACTION, check_smooth_fraction, smooth_loaded
from utils.image_io import load_image

if TYPE_CHECKING:
    from utils.inference.classifier import LesionClassifier
    from utils.inference.segmenter import LesionSegmenter

_DEFAULT_BATCH_SIZE = 16
_SEGMENTATION_FIGURE = "segmentation_cases.png"
_NORMAL = "normal"
_DEFAULT_PATCH_BUNDLE = "pcam_patch_classifier"

_Item = TypeVar("_Item")


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m utils.evaluate``."""
    from utils.inference.bundle import DEFAULT_CLASSIFIER_BUNDLE, DEFAULT_SEGMENTER_BUNDLE

    parser = argparse.ArgumentParser(
        prog="python -m utils.evaluate", description=__doc__.split("\n")[0]
    )
    tasks = parser.add_subparsers(dest="task", required=True)
    for task, help_text, default_model in (
        ("segment", "lesion segmenter: Dice, IoU, HD95", DEFAULT_SEGMENTER_BUNDLE),
        ("classify", "lesion classifier: accuracy, AUC, ECE", DEFAULT_CLASSIFIER_BUNDLE),
    ):
        sub = tasks.add_parser(task, help=help_text)
        sub.add_argument("--data", type=Path, required=True, help="dataset folder")
        sub.add_argument("--json", type=Path, required=True, help="report file to write")
        sub.add_argument(
            "--model",
            default=default_model,
            help=f"bundle name in saved_models/ or a .keras path (default: {default_model})",
        )
        sub.add_argument(
            "--figures", type=Path, default=None, help="figure folder (default: beside --json)"
        )
        sub.add_argument("--batch-size", type=int, default=_DEFAULT_BATCH_SIZE)
        sub.add_argument(
            "--smooth",
            type=float,
            default=0.0,
            metavar="F",
            help="blur every image first (Gaussian sigma = F x its width, 0 to "
            f"{MAX_SMOOTH_FRACTION}): how the model fares on smoother images (default: 0)",
        )
    shortcuts = tasks.add_parser(
        "shortcuts", help="do the models attend to, or depend on, burned-in calipers and text?"
    )
    shortcuts.add_argument("--data", type=Path, action="append", required=True, help="repeatable")
    shortcuts.add_argument("--json", type=Path, required=True, help="report file to write")
    shortcuts.add_argument("--segmenter", default=DEFAULT_SEGMENTER_BUNDLE, help="'none' to skip")
    shortcuts.add_argument("--classifier", default=DEFAULT_CLASSIFIER_BUNDLE, help="'none' to skip")
    shortcuts.add_argument("--limit", type=int, default=200, help="images with marks to measure")
    shortcuts.add_argument("--seed", type=int, default=0, help="order in which images are scanned")
    shortcuts.set_defaults(batch_size=_DEFAULT_BATCH_SIZE)
    _add_patch_parser(tasks)
    nuclei = tasks.add_parser("nuclei", help="H&E nuclei segmenter: Dice, AJI (MoNuSeg layout)")
    nuclei.add_argument("--data", type=Path, required=True, help="MoNuSeg-layout folder")
    nuclei.add_argument("--json", type=Path, required=True, help="report file to write")
    nuclei.add_argument("--model", default="nuclei_segmenter", help="bundle name or .keras path")
    nuclei.add_argument("--batch-size", type=int, default=8)
    nuclei.add_argument(
        "--mask-instances", choices=("components", "split"), default="components",
        help="ground-truth instances of tiles without XML: mask components (touching nuclei "
        "merged) or components split at distance-transform necks",
    )  # fmt: skip
    return parser


def _add_patch_parser(tasks: argparse._SubParsersAction) -> None:
    sub = tasks.add_parser("patch", help="H&E patch classifier (PCam, BreakHis)")
    sub.add_argument("--data", type=Path, required=True, help="PCam or BreakHis folder")
    sub.add_argument("--json", type=Path, required=True, help="report file to write")
    sub.add_argument(
        "--model",
        default=_DEFAULT_PATCH_BUNDLE,
        help=f"bundle name in saved_models/ or a .keras path (default: {_DEFAULT_PATCH_BUNDLE})",
    )
    sub.add_argument("--dataset", default="auto", help="pcam | breakhis | auto (default)")
    sub.add_argument(
        "--figures", type=Path, default=None, help="figure folder (default: beside --json)"
    )
    sub.add_argument("--batch-size", type=int, default=_DEFAULT_BATCH_SIZE)
    sub.add_argument(
        "--features", type=Path, default=None, help="also write pooled features (.npy)"
    )
    sub.add_argument("--feature-layer", default=None, help="default: the global pool")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 on bad input)."""
    args = build_parser().parse_args(argv)
    runners: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
        "segment": run_segment,
        "classify": run_classify,
        "shortcuts": run_shortcuts,
        "patch": run_patch,
        "nuclei": run_nuclei,
    }
    try:
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size must be a positive integer; got {args.batch_size}.")
        report = runners[args.task](args)
        write_report(args.json, report)
    except TumorLensError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(_summary_line(args.task, report, args.json))
    return 0


# ----------------------------------------------------------------------------- shortcuts


def _predictor_and_explainer(cls: Any, bundle: str) -> tuple[Any, Any] | None:
    from utils.explain import CamExplainer

    if bundle.lower() == "none":
        return None
    predictor = cls.from_bundle(bundle)
    return predictor, CamExplainer(predictor.model)


def run_shortcuts(args: argparse.Namespace) -> dict[str, Any]:
    """Measure the models' caliper/text shortcuts on ``args.data``; returns the report.

    See :mod:`utils.evaluation.shortcuts` for what is measured.

    Raises:
        ConfigError: ``--limit`` is not positive, or both models are ``none``.
        DatasetError: A folder is missing or unrecognised.
        ModelError: A model bundle is missing or invalid.
    """
    from utils.evaluation.shortcuts import measure_shortcuts, summarise_shortcuts
    from utils.inference.classifier import LesionClassifier
    from utils.inference.segmenter import LesionSegmenter

    if args.limit < 1:
        raise ConfigError(f"--limit must be a positive integer; got {args.limit}.")
    if args.segmenter.lower() == "none" and args.classifier.lower() == "none":
        raise ConfigError("--segmenter and --classifier are both 'none': nothing to measure.")
    records = [(record, root) for root in args.data for record in read_dataset(root)]
    order = np.random.default_rng(args.seed).permutation(len(records))
    segmenter = _predictor_and_explainer(LesionSegmenter, args.segmenter)
    classifier = _predictor_and_explainer(LesionClassifier, args.classifier)
    rows, scanned = [], 0
    with _progress(args.limit, "Images with marks") as bar:
        for index in order:
            record, root = records[index]
            scanned += 1
            row = measure_shortcuts(
                load_image(record.image_path),
                _source(record, root),
                segmenter=segmenter,
                classifier=classifier,
            )
            if row is not None:
                rows.append(row)
                bar.update(1)
            if len(rows) >= args.limit:
                break
    models = {}
    for role, loaded, name in (
        ("segmenter", segmenter, args.segmenter),
        ("classifier", classifier, args.classifier),
    ):
        if loaded is not None:
            models[role] = _model_info(name, loaded[0].card)
    return {
        "task": "shortcuts",
        "data": [str(root) for root in args.data],
        "models": models,
        **summarise_shortcuts(rows, scanned),
    }


# ----------------------------------------------------------------------------- segment


def run_segment(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate a segmentation bundle on ``args.data``; returns the JSON-ready report.

    Raises:
        DatasetError: The folder is missing, unrecognised or has no usable image.
        ModelError: The model bundle is missing or invalid.
        InvalidImageError: An image or mask cannot be read.
    """
    from utils.evaluation.segmentation import segmentation_report
    from utils.inference.segmenter import LesionSegmenter

    smooth = check_smooth_fraction(args.smooth)
    records = read_dataset(args.data)
    selected = [record for record in records if record.has_mask or record.label == _NORMAL]
    if not selected:
        raise DatasetError(
            f"No image in {args.data} has a lesion mask or the label 'normal'; "
            "segmentation needs ground truth."
        )
    segmenter = LesionSegmenter.from_bundle(args.model, batch_size=args.batch_size)
    predicted, truths = _segment_records(segmenter, selected, args.batch_size, smooth)
    sources = [_source(record, args.data) for record in selected]
    report = segmentation_report(
        predicted, truths, [record.label for record in selected], sources=sources
    )
    figures_dir = args.figures or args.json.parent
    figure = _save_best_and_worst(report["per_image"], selected, predicted, truths, figures_dir)
    lesion_rows = [row for row in report["per_image"] if row["lesion"]]
    return {
        "task": "segmentation",
        "model": _model_info(args.model, segmenter.card, threshold=segmenter.threshold),
        "data": str(args.data),
        "smooth_fraction": smooth,
        "n_skipped_without_ground_truth": len(records) - len(selected),
        "n_lesion_predicted_empty": sum(row["predicted_empty"] for row in lesion_rows),
        "figures": [str(figure)] if figure else [],
        **report,
    }


def _segment_records(
    segmenter: LesionSegmenter,
    records: Sequence[DatasetRecord],
    batch_size: int,
    smooth: float = 0.0,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Predicted and ground-truth masks of every record, at original resolution.

    ``smooth`` blurs each image before segmenting (:func:`smooth_loaded`).
    """
    predicted: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    with _progress(len(records), "Segmenting") as bar:
        for chunk in _chunks(records, batch_size):
            images = [smooth_loaded(load_image(record.image_path), smooth) for record in chunk]
            # Measurements are not evaluated, and skipping them saves time per image.
            results = segmenter.segment_batch(images, measure=False)
            for record, image, result in zip(chunk, images, results, strict=True):
                truths.append(load_mask(record.mask_paths, shape=image.pixels.shape[:2]))
                predicted.append(result.mask)
            bar.update(len(chunk))
    return predicted, truths


def _save_best_and_worst(
    rows: Sequence[dict[str, Any]],
    records: Sequence[DatasetRecord],
    predicted: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    figures_dir: Path,
) -> Path | None:
    """Panel of the lesion images with the highest and lowest Dice; ``None`` without any."""
    from utils.evaluation.panels import PanelCase, save_segmentation_panels

    scored = [row for row in rows if row["lesion"]]
    if not scored:
        return None
    best = max(scored, key=lambda row: row["dice"])
    worst = min(scored, key=lambda row: row["dice"])
    chosen = [("Best", best)] + ([("Worst", worst)] if worst is not best else [])
    cases = [
        PanelCase(
            image=load_image(records[row["index"]].image_path).pixels,
            true_mask=truths[row["index"]],
            predicted_mask=predicted[row["index"]],
            title=f"{kind}: {row['source']} ({row['label']}), Dice {row['dice']:.3f}",
        )
        for kind, row in chosen
    ]
    return save_segmentation_panels(cases, figures_dir / _SEGMENTATION_FIGURE)


# ----------------------------------------------------------------------------- classify


def run_classify(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate a classification bundle on ``args.data``; returns the JSON-ready report.

    Raises:
        DatasetError: The folder is missing, unrecognised or has no image of a known class.
        ModelError: The model bundle is missing or invalid.
        InvalidImageError: An image cannot be read.
    """
    from utils.evaluation.classification import classification_report, save_classification_plots
    from utils.inference.classifier import LesionClassifier

    smooth = check_smooth_fraction(args.smooth)
    # The data folder is checked first: a wrong path then fails before the model loads.
    records = read_dataset(args.data)
    classifier = LesionClassifier.from_bundle(args.model, batch_size=args.batch_size)
    names = list(classifier.class_names)
    selected = [record for record in records if record.label in names]
    skipped = Counter(
        record.label or "(unlabelled)" for record in records if record.label not in names
    )
    if not selected:
        raise DatasetError(
            f"No image in {args.data} is labelled with one of the model's classes "
            f"({', '.join(names)}); labels found: {', '.join(sorted(skipped)) or 'none'}."
        )
    probabilities = _classify_records(classifier, selected, args.batch_size, smooth)
    labels = np.array([names.index(record.label) for record in selected])
    report = classification_report(probabilities, labels, names)
    figures_dir = args.figures or args.json.parent
    figures = save_classification_plots(probabilities, labels, names, figures_dir)
    per_image = [
        {
            "source": _source(record, args.data),
            "label": record.label,
            "predicted": names[int(np.argmax(row))],
            "probabilities": dict(zip(names, map(float, row), strict=True)),
        }
        for record, row in zip(selected, probabilities, strict=True)
    ]
    return {
        "task": "classification",
        "model": _model_info(args.model, classifier.card, temperature=classifier.temperature),
        "data": str(args.data),
        "smooth_fraction": smooth,
        "skipped_labels": dict(sorted(skipped.items())),
        "figures": [str(path) for path in figures],
        **report,
        "per_image": per_image,
    }


def _classify_records(
    classifier: LesionClassifier,
    records: Sequence[DatasetRecord],
    batch_size: int,
    smooth: float = 0.0,
) -> np.ndarray:
    """Calibrated (N, classes) probabilities of every record (blurred first by ``smooth``)."""
    chunks = []
    with _progress(len(records), "Classifying") as bar:
        for chunk in _chunks(records, batch_size):
            images = [smooth_loaded(load_image(record.image_path), smooth) for record in chunk]
            chunks.append(classifier.predict_probabilities(images))
            bar.update(len(chunk))
    return np.concatenate(chunks)


# ----------------------------------------------------------------------------- patch


def run_patch(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate an H&E patch classifier on ``args.data``; returns the JSON-ready report.

    Raises:
        ConfigError: Unknown ``--dataset``.
        DatasetError: The folder is missing, not PCam/BreakHis, or has no usable image.
        ImageDimensionError: A PCam patch is not 96x96 RGB.
        ModelError: The model bundle is missing or invalid.
    """
    from utils.evaluation.patch import evaluate_patch_classifier, resolve_patch_dataset
    from utils.inference.classifier import LesionClassifier

    # The data folder is checked first: a wrong path then fails before the model loads.
    dataset = resolve_patch_dataset(args.data, args.dataset)
    classifier = LesionClassifier.from_bundle(args.model, batch_size=args.batch_size)
    body = evaluate_patch_classifier(
        classifier,
        args.data,
        dataset=dataset,
        batch_size=args.batch_size,
        figures_dir=args.figures or args.json.parent,
        features_path=args.features,
        feature_layer=args.feature_layer,
    )
    return {
        "task": "classification",
        "model": _model_info(args.model, classifier.card, temperature=classifier.temperature),
        "data": str(args.data),
        **body,
    }


# ----------------------------------------------------------------------------- nuclei


def run_nuclei(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate a nuclei bundle on a MoNuSeg-layout folder: per-image and mean Dice and AJI."""
    from utils.evaluation.nuclei import evaluate_nuclei_folder

    return evaluate_nuclei_folder(
        args.data, args.model, batch_size=args.batch_size, mask_instances=args.mask_instances
    )


# ----------------------------------------------------------------------------- helpers


def _chunks(items: Sequence[_Item], size: int) -> Iterator[Sequence[_Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _progress(total: int, description: str) -> tqdm:
    # stderr keeps stdout clean for the summary line.
    return tqdm(total=total, desc=description, unit="img", file=sys.stderr, dynamic_ncols=True)


def _source(record: DatasetRecord, data_root: Path) -> str:
    """The image path relative to ``--data`` (unique, unlike bare file names)."""
    try:
        return record.image_path.relative_to(data_root).as_posix()
    except ValueError:
        return record.image_path.name


def _model_info(model_arg: str, card: dict[str, Any], **calibration: float) -> dict[str, Any]:
    return {
        "requested": str(model_arg),
        "name": card.get("name"),
        "architecture": card.get("architecture"),
        "version": card.get("version"),
        "input_shape": card.get("input_shape"),
        **calibration,
    }


def _json_ready(value: Any) -> Any:
    """``value`` with NumPy types as Python ones and NaN / infinity as ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as strict, indented JSON, creating the folder.

    Raises:
        ConfigError: The file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_json_ready(report), indent=2, allow_nan=False) + "\n")
    except OSError as error:
        raise ConfigError(f"Cannot write the report {path}: {error.strerror}.") from error


def _summary_line(task: str, report: dict[str, Any], path: Path) -> str:
    if task == "shortcuts":
        return (
            f"{report['n_with_marks']} of {report['n_scanned']} scanned images had marks. "
            f"Report: {path}"
        )
    keys = {"segment": ("dice_mean", "iou_mean"), "nuclei": ("dice", "aji")}.get(
        task, ("accuracy", "macro_auc", "ece", "ece_floor")
    )
    values = ", ".join(
        f"{key} {report[key]:.3f}" if report.get(key) is not None else f"{key} n/a" for key in keys
    )
    return f"{report['n']} images: {values}. Report: {path}"


if __name__ == "__main__":
    sys.exit(main())
