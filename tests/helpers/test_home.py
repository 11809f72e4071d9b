from __future__ import annotations

from pathlib import Path

from helpers.home import KNOWN_DATASETS, dataset_status_rows, model_status_rows


def test_model_rows_say_none_installed_for_empty_folder(tmp_path: Path) -> None:
    rows = model_status_rows(tmp_path)
    assert rows == [{"model": "none yet", "status": "no trained model is installed"}]


def test_model_rows_list_keras_files(tmp_path: Path) -> None:
    (tmp_path / "classifier.keras").write_bytes(b"x")
    (tmp_path / "notes.md").write_text("card")
    assert [row["model"] for row in model_status_rows(tmp_path)] == ["classifier"]


def test_dataset_rows_report_found_and_missing(tmp_path: Path) -> None:
    (tmp_path / "busi").mkdir()
    rows = {row["dataset"]: row["status"] for row in dataset_status_rows(tmp_path)}
    assert rows[KNOWN_DATASETS["busi"]] == "found"
    assert rows[KNOWN_DATASETS["bus-bra"]] == "not found"
