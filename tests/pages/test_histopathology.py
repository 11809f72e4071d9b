"""AppTest tests of the Histopathology page (``pages/2_Histopathology.py``).

The page runs on a tiny untrained RGB tile classifier (a pipeline fixture) and small
synthetic pyramidal TIFFs uploaded through the real file_uploader widget.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import helpers.histopathology as histo

ROOT = Path(__file__).resolve().parent.parent.parent
PAGE_PATH = str(ROOT / "pages" / "2_Histopathology.py")
TIMEOUT = 120


@pytest.fixture(autouse=True)
def use_test_models(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(histo, "MODELS_DIR", models_dir)


def _upload(path: Path) -> AppTest:
    app = AppTest.from_file(PAGE_PATH, default_timeout=TIMEOUT).run()
    if app.radio:  # the shared slide is offered first when the datasets are here
        app.radio[0].set_value("upload").run()
    app.file_uploader[0].set_value((path.name, path.read_bytes(), "image/tiff")).run()
    return app


def _widget(widgets, label: str):
    return next(widget for widget in widgets if widget.label == label)


def _texts(app: AppTest) -> str:
    return "\n".join(
        str(element.value)
        for kind in ("info", "error", "caption")
        for element in getattr(app, kind)
    )


def test_uploaded_slide_shows_heatmap_detections_and_regions(synthetic_slide: Path) -> None:
    app = _upload(synthetic_slide)
    assert not app.exception
    assert "nuclei model (nuclei_segmenter) is not installed" in _texts(app)
    assert any("not a diagnosis" in warning.value for warning in app.warning)
    _widget(app.slider, "Detection threshold").set_value(0.05).run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert len(app.image) == 2  # heatmap overlay and detections
    assert [metric.label for metric in app.metric][:3] == [
        "Tissue",
        "Regions",
        "Burden (% of tissue)",
    ]
    assert int(app.metric[1].value) >= 1
    regions = app.dataframe[0].value
    assert regions["area (mm²)"].sum() > 0
    assert "nuclei view needs the nuclei model" in _texts(app)
    # A display change reuses the analysis: no button press, same result shown.
    _widget(app.slider, "Heatmap opacity").set_value(0.9).run()
    assert len(app.image) == 2 and not app.exception


@pytest.mark.slow  # the no-mpp error is also covered by the reader and CLI tests
def test_slide_without_mpp_asks_for_it_then_runs(slide_without_mpp: Path) -> None:
    app = _upload(slide_without_mpp)
    app.button[0].click().run()
    assert not app.exception
    assert any("--mpp" in error.value for error in app.error)
    _widget(app.number_input, "Microns per pixel (0: from the file)").set_value(0.5).run()
    app.button[0].click().run()
    assert not app.error and not app.exception
    assert len(app.image) == 2


def test_blank_slide_says_no_tissue(blank_slide: Path) -> None:
    app = _upload(blank_slide)
    app.button[0].click().run()
    assert any("No tissue found" in error.value for error in app.error)
    assert not app.image


@pytest.mark.slow  # nuclei_view and its morphometry are also covered by the helper tests
def test_nuclei_model_gives_three_maps_and_the_region_morphometry(
    synthetic_slide: Path, nuclei_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(histo, "MODELS_DIR", nuclei_models_dir)
    app = _upload(synthetic_slide)
    assert "not installed" not in _texts(app)
    assert _widget(app.selectbox, "Model").value.kind == "nuclei"
    _widget(app.slider, "Detection threshold").set_value(0.05).run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert len(_widget(app.selectbox, "Heatmap").options) == 3
    _widget(app.selectbox, "Heatmap").set_value("pleomorphism").run()
    assert not app.exception
    assert int(app.metric[1].value) >= 1
    # Heatmap, detections, and the selected region's nuclei overlay.
    assert len(app.image) == 3
    assert "Region 1: nuclei at" in app.image[2].proto.imgs[0].caption
    morphometry = app.dataframe[1].value
    assert {"area", "eccentricity", "mean_hematoxylin"} <= set(morphometry.columns)
