"""AppTest tests of the Analyse page (``pages/1_Analyse.py``).

AppTest 1.67 drives ``st.file_uploader`` (``set_value((name, bytes, mime))``), so uploads
are tested through the real widget, with no test seam in the page. The first test pays
for loading the segmenter (cached per process by ``st.cache_resource``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

import helpers.analysis
import helpers.models
from helpers.analysis import ANALYSE_MAX_PIXELS, AnalysisResult, inference_count
from tests.utils.inference.test_bundle import save_classifier_bundle, write_busi_folder
from tests.utils.pdf_text import image_count, page_count, pdf_text
from tests.utils.test_image_io import PATIENT_ID, PATIENT_NAME, make_dicom
from utils.explain import CamExplainer
from utils.inference.classifier import LesionClassifier
from utils.phantoms import generate_phantom

ROOT = Path(__file__).resolve().parent.parent.parent
APP_PATH = str(ROOT / "app.py")
PAGE_PATH = str(ROOT / "pages" / "1_Analyse.py")
TIMEOUT = 120
NO_CLASSIFIER = "No classifier is installed yet"
Deferred = dict[str, tuple[Callable[[], bytes], str | None]]
HUGE_SIDE = int(ANALYSE_MAX_PIXELS**0.5) + 100  # just over the page's pixel limit


@pytest.fixture
def shipped_classifier() -> LesionClassifier:
    if not helpers.models.classifier_installed():
        pytest.fail("saved_models/ultrasound_classifier is missing")
    return helpers.models.load_classifier()


@pytest.fixture(scope="module")
def phantom_image() -> np.ndarray:
    return generate_phantom("malignant_irregular", size=(240, 300), seed=5).image


def _page() -> AppTest:
    return AppTest.from_file(PAGE_PATH, default_timeout=TIMEOUT)


def _upload(data: bytes, name: str) -> AppTest:
    app = _page().run()
    app.radio[0].set_value("upload").run()
    app.file_uploader[0].set_value((name, data, "application/octet-stream")).run()
    return app


def _widget(widgets, label: str):
    return next(widget for widget in widgets if widget.label == label)


def _texts(app: AppTest) -> str:
    """Every piece of text the page shows, for searching."""
    parts = [
        element.value
        for kind in ("markdown", "caption", "info", "error")
        for element in getattr(app, kind)
    ]
    parts += [str(table.value) for table in app.dataframe]
    return "\n".join(str(part) for part in parts)


# ----------------------------------------------------------------------------- happy path


def test_built_in_example_shows_every_panel_via_the_navigation() -> None:
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT).run()
    app.switch_page("pages/1_Analyse.py").run()
    assert not app.exception
    assert not app.error
    assert app.title[0].value == "Analyse an ultrasound image"
    assert any("not a diagnosis" in warning.value for warning in app.warning)
    # Four panels: original, mask overlay, segmenter CAM, and the classifier placeholder.
    assert len(app.image) == 3
    assert any(NO_CLASSIFIER in info.value for info in app.info)
    measurements = app.dataframe[0].value
    assert measurements["name"].iloc[0] == "Area"
    assert measurements["unit"].iloc[0] == "mm²"  # the examples' spacing is known
    assert "Total" in app.table[0].value.to_string()  # the timings expander


def test_only_the_steps_a_widget_affects_are_recomputed() -> None:
    app = _page().run()
    runs = inference_count()
    _widget(app.slider, "Mask opacity").set_value(0.9).run()
    app.toggle[0].set_value(True).run()
    assert not app.exception
    assert inference_count() == runs  # display only: nothing recomputed
    assert app.image[0].proto.imgs[0].caption == "Original (CLAHE)"
    _widget(app.slider, "Segmentation threshold").set_value(0.65).run()
    assert inference_count() == runs + 1  # the segmentation, not the CAM
    _widget(app.selectbox, "CAM method").set_value("gradcam++").run()
    assert inference_count() == runs + 2  # the CAM, not the segmentation
    assert not app.exception and not app.error


# ----------------------------------------------------------------------------- uploads


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.mark.parametrize(
    ("name", "make_bytes", "message"),
    [
        ("truncated.png", lambda image: _png(image)[:200], "damaged or incomplete PNG"),
        ("notes.png", lambda image: b"Patient history: none.\n" * 20, "not a supported image"),
        ("empty.png", lambda image: b"", "is empty"),
        (
            "huge.png",
            lambda image: _png(np.zeros((HUGE_SIDE, HUGE_SIDE), np.uint8)),
            "million pixels",
        ),
    ],
    ids=["corrupt", "not-an-image", "empty", "huge"],
)
def test_bad_uploads_show_an_error_and_the_page_keeps_working(
    phantom_image: np.ndarray, name: str, make_bytes, message: str
) -> None:
    app = _upload(make_bytes(phantom_image), name)
    assert not app.exception
    assert len(app.error) == 1
    assert message in app.error[0].value
    assert not app.image
    # Still usable: back to an example, the analysis shows again.
    app.radio[0].set_value("example").run()
    assert not app.exception and not app.error and len(app.image) == 3


def test_16_bit_tiff_upload_is_analysed_in_pixels(phantom_image: np.ndarray) -> None:
    sixteen_bit = phantom_image.astype(np.uint16) * 257
    app = _upload(cv2.imencode(".tiff", sixteen_bit)[1].tobytes(), "scan.tiff")
    assert not app.exception and not app.error
    assert len(app.image) == 3
    assert "measurements are in pixels" in _texts(app)
    assert app.dataframe[0].value["unit"].iloc[0] == "px²"


def test_dicom_upload_measures_in_mm_and_shows_no_patient_identifier(
    phantom_image: np.ndarray,
) -> None:
    app = _upload(make_dicom(phantom_image, PixelSpacing=[0.1, 0.1]), "study.dcm")
    assert not app.exception and not app.error
    texts = _texts(app)
    assert "from the DICOM header" in texts
    assert PATIENT_NAME not in texts and PATIENT_ID not in texts
    assert app.dataframe[0].value["unit"].iloc[0] == "mm²"


# ----------------------------------------------------------------------------- classifier


@pytest.fixture
def tiny_classifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LesionClassifier]:
    """Pretend a classifier is installed: a tiny random one, through the page's loaders."""
    classifier = LesionClassifier.from_bundle(save_classifier_bundle(tmp_path))
    explainer = CamExplainer(classifier.model)
    monkeypatch.setattr(helpers.models, "load_classifier", lambda *_args: classifier)
    monkeypatch.setattr(helpers.models, "load_classifier_explainer", lambda *_args: explainer)
    yield classifier
    helpers.models.clear_analysis_caches()  # drop the tiny model's outputs


