"""Final nuclei model on all tiles, and its shipped bundle with a model card."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import keras

from utils.histo.data import NucleiTiles
from utils.histo.instances import WatershedConfig
from utils.model_card import save_model_bundle
from utils.paths import SAVED_MODELS_DIR
from utils.training.common import write_json
from utils.training.nuclei import (
    NucleiTrainConfig,
    as_inference_model,
    build_card,
    parse_setting,
    setting_uses_flips,
    stack_targets,
    total_steps,
    train_model,
)

LOGGER = logging.getLogger(__name__)

BUNDLE_NAME = "nuclei_segmenter"

LIMITATIONS = [
    "Trained on 30 MoNuSeg training tiles (7 organs, 40x, ~0.25 um/px); other magnifications "
    "must be resampled to ~0.25 um/px (NucleiSegmenter.segment does this when mpp is given).",
    "Compact network trained for a short CPU-only schedule: expect weaker results than "
    "published MoNuSeg models, especially on clustered or overlapping nuclei.",
    "The CV metrics are cross-fitted: each fold is scored with the post-processing setting "
    "that had the best mean AJI on the other folds. The shipped setting is the best over all "
    "folds; that in-sample (slightly optimistic) result is cv_details.best_in_sample, and the "
    "untuned default's is cv_details.default.",
    "Not validated on frozen sections, IHC stains, blurred or out-of-focus regions, or tissue "
    "folds; stain normalisation or HED augmentation only partly covers scanner differences.",
]


#: What the CV's ground-truth instances were, by ``NucleiTrainConfig.mask_instances``.
GROUND_TRUTH_LIMITATIONS = {
    "components": "AJI during cross-validation used connected components of the binary masks "
    "as ground-truth instances for tiles without XML polygons; touching nuclei merged in "
    "those masks make that AJI differ from the official instance-level AJI.",
    "split": "Training targets and CV ground truth of the 26 tiles without XML polygons are "
    "pseudo-instances: binary-mask components split at distance-transform necks (AJI 0.90 "
    "against the polygons on the 4 tiles that have both). The CV AJI is therefore measured "
    "against an approximation of the true instances; the XML tiles alone "
    "(cv_details.xml_instance_tiles_at_best) use real ones.",
}


def limitations(config: NucleiTrainConfig) -> list[str]:
    """The card's known limitations for a model trained with ``config``."""
    return [*LIMITATIONS[:2], GROUND_TRUTH_LIMITATIONS[config.mask_instances], *LIMITATIONS[2:]]


def train_final(
    tiles: NucleiTiles, config: NucleiTrainConfig, out_dir: Path
) -> tuple[keras.Model, dict[str, Any]]:
    """Train on every tile; saves ``out_dir/model.keras`` and ``out_dir/final.json``."""
    model, info = train_model(*stack_targets(tiles), config, out_dir)
    model = as_inference_model(model, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / "model.keras")
    write_json(out_dir / "final.json", {**info, "config": config.to_dict()})
    return model, info


#: Goals of TumorLens issue #6 on leave-images-out CV of the MoNuSeg training tiles.
GOALS = {"dice": 0.80, "aji": 0.60}


def _status(
    cv_summary: dict[str, Any], config: NucleiTrainConfig, final_info: dict[str, Any]
) -> str:
    """One honest line: CV means against the goals and the training budgets."""
    best = headline_cv_metrics(cv_summary)
    reached = {metric: best[metric]["mean"] >= goal for metric, goal in GOALS.items()}
    # A goal met by less than the spread between folds is reported as such.
    narrow = {
        metric: reached[metric] and best[metric]["mean"] - goal < (best[metric].get("sd") or 0.0)
        for metric, goal in GOALS.items()
    }
    parts = [
        f"CV {metric} {best[metric]['mean']:.3f} (goal >= {goal:.2f}, "
        f"{'met' if reached[metric] else 'not met'}"
        f"{', by less than one fold sd' if narrow[metric] else ''})"
        for metric, goal in GOALS.items()
    ]
    met = all(reached.values())
    fold_steps = [fold.get("steps_trained") for fold in cv_summary.get("fold_means", [])]
    final_steps = total_steps(final_info, config.steps_per_epoch)
    return (
        f"{'Meets' if met else 'Below'} the issue's goals: {', '.join(parts)}. CV models "
        f"trained {fold_steps} steps each, the shipped model {final_steps} steps, on a shared "
        "CPU" + ("." if met else "; more training is the first thing to try.")
    )


def headline_cv_metrics(cv_summary: dict[str, Any]) -> dict[str, Any]:
    """Dice and AJI to report: cross-fitted when the summary has them, else the in-sample best."""
    chosen = cv_summary.get("cross_fitted") or cv_summary["best"]
    return {"dice": chosen["dice"], "aji": chosen["aji"]}


def ship_bundle(
    model: keras.Model,
    tiles: NucleiTiles,
    config: NucleiTrainConfig,
    final_info: dict[str, Any],
    cv_summary: dict[str, Any] | None,
    *,
    models_dir: Path = SAVED_MODELS_DIR,
    name: str = BUNDLE_NAME,
) -> Path:
    """Write ``models_dir/NAME.{keras,json,md}`` with CV metrics and chosen post-processing."""
    has_cv = bool(cv_summary and cv_summary.get("n_folds"))
    postprocess = parse_setting(cv_summary["best_setting"]) if has_cv else WatershedConfig()
    card = {
        "title": "H&E nuclei segmenter (two-head U-Net + watershed)",
        "status": _status(cv_summary, config, final_info) if has_cv else "not cross-validated",
        **build_card(config, postprocess, model),
        "test_time_flips": has_cv and setting_uses_flips(cv_summary["best_setting"]),
        "version": "1.0",
        "trained_from": "random initialisation (trained from scratch on MoNuSeg only)"
        + (
            f"; continued (warm restart) from {final_info['warm_restart_from']}, itself trained "
            "from scratch the same way"
            if final_info.get("warm_restart_from")
            else ""
        ),
        "training_data": {
            "dataset": "MoNuSeg 2018 training set (Kumar et al., IEEE TMI 2020), CC BY-NC-SA 4.0",
            "n_tiles": len(tiles),
            "n_patients": len(set(tiles.groups)),
            "tile_size": list(tiles.images[0].shape),
            "instance_ground_truth": dict(Counter(tiles.truth_kinds)),
        },
        "training": {**config.to_dict(), **final_info},
        "cv_metrics": (
            headline_cv_metrics(cv_summary)
            if has_cv
            else {"note": "no cross-validation was run for this bundle"}
        ),
        "cv_details": (
            {
                key: cv_summary.get(key)
                for key in (
                    "n_folds",
                    "fold_means",
                    "best_setting",
                    "cross_fitted",
                    "default_setting",
                    "default",
                    "xml_instance_tiles_at_best",
                    "config",
                )
            }
            | {"best_in_sample": cv_summary["best"]}
            if has_cv
            else None
        ),
        "limitations": limitations(config),
    }
    path = save_model_bundle(model, name, card, models_dir=models_dir)
    LOGGER.info("shipped %s (%s)", path, json.dumps(card["cv_metrics"], default=str))
    return path
