"""Teaching page: a quiz. Classify the image, mark the lesion, then see the AI and the truth.

Layout only; the quiz order and scoring live in ``helpers.teaching``, the cached
analysis in ``helpers.models``, the canvas helpers in ``helpers.review``.
"""

from __future__ import annotations

import streamlit as st

from helpers.analysis import AnalysisSettings, display_image, image_digest, mask_overlay
from helpers.analysis import probability_figure as class_figure
from helpers.home import DISCLAIMER
from helpers.models import (
    available_dataset_choices,
    cached_analysis,
    load_choice_cached,
    load_classifier,
    load_segmenter,
)
from helpers.review import TumorLensError, draw_lesion, review_cases
from helpers.teaching import QUIZ_CLASSES, LearnerAnswer, QuizSession, case_truth

st.set_page_config(page_title="Teaching · TumorLens", page_icon="🔬", layout="wide")
st.title("Teaching quiz")
st.warning(DISCLAIMER)

try:
    load_segmenter()
    classifier = load_classifier()
except TumorLensError as error:
    st.error(str(error))
    st.stop()

# ----------------------------------------------------------------------------- quiz set-up

datasets = available_dataset_choices()
with st.sidebar:
    st.header("Quiz")
    seed = int(st.number_input("Case order seed", min_value=0, max_value=10_000, value=1))
    with_datasets = bool(datasets) and st.checkbox(
        "Include dataset images", value=False, help="A few BUSI images of the datasets folder."
    )
    restart = st.button("Start a new quiz")

cases = {case.key: case for case in review_cases(datasets if with_datasets else ())}
quiz: QuizSession | None = st.session_state.get("quiz")
if restart or quiz is None or quiz.seed != seed or set(quiz.order) != set(cases):
    quiz = QuizSession.start(list(cases), seed)
    st.session_state["quiz"] = quiz

summary = quiz.summary()
col_progress, col_points, col_classes, col_lesion = st.columns(4)
col_progress.metric("Cases answered", f"{summary.answered} / {summary.total}")
col_points.metric(
    "Score", "–" if summary.percent is None else f"{summary.points:.1f} / {summary.max_points:.0f}"
)
col_classes.metric("Classes right", f"{summary.classes_right} / {summary.classes_scored}")
col_lesion.metric(
    "Mean lesion IoU",
    "–" if summary.mean_localisation is None else f"{summary.mean_localisation:.2f}",
)

if quiz.finished:
    st.success(
        f"Quiz finished: {summary.points:.1f} of {summary.max_points:.0f} points "
        f"({summary.percent or 0:.0f} %). Start a new quiz from the sidebar."
    )
    st.stop()

# ----------------------------------------------------------------------------- the case

key = quiz.current
case = cases[key]
try:
    picked = load_choice_cached(case)
except TumorLensError as error:
    st.error(str(error))
    st.stop()
image = picked.image
image_shape = (image.pixels.shape[0], image.pixels.shape[1])
base = display_image(image)
truth = case_truth(picked)
st.subheader(f"Case {quiz.position + 1} of {len(quiz.order)}")
answered = key in quiz.scores

col_question, col_answer = st.columns(2)
with col_question:
    st.image(base, caption="What do you see?", width="stretch")
with col_answer:
    label = st.radio("Your class", QUIZ_CLASSES, index=None, key=f"label:{key}", disabled=answered)
    lesion_choice = st.radio(
        "The lesion",
        ["mark", "none"],
        format_func={"mark": "I mark it on the image", "none": "There is no lesion"}.get,
        key=f"lesion:{key}",
        disabled=answered,
    )
    tool = "rect"
    if lesion_choice == "mark" and not answered:
        tool = st.selectbox(
            "Marking tool",
            ["rect", "polygon", "freedraw"],
            format_func={
                "rect": "Rectangle around the lesion",
                "polygon": "Polygon (click the first corner to close it)",
                "freedraw": "Free-hand outline",
            }.get,
            key=f"tool:{key}",
        )
        st.session_state[f"mark:{key}"] = draw_lesion(
            base, image_shape, tool, f"canvas:{key}:{tool}", (0, 160, 255)
        )
        st.session_state[f"is_box:{key}"] = tool == "rect"
    if not answered and st.button("Check my answer", type="primary"):
        if label is None:
            st.error("Choose a class first.")
        else:
            try:
                quiz.record(
                    key,
                    LearnerAnswer(
                        label=label,
                        no_lesion=lesion_choice == "none",
                        mask=st.session_state.get(f"mark:{key}")
                        if lesion_choice == "mark"
                        else None,
                        is_box=bool(st.session_state.get(f"is_box:{key}")),
                    ),
                    truth,
                )
            except TumorLensError as error:
                st.error(str(error))
            else:
                st.rerun()

if not answered:
    st.stop()

# ----------------------------------------------------------------------------- reveal

score = quiz.scores[key]
answer = quiz.answers[key]
st.subheader("Answer")
for sentence in score.feedback:
    st.markdown(f"- {sentence}")
st.markdown(f"**{score.points:.2f} of {score.max_points:.0f} points for this case.**")
if picked.description:
    st.caption(picked.description)

try:
    result = cached_analysis(
        image_digest(image), image, AnalysisSettings(), with_classifier=classifier is not None
    )
except TumorLensError as error:
    st.error(str(error))
    st.stop()

col_truth, col_yours, col_ai, col_ai_class = st.columns(4)
with col_truth:
    if truth.mask is None:
        st.info("This case has no reference mask.")
    else:
        st.image(
            mask_overlay(base, truth.mask, 0.35),
            caption=f"Ground truth: {truth.label or 'class unknown'}",
            width="stretch",
        )
with col_yours:
    if answer.mask is not None:
        shown = mask_overlay(base, answer.mask, 0.35)
        st.image(shown, caption=f"Your answer: {answer.label}", width="stretch")
    else:
        st.image(
            base,
            caption=f"Your answer: {answer.label}, "
            + ("no lesion" if answer.no_lesion else "lesion not marked"),
            width="stretch",
        )
with col_ai:
    st.image(
        mask_overlay(base, result.segmentation.mask, 0.35),
        caption="AI lesion mask (decision support, not a diagnosis)",
        width="stretch",
    )
with col_ai_class:
    if result.classification is None:
        st.info("No classifier is installed, so the AI gives no class here; only its mask.")
    else:
        st.markdown(f"**AI class: {result.classification.predicted_class}**")
        st.plotly_chart(
            class_figure(result.classification), width="stretch", config={"displayModeBar": False}
        )
st.caption(DISCLAIMER)

if st.button("Next case", type="primary"):
    quiz.advance()
    st.rerun()
