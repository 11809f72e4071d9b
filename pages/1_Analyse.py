"""Analyse page: segment, measure, classify and explain one breast-ultrasound image.

Layout only; loading, analysis and display preparation live in ``helpers``.
"""

from __future__ import annotations

import streamlit as st

from helpers.analysis import (
    CAM_METHODS,
    SUPPORTED_FORMATS,
    AnalysisSettings,
    InputImage,
    TumorLensError,
    cam_overlay,
    display_image,
    example_choices,
    familiarity_note,
    image_digest,
    mask_overlay,
    measurement_rows,
    model_disagreement,
    probability_figure,
    reference_dice,
    resolve_pixel_spacing,
    smoothness_note,
    timing_rows,
)
from helpers.descriptor_fidelity import descriptor_fidelity_note, star_lost_descriptors
from helpers.home import DISCLAIMER
from helpers.model_card_metrics import cross_site_note
from helpers.models import (
    DEFAULT_CLASSIFIER_BUNDLE,
    available_dataset_choices,
    cached_analysis,
    classifier_caption,
    load_choice_cached,
    load_classifier,
    load_classifier_explainer,
    load_segmenter,
    load_segmenter_explainer,
    load_upload_cached,
    ultrasound_classifier_bundles,
)
from helpers.report import MAX_NOTE_CHARS, REPORT_MIME, case_report_pdf, report_file_name

st.set_page_config(page_title="Analyse · TumorLens", page_icon="🔬", layout="wide")
st.title("Analyse an ultrasound image")
st.warning(DISCLAIMER)

classifier_bundles = ultrasound_classifier_bundles()
classifier_bundle = classifier_bundles[0] if classifier_bundles else DEFAULT_CLASSIFIER_BUNDLE
if len(classifier_bundles) > 1:
    with st.sidebar:
        st.header("Classifier")
        classifier_bundle = st.selectbox(
            "Classifier model",
            classifier_bundles,
            format_func=lambda name: classifier_caption(name)[0],
            help="Every installed ultrasound classifier; the Models page has their cards.",
        )
        st.caption(classifier_caption(classifier_bundle)[1])

try:
    segmenter = load_segmenter()
    segmenter_explainer = load_segmenter_explainer()
    classifier = load_classifier(classifier_bundle)
    classifier_explainer = (
        load_classifier_explainer(classifier_bundle) if classifier is not None else None
    )
except TumorLensError as error:
    st.error(str(error))
    st.stop()

# ----------------------------------------------------------------------------- input

sources = {"example": "Built-in example", "upload": "Upload"}
datasets = available_dataset_choices()
if datasets:
    sources["dataset"] = "Dataset image"
source = st.radio("Image source", list(sources), format_func=sources.__getitem__, horizontal=True)

picked: InputImage | None = None
try:
    if source == "upload":
        upload = st.file_uploader(
            "Ultrasound image (PNG, JPEG, TIFF, BMP or single-frame DICOM)",
            type=list(SUPPORTED_FORMATS),
            help="The file name is not kept, and DICOM tags other than the pixel spacing "
            "are not read into the analysis.",
        )
        if upload is not None:
            picked = InputImage(image=load_upload_cached(upload.getvalue()))
    else:
        choices = example_choices() if source == "example" else datasets
        choice = st.selectbox(
            "Image", choices, format_func=lambda option: option.title, key=f"choice_{source}"
        )
        picked = load_choice_cached(choice)
except TumorLensError as error:
    st.error(str(error))

if picked is None:
    st.info("Choose a built-in example or upload an image to analyse it.")
    st.stop()

# ----------------------------------------------------------------------------- settings

with st.sidebar:
    st.header("Segmentation")
    threshold = st.slider(
        "Segmentation threshold",
        min_value=0.05,
        max_value=0.95,
        value=round(float(segmenter.threshold), 2),
        step=0.05,
        help="Lesion probability above which a pixel is lesion. Default: the model card's.",
    )
    entered_spacing = st.number_input(
        "Pixel spacing (mm per pixel)",
        min_value=0.0,
        max_value=5.0,
        value=0.0,
        step=0.01,
        format="%.3f",
        help="0 uses the DICOM spacing or the example's; with neither, sizes are in pixels.",
    )
    st.header("Explanation")
    cam_method = st.selectbox(
        "CAM method",
        CAM_METHODS,
        help="Score-CAM needs no gradients but runs about a hundred forward passes "
        "(tens of seconds on a CPU).",
    )
    segmenter_layer = st.selectbox(
        "Segmenter CAM layer",
        segmenter_explainer.target_layers,
        index=segmenter_explainer.target_layers.index(segmenter_explainer.default_layer),
        help="Default: the bottleneck, the most semantic feature map.",
    )
    classifier_layer = target_class = None
    if classifier is not None and classifier_explainer is not None:
        classifier_layer = st.selectbox(
            "Classifier CAM layer",
            classifier_explainer.target_layers,
            index=classifier_explainer.target_layers.index(classifier_explainer.default_layer),
            help="Default: the last convolutional feature map.",
        )
        target_class = st.selectbox(
            "Classifier CAM target class",
            [None, *range(len(classifier.class_names))],
            format_func=lambda index: (
                "Predicted class" if index is None else classifier.class_names[index]
            ),
        )
    st.header("Display")
    enhance = st.toggle("CLAHE contrast (display only)", help="The analysis uses the original.")

