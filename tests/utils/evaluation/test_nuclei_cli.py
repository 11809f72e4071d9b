"""``python -m utils.evaluate nuclei`` on a synthetic MoNuSeg-layout folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.utils.histo.synthetic import write_monuseg_folder
from utils.errors import ConfigError
from utils.evaluate import main
from utils.evaluation.nuclei import evaluate_nuclei_folder
from utils.histo.data import (
    MASK_INSTANCES,
    MASK_SPLIT_INSTANCES,
    XML_INSTANCES,
    load_nuclei_tiles,
)
from utils.model_card import save_model_bundle
from utils.models.nuclei import build_nuclei_model


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nuclei_eval")
    write_monuseg_folder(root / "MoNuSegTestData")
    model = build_nuclei_model(input_shape=(32, 32, 3), base_filters=2, depth=1)
    card = {
        "task": "segmentation",
        "architecture": "nuclei_unet",
        "input_shape": [32, 32, 3],
        "postprocess": {"foreground_threshold": 0.5, "marker_threshold": 0.4},
    }
    save_model_bundle(model, "tiny_nuclei", card, models_dir=root / "models")
    return root


def test_ground_truth_prefers_xml_instances(workspace: Path) -> None:
    tiles = load_nuclei_tiles(workspace / "MoNuSegTestData")
    assert tiles.truth_kinds == [XML_INSTANCES, MASK_INSTANCES, MASK_INSTANCES]
    assert tiles.instances[0].max() == 2  # the XML has 2 polygons
    assert tiles.instances[1].max() == 4  # 4 discs as connected components


def test_split_mask_instances_apply_only_to_tiles_without_xml(workspace: Path) -> None:
    tiles = load_nuclei_tiles(workspace / "MoNuSegTestData", mask_instances="split")
    assert tiles.truth_kinds == [XML_INSTANCES, MASK_SPLIT_INSTANCES, MASK_SPLIT_INSTANCES]
    assert tiles.instances[1].max() == 4  # separate discs stay one nucleus each


def test_unknown_mask_instances_mode_is_rejected(workspace: Path, tmp_path) -> None:
    with pytest.raises(ConfigError, match="mask_instances must be one of components, split"):
        load_nuclei_tiles(workspace / "MoNuSegTestData", mask_instances="polygons")
    with pytest.raises(ConfigError, match="got 'watershed'"):
        evaluate_nuclei_folder(
            workspace / "MoNuSegTestData",
            workspace / "models" / "tiny_nuclei.keras",
            mask_instances="watershed",
        )


def test_evaluate_cli_scores_against_split_instances(workspace: Path, tmp_path) -> None:
    out = tmp_path / "split.json"
    argv = ["nuclei", "--data", str(workspace / "MoNuSegTestData"), "--json", str(out),
            "--model", str(workspace / "models" / "tiny_nuclei.keras"),
            "--mask-instances", "split"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report["by_ground_truth"]) == {XML_INSTANCES, MASK_SPLIT_INSTANCES}


def test_nuclei_report_has_dice_and_aji_per_image_and_mean(workspace: Path, tmp_path) -> None:
    out = tmp_path / "nuclei.json"
    argv = ["nuclei", "--data", str(workspace / "MoNuSegTestData"), "--json", str(out),
            "--model", str(workspace / "models" / "tiny_nuclei.keras")]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 3
    assert 0.0 <= report["dice"] <= 1.0 and 0.0 <= report["aji"] <= 1.0
    assert {row["ground_truth_instances"] for row in report["per_image"]} == {
        XML_INSTANCES,
        MASK_INSTANCES,
    }
    assert set(report["by_ground_truth"]) == {XML_INSTANCES, MASK_INSTANCES}
    assert report["per_image"][0]["source"].endswith(".tif")
    assert "connected components" in report["ground_truth_note"]


def test_bad_folder_and_model_exit_with_2(workspace: Path, tmp_path, capsys) -> None:
    out = tmp_path / "x.json"
    assert main(["nuclei", "--data", str(tmp_path / "nope"), "--json", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
    argv = ["nuclei", "--data", str(workspace / "MoNuSegTestData"), "--json", str(out),
            "--model", str(tmp_path / "missing.keras")]  # fmt: skip
    assert main(argv) == 2
    assert "missing.keras" in capsys.readouterr().err
