from __future__ import annotations

from pathlib import Path

import pytest

from utils.train import main


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