image = picked.image
spacing, spacing_note = resolve_pixel_spacing(entered_spacing, image, picked.pixel_spacing_mm)
settings = AnalysisSettings(
    threshold=threshold,
    pixel_spacing_mm=spacing,
    cam_method=cam_method,
    segmenter_layer=segmenter_layer,
    classifier_layer=classifier_layer,
    target_class=target_class,
)
try:
    result = cached_analysis(
        image_digest(image),
        image,
        settings,
        with_classifier=classifier is not None,
        classifier_bundle=classifier_bundle,
    )
except TumorLensError as error:
    st.error(str(error))
    st.stop()

# ----------------------------------------------------------------------------- results

base = display_image(image, enhance=enhance)
col_image, col_mask, col_classifier_cam, col_segmenter_cam = st.columns(4)
with col_image:
    st.image(base, caption="Original (CLAHE)" if enhance else "Original", width="stretch")
    if picked.label:
        st.caption(f"Reference label: **{picked.label}**. {picked.description}")
with col_mask:
    opacity = st.slider("Mask opacity", 0.0, 1.0, 0.4, 0.05)
    st.image(
        mask_overlay(base, result.segmentation.mask, opacity),
        caption=f"Lesion mask (threshold {result.segmentation.threshold:.2f})",
        width="stretch",
    )
    dice = reference_dice(result, picked.reference_mask)
    if dice is not None:
        st.caption(f"Dice with the reference mask: {dice:.2f}")
with col_classifier_cam:
    if result.classifier_cam is not None:
        st.image(
            cam_overlay(base, result.classifier_cam),
            caption=f"Classifier {cam_method}: {result.classifier_cam_class}",
            width="stretch",
        )
    else:
        st.info(
            "No classifier is installed yet, so there is no classification and no "
            "classifier Grad-CAM. Segmentation, measurements and the segmenter's CAM "
            "are shown."
        )
with col_segmenter_cam:
    st.image(
        cam_overlay(base, result.segmenter_cam),
        caption=f"Segmenter {cam_method}: predicted lesion area",
        width="stretch",
    )

# Both models were measured to go wrong on images much smoother than their training ones.
smoothness = smoothness_note(result.gray, segmenter.card)
if smoothness is not None:
    st.warning(smoothness)

col_classification, col_measurements = st.columns([2, 3])
with col_classification:
    st.subheader("Classification")
    classification = result.classification
    if classification is None:
        st.info(
            "No classifier is installed yet: class probabilities and the referral flag "
            "appear here once a classifier bundle is in saved_models/."
        )
    else:
        st.markdown(
            f"**Predicted: {classification.predicted_class}** "
            f"({classification.confidence:.0%}, calibrated probability)"
        )
        st.plotly_chart(
            probability_figure(classification), width="stretch", config={"displayModeBar": False}
        )
        if classification.uncertainty is not None:
            st.metric(
                "Uncertainty (normalised entropy of test-time augmentation)",
                f"{classification.uncertainty:.2f}",
            )
        if classification.refer:
            st.warning("Refer to a human reader: the classifier is unsure about this image.")
        else:
            st.success("No referral flag; the image still needs a reader's review.")
        familiarity = familiarity_note(classification)
        if familiarity is not None and classification.familiarity.unfamiliar:
            st.warning(familiarity)
        elif familiarity is not None:
            st.caption(familiarity)
        classifier_cross_site = cross_site_note(classifier.card)
        if classifier_cross_site is not None:
            st.caption(classifier_cross_site)
with col_measurements:
    st.subheader("Lesion measurements")
    st.caption(f"Pixel spacing: {spacing_note}.")
    rows = measurement_rows(result.segmentation)
    if rows is None:
        st.info(
            f"No lesion found at threshold {result.segmentation.threshold:.2f}: nothing to "
            "measure. Lower the threshold to see weaker detections."
        )
    else:
        rows, starred = star_lost_descriptors(rows, segmenter.card)
        st.dataframe(rows, hide_index=True, width="stretch")
        margin_fidelity = descriptor_fidelity_note(segmenter.card)
        if margin_fidelity is not None:
            st.caption(f"{'Rows marked * : ' if starred else ''}{margin_fidelity}")
    segmenter_cross_site = cross_site_note(segmenter.card)
    if segmenter_cross_site is not None:
        st.caption(segmenter_cross_site)
    disagreement = model_disagreement(result)
    if disagreement is not None:
        st.warning(disagreement)

st.subheader("Report")
case_note = st.text_area(
    "Case note for the PDF report (optional)",
    max_chars=MAX_NOTE_CHARS,
    help="Printed on the report exactly as typed. The report holds no patient identifier "
    "unless you type one here.",
)
st.download_button(
    "Download one-page PDF report",
    # Built on click (in a worker thread), so reruns do not pay for the PDF.
    data=lambda: case_report_pdf(
        result,
        base,
        segmenter_card=segmenter.card,
        classifier_card=classifier.card if classifier is not None else None,
        cam_method=cam_method,
        opacity=opacity,
        enhanced=enhance,
        spacing_note=spacing_note,
        case_note=case_note,
    ),
    file_name=report_file_name(),
    mime=REPORT_MIME,
    on_click="ignore",
    icon=":material/picture_as_pdf:",
)

with st.expander("Timings"):
    st.table(timing_rows(result.timings))
    st.caption(
        "Seconds per step of this analysis; results are cached, so changing only "
        "the display (opacity, CLAHE) does not recompute them."
    )
