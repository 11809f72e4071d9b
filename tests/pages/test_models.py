"""AppTest tests of the Models page (``pages/5_Models.py``) on tiny bundles in tmp_path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import helpers.model_cards
from tests.helpers.test_model_cards import shipped_card
from tests.utils.inference.test_bundle import save_classifier_bundle, save_segmenter_bundle

ROOT = Path(__file__).resolve().parent.parent.parent
APP_PATH = str(ROOT / "app.py")
PAGE_PATH = str(ROOT / "pages" / "5_Models.py")
TIMEOUT = 60


def _page(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setattr(helpers.model_cards, "MODELS_DIR", models_dir)
    return AppTest.from_file(PAGE_PATH, default_timeout=TIMEOUT).run()


def _texts(app: AppTest) -> str:
    parts = [
        element.value
        for kind in ("markdown", "caption", "info", "warning", "error")
        for element in getattr(app, kind)
    ]
    parts += [table.value.to_string() for table in app.table]
    parts += [frame.value.to_string() for frame in app.dataframe]
    return "\n".join(str(part) for part in parts)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    save_segmenter_bundle(tmp_path, limitations=["Tiny test model: knows nothing."])
    save_classifier_bundle(tmp_path, **shipped_card())
    return tmp_path


def test_every_bundle_gets_a_tab_with_its_card_plots_and_weights(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _page(models_dir, monkeypatch)
    assert not app.exception and not app.error
    assert app.title[0].value == "Models"
    assert any("not a diagnosis" in warning.value for warning in app.warning)
    assert [tab.label for tab in app.tabs] == ["tiny_classifier", "tiny_segmenter"]
    overview = app.dataframe[0].value
    assert list(overview["bundle"]) == ["tiny_classifier", "tiny_segmenter"]

    classifier, segmenter = app.tabs
    # The classifier records ROC, calibration and a confusion matrix: three plots.
    assert len(classifier.get("plotly_chart")) == 3
    assert not segmenter.get("plotly_chart")
    segmenter_infos = [info.value for info in segmenter.info]
    for title in ("ROC curves", "Reliability (calibration)", "Confusion matrix"):
        assert f"{title}: not recorded in this card" in segmenter_infos
    assert "Cross-validation metrics: not recorded in this card." in segmenter_infos

    texts = _texts(app)
    for name in ("tiny_classifier", "tiny_segmenter"):
        digest = hashlib.sha256((models_dir / f"{name}.keras").read_bytes()).hexdigest()
        assert digest in texts
    assert "0.750 ± 0.071" in texts  # the CV summary
    assert "Tiny test model: knows nothing." in texts  # limitations
    assert "From the card's cv_pooled.plots.roc" in texts
    assert "Predictions: every image predicted by the fold model" in texts
    assert "not loaded by the Analyse page" in texts


def test_an_invalid_card_is_shown_with_the_reason(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = json.loads((models_dir / "tiny_classifier.json").read_text())
    card["cv_pooled"]["plots"]["roc"] = "excellent"
    del card["class_names"]
    (models_dir / "tiny_classifier.json").write_text(json.dumps(card))
    app = _page(models_dir, monkeypatch)
    assert not app.exception
    assert "lacks the keys class_names" in app.error[0].value
    assert any(
        "ROC curves: cannot be plotted: roc must map" in warning.value for warning in app.warning
    )


def test_a_corrupt_card_shows_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.keras").write_bytes(b"x")
    (tmp_path / "bad.json").write_text("{")
    app = _page(tmp_path, monkeypatch)
    assert not app.exception
    assert "not valid JSON" in app.error[0].value


def test_no_bundle_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _page(tmp_path, monkeypatch)
    assert not app.exception and not app.error
    assert "No model bundle" in app.info[0].value


def test_shipped_bundles_through_the_navigation() -> None:
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT).run()
    app.switch_page("pages/5_Models.py").run()
    assert not app.exception and not app.error
    assert "ultrasound_segmenter" in [tab.label for tab in app.tabs]
    assert "Analyse page: lesion segmentation" in _texts(app)
    assert any("cross-dataset test" in warning.value for warning in app.warning)
    # The shipped classifier's unfamiliar-image flag and its CV check are shown.
    assert "**Unfamiliar-image flag**" in _texts(app)
    # The shipped segmenter's card compares its descriptors with the expert outlines'.
    assert "**Descriptors read from the model's outline**" in _texts(app)
    assert "Boundary roughness" in _texts(app)
