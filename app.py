"""TumorLens Streamlit entry point: the navigation of the multipage dashboard and its home page.

Run with ``make app``. Every ``pages/*.py`` file is a page (in file-name order, titled
from the name without its number prefix); pages call ``helpers/``, which call ``utils/``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from helpers.home import DISCLAIMER, dataset_status_rows, model_status_rows

PAGES_DIR = Path(__file__).resolve().parent / "pages"


def home() -> None:
    """The home page: what TumorLens does and what this installation has."""
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


st.set_page_config(page_title="TumorLens", page_icon="🔬", layout="wide")
# st.navigation instead of the automatic pages/ menu, so the home page is titled "Home"
# rather than "app"; globbing pages/ keeps the automatic menu's "add a file" workflow.
pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
pages += [st.Page(f"pages/{path.name}") for path in sorted(PAGES_DIR.glob("*.py"))]
st.navigation(pages).run()
