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
    members: list[keras.Model] = []
    infos: list[dict] = []
    started = time.perf_counter()
    deadline_hit = False
    for index in range(config.ensemble_members):
        settings, folder = member_config(config, index), member_dir(run_dir, index)
        finished = _finished_member(settings, folder)
        if finished is None:
            LOGGER.info(
                "ensemble member %d/%d (seed %d)", index + 1, config.ensemble_members, settings.seed
            )
            trained = train_classifier(train, val, settings, folder, feed_builder=feed_builder)
            info = {"member": index, "seed": settings.seed, "epochs_run": trained.epochs_run}
            info |= {key: trained.validation.get(key) for key in MEMBER_REPORT_KEYS}
            if trained.stopped_by_deadline:
                members.append(trained.model)
                infos.append(info)
                deadline_hit = True
                break
            _finish_member(trained.model, folder, info)
            finished = trained.model, info
        members.append(finished[0])
        infos.append(finished[1])
    model = (
        members[0] if len(members) == 1 else assemble_ensemble(members, f"{config.arch}_ensemble")
    )
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
    members: list[keras.Model] = []
    epochs: list[int] = []
    for index in range(config.ensemble_members):
        settings, folder = member_config(config, index), member_dir(run_dir, index)
        finished = _finished_member(settings, folder)
        if finished is None:
            LOGGER.info("final ensemble member %d/%d", index + 1, config.ensemble_members)
            model, epochs_run, deadline_hit = fit_on_all_data(
                arrays, settings, folder, feed_builder
            )
            members.append(model)
            epochs.append(epochs_run)
            if deadline_hit:
                break
            _finish_member(
                model, folder, {"member": index, "seed": settings.seed, "epochs_run": epochs_run}
            )
            continue
        members.append(finished[0])
        epochs.append(int(finished[1]["epochs_run"]))
    complete = len(members) == config.ensemble_members
    if len(members) == 1:
        return members[0], epochs, not complete
    return assemble_ensemble(members, f"{config.arch}_ensemble"), epochs, not complete
