"""Train a deep ensemble of classifiers: K members from K seeds, assembled into one model.

``ClassifierTrainConfig.ensemble_members = K`` (``--ensemble-members K``) makes
:func:`~utils.training.classification.train_classifier` and
:func:`~utils.training.classification.train_final_classifier` come here. Member ``m`` is
the configured architecture trained with seed ``config.seed + m`` (initialisation,
shuffling and augmentation differ; the CV folds do not, they follow ``config.seed``) in
``run_dir/member_<m>/``. A finished member leaves ``member.weights.h5`` and
``member.json``, so a killed ensemble resumes at the member it was training. The members
are then assembled (:func:`utils.models.ensemble.assemble_ensemble`) and the ensemble is
calibrated and evaluated as one model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import keras

from utils.models.ensemble import assemble_ensemble
from utils.training.arrays import TrainingArrays
from utils.training.classification import (
    ClassifierTrainConfig,
    TrainedClassifier,
    build_architecture,
    calibrate_and_evaluate,
    class_weights_by_name,
    fit_on_all_data,
    train_classifier,
)
from utils.training.common import FeedBuilder, make_feeds, write_json

LOGGER = logging.getLogger(__name__)

MEMBER_WEIGHTS = "member.weights.h5"
MEMBER_DONE = "member.json"
#: Keys of a member's validation report kept in the ensemble's fold metrics.
MEMBER_REPORT_KEYS = ("accuracy", "balanced_accuracy", "macro_auc", "auc_malignant", "ece")


def member_config(config: ClassifierTrainConfig, index: int) -> ClassifierTrainConfig:
    """The configuration of member ``index``: one model, seed ``config.seed + index``.

    Members skip the test-time-augmentation report: only the ensemble's is used.
    """
    return replace(config, ensemble_members=1, seed=config.seed + index, evaluate_tta=False)


def member_dir(run_dir: Path, index: int) -> Path:
    """Run folder of member ``index``."""
    return run_dir / f"member_{index}"


def _finished_member(
    config: ClassifierTrainConfig, folder: Path
) -> tuple[keras.Model, dict] | None:
    done = folder / MEMBER_DONE
    if not done.is_file():
        return None
    model = build_architecture(config, None)
    model.load_weights(folder / MEMBER_WEIGHTS)
    return model, json.loads(done.read_text())


def _finish_member(model: keras.Model, folder: Path, info: dict) -> None:
    model.save_weights(folder / MEMBER_WEIGHTS)
    write_json(folder / MEMBER_DONE, info)


#: ``(member settings, member folder) -> (model, member.json info, deadline hit)``.
MemberFit = Callable[[ClassifierTrainConfig, Path], tuple[keras.Model, dict, bool]]


def _train_members(
    config: ClassifierTrainConfig, run_dir: Path, fit_member: MemberFit
) -> tuple[keras.Model, list[dict], bool]:
    """Fit (or reload) every member in turn, then assemble them.

    Returns:
        The ensemble (or, if the deadline stopped a member, the members so far; a
        single model when only the first exists), each member's info, and whether the
        deadline stopped training.
    """
    members: list[keras.Model] = []
    infos: list[dict] = []
    for index in range(config.ensemble_members):
        settings, folder = member_config(config, index), member_dir(run_dir, index)
        finished = _finished_member(settings, folder)
        if finished is None:
            LOGGER.info(
                "ensemble member %d/%d (seed %d)", index + 1, config.ensemble_members, settings.seed
            )
            model, info, deadline_hit = fit_member(settings, folder)
            info = {"member": index, "seed": settings.seed, **info}
            if deadline_hit:
                members.append(model)
                infos.append(info)
                break
            _finish_member(model, folder, info)
            finished = model, info
        members.append(finished[0])
        infos.append(finished[1])
    complete = len(members) == config.ensemble_members
    if len(members) == 1:
        return members[0], infos, not complete
    return assemble_ensemble(members, f"{config.arch}_ensemble"), infos, not complete


def train_ensemble(
    train: TrainingArrays,
    val: TrainingArrays,
    config: ClassifierTrainConfig,
    run_dir: Path,
    *,
    feed_builder: FeedBuilder = make_feeds,
) -> TrainedClassifier:
    """Train the members on ``train`` (early stopping on ``val``), assemble, calibrate.

    Args:
        train: Training examples.
        val: Validation examples: each member's early stopping, then the ensemble's
            temperature and report.
        config: Configuration with ``ensemble_members >= 2``.
        run_dir: Run folder; ``member_<m>/`` per member and, once every member is
            done, the ensemble's ``best.weights.h5``.
        feed_builder: Builds each member's feeds.

    Returns:
        The ensemble, its temperature and report; the report's ``members`` lists each
        member's seed, epochs and own validation metrics. If the deadline stopped a
        member, ``stopped_by_deadline`` is set and the ensemble holds the members
        trained so far (a rerun resumes).
    """
    started = time.perf_counter()

    def fit_member(settings: ClassifierTrainConfig, folder: Path) -> tuple[keras.Model, dict, bool]:
        trained = train_classifier(train, val, settings, folder, feed_builder=feed_builder)
        info = {"epochs_run": trained.epochs_run}
        info |= {key: trained.validation.get(key) for key in MEMBER_REPORT_KEYS}
        return trained.model, info, trained.stopped_by_deadline

    model, infos, deadline_hit = _train_members(config, run_dir, fit_member)
    if not deadline_hit:
        model.save_weights(run_dir / "best.weights.h5")
    temperature, report = calibrate_and_evaluate(model, val, config)
    report["members"] = infos
    return TrainedClassifier(
        model=model,
        temperature=temperature,
        validation=report,
        class_weights=class_weights_by_name(train, config),
        epochs_run=max(info["epochs_run"] for info in infos),
        seconds=time.perf_counter() - started,
        stopped_by_deadline=deadline_hit,
    )


def fit_ensemble_on_all_data(
    arrays: TrainingArrays,
    config: ClassifierTrainConfig,
    run_dir: Path,
    *,
    feed_builder: FeedBuilder = make_feeds,
) -> tuple[keras.Model, list[int], bool]:
    """Fit every member on all ``arrays`` (no validation) and assemble them.

    Returns:
        The ensemble (or, if the deadline stopped a member, the members so far: a
        single model when only the first exists), each member's epochs, and whether the
        deadline stopped training.
    """

    def fit_member(settings: ClassifierTrainConfig, folder: Path) -> tuple[keras.Model, dict, bool]:
        model, epochs_run, deadline_hit = fit_on_all_data(arrays, settings, folder, feed_builder)
        return model, {"epochs_run": epochs_run}, deadline_hit

    model, infos, deadline_hit = _train_members(config, run_dir, fit_member)
    return model, [int(info["epochs_run"]) for info in infos], deadline_hit
