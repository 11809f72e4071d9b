"""One mask-guided model whose head averages a plain classifier and a mask-guided head.

A grey-scale classifier and a mask-guided head (which also reads the segmenter's lesion
channels, see :mod:`utils.training.mask_guided`) make different mistakes, so their
average beats either, and beats a second seed of the same kind. Both take the same
(s, s) images, so the combined head is one ensemble (:func:`assemble_ensemble`) on the
three-channel mask-guided input: the plain member reads channel 0, the grey-scale image,
and the mask-guided member reads all three. The logits averaged are each member's
*calibrated* logits (divided by its own cross-validated temperature), so neither member
dominates merely by being over-confident; one temperature is then fitted on top.

Nothing is retrained. From two finished runs on the same data, folds and seed:

* **cross-validation**: fold k's combined head joins the plain run's fold-k model and
  the mask-guided run's fold-k head, and is calibrated and scored on fold k's held-out
  images, whose lesion channels come from fold k's segmenter, exactly as the
  mask-guided CV scored its own heads (``OUT/fold_<k>/model.keras`` and
  ``metrics.json``, then ``OUT/cv.json``);
* **final model**: the plain run's ``final/model.keras`` and the mask-guided run's final
  model (its head and embedded segmenter) become ``OUT/final/model.keras``, which
  ``ship-classifier --mask-guided-from`` ships like any mask-guided run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras

from utils.errors import ConfigError
from utils.models.ensemble import assemble_ensemble
from utils.models.mask_guided import (
    SEGMENTER_LAYER,
    build_mask_guided_classifier,
    mask_guided_head_copy,
)
from utils.training.arrays import TrainingArrays
from utils.training.classification import (
    ClassifierTrainConfig,
    _cv_temperature,
    calibrate_and_evaluate,
    collect_classifier_cv_results,
)
from utils.training.classifier_card import load_fold_model
from utils.training.common import (
    config_from_saved,
    fold_finished,
    grouped_cv_folds,
    require_grouped_fold,
    write_json,
)
from utils.training.ensemble import MEMBER_REPORT_KEYS
from utils.training.mask_guided import fold_probability_maps, mask_guided_images

LOGGER = logging.getLogger(__name__)

#: Names of the two members, in the combined head's member order.
MEMBER_NAMES = ("plain", "mask_guided")

#: Layer of a composed mask-guided model holding the lesion threshold.
_LESION_VIEW_LAYER = "lesion_view"


def _run_cv(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "cv.json"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: {run_dir} must be a finished classify --folds run.")
    return json.loads(path.read_text())


def _run_config(cv: dict[str, Any]) -> ClassifierTrainConfig:
    return config_from_saved(ClassifierTrainConfig, cv["config"])


def _check_runs(plain_cv: dict[str, Any], guided_cv: dict[str, Any]) -> None:
    """Raise ConfigError unless the two runs share image size, seed, classes and folds."""
    plain, guided = _run_config(plain_cv), _run_config(guided_cv)
    if guided.channels != 3:
        raise ConfigError(
            f"The mask-guided run's head takes {guided.channels} channel(s), not 3: pass a "
            "`classify --mask-guided-from` run as the mask-guided run."
        )
    pairs = {
        "image size": (plain.image_size, guided.image_size),
        "seed (folds)": (plain.seed, guided.seed),
        "class names": (plain.class_names, guided.class_names),
        "fold count": (plain_cv.get("n_folds"), guided_cv.get("n_folds")),
    }
    for what, (left, right) in pairs.items():
        if left != right:
            raise ConfigError(
                f"The runs do not match: the plain run's {what} is {left!r} but the "
                f"mask-guided run's is {right!r}."
            )


def calibrated_weights(temperatures: tuple[float, float]) -> tuple[float, float]:
    """Member weights that average calibrated logits: proportional to 1 / temperature."""
    if any(not temperature > 0 for temperature in temperatures):
        raise ConfigError(f"Temperatures must be positive; received {list(temperatures)}.")
    inverse = [1.0 / temperature for temperature in temperatures]
    return inverse[0] / sum(inverse), inverse[1] / sum(inverse)


def combined_head(
    plain: keras.Model, guided_head: keras.Model, weights: tuple[float, float]
) -> keras.Model:
    """The three-channel head averaging ``plain`` (on channel 0) and ``guided_head``.

    Args:
        plain: A grey-scale classifier (or ensemble) taking (s, s, c) images; each of
            its c channels reads channel 0.
        guided_head: A mask-guided head taking (s, s, 3) inputs.
        weights: Weights of the two members' logits.

    Returns:
        A model named ``combined_head``.
    """
    plain_channels = int(plain.input_shape[-1])
    return assemble_ensemble(
        [plain, guided_head],
        "combined_head",
        member_channels=[(0,) * plain_channels, (0, 1, 2)],
        member_weights=list(weights),
    )


def _fold_metrics(run_dir: Path, fold: int) -> dict[str, Any]:
    path = run_dir / f"fold_{fold}" / "metrics.json"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: finish fold {fold} of {run_dir} first.")
    require_grouped_fold(path.parent)
    return json.loads(path.read_text())


def cross_validate_combined(
    arrays: TrainingArrays,
    plain_run: Path,
    guided_run: Path,
    segmenter_cv_dir: Path,
    out_dir: Path,
) -> dict[str, Any]:
    """Score the combined head of every fold; writes ``out_dir/cv.json``.

    Args:
        arrays: All examples as (N, s, s, 1) grey-scale images, loaded as for the runs.
        plain_run: Finished plain ``classify --folds`` run.
        guided_run: Finished ``classify --folds --mask-guided-from`` run on the same
            data, image size, folds and seed.
        segmenter_cv_dir: The segmenter CV run ``guided_run`` took its masks from.
        out_dir: Receives ``fold_<k>/`` (``model.keras``, ``metrics.json``) and
            ``cv.json``; finished folds are skipped.

    Returns:
        The CV summary, as :func:`~utils.training.classification.cross_validate_classifier`
        returns, plus ``combined`` (the two runs and each fold's member weights).

    Raises:
        ConfigError: A run is unfinished or the runs do not match.
    """
    plain_cv, guided_cv = _run_cv(plain_run), _run_cv(guided_run)
    _check_runs(plain_cv, guided_cv)
    plain_config, config = _run_config(plain_cv), _run_config(guided_cv)
    arrays = replace(arrays, masks=None)
    folds = grouped_cv_folds(arrays, int(guided_cv["n_folds"]), config.seed)
    for fold, (train_idx, val_idx) in enumerate(folds):
        fold_dir = out_dir / f"fold_{fold}"
        if fold_finished(fold_dir):
            LOGGER.info("fold %d already combined; skipping", fold)
            continue
        started = time.perf_counter()
        reports = [_fold_metrics(run, fold) for run in (plain_run, guided_run)]
        for run, report in zip((plain_run, guided_run), reports, strict=True):
            if report.get("n_val") != len(val_idx):
                raise ConfigError(
                    f"Fold {fold} of {run} held out {report.get('n_val')} images but this fold "
                    f"holds out {len(val_idx)}: the run was made on other data or folds."
                )
        weights = calibrated_weights((reports[0]["temperature"], reports[1]["temperature"]))
        head = combined_head(
            load_fold_model(plain_config, plain_run / f"fold_{fold}"),
            load_fold_model(config, guided_run / f"fold_{fold}"),
            weights,
        )
        held_out = arrays.subset(val_idx)
        maps, threshold = fold_probability_maps(held_out, segmenter_cv_dir, fold, len(val_idx))
        held_out = replace(held_out, images=mask_guided_images(held_out.images, maps, threshold))
        _, report = calibrate_and_evaluate(head, held_out, config)
        report["members"] = [
            {"member": name, "weight": weight, **{key: rep.get(key) for key in MEMBER_REPORT_KEYS}}
            for name, weight, rep in zip(MEMBER_NAMES, weights, reports, strict=True)
        ]
        fold_dir.mkdir(parents=True, exist_ok=True)
        head.save(fold_dir / "model.keras")
        header = {"fold": fold, "n_train": len(train_idx), "n_val": len(val_idx)}
        bookkeeping = {
            "epochs_run": max(rep["epochs_run"] for rep in reports),
            "seconds": time.perf_counter() - started,
            "stopped_by_deadline": False,
        }
        write_json(fold_dir / "metrics.json", {**header, **bookkeeping, **report})
        LOGGER.info("fold %d combined: accuracy %.3f", fold, report["accuracy"])
    cv = collect_classifier_cv_results(out_dir, config)
    cv["combined"] = {"plain_run": str(plain_run), "mask_guided_run": str(guided_run)}
    cv["mask_source"] = str(segmenter_cv_dir)
    write_json(out_dir / "cv.json", cv)
    return cv


def _final(run_dir: Path) -> tuple[keras.Model, dict[str, Any]]:
    final_dir = run_dir / "final"
    model_path, info_path = final_dir / "model.keras", final_dir / "final.json"
    for required in (model_path, info_path):
        if not required.is_file():
            raise ConfigError(f"{required} is missing: run {run_dir} with --final first.")
    model = keras.models.load_model(model_path, compile=False)
    return model, json.loads(info_path.read_text())


def combine_final(plain_run: Path, guided_run: Path, out_dir: Path) -> keras.Model:
    """Compose the two runs' final models into ``out_dir/final/model.keras``.

    The member weights use each run's CV mean temperature; ``out_dir/cv.json`` (from
    :func:`cross_validate_combined`) gives the shipped temperature.

    Returns:
        The composed model (full-size image -> embedded segmenter -> combined head).

    Raises:
        ConfigError: A run lacks its final model or CV, the runs do not match, or the
            mask-guided final model is not mask-guided.
    """
    plain_cv, guided_cv = _run_cv(plain_run), _run_cv(guided_run)
    _check_runs(plain_cv, guided_cv)
    plain, plain_info = _final(plain_run)
    guided, guided_info = _final(guided_run)
    head = mask_guided_head_copy(guided)
    if head is None:
        raise ConfigError(f"{guided_run}/final/model.keras is not a mask-guided model.")
    temperatures = tuple(cv["summary"]["temperature"]["mean"] for cv in (plain_cv, guided_cv))
    weights = calibrated_weights(temperatures)
    model = build_mask_guided_classifier(
        guided.get_layer(SEGMENTER_LAYER),
        combined_head(plain, head, weights),
        float(guided.get_layer(_LESION_VIEW_LAYER).threshold),
    )
    final_dir = out_dir / "final"
    final_dir.mkdir(parents=True, exist_ok=True)
    model.save(final_dir / "model.keras")
    temperature = _cv_temperature(out_dir / "cv.json")
    members = []
    for index, (run, info) in enumerate(((plain_run, plain_info), (guided_run, guided_info))):
        members.append(
            {
                "member": MEMBER_NAMES[index],
                "run": str(run),
                "architecture": _describe(info),
                "weight": weights[index],
                "cv_temperature": temperatures[index],
                "epochs_run": info["epochs_run"],
            }
        )
    write_json(
        final_dir / "final.json",
        {
            **guided_info,
            "architecture": "combined head: " + " + ".join(m["architecture"] for m in members),
            "temperature": temperature,
            "epochs_run": max(m["epochs_run"] for m in members),
            "ensemble_members": 1,
            "combined": {"members": members},
        },
    )
    return model


def _describe(info: dict[str, Any]) -> str:
    """E.g. ``compact_cnn ensemble of 3 (grey-scale)`` from a run's ``final.json``."""
    members = info.get("ensemble_members", 1)
    text = info["architecture"] if members <= 1 else f"{info['architecture']} ensemble of {members}"
    return f"{text} ({'mask-guided' if 'mask_guided' in info else 'grey-scale'})"
