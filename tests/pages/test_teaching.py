"""AppTest tests of the Teaching page (``pages/4_Teaching.py``).

The canvas cannot be drawn on in AppTest; drawn and rectangle answers are scored in
tests/helpers/test_teaching.py. Here the learner answers with a class and "no lesion".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from helpers.analysis import example_choices
from helpers.teaching import QuizSession

ROOT = Path(__file__).resolve().parent.parent.parent
PAGE_PATH = str(ROOT / "pages" / "4_Teaching.py")
TIMEOUT = 120
EXAMPLES = {choice.key: choice for choice in example_choices()}


@pytest.fixture(autouse=True)
def no_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUMORLENS_DATA_DIR", str(tmp_path / "no-datasets"))


def _seed_starting_with(label: str) -> int:
    """A quiz seed whose first case has this reference label."""
    return next(
        seed
        for seed in range(100)
        if EXAMPLES[QuizSession.start(list(EXAMPLES), seed).current].label == label
    )


def _button(app: AppTest, label: str):
    return next(button for button in app.button if button.label == label)


def _metrics(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def _start(seed: int) -> AppTest:
    app = AppTest.from_file(PAGE_PATH, default_timeout=TIMEOUT).run()
    app.number_input[0].set_value(seed).run()
    return app


def _answer(app: AppTest, label: str, lesion: str) -> AppTest:
    app.radio[0].set_value(label)
    app.radio[1].set_value(lesion)
    return _button(app.run(), "Check my answer").click().run()


def test_a_right_answer_on_a_normal_case_scores_full_marks_and_reveals_everything() -> None:
    app = _start(_seed_starting_with("normal"))
    assert not app.exception and not app.error
    assert any("not a diagnosis" in warning.value for warning in app.warning)
    assert app.subheader[0].value == "Case 1 of 8"
    assert _metrics(app)["Cases answered"] == "0 / 8"
    # Before the answer: one image, and nothing that gives the answer away.
    assert len(app.image) == 1
    assert not any("Layered breast" in caption.value for caption in app.caption)

    app = _answer(app, "normal", "none")
    assert not app.exception and not app.error
    feedback = [markdown.value for markdown in app.markdown]
    assert "- Class: right (normal)." in feedback
    assert "- Right: there is no lesion in this image." in feedback
    assert "**2.00 of 2 points for this case.**" in feedback
    assert _metrics(app)["Score"] == "2.0 / 2"
    assert _metrics(app)["Classes right"] == "1 / 1"
    # The reveal: ground truth, the learner's answer and the AI mask, with the disclaimer.
    captions = [image.proto.imgs[0].caption for image in app.image]
    assert captions[1] == "Ground truth: normal"
    assert captions[2] == "Your answer: normal, no lesion"
    assert captions[3].startswith("AI lesion mask")
    assert any("not a diagnosis" in caption.value for caption in app.caption)
    assert any("No classifier is installed" in info.value for info in app.info)

    _button(app, "Next case").click().run()
    assert app.subheader[0].value == "Case 2 of 8"
    assert _metrics(app)["Cases answered"] == "1 / 8"


@pytest.mark.slow  # covered fast by the unit tests; this is the page's wiring
def test_missing_a_lesion_scores_no_localisation_point() -> None:
    app = _answer(_start(_seed_starting_with("malignant")), "malignant", "none")
    feedback = [markdown.value for markdown in app.markdown]
    assert "- There is a lesion: you said there was none." in feedback
    assert _metrics(app)["Score"] == "1.0 / 2"
    assert _metrics(app)["Mean lesion IoU"] == "0.00"


def test_checking_without_a_class_is_refused() -> None:
    app = _start(1)
    app = _button(app, "Check my answer").click().run()
    assert not app.exception
    assert app.error[0].value == "Choose a class first."
    assert _metrics(app)["Cases answered"] == "0 / 8"
    assert "Next case" not in [button.label for button in app.button]


@pytest.mark.slow
def test_a_whole_quiz_ends_with_the_total_score() -> None:
    app = _start(1)
    for _ in EXAMPLES:
        app = _answer(app, "normal", "none")
        _button(app, "Next case").click().run()
    assert not app.exception and not app.error
    assert "Quiz finished" in app.success[0].value
    assert _metrics(app)["Cases answered"] == "8 / 8"
    # Every normal case is fully right; every lesion case wins nothing.
    assert _metrics(app)["Classes right"] == "2 / 8"