def test_with_a_classifier_the_page_shows_probabilities_and_its_cam(
    tiny_classifier: LesionClassifier,
) -> None:
    app = _page().run()
    assert not app.exception and not app.error
    assert len(app.image) == 4
    assert not any(NO_CLASSIFIER in info.value for info in app.info)
    assert app.get("plotly_chart")
    assert "Uncertainty" in app.metric[0].label
    target = _widget(app.selectbox, "Classifier CAM target class")
    target.set_value(2).run()
    assert not app.exception
    assert app.image[2].proto.imgs[0].caption.endswith(tiny_classifier.class_names[2])


def test_a_model_disagreement_is_shown_as_a_warning(
    tiny_classifier: LesionClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []

    def disagreeing(result: AnalysisResult) -> str:
        seen.append(result)
        return "The models disagree: test caution"

    monkeypatch.setattr(helpers.analysis, "model_disagreement", disagreeing)
    app = _page().run()
    assert not app.exception and not app.error
    assert any("The models disagree: test caution" in w.value for w in app.warning)
    assert seen and seen[-1].classification is not None


def test_the_shipped_classifier_gives_four_panels_and_calibrated_probabilities(
    shipped_classifier: LesionClassifier,
) -> None:
    app = _page().run()
    assert not app.exception and not app.error
    assert len(app.image) == 4
    assert not any(NO_CLASSIFIER in info.value for info in app.info)
    assert app.get("plotly_chart")
    assert app.image[2].proto.imgs[0].caption.startswith("Classifier")
    # The shipped card records a leave-one-dataset-out run: the reader is told.
    assert any("cross-dataset test" in caption.value for caption in app.caption)
    # The shipped classifier has a familiarity reference: the page says how the image fits.
    notes = [*(c.value for c in app.caption), *(w.value for w in app.warning)]
    assert any(note.startswith(("Familiar image", "Unfamiliar image")) for note in notes)
    # Under the measurements: which descriptors lose their meaning on the model's outline.
    assert any("The model's outline is smoother" in caption.value for caption in app.caption)
    tables = " ".join(frame.value.to_string() for frame in app.dataframe)
    assert "Boundary roughness *" in tables and "Depth/width ratio *" not in tables


# ----------------------------------------------------------------------------- datasets


def test_dataset_images_are_offered_when_a_datasets_folder_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_busi_folder(tmp_path / "busi")
    monkeypatch.setenv("TUMORLENS_DATA_DIR", str(tmp_path))
    app = _page().run()
    app.radio[0].set_value("dataset").run()
    assert not app.exception and not app.error
    assert len(app.image) == 3
    captions = [caption.value for caption in app.caption]
    assert any("Reference label: **benign**" in caption for caption in captions)
    assert any("Dice with the reference mask" in caption for caption in captions)


def test_no_dataset_source_without_a_datasets_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUMORLENS_DATA_DIR", str(tmp_path / "nowhere"))
    app = _page().run()
    assert app.radio[0].options == ["Built-in example", "Upload"]


# ----------------------------------------------------------------------------- PDF report


@pytest.fixture
def deferred_downloads(monkeypatch: pytest.MonkeyPatch) -> Deferred:
    """The callables and file names of deferred download buttons, by file id.

    AppTest's runtime is a mock discarded after each run, so they are captured as added.
    """
    captured: Deferred = {}
    original = MediaFileManager.add_deferred

    def spy(self, data_callable, *args, **kwargs):
        file_id = original(self, data_callable, *args, **kwargs)
        captured[file_id] = (data_callable, kwargs.get("file_name"))
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", spy)
    return captured


def _download_report(app: AppTest, deferred: Deferred) -> bytes:
    """What clicking the page's report button downloads: its deferred PDF builder's output."""
    (button,) = app.get("download_button")
    assert button.proto.label == "Download one-page PDF report"
    build, file_name = deferred[button.proto.deferred_file_id]
    assert re.fullmatch(r"tumorlens_report_\d{8}_\d{6}Z\.pdf", file_name)
    return build()


def test_the_pdf_report_button_gives_a_one_page_report_with_the_case_note(
    deferred_downloads: Deferred,
) -> None:
    app = _page().run()
    app.text_area[0].input("Left breast, 2 o'clock; reader: Dr Ødegård.").run()
    assert not app.exception and not app.error
    pdf = _download_report(app, deferred_downloads)
    assert page_count(pdf) == 1
    assert image_count(pdf) == 3  # no classifier: its CAM is a labelled empty box
    text = " ".join(pdf_text(pdf).split())
    assert "decision support, not a diagnosis" in text
    assert "Left breast, 2 o'clock; reader: Dr Ødegård." in text
    assert "No classifier is installed" in text
    assert "ultrasound_segmenter" in text and "Area" in text


def test_the_pdf_report_has_the_probabilities_when_a_classifier_is_installed(
    tiny_classifier: LesionClassifier, deferred_downloads: Deferred
) -> None:
    app = _page().run()
    assert not app.exception and not app.error
    pdf = _download_report(app, deferred_downloads)
    text = " ".join(pdf_text(pdf).split())
    assert page_count(pdf) == 1 and image_count(pdf) == 4
    assert "Predicted:" in text and "calibrated" in text
    assert all(name in text for name in tiny_classifier.class_names)


def test_the_classifier_picker_runs_the_chosen_installed_classifier(
    shipped_classifier: LesionClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second installed classifier (a tiny one in its own folder) beside the shipped one.
    save_classifier_bundle(tmp_path, "aaa_variant", title="Tiny variant", status="test bundle")
    variant = LesionClassifier.from_bundle("aaa_variant", models_dir=tmp_path)
    default = helpers.models.DEFAULT_CLASSIFIER_BUNDLE
    shipped = {
        name: getattr(helpers.models, name)
        for name in ("classifier_caption", "load_classifier", "load_classifier_explainer")
    }

    def caption(name: str) -> tuple[str, str]:
        return shipped["classifier_caption"](name, *([tmp_path] if name == "aaa_variant" else []))

    def load(name: str = default) -> LesionClassifier | None:
        return variant if name == "aaa_variant" else shipped["load_classifier"](name)

    def explainer(name: str = default) -> CamExplainer | None:
        if name == "aaa_variant":
            return CamExplainer(variant.model)
        return shipped["load_classifier_explainer"](name)

    monkeypatch.setattr(
        helpers.models, "ultrasound_classifier_bundles", lambda: [default, "aaa_variant"]
    )
    monkeypatch.setattr(helpers.models, "classifier_caption", caption)
    monkeypatch.setattr(helpers.models, "load_classifier", load)
    monkeypatch.setattr(helpers.models, "load_classifier_explainer", explainer)
    app = _page().run()
    picker = next(box for box in app.selectbox if box.label == "Classifier model")
    assert picker.options[0] == caption(default)[0]
    assert picker.options[1] == "Tiny variant"
    picker.set_value("aaa_variant").run()
    assert not app.exception and not app.error
    assert app.get("plotly_chart")
    assert any(widget.value == "test bundle" for widget in app.caption)
    helpers.models.clear_analysis_caches()  # drop the tiny model's outputs


def test_a_very_smooth_upload_is_analysed_with_a_warning(phantom_image: np.ndarray) -> None:
    smooth = cv2.GaussianBlur(phantom_image, (0, 0), 0.03 * phantom_image.shape[1])
    app = _upload(cv2.imencode(".png", smooth)[1].tobytes(), "smooth.png")
    assert not app.exception and not app.error and len(app.image) == 3
    assert any(w.value.startswith("Smooth image") for w in app.warning)
    app.file_uploader[0].set_value(
        ("sharp.png", cv2.imencode(".png", phantom_image)[1].tobytes(), "image/png")
    ).run()
    assert not any(w.value.startswith("Smooth image") for w in app.warning)
