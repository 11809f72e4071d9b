"""Models page: the card of every bundle in ``saved_models/`` and the weights the app loads.

Layout only; reading cards, hashing weights and building plots live in ``helpers``.
"""

from __future__ import annotations

import streamlit as st

from helpers.descriptor_fidelity import descriptor_fidelity_rows
from helpers.home import DISCLAIMER
from helpers.model_card_figures import card_plots
from helpers.model_card_metrics import (
    cross_site_note,
    cv_fold_rows,
    cv_summary_rows,
    familiarity_rows,
    per_class_rows,
    pooled_metric_rows,
)
from helpers.model_cards import (
    BundleCard,
    TumorLensError,
    bundle_cards,
    cached_weights_info,
    card_rows,
    loaded_by,
    overview_rows,
    setting_rows,
)

NOT_RECORDED = "not recorded in this card"

st.set_page_config(page_title="Models · TumorLens", page_icon="🔬", layout="wide")
st.title("Models")
st.warning(DISCLAIMER)
st.caption(
    "Every model bundle in saved_models/: what it does, what it was trained on and from, "
    "how well it did in cross-validation, how it is meant to be used, and the exact "
    "weights file the app loads."
)

try:
    bundles = bundle_cards()
except TumorLensError as error:
    st.error(str(error))
    st.stop()

if not bundles:
    st.info("No model bundle (NAME.keras with its NAME.json card) is installed in saved_models/.")
    st.stop()

st.dataframe(overview_rows(bundles), hide_index=True, width="stretch")


def show_bundle(bundle: BundleCard) -> None:
    """Every section of one bundle's card."""
    card = bundle.card
    if bundle.problem:
        st.error(f"The app cannot use this bundle as it is: {bundle.problem}")
    if "status" in card:
        st.warning(f"Status: {card['status']}")

    col_identity, col_weights = st.columns(2)
    with col_identity:
        st.subheader("Model")
        st.table(card_rows(card))
    with col_weights:
        st.subheader("Weights loaded")
        st.markdown(f"**Used by:** {loaded_by(bundle.name)}")
        try:
            st.table(cached_weights_info(bundle.weights_path).rows())
        except TumorLensError as error:
            st.error(str(error))
        st.subheader("Threshold and calibration")
        settings = setting_rows(card)
        if settings:
            st.table(settings)
        else:
            st.info(f"Thresholds and calibration: {NOT_RECORDED}.")

    st.subheader("Cross-validation")
    summary = cv_summary_rows(card)
    if summary is None:
        st.info(f"Cross-validation metrics: {NOT_RECORDED}.")
    else:
        st.dataframe(summary, hide_index=True, width="stretch")
    if "cv_status" in card:
        st.caption(f"CV status: {card['cv_status']}")
    folds = cv_fold_rows(card)
    if folds is not None:
        st.markdown("**Per fold**")
        st.dataframe(folds, hide_index=True, width="stretch")

    pooled = pooled_metric_rows(card)
    if pooled is not None:
        st.markdown("**Pooled out-of-fold metrics**")
        what = card.get("cv_pooled", {}).get("what")
        if what:
            st.caption(f"Predictions: {what}.")
        st.dataframe(pooled, hide_index=True, width="stretch")
        classes = per_class_rows(card)
        if classes is not None:
            st.dataframe(classes, hide_index=True, width="stretch")

    cross_site = cross_site_note(card)
    if cross_site is not None:
        st.markdown("**On a dataset it never trained on**")
        st.warning(cross_site)

    fidelity = descriptor_fidelity_rows(card)
    if fidelity is not None:
        st.markdown("**Descriptors read from the model's outline**")
        st.caption(
            "How well each descriptor separated malignant from benign lesions in "
            "cross-validation, read from the expert outlines and from the model's "
            "out-of-fold outlines (0.5 = no separation, 1 = perfect)."
        )
        st.dataframe(fidelity, hide_index=True, width="stretch")

    familiarity = familiarity_rows(card)
    if familiarity is not None:
        st.markdown("**Unfamiliar-image flag**")
        st.caption(str(card["familiarity"].get("meaning", "")))
        st.dataframe(familiarity, hide_index=True, width="stretch")

    st.subheader("Evaluation plots")
    for column, plot in zip(st.columns(3), card_plots(card), strict=True):
        with column:
            if plot.figure is not None:  # the figure carries its own title
                st.plotly_chart(plot.figure, width="stretch", config={"displayModeBar": False})
                st.caption(plot.note.capitalize())
            elif plot.malformed:
                st.warning(f"{plot.title}: {plot.note}")
            else:
                st.info(f"{plot.title}: {plot.note}")

    st.subheader("Training data")
    if "training_data" in card:
        st.json(card["training_data"], expanded=False)
    else:
        st.info(f"Training data: {NOT_RECORDED}.")

    st.subheader("Intended use")
    st.markdown(card.get("intended_use", f"Intended use: {NOT_RECORDED}."))
    st.subheader("Limitations and failure modes")
    limitations = card.get("limitations")
    if isinstance(limitations, list) and limitations:
        st.markdown("\n".join(f"- {item}" for item in limitations))
    else:
        st.info(f"Limitations: {NOT_RECORDED}.")

    with st.expander("Full model card (Markdown)"):
        st.markdown(bundle.markdown)
    with st.expander("Card JSON"):
        st.json(card, expanded=False)


for bundle, tab in zip(bundles, st.tabs([bundle.name for bundle in bundles]), strict=True):
    with tab:
        show_bundle(bundle)
