"""Streamlit caches of the Histopathology page: tile models loaded once per process.

Slide analyses are not cached here: the page keeps the last result in the session
state, so the progress bar shows a real run and a rerun for display changes reuses it.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from helpers.histopathology import models_dir
from utils.wsi.scorers import DEFAULT_NUCLEI_BUNDLE, TileScorer, load_scorer

__all__ = ["load_nuclei_segmenter", "load_tile_scorer"]


@st.cache_resource(show_spinner="Loading the tile model…")
def load_tile_scorer(bundle: str, folder: str | None = None) -> TileScorer:
    """The scorer of ``bundle``, loaded and compiled once per process and folder.

    Raises:
        ModelError: The bundle is missing, damaged or cannot score RGB tiles (not
            cached: the next rerun tries again).
    """
    return load_scorer(bundle, models_dir=folder or models_dir())


@st.cache_resource(show_spinner="Loading the nuclei model…")
def load_nuclei_segmenter(folder: str | None = None) -> Any:
    """The shipped ``utils.histo.nuclei.NucleiSegmenter`` (call when it is installed)."""
    from utils.histo.nuclei import NucleiSegmenter

    return NucleiSegmenter.from_bundle(DEFAULT_NUCLEI_BUNDLE, models_dir=folder or models_dir())
