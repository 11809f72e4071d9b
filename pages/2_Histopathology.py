"""Histopathology page: whole-slide heatmaps, detected regions, nuclei and morphometry.

Layout only; loading, analysis and display preparation live in ``helpers``.
"""

from __future__ import annotations

import streamlit as st

from helpers.histo_models import load_nuclei_segmenter, load_tile_scorer
from helpers.histopathology import (
    UPLOAD_TYPES,
    TumorLensError,
    WsiOptions,
    dataset_slides,
    detections_view,
    heatmap_view,
    nuclei_installed,
    nuclei_view,
    region_crop,
    region_rows,
    results_files,
    run_slide_analysis,
    save_upload,
    slide_model_choices,
)
from helpers.home import DISCLAIMER

st.set_page_config(page_title="Histopathology · TumorLens", page_icon="🔬", layout="wide")
st.title("Whole-slide histopathology")
st.warning(DISCLAIMER)

# ----------------------------------------------------------------------------- model

choices = slide_model_choices()
has_nuclei = nuclei_installed()
if not has_nuclei:
    st.info(
        "The nuclei model (nuclei_segmenter) is not installed in saved_models/, so the "
        "cellularity and pleomorphism maps and the nuclei view are unavailable. "
        "Tile classifiers installed there can still be run."
    )
if not choices:
    st.error(
        "No slide model is installed: add the nuclei_segmenter bundle or an RGB tile "
        "classifier (e.g. a PCam patch classifier) to saved_models/."
    )
    st.stop()

# ----------------------------------------------------------------------------- input

slides = dataset_slides()
sources = {"dataset": "Shared slide", "upload": "Upload"} if slides else {"upload": "Upload"}
source = st.radio("Slide source", list(sources), format_func=sources.__getitem__, horizontal=True)
slide_path = None
try:
    if source == "dataset":
        slide_path = slides[st.selectbox("Slide", list(slides))]
    else:
        upload = st.file_uploader(
            "Whole-slide image (SVS, pyramidal TIFF) or a large PNG/JPEG",
            type=list(UPLOAD_TYPES),
        )
        if upload is not None:
            slide_path = save_upload(upload.getvalue(), upload.name)
except TumorLensError as error:
    st.error(str(error))
if slide_path is None:
    st.info("Choose the shared slide or upload one to analyse it.")
    st.stop()

with st.sidebar:
    st.header("Slide analysis")
    choice = st.selectbox("Model", choices, format_func=lambda option: option.label)
    entered_mpp = st.number_input(
        "Microns per pixel (0: from the file)",
        min_value=0.0,
        max_value=20.0,
        value=0.0,
        step=0.05,
        format="%.3f",
        help="Needed when the file has no scale (plain PNG/JPEG, some TIFFs): "
        "0.25 for a 40x scan, 0.5 for 20x.",
    )
    threshold = st.slider(
        "Detection threshold",
        0.05,
        0.95,
        choice.default_threshold,
        0.05,
        help="Nuclei model: nuclear area fraction; classifiers: class probability.",
    )
    overlap = st.slider("Tile overlap", 0.0, 0.75, 0.25, 0.05)
    min_region = st.number_input("Smallest region (mm²)", 0.0, 10.0, 0.01, 0.01, format="%.3f")
mpp = entered_mpp or None
options = WsiOptions(threshold=threshold, overlap=overlap, min_region_mm2=min_region)
run_key = (str(slide_path), choice.bundle, mpp, options)

if st.button("Analyse slide", type="primary"):
    bar = st.progress(0.0, text="Finding tissue…")

    def progress(done: int, total: int) -> None:
        """Move the bar after every batch of tiles."""
        bar.progress(done / max(total, 1), text=f"Scoring tiles: {done} of {total}")

    try:
        scorer = load_tile_scorer(choice.bundle)
        result = run_slide_analysis(slide_path, scorer, options, mpp=mpp, progress=progress)
        st.session_state["wsi_result"] = (run_key, result)
    except TumorLensError as error:
        st.session_state.pop("wsi_result", None)
        st.error(str(error))
    bar.empty()

stored = st.session_state.get("wsi_result")
if stored is None or stored[0] != run_key:
    st.info("Press **Analyse slide** to tile the slide and score every tissue tile.")
    st.stop()
result = stored[1]

# ----------------------------------------------------------------------------- results

summary = result.summary
cols = st.columns(4)
cols[0].metric("Tissue", f"{summary.tissue_area_mm2:.2f} mm²")
cols[1].metric("Regions", len(summary.regions))
cols[2].metric("Burden (% of tissue)", f"{summary.burden_percent:.1f}%")
cols[3].metric("Tiles scored", f"{result.tiles_scored} ({result.tiles_per_second:.1f}/s)")

col_heat, col_detect = st.columns(2)
with col_heat:
    specs = {spec.name: spec for spec in result.map_specs}
    map_name = st.selectbox(
        "Heatmap",
        list(specs),
        format_func=lambda name: f"{specs[name].label} ({specs[name].unit})",
    )
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05)
    st.image(
        heatmap_view(result, map_name, opacity),
        caption=f"{specs[map_name].label} over the slide thumbnail",
        width="stretch",
    )
with col_detect:
    st.image(
        detections_view(result),
        caption=f"Regions with {result.detection_map} ≥ {result.threshold:g}",
        width="stretch",
    )

rows = region_rows(result)
if rows is None:
    st.info(
        f"No region reaches {result.detection_map} ≥ {result.threshold:g}. Lower the "
        "threshold to see weaker ones."
    )
else:
    st.subheader("Regions")
    st.dataframe(rows, hide_index=True, width="stretch")
files = results_files(result)
download_cols = st.columns(2)
for column, (name, content) in zip(download_cols, files.items(), strict=True):
    column.download_button(f"Download {name}", content, file_name=name)

# ----------------------------------------------------------------------------- region

if rows is not None:
    st.subheader("Nuclei in a region")
    region_id = st.selectbox("Region", rows["region"].tolist())
    if not has_nuclei:
        st.info("The nuclei view needs the nuclei model (nuclei_segmenter), not installed.")
    else:
        view_key = (run_key, region_id)
        try:
            # Kept per region, so display-only reruns do not segment the crop again.
            if st.session_state.get("nuclei_view", (None,))[0] != view_key:
                crop, crop_mpp = region_crop(slide_path, result, region_id, mpp=mpp)
                overlay, morphometry = nuclei_view(load_nuclei_segmenter(), crop, crop_mpp)
                st.session_state["nuclei_view"] = (view_key, overlay, morphometry, crop_mpp)
            _, overlay, morphometry, crop_mpp = st.session_state["nuclei_view"]
            col_crop, col_table = st.columns(2)
            col_crop.image(overlay, caption=f"Region {region_id}: nuclei at {crop_mpp:.2f} µm/px")
            with col_table:
                st.dataframe(morphometry.per_nucleus, hide_index=True, width="stretch")
                st.json(morphometry.summary, expanded=False)
        except TumorLensError as error:
            st.error(str(error))
