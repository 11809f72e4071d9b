"""TumorLens Streamlit entry point: the home page of the multipage dashboard.

Run with ``make app``. Pages live in ``pages/`` and call ``helpers/``, which call
``utils/``.
"""

from __future__ import annotations

import streamlit as st

from helpers.home import DISCLAIMER, dataset_status_rows, model_status_rows

st.set_page_config(page_title="TumorLens", page_icon="🔬", layout="wide")

st.title("TumorLens")
st.caption("Breast-tumour imaging workbench: ultrasound and H&E histopathology.")
st.warning(DISCLAIMER)

st.markdown(
    """
TumorLens classifies and segments breast ultrasound images, explains its outputs with
Grad-CAM, measures lesions, and analyses H&E patches and whole slides.

**Status of this installation**
"""
)

col_models, col_data = st.columns(2)
with col_models:
    st.subheader("Models")
    st.table(model_status_rows())
with col_data:
    st.subheader("Datasets")
    st.table(dataset_status_rows())
