from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.crash import CrashAt
from utils.train import main
from utils.training import classification


def test_missing_dataset_folder_exits_2_with_message(tmp_path: Path, capsys) -> None:
    code = main(["segment", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert code == 2
    assert "nowhere" in capsys.readouterr().err


def test_missing_arrays_cache_exits_2(tmp_path: Path, capsys) -> None:
    code = main(["segment", "--arrays", str(tmp_path / "x.npz"), "--out", str(tmp_path / "run")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_unknown_architecture_exits_2(tmp_path: Path, capsys, tiny_arrays_path: Path) -> None:
    code = main(
        [
            "segment",
            "--arrays",
            str(tiny_arrays_path),
            "--arch",
            "segnet",
            "--folds",
            "2",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    assert "attention_resunet" in capsys.readouterr().err


def test_data_and_arrays_are_mutually_exclusive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["segment", "--data", "a", "--arrays", "b.npz", "--out", str(tmp_path)])


@pytest.fixture
def tiny_arrays_path(tmp_path: Path) -> Path:
    import numpy as np

    from utils.training.arrays import TrainingArrays

    count = 8
    arrays = TrainingArrays(
        images=np.zeros((count, 32, 32, 1), np.uint8),
        masks=np.zeros((count, 32, 32, 1), np.uint8),
        labels=["benign"] * count,
        groups=[str(i) for i in range(count)],
        sources=[str(i) for i in range(count)],
        datasets=["synthetic"] * count,
    )
    path = tmp_path / "tiny.npz"
    arrays.save(path)
    return path


def test_segment_loss_options_reach_the_configuration(
    tiny_arrays_path: Path, tmp_path: Path, monkeypatch
) -> None:
    from utils.training import segmentation

    seen = {}

    def record(arrays, config, out, **kwargs):
        seen["config"], seen["kwargs"] = config, kwargs
        return {"summary": {}}

    monkeypatch.setattr(segmentation, "cross_validate_segmenter", record)
    options = ["--loss", "dice_bce_presence", "--presence-weight", "0.3"]
    options += ["--augment", "contrast_range=0.6,1.4", "--augment", "elastic_probability=0"]
    command = ["segment", "--arrays", str(tiny_arrays_path), "--folds", "2", *options]
    command += ["--normal-oversample", "2"]
    assert main([*command, "--out", str(tmp_path / "run")]) == 0
    config = seen["config"]
    assert (config.loss, config.presence_weight, config.normal_oversample) == (
        "dice_bce_presence",
        0.3,
        2,
    )
    assert seen["kwargs"]["split"] == "grouped"
    assert config.augment.contrast_range == (0.6, 1.4)
    assert config.augment.elastic_probability == 0.0
    assert config.augment.brightness_delta == 0.1  # untouched settings keep their defaults
    assert config.boundary_weight == 1.0

    boundary = ["--loss", "dice_bce_boundary", "--boundary-weight", "0.4"]
    assert main([*command, *boundary, "--out", str(tmp_path / "run2")]) == 0
    assert (seen["config"].loss, seen["config"].boundary_weight) == ("dice_bce_boundary", 0.4)


def test_segment_with_a_bad_augment_setting_exits_2_before_reading_data(
    tmp_path: Path, capsys
) -> None:
    command = ["segment", "--arrays", str(tmp_path / "absent.npz"), "--folds", "2"]
    command += ["--augment", "contrast=0.5", "--out", str(tmp_path / "run")]
    assert main(command) == 2
    assert "'contrast' is not an augmentation setting; valid names are" in capsys.readouterr().err


# ----------------------------------------------------------------------------- classify


def test_classify_killed_mid_epoch_resumes_with_the_same_command(
    tiny_arrays_path: Path, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "run"
    # 8 images in batches of 3: 3 steps per epoch. The cache holds masks: ignored.
    command = [
        "classify",
        "--arrays",
        str(tiny_arrays_path),
        "--arch",
        "compact_cnn",
        "--final",
        "--epochs",
        "3",
        "--batch-size",
        "3",
        "--backup-every-steps",
        "1",
        "--out",
        str(out),
    ]
    original = classification.standard_callbacks
    monkeypatch.setattr(
        classification,
        "standard_callbacks",
        lambda *args, **kwargs: [*original(*args, **kwargs), CrashAt(1, 1)],
    )
    with pytest.raises(KeyboardInterrupt):
        main(command)
    state = json.loads((out / "final" / "backup" / "training_metadata.json").read_text())
    assert state == {"epoch": 1, "batch": 1}  # saved after batch 2 of epoch 2
    assert not (out / "final" / "model.keras").exists()

    monkeypatch.setattr(classification, "standard_callbacks", original)
    assert main(command) == 0
    epochs = [line.split(",")[0] for line in (out / "final" / "history.csv").read_text().split()]
    assert epochs == ["epoch", "0", "1", "2"]  # appended after the resume, not restarted
    card = json.loads((out / "final" / "final.json").read_text())
    assert card["epochs_run"] == 3
    assert card["temperature"] == 1.0  # no cv.json to take it from
    assert card["input_shape"] == [32, 32, 1]  # taken from the cache
    assert (out / "final" / "model.keras").exists()


def test_classify_unknown_architecture_exits_2(
    tiny_arrays_path: Path, tmp_path: Path, capsys
) -> None:
    code = main(
        ["classify", "--arrays", str(tiny_arrays_path), "--arch", "alexnet", "--out", str(tmp_path)]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "Unknown classifier architecture 'alexnet'" in error
    assert "efficientnetb0" in error


def test_classify_missing_weights_file_exits_2(
    tiny_arrays_path: Path, tmp_path: Path, capsys
) -> None:
    missing = tmp_path / "missing.weights.h5"
    code = main(
        [
            "classify",
            "--arrays",
            str(tiny_arrays_path),
            "--weights",
            str(missing),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    assert f"Weights file not found: {missing}" in capsys.readouterr().err


def test_classify_missing_dataset_folder_exits_2(tmp_path: Path, capsys) -> None:
    code = main(["classify", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert code == 2
    assert "nowhere" in capsys.readouterr().err


def test_classify_image_size_unlike_the_cache_exits_2(
    tiny_arrays_path: Path, tmp_path: Path, capsys
) -> None:
    command = ["classify", "--arrays", str(tiny_arrays_path), "--image-size", "64", "--final"]
    assert main([*command, "--out", str(tmp_path / "run")]) == 2
    assert "configured for (64, 64, 1)" in capsys.readouterr().err


def test_classify_options_reach_the_configuration(tmp_path: Path) -> None:
    from utils.train import build_parser

    args = build_parser().parse_args(
        [
            "classify",
            "--data",
            "d",
            "--out",
            str(tmp_path),
            "--no-class-weighting",
            "--head-epochs",
            "2",
            "--weights",
            "imagenet",
            "--no-tta",
            "--mixed-precision",
        ]
    )
    assert args.class_weighting is False
    assert args.head_epochs == 2
    assert args.weights == "imagenet"
    assert args.evaluate_tta is False
    assert args.mixed_precision is True


def _write_cv(run: Path) -> None:
    folds = [
        {"fold": k, "n_train": 8, "n_val": 2, "epochs_run": 3, "dice_mean": d,
         "threshold": 0.4, "per_class": {"benign": {"dice": d}}}
        for k, d in enumerate((0.6, 0.7))
    ]  # fmt: skip
    summary = {"dice_mean": {"mean": 0.65, "sd": 0.07, "n": 2}}
    cv = {"n_folds": 2, "folds": folds, "summary": summary, "config": {"image_size": 96}}
    run.mkdir(parents=True)
    (run / "cv.json").write_text(json.dumps(cv))


def test_attach_cv_records_the_run_in_the_card(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "seg.json").write_text(json.dumps({"name": "seg", "intended_use": "x"}))
    _write_cv(tmp_path / "run")
    argv = ["attach-cv", "--out", str(tmp_path / "run"), "--bundle", "seg", "--key",
            "cv_reduced", "--note", "96 px, 8 epochs", "--models-dir", str(models)]  # fmt: skip
    assert main(argv) == 0
    card = json.loads((models / "seg.json").read_text())
    section = card["cv_reduced"]
    assert section["note"] == "96 px, 8 epochs" and section["n_folds"] == 2
    assert section["summary"]["dice_mean"]["mean"] == 0.65
    assert [fold["dice_mean"] for fold in section["per_fold"]] == [0.6, 0.7]
    assert "per_class" not in section["per_fold"][0]
    assert "96 px, 8 epochs" in (models / "seg.md").read_text()


def test_attach_cv_without_a_cv_run_exits_2(tmp_path: Path, capsys) -> None:
    argv = ["attach-cv", "--out", str(tmp_path / "run"), "--bundle", "seg", "--note", "n"]
    assert main(argv) == 2
    assert "cv.json is missing" in capsys.readouterr().err


def test_attach_cv_to_a_missing_bundle_exits_2(tmp_path: Path, capsys) -> None:
    _write_cv(tmp_path / "run")
    argv = ["attach-cv", "--out", str(tmp_path / "run"), "--bundle", "nope", "--note", "n",
            "--models-dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "No model card nope.json" in capsys.readouterr().err


def test_mask_guided_refuses_the_dataset_split(tmp_path: Path, capsys) -> None:
    command = ["classify", "--arrays", str(tmp_path / "x.npz"), "--out", str(tmp_path / "run")]
    command += ["--mask-guided-from", str(tmp_path / "seg"), "--folds", "2", "--split", "dataset"]
    assert main(command) == 2
    assert "--split dataset cannot be combined with --mask-guided-from" in capsys.readouterr().err


def test_an_unknown_split_is_refused_by_the_parser(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["segment", "--data", "a", "--split", "hospital", "--out", str(tmp_path)])
    assert "invalid choice: 'hospital'" in capsys.readouterr().err
