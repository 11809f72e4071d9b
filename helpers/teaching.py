"""The Teaching quiz without Streamlit: case order, scoring and the session's score.

A learner sees an image, picks a class and marks the lesion (a rectangle, a drawn
region, or "no lesion"); then the AI output and the ground truth are revealed.

Scoring, per case (each part only when the case has that ground truth):

* **Class**: 1 point when the learner's class is the reference label.
* **Localisation**: up to 1 point. On an image with a lesion: the IoU of the learner's
  rectangle with the lesion's bounding box, or of a drawn region with the lesion mask
  (0 for "no lesion" or nothing marked). On an image without a lesion: 1 for "no
  lesion", 0 for marking one. The Dice coefficient is shown alongside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from helpers.analysis import InputImage
from utils.errors import ConfigError
from utils.postprocess import dice_score, iou
from utils.review import REVIEW_CLASSES, check_mask

__all__ = [
    "GOOD_LOCALISATION_IOU",
    "QUIZ_CLASSES",
    "CaseScore",
    "CaseTruth",
    "LearnerAnswer",
    "QuizSession",
    "QuizSummary",
    "bounding_box_mask",
    "case_truth",
    "quiz_order",
    "score_answer",
]

#: Classes the learner chooses from.
QUIZ_CLASSES: Final = REVIEW_CLASSES
#: IoU from which a localisation counts as a hit in the feedback (the usual detection bar).
GOOD_LOCALISATION_IOU: Final = 0.5


@dataclass(frozen=True, eq=False)
class LearnerAnswer:
    """What the learner answered for one case.

    Attributes:
        label: The chosen class, one of :data:`QUIZ_CLASSES`.
        no_lesion: The learner says there is no lesion.
        mask: (H, W) bool region the learner marked, ``None`` when nothing is marked.
        is_box: ``mask`` is a rectangle (compared with the lesion's bounding box).
    """

    label: str
    no_lesion: bool = False
    mask: np.ndarray | None = None
    is_box: bool = False


@dataclass(frozen=True, eq=False)
class CaseTruth:
    """The ground truth of a case.

    Attributes:
        label: Reference class, ``None`` when unknown.
        mask: (H, W) bool lesion mask (all False: no lesion), ``None`` when unknown.
    """

    label: str | None
    mask: np.ndarray | None


@dataclass(frozen=True)
class CaseScore:
    """The score of one answered case.

    Attributes:
        label_correct: Whether the class is right, ``None`` without a reference label.
        localisation: Localisation points in [0, 1], ``None`` without a reference mask.
        dice: Dice of the marked region with the reference, ``None`` when not computed.
        points: Points won.
        max_points: Points available.
        feedback: Sentences for the learner.
    """

    label_correct: bool | None
    localisation: float | None
    dice: float | None
    points: float
    max_points: float
    feedback: tuple[str, ...]


def case_truth(picked: InputImage) -> CaseTruth:
    """The ground truth of a loaded case: a label-"normal" image without a mask has no lesion."""
    mask = picked.reference_mask
    if mask is None and picked.label == "normal":
        mask = np.zeros(picked.image.pixels.shape[:2], dtype=bool)
    return CaseTruth(label=picked.label, mask=mask)


def bounding_box_mask(mask: np.ndarray) -> np.ndarray:
    """The filled bounding box of a mask's foreground (empty for an empty mask)."""
    box = np.zeros(mask.shape, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size:
        box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
    return box


def quiz_order(keys: Sequence[str], seed: int) -> list[str]:
    """The cases in a shuffled order that the seed reproduces.

    Raises:
        ConfigError: No cases, or duplicate keys.
    """
    if not keys or len(set(keys)) != len(keys):
        raise ConfigError(f"A quiz needs distinct cases; got {len(keys)} keys.")
    permutation = np.random.default_rng(seed).permutation(len(keys))
    return [keys[index] for index in permutation]


def _check_answer(answer: LearnerAnswer, truth: CaseTruth) -> None:
    if answer.label not in QUIZ_CLASSES:
        raise ConfigError(
            f"The answer {answer.label!r} is not a class; choose one of {', '.join(QUIZ_CLASSES)}."
        )
    if answer.mask is not None:
        shape = None if truth.mask is None else truth.mask.shape
        check_mask(answer.mask, shape)
        if answer.no_lesion:
            raise ConfigError("The answer both says 'no lesion' and marks a region; pick one.")


def _score_localisation(
    answer: LearnerAnswer, truth_mask: np.ndarray
) -> tuple[float, float | None, str]:
    """(points, Dice, feedback) of the lesion part of an answer."""
    if not truth_mask.any():
        if answer.mask is not None and answer.mask.any():
            return 0.0, None, "There is no lesion in this image, but you marked one."
        if answer.no_lesion:
            return 1.0, None, "Right: there is no lesion in this image."
        return 0.0, None, "There is no lesion here; say so with 'no lesion'."
    if answer.no_lesion:
        return 0.0, None, "There is a lesion: you said there was none."
    if answer.mask is None or not answer.mask.any():
        return 0.0, None, "You did not mark the lesion."
    reference = bounding_box_mask(truth_mask) if answer.is_box else truth_mask
    overlap = iou(answer.mask, reference)
    dice = dice_score(answer.mask, reference)
    against = "the lesion's bounding box" if answer.is_box else "the lesion outline"
    verdict = "good localisation" if overlap >= GOOD_LOCALISATION_IOU else "partly off the lesion"
    if overlap == 0.0:
        verdict = "it misses the lesion"
    return overlap, dice, f"Your mark overlaps {against} with IoU {overlap:.2f}: {verdict}."


def score_answer(answer: LearnerAnswer, truth: CaseTruth) -> CaseScore:
    """Score one answer against the case's ground truth.

    Raises:
        ConfigError: The class is not one of :data:`QUIZ_CLASSES`, or the answer says
            "no lesion" and marks a region.
        ImageDimensionError: The marked region is not a mask of the image's size.
    """
    _check_answer(answer, truth)
    feedback = []
    points = max_points = 0.0
    label_correct = None
    if truth.label is not None:
        label_correct = answer.label == truth.label
        points += float(label_correct)
        max_points += 1.0
        feedback.append(
            f"Class: right ({truth.label})."
            if label_correct
            else f"Class: you said {answer.label}; the reference is {truth.label}."
        )
    else:
        feedback.append("This case has no reference class, so the class is not scored.")
    localisation = dice = None
    if truth.mask is not None:
        localisation, dice, sentence = _score_localisation(answer, truth.mask)
        points += localisation
        max_points += 1.0
        feedback.append(sentence)
    else:
        feedback.append("This case has no reference mask, so the lesion is not scored.")
    return CaseScore(label_correct, localisation, dice, points, max_points, tuple(feedback))


@dataclass(frozen=True)
class QuizSummary:
    """The running score of a quiz.

    Attributes:
        answered: Cases answered.
        total: Cases in the quiz.
        points: Points won.
        max_points: Points available in the answered cases.
        classes_right: Cases with the right class.
        classes_scored: Cases with a reference class.
        mean_localisation: Mean localisation points, ``None`` before any was scored.
    """

    answered: int
    total: int
    points: float
    max_points: float
    classes_right: int
    classes_scored: int
    mean_localisation: float | None

    @property
    def percent(self) -> float | None:
        """Points won as a percentage of those available, ``None`` before any."""
        return 100.0 * self.points / self.max_points if self.max_points else None


@dataclass
class QuizSession:
    """One learner's quiz: the case order, where they are, and their answers.

    Attributes:
        order: Case keys in quiz order.
        seed: The seed of the order.
        position: Index of the current case in ``order``.
        answers: Case key -> the learner's answer (once checked).
        scores: Case key -> its score (once checked).
    """

    order: list[str]
    seed: int
    position: int = 0
    answers: dict[str, LearnerAnswer] = field(default_factory=dict)
    scores: dict[str, CaseScore] = field(default_factory=dict)

    @classmethod
    def start(cls, keys: Sequence[str], seed: int) -> QuizSession:
        """A new quiz over ``keys`` in the order of ``seed``."""
        return cls(order=quiz_order(keys, seed), seed=seed)

    @property
    def finished(self) -> bool:
        """Whether every case has been shown."""
        return self.position >= len(self.order)

    @property
    def current(self) -> str | None:
        """The current case key, ``None`` when finished."""
        return None if self.finished else self.order[self.position]

    def record(self, key: str, answer: LearnerAnswer, truth: CaseTruth) -> CaseScore:
        """Score and keep the answer of ``key`` (the first answer of a case counts).

        Raises:
            ConfigError: ``key`` is not in the quiz; or the answer is invalid.
        """
        if key not in self.order:
            raise ConfigError(f"The case {key!r} is not part of this quiz.")
        if key in self.scores:
            return self.scores[key]
        score = score_answer(answer, truth)
        self.answers[key] = answer
        self.scores[key] = score
        return score

    def advance(self) -> None:
        """Go to the next case."""
        self.position = min(self.position + 1, len(self.order))

    def summary(self) -> QuizSummary:
        """The running score."""
        scores = list(self.scores.values())
        localisations = [s.localisation for s in scores if s.localisation is not None]
        return QuizSummary(
            answered=len(scores),
            total=len(self.order),
            points=sum(s.points for s in scores),
            max_points=sum(s.max_points for s in scores),
            classes_right=sum(1 for s in scores if s.label_correct),
            classes_scored=sum(1 for s in scores if s.label_correct is not None),
            mean_localisation=float(np.mean(localisations)) if localisations else None,
        )
