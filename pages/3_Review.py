"""Review page: a clinician reviews the AI output of each case in a queue.

Layout only; the queue, AI snapshot, masks and tables live in ``helpers.review``, the
analysis in ``helpers.models`` (cached, shared with the Analyse page).
"""

from __future__ import annotations

import streamlit as st

from helpers.analysis import (
    AnalysisSettings,
    display_image,
    image_digest,
    mask_overlay,
    probability_figure,
)
from helpers.home import DISCLAIMER
from helpers.models import (
    available_dataset_choices,
    cached_analysis,
    load_choice_cached,
    load_classifier,
    load_segmenter,
)
from helpers.review import (
    BIRADS_CATEGORIES,
    MASK_UPLOAD_TYPES,
    REVIEW_CLASSES,
    ReviewConflictError,
    ReviewInput,
    TumorLensError,
    ai_snapshot,
    audit_csv,
    case_review_rows,
    draw_lesion,
    history_rows,
    mask_from_upload,
    queue_rows,
    review_cases,
    review_store,
    reviews_csv,
    reviews_json,
)

st.set_page_config(page_title="Review · TumorLens", page_icon="🔬", layout="wide")
st.title("Review AI outputs")
st.warning(DISCLAIMER)

try:
    store = review_store()
    segmenter = load_segmenter()
    classifier = load_classifier()
except TumorLensError as error:
    st.error(str(error))
    st.stop()
st.caption(f"Reviews are stored in {store.display_url}.")

# ----------------------------------------------------------------------------- queue

reviewer = st.text_input(
    "Your name or initials (recorded with every review and change)",
    key="reviewer_name",
    max_chars=80,
).strip()
cases = review_cases(available_dataset_choices())
reviewed = store.reviewed_case_ids(reviewer) if reviewer else set()
with st.expander(
    f"Case queue: {len(reviewed & {case.key for case in cases})} of {len(cases)} reviewed"
):
    st.dataframe(queue_rows(cases, reviewed), hide_index=True, width="stretch")
case = st.selectbox(
    "Case",
    cases,
    format_func=lambda choice: f"{'✓ ' if choice.key in reviewed else ''}{choice.title}",
    key="review_case",
)

try:
    picked = load_choice_cached(case)
    digest = image_digest(picked.image)
    result = cached_analysis(
        digest, picked.image, AnalysisSettings(), with_classifier=classifier is not None
    )
except TumorLensError as error:
    st.error(str(error))
    st.stop()
image = picked.image
image_shape = (image.pixels.shape[0], image.pixels.shape[1])
snapshot = ai_snapshot(
    result, image, digest, segmenter.card, classifier.card if classifier is not None else None
)

# ----------------------------------------------------------------------------- AI output

base = display_image(image)
col_image, col_mask, col_classes = st.columns(3)
with col_image:
    st.image(base, caption="Image", width="stretch")
    if picked.description:
        st.caption(picked.description)
with col_mask:
    st.image(
        mask_overlay(base, result.segmentation.mask, 0.35),
        caption=f"AI lesion mask ({snapshot.mask_area_px} px, threshold "
        f"{result.segmentation.threshold:.2f}, {snapshot.segmenter})",
        width="stretch",
    )
with col_classes:
    if result.classification is None:
        st.info(
            "No classifier is installed: there are no AI class probabilities to review, "
            "only the lesion mask. Your class and BI-RADS category are still recorded."
        )
    else:
        st.markdown(
            f"**AI class: {result.classification.predicted_class}** ({snapshot.classifier})"
        )
        st.plotly_chart(
            probability_figure(result.classification),
            width="stretch",
            config={"displayModeBar": False},
        )

# ----------------------------------------------------------------------------- form

st.subheader("Your review")
if flash := st.session_state.pop("review_flash", None):
    st.success(flash)
if not reviewer:
    st.info("Enter your name above to load and save your review of this case.")
existing = store.get(case.key, reviewer) if reviewer else None
version_key = f"edited_version:{case.key}:{reviewer}"
if version_key not in st.session_state:
    st.session_state[version_key] = existing.version if existing else None
edited_version = st.session_state[version_key]
stale = existing is not None and existing.version != edited_version
if stale or (existing is None and edited_version is not None):
    st.warning(
        "This review was changed in another session since you opened it "
        f"(stored version: {existing.version if existing else 'deleted'}). Saving now would "
        "be refused; load the stored version first."
    )
    if st.button("Load the stored version"):
        st.session_state[version_key] = existing.version if existing else None
        st.rerun()
shown = existing if existing is not None and not stale else None
suffix = f"{case.key}:{reviewer}:{edited_version}"

