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
    stack_targets,
    train_model,
)

LOGGER = logging.getLogger(__name__)

BUNDLE_NAME = "nuclei_segmenter"

LIMITATIONS = [
    "Trained on 30 MoNuSeg training tiles (7 organs, 40x, ~0.25 um/px); other magnifications "
    "must be resampled to ~0.25 um/px (NucleiSegmenter.segment does this when mpp is given).",
    "Compact network trained for a short CPU-only schedule: expect weaker results than "
    "published MoNuSeg models, especially on clustered or overlapping nuclei.",
    "AJI during cross-validation used connected components of the binary masks as ground-truth "
    "instances for tiles without XML polygons; touching nuclei merged in those masks make "
    "that AJI differ from the official instance-level AJI.",
    "Post-processing thresholds (foreground 0.5, marker 0.4) were fixed a priori, not tuned: "
    "there was no CPU time for a search.",
    "Not validated on frozen sections, IHC stains, blurred or out-of-focus regions, or tissue "
    "folds; stain normalisation or HED augmentation only partly covers scanner differences.",
]


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
        **build_card(config, postprocess, model),
        "version": "1.0",
        "trained_from": "random initialisation (trained from scratch on MoNuSeg only)",
        "training_data": {
            "dataset": "MoNuSeg 2018 training set (Kumar et al., IEEE TMI 2020), CC BY-NC-SA 4.0",
            "n_tiles": len(tiles),
            "n_patients": len(set(tiles.groups)),
            "tile_size": list(tiles.images[0].shape),
            "instance_ground_truth": dict(Counter(tiles.truth_kinds)),
        },
        "training": {**config.to_dict(), **final_info},
        "cv_metrics": (
            {"dice": cv_summary["best"]["dice"], "aji": cv_summary["best"]["aji"]}
            if has_cv
            else {"note": "no cross-validation was run for this bundle"}
        ),
        "cv_details": (
            {
                key: cv_summary[key]
                for key in (
                    "n_folds",
                    "fold_means",
                    "best_setting",
                    "default_setting",
                    "default",
                    "xml_instance_tiles_at_best",
                    "config",
                )
            }
            if has_cv
            else None
        ),
        "limitations": LIMITATIONS,
    }
    path = save_model_bundle(model, name, card, models_dir=models_dir)
    LOGGER.info("shipped %s (%s)", path, json.dumps(card["cv_metrics"], default=str))
    return path
