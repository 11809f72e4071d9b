from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.utils.inference.test_bundle import save_classifier_bundle, write_busi_folder
from utils.inference.classifier import LesionClassifier
from utils.train import main


@pytest.fixture(scope="module")
def busi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_busi_folder(tmp_path_factory.mktemp("busi"))


def _outside_folder(root: Path) -> Path:
    root.mkdir()
    rng = np.random.default_rng(3)
    for index in range(3):
        rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / f"photo_{index}.png")
    return root


def test_fit_writes_the_reference_and_the_card_and_the_classifier_loads_it(
    busi: Path, tmp_path: Path
) -> None:
    path = save_classifier_bundle(tmp_path, "fam")
    out = tmp_path / "out"
    command = ["familiarity", "--data", str(busi), "--bundle", str(path)]
    assert main([*command, "--n-components", "3", "--quantile", "0.8", "--out", str(out)]) == 0
    sidecar = tmp_path / "fam.familiarity.npz"
    assert sidecar.is_file()
    card = json.loads((tmp_path / "fam.json").read_text())
    section = card["familiarity"]
    assert section["file"] == sidecar.name and section["n_reference"] == 5
    assert section["n_components"] == 3 and section["quantile"] == 0.8
    assert "validation" not in section and "--n-components 3" in section["command"]
    assert json.loads((out / "familiarity.json").read_text()) == section
    assert "familiarity" in (tmp_path / "fam.md").read_text().lower()
    classifier = LesionClassifier.from_bundle(path)
    assert classifier.familiarity.weights_fingerprint == classifier.weights_fingerprint
    assert classifier.familiarity.threshold == pytest.approx(section["threshold"], abs=1e-3)
    # Refitting works although the card already names a reference.
    assert main([*command, "--n-components", "2", "--out", str(out)]) == 0
    assert LesionClassifier.from_bundle(path).familiarity.components.shape[0] == 2


def test_cv_check_reports_held_out_and_outside_flag_rates(busi: Path, tmp_path: Path) -> None:
    data = write_busi_folder(tmp_path / "more")
    run = tmp_path / "cls"
    train = ["classify", "--data", str(busi), "--data", str(data), "--arch", "compact_cnn"]
    train += ["--image-size", "32", "--epochs", "1", "--folds", "2", "--out", str(run)]
    assert main(train) == 0
    bundle = save_classifier_bundle(tmp_path, "cv_fam")
    outside = _outside_folder(tmp_path / "photos")
    command = ["familiarity", "--data", str(busi), "--data", str(data), "--bundle", str(bundle)]
    command += ["--n-components", "2", "--cv-run", str(run), "--outside", str(outside)]
    assert main([*command, "--out", str(tmp_path / "out")]) == 0
    validation = json.loads((tmp_path / "cv_fam.json").read_text())["familiarity"]["validation"]
    assert validation["n_folds"] == 2 and validation["n_images"] == 10
    assert validation["cv_run"] == str(run)
    assert len(validation["held_out_flagged"]["per_fold"]) == 2
    split = validation["held_out_accuracy"]
    assert split["flagged"]["n"] + split["unflagged"]["n"] == 10
    photos = validation["outside"]["photos"]
    assert photos["n"] == 3 and 0.0 <= photos["flagged"]["mean"] <= 1.0
    # Both folders are BUSI-layout, one dataset name: no cross-site pairs to score.
    assert validation["cross_site"] == {}


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--cv-run", "{tmp}/absent"], "cv.json is missing: --cv-run must be a finished"),
        (["--cv-run", "{tmp}", "--outside", "{tmp}/empty"], "holds no images"),
        (["--n-components", "9"], "n_components must be from 1 to 4 for 5 images"),
        (["--quantile", "1.5"], r"quantile must be a number in \(0, 1\); received 1.5"),
    ],
)
def test_bad_options_exit_2_with_the_reason(
    busi: Path, tmp_path: Path, capsys, extra: list[str], match: str
) -> None:
    path = save_classifier_bundle(tmp_path, "bad")
    (tmp_path / "empty").mkdir()
    (tmp_path / "cv.json").write_text(json.dumps({"n_folds": 2, "config": {"arch": "compact_cnn"}}))
    extra = [item.format(tmp=tmp_path) for item in extra]
    command = ["familiarity", "--data", str(busi), "--bundle", str(path), "--n-components", "3"]
    command += extra
    assert main([*command, "--out", str(tmp_path / "out")]) == 2
    assert re.search(match, capsys.readouterr().err)
