"""AppTest tests of the Review page (``pages/3_Review.py``).

Each test gets its own SQLite file (``TUMORLENS_REVIEW_DB``) and no datasets folder.
The drawing canvas cannot be drawn on in AppTest (it renders as an unknown element);
the canvas-to-mask path is unit-tested in tests/helpers/test_review.py, and corrected
masks are exercised here through the upload option.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import helpers.models
import helpers.review
from helpers.analysis import example_choices
from tests.utils.inference.test_bundle import save_classifier_bundle, write_busi_folder
from utils.explain import CamExplainer
from utils.inference.classifier import LesionClassifier
from utils.review import ReviewInput, ReviewStore

ROOT = Path(__file__).resolve().parent.parent.parent
PAGE_PATH = str(ROOT / "pages" / "3_Review.py")
TIMEOUT = 120
FIRST_CASE = example_choices()[0]
EXAMPLE_SHAPE = (400, 500)  # every built-in example


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'reviews.sqlite3'}"
    monkeypatch.setenv("TUMORLENS_REVIEW_DB", url)
    monkeypatch.setenv("TUMORLENS_DATA_DIR", str(tmp_path / "no-datasets"))
    return url


def _widget(widgets, label: str):
    return next(widget for widget in widgets if widget.label.startswith(label))


def _page(reviewer: str = "") -> AppTest:
    app = AppTest.from_file(PAGE_PATH, default_timeout=TIMEOUT).run()
    if reviewer:
        app.text_input[0].set_value(reviewer).run()
    return app


def _save(app: AppTest, *, fill: bool = True) -> AppTest:
    """Click "Save review", first choosing a class and BI-RADS category if none is."""
    if fill:
        for label, value in (("Your class", "benign"), ("BI-RADS", "3")):
            if _widget(app.selectbox, label).value is None:
                _widget(app.selectbox, label).set_value(value)
        app.run()
    return _widget(app.button, "Save review").click().run()


def _stored(url: str) -> list:
    store = ReviewStore(url)
    try:
        return store.reviews()
    finally:
        store.close()


def test_a_review_is_saved_with_the_ai_snapshot_and_shown_in_the_history(db_url: str) -> None:
    app = _page("Dr Ada")
    assert not app.exception and not app.error
    assert any("not a diagnosis" in warning.value for warning in app.warning)
    assert len(app.image) == 2  # the image and the AI mask; no classifier installed
    assert any("No classifier is installed" in info.value for info in app.info)
    _widget(app.radio, "Do you agree").set_value("Disagree")
    _widget(app.selectbox, "Your class").set_value("malignant")
    _widget(app.selectbox, "BI-RADS").set_value("4B")
    _widget(app.text_area, "Comment").set_value("Angular margin at 2 o'clock.")
    app = _save(app.run())
    assert not app.exception and not app.error
    assert f"Saved your review of {FIRST_CASE.title} (version 1)" in app.success[0].value

    [review] = _stored(db_url)
    assert (review.case_id, review.reviewer, review.agree) == (FIRST_CASE.key, "Dr Ada", False)
    assert (review.reviewer_class, review.birads) == ("malignant", "4B")
    assert review.comment == "Angular margin at 2 o'clock."
    assert review.ai.segmenter.startswith("ultrasound_segmenter v")
    assert review.ai.image_shape == EXAMPLE_SHAPE and review.ai.mask_area_px > 0
    assert review.ai.classifier is None and review.corrected_mask_png is None

    # The queue marks the case, the form shows the stored review, the history lists it.
    assert app.selectbox[0].format_func(app.selectbox[0].value).startswith("✓ ")
    assert _widget(app.selectbox, "BI-RADS").value == "4B"
    reviews_table, history = app.dataframe[1].value, app.dataframe[2].value
    assert list(reviews_table["reviewer"]) == ["Dr Ada"]
    assert list(history["action"]) == ["create"] and list(history["who"]) == ["Dr Ada"]

    # An edit is version 2, recorded as an update.
    _widget(app.selectbox, "BI-RADS").set_value("5")
    app = _save(app.run())
    assert "(version 2)" in app.success[0].value
    assert list(app.dataframe[2].value["action"]) == ["create", "update"]


def test_saving_without_a_reviewer_name_is_refused(db_url: str) -> None:
    app = _save(_page())
    assert not app.exception
    assert "reviewer name is empty" in app.error[0].value
    assert _stored(db_url) == []


@pytest.mark.slow  # covered fast by the unit tests; this is the page's wiring
def test_reviews_survive_a_restart_of_the_app(db_url: str) -> None:
    _save(_page("Dr Ada"))
    helpers.review._open_store.clear()  # the app restarts: no cached store, no connections
    app = _page("Dr Ada")
    assert app.selectbox[0].format_func(app.selectbox[0].value).startswith("✓ ")
    assert list(app.dataframe[1].value["reviewer"]) == ["Dr Ada"]


def test_saving_without_a_class_or_category_is_refused(db_url: str) -> None:
    app = _save(_page("Dr Ada"), fill=False)
    assert "No class was chosen" in app.error[0].value
    _widget(app.selectbox, "Your class").set_value("benign")
    app = _save(app.run(), fill=False)
    assert "No BI-RADS category was chosen" in app.error[0].value
    assert _stored(db_url) == []


def test_a_corrected_mask_can_be_uploaded(db_url: str) -> None:
    app = _page("Dr Ada")
    _widget(app.radio, "Corrected lesion mask").set_value("upload").run()
    mask = np.zeros(EXAMPLE_SHAPE, np.uint8)
    mask[100:200, 150:300] = 255
    uploader = app.file_uploader[0]
    uploader.set_value(("mask.png", cv2.imencode(".png", mask)[1].tobytes(), "image/png")).run()
    assert not app.error
    app = _save(app)
    assert not app.error
    [review] = _stored(db_url)
    assert np.array_equal(review.corrected_mask, mask > 0)
    # Reopened, the saved mask is offered (and kept) by default.
    assert _widget(app.radio, "Corrected lesion mask").value == "keep"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (cv2.imencode(".png", np.zeros((40, 50), np.uint8))[1].tobytes(), "the image is 500 x 400"),
        (b"not an image at all" * 10, "not a supported image"),
    ],
    ids=["wrong-size", "not-an-image"],
)
def test_a_bad_mask_upload_is_refused(db_url: str, data: bytes, message: str) -> None:
    app = _page("Dr Ada")
    _widget(app.radio, "Corrected lesion mask").set_value("upload").run()
    app.file_uploader[0].set_value(("mask.png", data, "image/png")).run()
    assert not app.exception
    assert message in app.error[0].value
    assert _widget(app.button, "Save review").disabled
    assert _stored(db_url) == []


def test_an_edit_from_a_stale_page_is_refused(db_url: str) -> None:
    app = _save(_page("Dr Ada"))
    # Meanwhile the same reviewer saves from another tab (version 2).
    other = ReviewStore(db_url)
    stored = other.get(FIRST_CASE.key, "Dr Ada")
    other.save(
        ReviewInput(FIRST_CASE.key, "Dr Ada", False, "benign", "2", "from the other tab"),
        expected_version=stored.version,
    )
    other.close()
    app.run()
    assert any("changed in another session" in warning.value for warning in app.warning)
    app = _save(app)
    assert "now version 2, but you edited version 1" in app.error[0].value
    assert _stored(db_url)[0].comment == "from the other tab"  # not overwritten
    _widget(app.button, "Load the stored version").click().run()
    assert not any("changed in another session" in w.value for w in app.warning)
    assert _widget(app.text_area, "Comment").value == "from the other tab"


@pytest.fixture
def tiny_classifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LesionClassifier]:
    classifier = LesionClassifier.from_bundle(save_classifier_bundle(tmp_path / "models"))
    explainer = CamExplainer(classifier.model)
    monkeypatch.setattr(helpers.models, "load_classifier", lambda *_args: classifier)
    monkeypatch.setattr(helpers.models, "load_classifier_explainer", lambda *_args: explainer)
    yield classifier
    helpers.models.clear_analysis_caches()


def test_with_a_classifier_its_probabilities_are_shown_and_stored(
    db_url: str, tiny_classifier: LesionClassifier
) -> None:
    app = _page("Dr Ada")
    assert not app.exception and not app.error, app.error
    assert app.get("plotly_chart")
    app = _save(app)
    [review] = _stored(db_url)
    assert set(review.ai.probabilities) == set(tiny_classifier.class_names)
    assert review.ai.classifier.startswith("tiny_classifier")
    assert review.ai.predicted_class in tiny_classifier.class_names


@pytest.mark.slow  # covered fast by the unit tests; this is the page's wiring
def test_dataset_images_join_the_queue_when_a_datasets_folder_is_configured(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_busi_folder(tmp_path / "datasets" / "busi")
    monkeypatch.setenv("TUMORLENS_DATA_DIR", str(tmp_path / "datasets"))
    app = _page("Dr Ada")
    queue = app.dataframe[0].value
    assert "dataset" in set(queue["source"])
    index = next(i for i, title in enumerate(app.selectbox[0].options) if title.startswith("BUSI"))
    app.selectbox[0].select_index(index).run()
    assert not app.exception and not app.error
    app = _save(app)
    [review] = _stored(db_url)
    assert review.case_id.startswith("dataset:busi:") and review.case_label.startswith("BUSI")
