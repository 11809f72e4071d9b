"""Tests of the Teaching quiz logic: order, scoring and the running score."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from helpers.analysis import InputImage, load_upload
from helpers.teaching import (
    CaseTruth,
    LearnerAnswer,
    QuizSession,
    bounding_box_mask,
    case_truth,
    quiz_order,
    score_answer,
)
from utils.errors import ConfigError, ImageDimensionError

SHAPE = (40, 50)


def _mask(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


LESION = _mask(10, 10, 20, 30)  # 10 x 20 = 200 px
NO_LESION = np.zeros(SHAPE, dtype=bool)


def test_quiz_order_is_a_seeded_permutation() -> None:
    keys = [f"case {index}" for index in range(8)]
    first = quiz_order(keys, seed=3)
    assert sorted(first) == sorted(keys)
    assert quiz_order(keys, seed=3) == first
    assert any(quiz_order(keys, seed=seed) != first for seed in range(4, 8))


@pytest.mark.parametrize("keys", [[], ["a", "a"]])
def test_quiz_order_needs_distinct_cases(keys: list[str]) -> None:
    with pytest.raises(ConfigError, match="A quiz needs distinct cases"):
        quiz_order(keys, seed=0)


def test_a_perfect_rectangle_scores_full_marks() -> None:
    score = score_answer(
        LearnerAnswer("benign", mask=_mask(10, 10, 20, 30), is_box=True),
        CaseTruth("benign", LESION),
    )
    assert score.label_correct is True
    assert score.localisation == pytest.approx(1.0) and score.dice == pytest.approx(1.0)
    assert (score.points, score.max_points) == (2.0, 2.0)
    assert "IoU 1.00: good localisation" in score.feedback[1]


def test_a_rectangle_is_compared_with_the_lesion_bounding_box() -> None:
    round_lesion = np.zeros(SHAPE, dtype=bool)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    round_lesion[(yy - 20) ** 2 + (xx - 25) ** 2 <= 64] = True
    box = bounding_box_mask(round_lesion)
    score = score_answer(
        LearnerAnswer("benign", mask=box, is_box=True), CaseTruth("benign", round_lesion)
    )
    assert score.localisation == pytest.approx(1.0)
    drawn = score_answer(LearnerAnswer("benign", mask=box), CaseTruth("benign", round_lesion))
    assert drawn.localisation == pytest.approx(round_lesion.sum() / box.sum())


def test_a_half_overlapping_region_scores_its_iou_and_dice() -> None:
    half = _mask(10, 20, 20, 40)  # 100 px shared of 300 px union
    score = score_answer(LearnerAnswer("malignant", mask=half), CaseTruth("benign", LESION))
    assert score.label_correct is False
    assert score.localisation == pytest.approx(100 / 300)
    assert score.dice == pytest.approx(2 * 100 / 400)
    assert score.points == pytest.approx(100 / 300)
    assert "you said malignant; the reference is benign" in score.feedback[0]
    assert "partly off the lesion" in score.feedback[1]


@pytest.mark.parametrize(
    ("answer", "truth_mask", "points", "message"),
    [
        (LearnerAnswer("normal", no_lesion=True), NO_LESION, 1.0, "Right: there is no lesion"),
        (LearnerAnswer("normal", mask=LESION), NO_LESION, 0.0, "but you marked one"),
        (LearnerAnswer("normal"), NO_LESION, 0.0, "say so with 'no lesion'"),
        (LearnerAnswer("normal", no_lesion=True), LESION, 0.0, "you said there was none"),
        (LearnerAnswer("normal"), LESION, 0.0, "did not mark the lesion"),
        (LearnerAnswer("normal", mask=_mask(30, 40, 35, 45)), LESION, 0.0, "misses the lesion"),
    ],
    ids=["no-lesion-right", "false-mark", "no-answer-normal", "missed", "unmarked", "off"],
)
def test_lesion_scores(
    answer: LearnerAnswer, truth_mask: np.ndarray, points: float, message: str
) -> None:
    score = score_answer(answer, CaseTruth("normal", truth_mask))
    assert score.localisation == points
    assert message in score.feedback[1]


def test_unknown_ground_truth_is_not_scored() -> None:
    score = score_answer(LearnerAnswer("benign", mask=LESION), CaseTruth(None, None))
    assert score.label_correct is None and score.localisation is None
    assert (score.points, score.max_points) == (0.0, 0.0)
    assert "no reference class" in score.feedback[0] and "no reference mask" in score.feedback[1]


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (LearnerAnswer("cancer"), ConfigError, "'cancer' is not a class"),
        (LearnerAnswer("normal", no_lesion=True, mask=LESION), ConfigError, "pick one"),
        (LearnerAnswer("benign", mask=np.zeros((5, 5), bool)), ImageDimensionError, "5 x 5"),
        (LearnerAnswer("benign", mask=np.zeros(SHAPE, np.float64)), ImageDimensionError, "float64"),
    ],
    ids=["bad-class", "both", "wrong-size", "bad-dtype"],
)
def test_bad_answers_raise(answer: LearnerAnswer, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        score_answer(answer, CaseTruth("benign", LESION))


def test_the_session_keeps_the_running_score() -> None:
    quiz = QuizSession.start(["a", "b", "c"], seed=0)
    assert quiz.summary().percent is None and quiz.summary().mean_localisation is None
    first = quiz.current
    quiz.record(first, LearnerAnswer("benign", mask=LESION), CaseTruth("benign", LESION))
    # A second answer to the same case does not change its score.
    quiz.record(first, LearnerAnswer("normal", no_lesion=True), CaseTruth("benign", LESION))
    quiz.advance()
    quiz.record(quiz.current, LearnerAnswer("normal", no_lesion=True), CaseTruth("benign", LESION))
    summary = quiz.summary()
    assert (summary.answered, summary.total) == (2, 3)
    assert (summary.points, summary.max_points) == (2.0, 4.0) and summary.percent == 50.0
    assert (summary.classes_right, summary.classes_scored) == (1, 2)
    assert summary.mean_localisation == pytest.approx(0.5)
    quiz.advance()
    quiz.advance()
    quiz.advance()
    assert quiz.finished and quiz.current is None and quiz.position == 3
    with pytest.raises(ConfigError, match="'z' is not part of this quiz"):
        quiz.record("z", LearnerAnswer("benign"), CaseTruth("benign", LESION))


def test_case_truth_of_a_normal_image_without_mask_is_an_empty_mask(speckle_image) -> None:
    image = load_upload(cv2.imencode(".png", speckle_image)[1].tobytes())
    truth = case_truth(InputImage(image=image, label="normal"))
    assert truth.mask is not None and not truth.mask.any() and truth.mask.shape == (64, 80)
    unknown = case_truth(InputImage(image=image, label="benign"))
    assert unknown.mask is None and unknown.label == "benign"
