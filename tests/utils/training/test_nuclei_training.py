"""Nuclei training: a tiny CV + final run + shipped bundle on synthetic tiles."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.utils.histo.synthetic import synthetic_tiles, write_monuseg_folder
from utils.errors import ConfigError
from utils.histo.instances import WatershedConfig
from utils.histo.nuclei import NucleiSegmenter
from utils.train import main as train_main
from utils.training.nuclei import (
    RESCORE_FOREGROUND,
    RESCORE_H_MAXIMA,
    RESCORE_MARKERS,
    NucleiTrainConfig,
    common_settings,
    cross_fitted_selection,
    cross_validate,
    init_weights_path,
    parse_setting,
    rescore_folds,
    setting_key,
    setting_uses_flips,
    stack_targets,
    steps_trained,
    summarise_cv,
    train_model,
)
from utils.training.nuclei_final import ship_bundle, train_final

TINY = {"base_filters": 2, "depth": 1, "crop_size": 32, "batch_size": 2, "steps_per_epoch": 2,
        "epochs": 1}  # fmt: skip


def test_stack_targets_encodes_mask_and_distance() -> None:
    tiles = synthetic_tiles(2)
    images, targets = stack_targets(tiles)
    assert images.shape == (2, 64, 64, 3) and targets.shape == (2, 64, 64, 2)
    assert set(np.unique(targets[..., 0])) == {0, 255}
    assert targets[0, ..., 1][tiles.instances[0] == 0].max() == 0
    assert targets[..., 1].max() > 100


def test_parse_setting() -> None:
    config = parse_setting("fg=0.4,marker=0.55")
    assert config.foreground_threshold == 0.4 and config.marker_threshold == 0.55
    assert parse_setting("fg=0.4,marker=0.55,flips=1") == config
    assert setting_uses_flips("fg=0.4,marker=0.55,flips=1")
    assert not setting_uses_flips("fg=0.4,marker=0.55")


def test_h_maxima_settings_round_trip_through_their_keys() -> None:
    config = WatershedConfig(
        foreground_threshold=0.45, marker_method="h_maxima", marker_h=0.06, marker_sigma=1.0
    )
    key = setting_key(config, flips=True)
    assert key == "fg=0.45,hmax=0.06,sigma=1,flips=1"
    assert parse_setting(key) == config and setting_uses_flips(key)
    threshold = parse_setting(
        setting_key(WatershedConfig(marker_method="threshold", marker_threshold=0.3))
    )
    assert threshold.marker_method == "threshold" and threshold.marker_threshold == 0.3
    with pytest.raises(ConfigError, match=r"Unknown post-processing setting 'fg=0\.5,peaks=3'"):
        parse_setting("fg=0.5,peaks=3")


def _fold(aji_a: float, aji_b: float) -> dict:
    return {"grid": {"a": {"aji": aji_a, "dice": 0.8}, "b": {"aji": aji_b, "dice": 0.7}}}


def test_cross_fitted_selection_chooses_each_folds_setting_on_the_others() -> None:
    # Setting "a" wins on folds 0 and 1, "b" only on fold 2 (by a lot), so in-sample
    # selection would pick "b" for all; cross-fitting scores fold 2 at "a".
    folds = [_fold(0.5, 0.45), _fold(0.5, 0.45), _fold(0.3, 0.9)]
    result = cross_fitted_selection(folds)
    assert result["settings"] == ["b", "b", "a"]
    assert result["aji"]["mean"] == pytest.approx((0.45 + 0.45 + 0.3) / 3)
    assert result["dice"]["mean"] == pytest.approx((0.7 + 0.7 + 0.8) / 3)
    assert result["held_out"] is True
    in_sample_best = max(np.mean([f["grid"][k]["aji"] for f in folds]) for k in ("a", "b"))
    assert result["aji"]["mean"] <= in_sample_best


def test_folds_scored_on_different_grids_use_the_settings_they_share(tmp_path: Path) -> None:
    """A run whose first fold was re-scored on a wider grid before the next fold ran."""
    rescored = _fold(0.5, 0.45)
    rescored["grid"]["c"] = {"aji": 0.99, "dice": 0.9}  # only fold 0 has it
    folds = [rescored, _fold(0.5, 0.45)]
    assert common_settings(folds) == ["a", "b"]
    assert set(cross_fitted_selection(folds)["settings"]) == {"a"}
    for index, fold in enumerate(folds):
        for report in fold["grid"].values():
            report["per_image"] = []
        (tmp_path / f"fold_{index}").mkdir()
        (tmp_path / f"fold_{index}" / "metrics.json").write_text(json.dumps(fold | {"fold": index}))
    summary = summarise_cv(tmp_path, NucleiTrainConfig(**TINY))
    assert set(summary["per_setting"]) == {"a", "b"} and summary["best_setting"] == "a"


def test_cross_fitted_selection_with_one_fold_is_marked_in_sample() -> None:
    result = cross_fitted_selection([_fold(0.2, 0.6)])
    assert result["settings"] == ["b"] and result["held_out"] is False


@pytest.mark.slow
def test_cv_final_and_ship(tmp_path: Path) -> None:
    tiles = synthetic_tiles(4)
    config = NucleiTrainConfig(**TINY)
    summary = cross_validate(tiles, config, tmp_path / "run", n_folds=2)
    assert summary["n_folds"] == 2
    assert summary["best_setting"] in summary["per_setting"]
    assert 0.0 <= summary["best"]["aji"]["mean"] <= 1.0
    rescored = rescore_folds(tiles, config, tmp_path / "run", n_folds=2)
    grid_size = len(RESCORE_FOREGROUND) * (len(RESCORE_MARKERS) + len(RESCORE_H_MAXIMA))
    assert len(rescored["per_setting"]) == 2 * grid_size
    assert sum(setting_uses_flips(key) for key in rescored["per_setting"]) == grid_size
    assert sum("hmax=" in key for key in rescored["per_setting"]) == 2 * len(
        RESCORE_FOREGROUND
    ) * len(RESCORE_H_MAXIMA)
    summary = rescored
    model, info = train_final(tiles, config, tmp_path / "run" / "final")
    assert info["epochs_run"] == 1
    path = ship_bundle(model, tiles, config, info, summary, models_dir=tmp_path / "models")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["cv_metrics"]["aji"]["n"] == 2
    assert card["cv_metrics"]["aji"] == summary["cross_fitted"]["aji"]
    assert card["cv_details"]["best_in_sample"] == summary["best"]
    assert card["test_time_flips"] == setting_uses_flips(summary["best_setting"])
    assert card["postprocess"] == parse_setting(summary["best_setting"]).to_dict()
    assert card["training_data"]["n_tiles"] == 4
    assert card["training_mpp"] == 0.25
    segmenter = NucleiSegmenter.from_bundle(path)
    assert segmenter.segment(tiles.images[0]).instances.shape == (64, 64)


@pytest.mark.slow
def test_train_cli_nuclei_end_to_end(tmp_path: Path) -> None:
    data = write_monuseg_folder(tmp_path / "data", count=4)
    argv = ["nuclei", "--data", str(data), "--out", str(tmp_path / "run"), "--folds", "2",
            "--final", "--base-filters", "2", "--depth", "1", "--crop-size", "32",
            "--batch-size", "2", "--steps-per-epoch", "1", "--epochs", "1",
            "--mask-instances", "split"]  # fmt: skip
    assert train_main(argv) == 0
    assert (tmp_path / "run" / "cv.json").exists()
    cv = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert cv["config"]["mask_instances"] == "split"
    assert (tmp_path / "run" / "final" / "model.keras").exists()


@pytest.mark.slow
def test_warm_restart_continues_each_model_from_its_namesake(tmp_path: Path) -> None:
    tiles = synthetic_tiles(4)
    first = NucleiTrainConfig(**TINY)
    cross_validate(tiles, first, tmp_path / "first", n_folds=2)
    train_final(tiles, first, tmp_path / "first" / "final")
    more = NucleiTrainConfig(**{**TINY, "epochs": 2}, init_from=str(tmp_path / "first"))
    summary = cross_validate(tiles, more, tmp_path / "more", n_folds=2)
    # 2 steps from the first run, then 2 epochs x 2 steps of the restart.
    assert [fold["steps_trained"] for fold in summary["fold_means"]] == [6, 6]
    assert summary["config"]["init_from"] == str(tmp_path / "first")
    model, info = train_final(tiles, more, tmp_path / "more" / "final")
    assert info["steps_before"] == 2
    assert info["warm_restart_from"].endswith("first/final/backup/latest.weights.h5")
    assert steps_trained(tmp_path / "more" / "final") == 6
    path = ship_bundle(model, tiles, more, info, summary, models_dir=tmp_path / "models")
    card = json.loads(path.with_suffix(".json").read_text())
    assert "warm restart" in card["trained_from"]
    assert "[6, 6] steps each, the shipped model 6 steps" in card["status"]
    # With a zero learning rate the restarted model keeps exactly the source's trainable
    # weights (batch-norm statistics still move).
    frozen = NucleiTrainConfig(**{**TINY, "learning_rate": 0.0}, init_from=str(tmp_path / "first"))
    kept, _ = train_model(*stack_targets(tiles), frozen, tmp_path / "frozen" / "final")
    source = keras.saving.load_model(tmp_path / "first" / "final" / "model.keras", compile=False)
    pairs = zip(kept.trainable_weights, source.trainable_weights, strict=True)
    for restarted, original in pairs:
        np.testing.assert_array_equal(restarted.numpy(), original.numpy())


def test_warm_restart_needs_the_source_run_model(tmp_path: Path) -> None:
    config = NucleiTrainConfig(**TINY, init_from=str(tmp_path / "missing"))
    assert init_weights_path(NucleiTrainConfig(**TINY), tmp_path / "fold_0") is None
    with pytest.raises(ConfigError, match=r"no finished model 'fold_0' at .*missing/fold_0"):
        init_weights_path(config, tmp_path / "fold_0")


def test_warm_restart_refuses_a_source_killed_mid_training(tmp_path: Path) -> None:
    backup = tmp_path / "first" / "fold_0" / "backup"
    backup.mkdir(parents=True)
    (backup / "latest.weights.h5").write_bytes(b"")
    config = NucleiTrainConfig(**TINY, init_from=str(tmp_path / "first"))
    with pytest.raises(ConfigError, match=r"needs latest.weights.h5 and metrics.json or final"):
        init_weights_path(config, tmp_path / "more" / "fold_0")


def test_train_cli_rejects_unknown_mask_instances(tmp_path: Path, capsys) -> None:
    argv = ["nuclei", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
            "--mask-instances", "polygons"]  # fmt: skip
    with pytest.raises(SystemExit):
        train_main(argv)
    assert "invalid choice: 'polygons'" in capsys.readouterr().err


def test_train_cli_ship_without_final_model_fails(tmp_path: Path) -> None:
    data = write_monuseg_folder(tmp_path / "data", count=2)
    argv = ["nuclei", "--data", str(data), "--out", str(tmp_path / "run"), "--ship"]
    assert train_main(argv) == 2


def test_status_line_says_which_goal_is_met() -> None:
    from utils.training.nuclei_final import _status

    metric = {"sd": 0.01, "n": 3}
    summary = {
        "best": {"dice": {"mean": 0.9, **metric}, "aji": {"mean": 0.9, **metric}},
        "cross_fitted": {"dice": {"mean": 0.81, **metric}, "aji": {"mean": 0.52, **metric}},
        "fold_means": [{"steps_trained": 2400}],
    }
    line = _status(summary, NucleiTrainConfig(steps_per_epoch=60), {"epochs_run": 40})
    assert line.startswith("Below the issue's goals")
    assert "dice 0.810 (goal >= 0.80, met)" in line and "aji 0.520 (goal >= 0.60, not met)" in line
    assert "[2400]" in line and "2400 steps" in line
    assert line.endswith("more training is the first thing to try.")


def test_status_line_flags_a_goal_met_within_the_fold_spread() -> None:
    from utils.training.nuclei_final import _status

    summary = {
        "best": {},
        "cross_fitted": {
            "dice": {"mean": 0.816, "sd": 0.010, "n": 3},
            "aji": {"mean": 0.603, "sd": 0.026, "n": 3},
        },
        "fold_means": [{"steps_trained": 7200}],
    }
    line = _status(summary, NucleiTrainConfig(steps_per_epoch=60), {"epochs_run": 120})
    assert line.startswith("Meets the issue's goals")
    assert "dice 0.816 (goal >= 0.80, met)" in line
    assert "aji 0.603 (goal >= 0.60, met, by less than one fold sd)" in line
    assert line.endswith("on a shared CPU.")


def test_card_limitations_name_the_ground_truth_the_cv_used() -> None:
    from utils.training.nuclei_final import limitations

    merged = " ".join(limitations(NucleiTrainConfig()))
    split = " ".join(limitations(NucleiTrainConfig(mask_instances="split")))
    assert "connected components" in merged and "pseudo-instances" not in merged
    assert "pseudo-instances" in split and "distance-transform necks" in split


def test_config_rejects_an_unknown_mask_instances_mode() -> None:
    from utils.errors import ConfigError

    with pytest.raises(ConfigError, match="mask_instances must be one of components, split"):
        NucleiTrainConfig(mask_instances="polygons")