agree = st.radio(
    "Do you agree with the AI output?",
    ["Agree", "Disagree"],
    index=0 if shown is None or shown.agree else 1,
    horizontal=True,
    key=f"agree:{suffix}",
)
col_class, col_birads = st.columns(2)
# A new review starts with no class and no category chosen, so that nothing is saved
# that the reviewer did not pick (and the AI's class does not anchor theirs).
reviewer_class = col_class.selectbox(
    "Your class",
    REVIEW_CLASSES,
    index=REVIEW_CLASSES.index(shown.reviewer_class) if shown else None,
    placeholder="Choose a class",
    key=f"class:{suffix}",
)
birads = col_birads.selectbox(
    "BI-RADS category",
    BIRADS_CATEGORIES,
    index=BIRADS_CATEGORIES.index(shown.birads) if shown else None,
    placeholder="Choose a category",
    key=f"birads:{suffix}",
)
comment = st.text_area(
    "Comment (do not enter patient identifiers)",
    value=shown.comment if shown else "",
    max_chars=4000,
    key=f"comment:{suffix}",
)

mask_options = {"none": "No correction (the AI mask stands)"}
if shown is not None and shown.corrected_mask_png is not None:
    mask_options["keep"] = "Keep my saved corrected mask"
mask_options |= {"draw": "Draw the lesion", "upload": "Upload a mask image"}
mask_source = st.radio(
    "Corrected lesion mask",
    list(mask_options),
    format_func=mask_options.__getitem__,
    index=1 if "keep" in mask_options else 0,
    horizontal=True,
    key=f"mask_source:{suffix}",
)
corrected_mask = None
mask_error = None
if mask_source == "keep" and shown is not None:
    corrected_mask = shown.corrected_mask
    st.image(mask_overlay(base, corrected_mask, 0.5), caption="Your saved mask", width=360)
elif mask_source == "draw":
    tool = st.selectbox(
        "Drawing tool",
        ["polygon", "freedraw", "rect", "circle"],
        help="Polygon: click the corners, then click the first one to close it. Free "
        "drawing: trace the outline; a closed outline is filled.",
        key=f"tool:{suffix}",
    )
    corrected_mask = draw_lesion(base, image_shape, tool, f"canvas:{suffix}", (255, 80, 0))
    st.caption(
        "Nothing drawn yet." if corrected_mask is None else f"Drawn: {corrected_mask.sum()} px."
    )
elif mask_source == "upload":
    upload = st.file_uploader(
        f"Mask image of the same size as the image ({image_shape[1]} x {image_shape[0]} "
        "px); any non-black pixel is lesion",
        type=list(MASK_UPLOAD_TYPES),
        key=f"mask_upload:{suffix}",
    )
    if upload is not None:
        try:
            corrected_mask = mask_from_upload(upload.getvalue(), image_shape)
            st.image(mask_overlay(base, corrected_mask, 0.5), caption="Uploaded mask", width=360)
        except TumorLensError as error:
            mask_error = str(error)
            st.error(f"This mask cannot be used: {error}")

if st.button("Save review", type="primary", disabled=mask_error is not None):
    try:
        saved = store.save(
            ReviewInput(
                case_id=case.key,
                reviewer=reviewer,
                agree=agree == "Agree",
                reviewer_class=reviewer_class,
                birads=birads,
                comment=comment,
                corrected_mask=corrected_mask,
                case_label=case.title,
                ai=snapshot,
            ),
            expected_version=edited_version,
        )
    except ReviewConflictError as error:
        st.error(str(error))
    except TumorLensError as error:
        st.error(f"Not saved: {error}")
    else:
        st.session_state[version_key] = saved.version
        # Rerun so the queue and the form show the saved version; the message survives.
        st.session_state["review_flash"] = (
            f"Saved your review of {case.title} (version {saved.version})."
        )
        st.rerun()

# ----------------------------------------------------------------------------- history

st.subheader("Reviews and history of this case")
case_reviews = store.reviews(case_id=case.key)
if case_reviews:
    st.dataframe(case_review_rows(case_reviews), hide_index=True, width="stretch")
    st.dataframe(history_rows(store.audit_log(case_id=case.key)), hide_index=True, width="stretch")
else:
    st.info("No review of this case yet.")

# ----------------------------------------------------------------------------- export

with st.expander("Export every review"):
    all_reviews = store.reviews()
    include_masks = st.checkbox("Include corrected masks (base64 PNG)", value=False)
    st.caption(f"{len(all_reviews)} reviews by {len({r.reviewer for r in all_reviews})} reviewers.")
    col_csv, col_json, col_audit = st.columns(3)
    col_csv.download_button(
        "Reviews (CSV)",
        reviews_csv(all_reviews, include_masks=include_masks),
        file_name="tumorlens_reviews.csv",
        mime="text/csv",
    )
    col_json.download_button(
        "Reviews (JSON)",
        reviews_json(all_reviews, include_masks=include_masks),
        file_name="tumorlens_reviews.json",
        mime="application/json",
    )
    col_audit.download_button(
        "Audit trail (CSV)",
        audit_csv(store.audit_log()),
        file_name="tumorlens_review_audit.csv",
        mime="text/csv",
    )
