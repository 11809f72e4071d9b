"""Training of the H&E nuclei segmenter: random crops, joint augmentation, grouped CV.

Each step samples random ``crop_size`` crops of the large tiles (MoNuSeg: 1000 x 1000 at
40x) with their two targets (nucleus mask, scaled per-nucleus distance map), flips and
rotates image and targets together, and perturbs the H&E stains (HED augmentation,
:func:`utils.histo.stain.hed_augment`). Validation runs the full inference path
(overlapping tiles + watershed) on whole held-out tiles and scores Dice and AJI, for a
small grid of post-processing thresholds so the card can pick them from CV.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from utils.errors import ConfigError
from utils.evaluation.nuclei import nuclei_report
from utils.histo.data import NucleiTiles, check_mask_instances
from utils.histo.instances import WatershedConfig, distance_target, separate_instances
from utils.histo.nuclei import DEFAULT_TRAINING_MPP, NucleiSegmenter
from utils.models.nuclei import DISTANCE_SCALE, build_nuclei_model
from utils.splits import grouped_stratified_kfold
from utils.training.callbacks import standard_callbacks
from utils.training.common import mean_and_sd, set_global_seed, write_json

LOGGER = logging.getLogger(__name__)

#: Post-processing grid scored on each validation fold.
FOREGROUND_THRESHOLDS = (0.5,)
MARKER_THRESHOLDS = (0.4,)
#: The wider grid of :func:`rescore_folds`, run on the saved fold weights after training.
#: (On the 2026-11 CPU run, AJI peaked at fg 0.5 and marker 0.3-0.5 on folds 0 and 1, and
#: on fold 0 markers of 0.6-0.7 or a min_area of 40 instead of 20 did not help.)
RESCORE_FOREGROUND = (0.4, 0.5)
RESCORE_MARKERS = (0.3, 0.4, 0.5)
#: h-maxima marker settings ``(marker_h, marker_sigma)`` scored next to the thresholds.
RESCORE_H_MAXIMA = ((0.03, 1.0), (0.06, 1.0), (0.1, 1.0))


@dataclass
class NucleiTrainConfig:
    """Options of one nuclei training run (the CLI's ``nuclei`` subcommand)."""

    arch: str = "nuclei_unet"
    base_filters: int = 16
    depth: int = 3
    crop_size: int = 256
    batch_size: int = 8
    steps_per_epoch: int = 50
    epochs: int = 6
    learning_rate: float = 2e-3
    stain_augment: bool = True
    seed: int = 0
    backup_every_steps: int | None = None
    #: Instances of mask-only tiles (targets and CV ground truth): "components" or "split".
    mask_instances: str = "components"
    #: Run folder whose same-named model (``fold_k`` or ``final``) each model starts from:
    #: a warm restart that continues a finished run with a fresh learning-rate schedule.
    init_from: str | None = None
    deadline: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_mask_instances(self.mask_instances)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready options (without the wall-clock deadline)."""
        values = dataclasses.asdict(self)
        values.pop("deadline")
        return values


# ----------------------------------------------------------------------------- data


def stack_targets(tiles: NucleiTiles) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W, 3) and uint8 targets (N, H, W, 2): mask*255, distance*255.

    Tiles must share one size (MoNuSeg's are all 1000 x 1000).
    """
    images = np.stack(tiles.images)
    targets = np.stack(
        [
            np.stack(
                [
                    (labels > 0).astype(np.uint8) * 255,
                    np.round(distance_target(labels, DISTANCE_SCALE) * 255).astype(np.uint8),
                ],
                axis=-1,
            )
            for labels in tiles.instances
        ]
    )
    return images, targets


# ----------------------------------------------------------------------------- model


def nuclei_loss(y_true: Any, y_pred: Any) -> Any:
    """BCE + soft Dice on the foreground channel, plus BCE on the distance channel."""
    ops = keras.ops
    eps = 1e-6
    fg_true, fg_pred = y_true[..., 0], ops.clip(y_pred[..., 0], eps, 1 - eps)
    dist_true, dist_pred = y_true[..., 1], ops.clip(y_pred[..., 1], eps, 1 - eps)
    fg_bce = ops.mean(keras.losses.binary_crossentropy(fg_true[..., None], fg_pred[..., None]))
    intersection = ops.sum(fg_true * fg_pred)
    dice = 1.0 - (2.0 * intersection + 1.0) / (ops.sum(fg_true) + ops.sum(fg_pred) + 1.0)
    dist_bce = ops.mean(
        keras.losses.binary_crossentropy(dist_true[..., None], dist_pred[..., None])
    )
    return fg_bce + dice + dist_bce


#: Tile size of shipped and evaluated models: the WSI pipeline feeds 256 x 256 tiles, and
#: larger tiles waste less of each forward pass on overlaps than the training crops would.
INFERENCE_TILE = 256


def as_inference_model(model: keras.Model, config: NucleiTrainConfig) -> keras.Model:
    """The trained weights in a model taking :data:`INFERENCE_TILE`-sized inputs."""
    inference = build_from_config(config, INFERENCE_TILE)
    inference.set_weights(model.get_weights())
    return inference


def build_card(
    config: NucleiTrainConfig, postprocess: WatershedConfig, model: keras.Model
) -> dict[str, Any]:
    """The card keys inference needs (more are added when a bundle is shipped)."""
    return {
        "task": "segmentation",
        "subtask": "nuclei_instances",
        "architecture": config.arch,
        "input_shape": list(model.input_shape[1:]),
        "outputs": ["foreground_probability", f"distance_to_border_px / {DISTANCE_SCALE:g}"],
        "postprocess": postprocess.to_dict(),
        "training_mpp": DEFAULT_TRAINING_MPP,
        "n_parameters": int(model.count_params()),
    }


def build_from_config(config: NucleiTrainConfig, size: int) -> keras.Model:
    """A fresh model of ``config``'s architecture taking ``size`` x ``size`` tiles."""
    return build_nuclei_model(
        config.arch,
        input_shape=(size, size, 3),
        base_filters=config.base_filters,
        depth=config.depth,
    )


def init_weights_path(config: NucleiTrainConfig, run_dir: Path) -> Path | None:
    """The weights a warm restart of ``run_dir`` starts from (``None``: from scratch).

    Raises:
        ConfigError: ``config.init_from`` has no finished model of that name.
    """
    if config.init_from is None:
        return None
    source = Path(config.init_from) / run_dir.name
    path = latest_weights(source)
    # Weights without metrics.json/final.json are a run killed mid-training, not a model.
    finished = (source / "metrics.json").exists() or (source / "final.json").exists()
    if not (path.exists() and finished):
        raise ConfigError(
            f"--init-from {config.init_from}: no finished model {run_dir.name!r} at {source} "
            f"(needs {path.name} and metrics.json or final.json); train or resume that run "
            "first, or drop --init-from."
        )
    return path


def latest_weights(model_dir: Path) -> Path:
    """The last weights of a ``fold_k``/``final`` folder, kept by the resume callback."""
    return model_dir / "backup" / "latest.weights.h5"


def total_steps(info: dict[str, Any], steps_per_epoch: int) -> int:
    """Optimiser steps behind a model from its training info, warm restarts included."""
    return int(info.get("steps_before", 0)) + int(info.get("epochs_run", 0)) * steps_per_epoch


def steps_trained(model_dir: Path) -> int:
    """All optimiser steps behind the model of a finished ``fold_k`` or ``final`` folder."""
    import json

    metrics = model_dir / "metrics.json"
    info = json.loads((metrics if metrics.exists() else model_dir / "final.json").read_text())
    config = info.get("config") or json.loads((model_dir.parent / "cv.json").read_text())["config"]
    return total_steps(info, int(config["steps_per_epoch"]))


def train_model(
    images: np.ndarray, targets: np.ndarray, config: NucleiTrainConfig, run_dir: Path
) -> tuple[keras.Model, dict[str, Any]]:
    """Train one model on the given tiles (resumable from ``run_dir``).

    With ``config.init_from`` the model starts from that run's weights of the same name
    (see :func:`init_weights_path`); a resume backup in ``run_dir`` still takes precedence.
    """
    set_global_seed(config.seed)
    model = build_from_config(config, config.crop_size)
    init_weights = init_weights_path(config, run_dir)
    warm_restart: dict[str, Any] = {}
    if init_weights is not None:
        # BackupAndRestore overwrites these on a resume, as it should.
        model.load_weights(init_weights)
        warm_restart = {
            "warm_restart_from": str(init_weights),
            "steps_before": steps_trained(init_weights.parent.parent),
        }
        LOGGER.info("warm restart from %s", init_weights)
    total_steps = config.epochs * config.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=total_steps, alpha=0.05
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=nuclei_loss)
    # tf.data is imported here only: the training core must import without TensorFlow.
    from utils.histo.pipeline import build_nuclei_dataset

    dataset = build_nuclei_dataset(
        images,
        targets,
        crop_size=config.crop_size,
        batch_size=config.batch_size,
        seed=config.seed,
        stain_augment=config.stain_augment,
    )
    callbacks = standard_callbacks(
        run_dir,
        monitor=None,
        backup_every_steps=config.backup_every_steps,
        deadline=config.deadline,
    )
    started = time.time()
    history = model.fit(
        dataset,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        callbacks=callbacks,
        verbose=2,
    )
    stopped = any(getattr(callback, "stopped_by_deadline", False) for callback in callbacks)
    info = {
        "epochs_run": len(history.history.get("loss", [])),
        "final_loss": (history.history.get("loss") or [None])[-1],
        "train_seconds": time.time() - started,
        "stopped_by_deadline": stopped,
        **warm_restart,
    }
    return model, info


# ----------------------------------------------------------------------------- evaluation


def evaluate_grid(
    segmenter: NucleiSegmenter,
    tiles: NucleiTiles,
    foreground_thresholds: tuple[float, ...] = FOREGROUND_THRESHOLDS,
    marker_thresholds: tuple[float, ...] = MARKER_THRESHOLDS,
    h_maxima: tuple[tuple[float, float], ...] = (),
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Dice/AJI of every post-processing setting of the grid on whole tiles.

    Args:
        segmenter: Predicts the two maps (with its own test-time flips setting).
        tiles: Tiles with ground-truth instances.
        foreground_thresholds: Foreground thresholds, each combined with every marker.
        marker_thresholds: Thresholds of ``"threshold"`` markers.
        h_maxima: ``(marker_h, marker_sigma)`` pairs of ``"h_maxima"`` markers.

    Returns:
        ``{setting key: report}`` (see :func:`setting_key`) and the predicted maps.
    """
    maps = [segmenter.predict_maps(image) for image in tiles.images]
    base = segmenter.postprocess
    configs = [
        dataclasses.replace(
            base, foreground_threshold=fg, marker_method="threshold", marker_threshold=marker
        )
        for fg, marker in itertools.product(foreground_thresholds, marker_thresholds)
    ] + [
        dataclasses.replace(
            base, foreground_threshold=fg, marker_method="h_maxima", marker_h=h, marker_sigma=sigma
        )
        for fg, (h, sigma) in itertools.product(foreground_thresholds, h_maxima)
    ]
    reports = {}
    for config in configs:
        predictions = [separate_instances(m[..., 0], m[..., 1], config) for m in maps]
        reports[setting_key(config, segmenter.test_time_flips)] = nuclei_report(
            tiles.instances, predictions, tiles.names, tiles.truth_kinds
        )
    return reports, maps


def evaluate_rescore_grid(
    segmenter: NucleiSegmenter, tiles: NucleiTiles
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """:func:`evaluate_grid` over the CV grid (the ``RESCORE_*`` settings)."""
    return evaluate_grid(segmenter, tiles, RESCORE_FOREGROUND, RESCORE_MARKERS, RESCORE_H_MAXIMA)


def setting_key(config: WatershedConfig, flips: bool = False) -> str:
    """Grid key of a post-processing setting, e.g. ``"fg=0.5,hmax=0.06,sigma=1,flips=1"``.

    Threshold markers keep the historical form ``"fg=0.5,marker=0.4"`` so that older
    ``metrics.json`` files still parse.
    """
    if config.marker_method == "h_maxima":
        markers = f"hmax={config.marker_h:g},sigma={config.marker_sigma:g}"
    else:
        markers = f"marker={config.marker_threshold:g}"
    return f"fg={config.foreground_threshold:g},{markers}" + (",flips=1" if flips else "")


def cross_validate(
    tiles: NucleiTiles,
    config: NucleiTrainConfig,
    out_dir: Path,
    *,
    n_folds: int,
    only_folds: list[int] | None = None,
) -> dict[str, Any]:
    """Leave-images-out CV grouped by patient; writes ``fold_k/metrics.json`` and ``cv.json``.

    Finished folds are skipped, so a killed run resumes.
    """
    folds = grouped_stratified_kfold(
        ["nuclei"] * len(tiles), tiles.groups, n_splits=n_folds, seed=config.seed
    )
    for index, (train_idx, val_idx) in enumerate(folds):
        fold_dir = out_dir / f"fold_{index}"
        if (only_folds is not None and index not in only_folds) or (
            fold_dir / "metrics.json"
        ).exists():
            continue
        if config.deadline is not None and time.time() >= config.deadline:
            LOGGER.warning("deadline passed; fold %d and later not run", index)
            break
        LOGGER.info(
            "fold %d/%d: %d train, %d val tiles", index + 1, n_folds, len(train_idx), len(val_idx)
        )
        train, val = tiles.subset(train_idx), tiles.subset(val_idx)
        model, info = train_model(*stack_targets(train), config, fold_dir)
        model = as_inference_model(model, config)
        segmenter = NucleiSegmenter(model, build_card(config, WatershedConfig(), model))
        reports, _ = evaluate_rescore_grid(segmenter, val)
        write_json(
            fold_dir / "metrics.json",
            {"fold": index, "val_names": val.names, **info, "grid": reports},
        )
    return summarise_cv(out_dir, config)


def rescore_folds(
    tiles: NucleiTiles, config: NucleiTrainConfig, out_dir: Path, *, n_folds: int
) -> dict[str, Any]:
    """Re-evaluate finished folds on a wider post-processing grid from their saved weights.

    Each fold's last weights (``fold_k/backup/latest.weights.h5``, kept by the resume
    callback) are reloaded, its held-out tiles predicted without and with test-time flips,
    and every setting of :data:`RESCORE_FOREGROUND` x :data:`RESCORE_MARKERS` scored on
    both; ``metrics.json`` gets the wider ``grid``. The headline CV result picks each
    fold's setting on the other folds (:func:`cross_fitted_selection`).
    """
    import json

    folds = grouped_stratified_kfold(
        ["nuclei"] * len(tiles), tiles.groups, n_splits=n_folds, seed=config.seed
    )
    for index, (_, val_idx) in enumerate(folds):
        fold_dir = out_dir / f"fold_{index}"
        weights = latest_weights(fold_dir)
        if not (fold_dir / "metrics.json").exists() or not weights.exists():
            continue
        model = build_from_config(config, config.crop_size)
        model.load_weights(weights)
        model = as_inference_model(model, config)
        reports = {}
        for flips in (False, True):
            segmenter = NucleiSegmenter(
                model, build_card(config, WatershedConfig(), model), test_time_flips=flips
            )
            grid, _ = evaluate_rescore_grid(segmenter, tiles.subset(val_idx))
            reports.update(grid)
        metrics = json.loads((fold_dir / "metrics.json").read_text())
        write_json(fold_dir / "metrics.json", {**metrics, "grid": reports, "rescored": True})
        LOGGER.info("fold %d rescored", index)
    return summarise_cv(out_dir, config)


def summarise_cv(out_dir: Path, config: NucleiTrainConfig) -> dict[str, Any]:
    """Mean ± sd over folds of every grid setting; the best setting by mean AJI."""
    import json

    folds = [json.loads(p.read_text()) for p in sorted(out_dir.glob("fold_*/metrics.json"))]
    if not folds:
        return {"n_folds": 0}
    per_setting = {}
    for key in common_settings(folds):
        per_setting[key] = {
            metric: mean_and_sd([fold["grid"][key][metric] for fold in folds])
            for metric in ("dice", "aji")
        }
    best = max(per_setting, key=lambda key: per_setting[key]["aji"]["mean"] or -1.0)
    default_key = setting_key(WatershedConfig())
    xml_rows = [
        row
        for fold in folds
        for row in fold["grid"][best]["per_image"]
        if row["ground_truth_instances"] == "xml_polygons"
    ]
    summary = {
        "n_folds": len(folds),
        "cross_fitted": cross_fitted_selection(folds),
        "fold_means": [
            {
                "fold": fold["fold"],
                "steps_trained": total_steps(fold, config.steps_per_epoch),
                "dice": fold["grid"][best]["dice"],
                "aji": fold["grid"][best]["aji"],
            }
            for fold in folds
        ],
        "best_setting": best,
        "best": per_setting[best],
        "default_setting": default_key,
        "default": per_setting.get(default_key),
        "xml_instance_tiles_at_best": {
            "n": len(xml_rows),
            "aji": mean_and_sd([row["aji"] for row in xml_rows]),
            "dice": mean_and_sd([row["dice"] for row in xml_rows]),
        },
        "per_setting": per_setting,
        "config": _recorded_config(out_dir, config),
    }
    write_json(out_dir / "cv.json", summary)
    return summary


def common_settings(folds: list[dict[str, Any]]) -> list[str]:
    """Grid settings scored on every fold, in the first fold's order.

    Folds can disagree: a run whose first folds were re-scored (with flips and a wider
    grid) before its last fold was trained holds more settings in the earlier folds.
    Only settings every fold has can be averaged or cross-fitted.
    """
    shared = set.intersection(*(set(fold["grid"]) for fold in folds))
    return [key for key in folds[0]["grid"] if key in shared]


def cross_fitted_selection(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """CV metrics with each fold's post-processing chosen on the *other* folds only.

    Picking the best grid setting on the folds that report the metrics flatters them;
    here fold k is scored at the setting with the best mean AJI over the remaining folds,
    so the estimate stays held out. With one fold there is nothing to choose on, and the
    fold's own best is used (the result says so).

    Args:
        folds: The ``fold_k/metrics.json`` payloads, each with a ``grid`` of reports.

    Returns:
        ``{"dice": mean_and_sd, "aji": mean_and_sd, "settings": [per-fold key], ...}``.
    """
    settings = []
    for index in range(len(folds)):
        others = [fold for position, fold in enumerate(folds) if position != index] or folds
        settings.append(
            max(
                common_settings(folds),
                key=lambda key, others=others: float(
                    np.mean([fold["grid"][key]["aji"] for fold in others])
                ),
            )
        )
    chosen = [fold["grid"][key] for fold, key in zip(folds, settings, strict=True)]
    return {
        "dice": mean_and_sd([report["dice"] for report in chosen]),
        "aji": mean_and_sd([report["aji"] for report in chosen]),
        "settings": settings,
        "held_out": len(folds) > 1,
    }


def _recorded_config(out_dir: Path, config: NucleiTrainConfig) -> dict[str, Any]:
    """The training options the folds ran with: those already in ``cv.json`` if present.

    A later ``--ship`` or ``--rescore`` call may pass other options (e.g. the final
    model's schedule); the folds' own options must stay on record.
    """
    import json

    path = out_dir / "cv.json"
    if path.exists():
        recorded = json.loads(path.read_text()).get("config")
        if recorded:
            return recorded
    return config.to_dict()


def setting_uses_flips(key: str) -> bool:
    """Whether a grid key (``"fg=0.5,marker=0.3,flips=1"``) used test-time flips."""
    return dict(part.split("=") for part in key.split(",")).get("flips") == "1"


def parse_setting(key: str) -> WatershedConfig:
    """A grid key (see :func:`setting_key`) -> its :class:`WatershedConfig` (flips ignored).

    Raises:
        ConfigError: The key names neither a marker threshold nor h-maxima.
    """
    values = dict(part.split("=") for part in key.split(","))
    base = dataclasses.replace(WatershedConfig(), foreground_threshold=float(values["fg"]))
    if "hmax" in values:
        return dataclasses.replace(
            base,
            marker_method="h_maxima",
            marker_h=float(values["hmax"]),
            marker_sigma=float(values.get("sigma", WatershedConfig().marker_sigma)),
        )
    if "marker" in values:
        return dataclasses.replace(
            base, marker_method="threshold", marker_threshold=float(values["marker"])
        )
    raise ConfigError(f"Unknown post-processing setting {key!r}: expected marker= or hmax=.")
