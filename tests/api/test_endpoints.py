"""Every endpoint through the test client, on tiny untrained bundles (see conftest)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import SEGMENTER, make_client
from tests.utils.inference.test_bundle import save_segmenter_bundle
from utils.encoding import decode_png_base64, rle_decode


def _post(client: TestClient, path: str, image: bytes, **form: str):
    # A patient-like file name: the API must never need or keep it.
    return client.post(path, files={"file": ("DOE_JANE_scan.png", image)}, data=form)


def test_health_reports_the_loaded_models(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["models"]["segmenter"]["loaded"] and body["models"]["classifier"]["loaded"]


def test_models_lists_the_model_cards(client: TestClient) -> None:
    cards = client.get("/v1/models").json()["models"]
    assert {card["name"] for card in cards} == {"ultrasound_segmenter", "ultrasound_classifier"}
    assert all("intended_use" in card and "input_shape" in card for card in cards)


def test_predict_gives_calibrated_probabilities_and_an_uncertainty_flag(
    client: TestClient, lesion_png: bytes
) -> None:
    response = _post(client, "/v1/predict", lesion_png)
    assert response.status_code == 200
    body = response.json()
    assert list(body["probabilities"]) == ["normal", "benign", "malignant"]
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    assert body["prediction"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["confidence"] == pytest.approx(body["probabilities"][body["prediction"]])
    assert isinstance(body["refer"], bool) and 0 <= body["uncertainty"] <= 1
    assert body["familiarity"] is None  # the tiny test bundle ships no familiarity reference
    assert body["model"] == {
        "name": "ultrasound_classifier",
        "version": "test",
        "task": "classification",
    }


def test_legacy_predict_keeps_the_seed_shape(client: TestClient, lesion_png: bytes) -> None:
    legacy = _post(client, "/predict", lesion_png).json()
    current = _post(client, "/v1/predict", lesion_png).json()
    assert legacy == {"prediction": current["prediction"], "confidence": current["confidence"]}
    operation = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert operation["deprecated"] is True


def test_segment_mask_as_png_and_rle_agree_and_match_the_image_size(
    client: TestClient, lesion_png: bytes
) -> None:
    as_png = _post(client, "/v1/segment", lesion_png, threshold="0.5").json()
    as_rle = _post(client, "/v1/segment", lesion_png, threshold="0.5", mask_format="rle").json()
    png_mask = decode_png_base64(as_png["mask"]["png_base64"]) > 0
    rle_mask = rle_decode({"size": [48, 64], "counts": as_rle["mask"]["counts"]})
    assert png_mask.shape == (48, 64)
    np.testing.assert_array_equal(png_mask, rle_mask)
    assert as_png["lesion_area_px"] == int(png_mask.sum())
    assert as_png["lesion_found"] == bool(png_mask.any())
    assert as_png["threshold"] == 0.5 and as_png["model"]["task"] == "segmentation"


def test_segment_measures_in_mm_with_a_pixel_spacing(client: TestClient, lesion_png: bytes) -> None:
    # A very low threshold makes the untrained segmenter find a "lesion" to measure.
    body = _post(client, "/v1/segment", lesion_png, threshold="0.01", pixel_spacing_mm="0.1").json()
    assert body["lesion_found"]
    measurements = body["measurements"]
    assert measurements["unit"] == "mm" and measurements["pixel_spacing_mm"] == [0.1, 0.1]
    assert measurements["area"] > 0 and measurements["longest_diameter"] > 0
    assert body["unreliable_descriptors"] == []  # the tiny test card has no such check


def test_segment_names_the_descriptors_its_card_marks_unreliable(
    tmp_path: Path, lesion_png: bytes
) -> None:
    lost = {"auc_malignant_vs_benign": {"reference": 0.1, "mask": 0.3}}  # 0.9 -> 0.7
    kept = {"auc_malignant_vs_benign": {"reference": 0.75, "mask": 0.74}}
    for entry in (lost, kept):
        entry["median_absolute_difference"] = 0.02
    agreement = {"descriptors": {"solidity": lost, "depth_width_ratio": kept}}
    card = {"cv_pooled": {"native_resolution": {"measurement_agreement": agreement}}}
    save_segmenter_bundle(tmp_path, SEGMENTER, **card)
    with make_client(tmp_path) as client:
        found = _post(client, "/v1/segment", lesion_png, threshold="0.01").json()
        empty = _post(client, "/v1/segment", lesion_png, threshold="0.99").json()
    assert found["lesion_found"] and found["unreliable_descriptors"] == ["solidity"]
    assert not empty["lesion_found"] and empty["unreliable_descriptors"] == []


def test_explain_segmenter_and_classifier_heatmaps(client: TestClient, lesion_png: bytes) -> None:
    segmenter = _post(client, "/v1/explain", lesion_png).json()
    assert segmenter["heatmap"]["target"] == "lesion area"
    heatmap = decode_png_base64(segmenter["heatmap"]["png_base64"])
    assert heatmap.shape == (32, 32) and heatmap.dtype == np.uint8
    classifier = _post(
        client,
        "/v1/explain",
        lesion_png,
        model="classifier",
        target_class="2",
        cam_method="gradcam++",
    ).json()
    assert classifier["heatmap"]["target"] == "malignant"
    assert classifier["heatmap"]["method"] == "gradcam++"
    assert classifier["model"]["task"] == "classification"
    predicted = _post(client, "/v1/explain", lesion_png, model="classifier").json()
    assert (
        predicted["heatmap"]["target"]
        == _post(client, "/v1/predict", lesion_png).json()["prediction"]
    )


def test_analyze_returns_everything_in_one_call(client: TestClient, lesion_png: bytes) -> None:
    body = _post(client, "/v1/analyze", lesion_png, mask_format="rle").json()
    assert body["segmentation"]["mask"]["format"] == "rle"
    assert sum(body["segmentation"]["mask"]["counts"]) == 48 * 64
    assert sum(body["classification"]["probabilities"].values()) == pytest.approx(1.0)
    assert body["classifier_heatmap"]["target"] == body["classification"]["prediction"]
    assert body["segmenter_heatmap"]["height"] == 32
    assert {"segmentation", "segmenter_cam", "classification", "classifier_cam", "total"} <= set(
        body["timings"]
    )
    assert [model["task"] for model in body["models"]] == ["segmentation", "classification"]
    assert body["notes"] == []
    # The same image analysed step by step gives the same results.
    alone = _post(client, "/v1/segment", lesion_png, mask_format="rle").json()
    assert alone["mask"] == body["segmentation"]["mask"]


def test_analyze_reports_a_model_disagreement_in_its_notes(
    client: TestClient, lesion_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "api.routes.model_disagreement", lambda result: f"disagree: {result.classification}"
    )
    body = _post(client, "/v1/analyze", lesion_png).json()
    assert len(body["notes"]) == 1 and body["notes"][0].startswith("disagree: Classification")


def test_analyze_without_a_classifier_segments_and_says_what_it_skipped(
    segmenter_only_dir: Path, lesion_png: bytes
) -> None:
    with make_client(segmenter_only_dir) as client:
        body = _post(client, "/v1/analyze", lesion_png).json()
        health = client.get("/health").json()
    assert body["classification"] is None and body["classifier_heatmap"] is None
    assert "No classifier" in body["notes"][0]
    assert health["status"] == "degraded"
    assert "not installed" in health["models"]["classifier"]["problem"]


def test_concurrent_requests_give_the_same_answers_as_sequential_ones(
    client: TestClient, lesion_png: bytes
) -> None:
    rng = np.random.default_rng(3)
    from tests.api.conftest import png_bytes

    images = [png_bytes(rng.integers(0, 255, (40, 50), dtype=np.uint8)) for _ in range(4)]
    images.append(lesion_png)
    jobs = [
        (path, image) for path in ("/v1/predict", "/v1/segment", "/v1/explain") for image in images
    ]

    def call(job: tuple[str, bytes]) -> dict:
        response = (
            _post(client, job[0], job[1], mask_format="rle")
            if job[0] == "/v1/segment"
            else _post(client, *job)
        )
        assert response.status_code == 200
        return response.json()

    sequential = [call(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(call, jobs * 2))
    for index, body in enumerate(concurrent):
        expected = sequential[index % len(jobs)]
        if "probabilities" in body:
            for name, value in body["probabilities"].items():
                assert value == pytest.approx(expected["probabilities"][name], abs=1e-6)
        else:
            assert body == expected


def test_openapi_schema_documents_every_endpoint_with_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations == {
        ("/health", "get"),
        ("/v1/models", "get"),
        ("/v1/predict", "post"),
        ("/predict", "post"),
        ("/v1/segment", "post"),
        ("/v1/explain", "post"),
        ("/v1/analyze", "post"),
    }
    components = schema["components"]["schemas"]
    for name in (
        "PredictResponse",
        "SegmentResponse",
        "ExplainResponse",
        "AnalyzeResponse",
        "ErrorResponse",
    ):
        assert components[name]["examples"], name
    responses = schema["paths"]["/v1/segment"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422", "503"} <= set(responses)
    # Without a token no request needs one, and the schema says so.
    assert "401" not in responses and "securitySchemes" not in schema["components"]


def test_openapi_schema_declares_bearer_auth_when_a_token_is_set(tiny_models_dir: Path) -> None:
    schema = make_client(tiny_models_dir, token="t").get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    segment = schema["paths"]["/v1/segment"]["post"]
    assert segment["security"] == [{"HTTPBearer": []}] and "401" in segment["responses"]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_analyze_warns_in_its_notes_when_the_image_is_too_smooth(
    tmp_path: Path, lesion_png: bytes
) -> None:
    import cv2

    from tests.api.conftest import png_bytes
    from utils.image_quality import CARD_KEY
    from utils.model_card import update_model_card

    save_segmenter_bundle(tmp_path, SEGMENTER)
    update_model_card(SEGMENTER, {CARD_KEY: {"percentiles": {"p01": 0.3}}}, models_dir=tmp_path)
    sharp = cv2.imdecode(np.frombuffer(lesion_png, np.uint8), cv2.IMREAD_GRAYSCALE)
    smooth = png_bytes(cv2.GaussianBlur(sharp, (0, 0), 3.0))
    with make_client(tmp_path) as client:
        sharp_notes = _post(client, "/v1/analyze", lesion_png).json()["notes"]
        smooth_notes = _post(client, "/v1/analyze", smooth).json()["notes"]
    assert not any(note.startswith("Smooth image") for note in sharp_notes)
    assert any(note.startswith("Smooth image") for note in smooth_notes)


def test_predict_and_segment_report_the_smooth_image_check(
    tmp_path: Path, lesion_png: bytes
) -> None:
    import cv2

    from tests.api.conftest import CLASSIFIER, png_bytes
    from tests.utils.inference.test_bundle import save_classifier_bundle
    from utils.image_quality import CARD_KEY

    reference = {CARD_KEY: {"percentiles": {"p01": 0.3}}}
    save_segmenter_bundle(tmp_path, SEGMENTER, **reference)
    save_classifier_bundle(tmp_path, CLASSIFIER, **reference)
    sharp = cv2.imdecode(np.frombuffer(lesion_png, np.uint8), cv2.IMREAD_GRAYSCALE)
    smooth = png_bytes(cv2.GaussianBlur(sharp, (0, 0), 3.0))
    with make_client(tmp_path) as client:
        for path in ("/v1/predict", "/v1/segment"):
            sharp_texture = _post(client, path, lesion_png).json()["texture"]
            smooth_texture = _post(client, path, smooth).json()["texture"]
            assert sharp_texture["too_smooth"] is False and sharp_texture["threshold"] == 0.3
            assert smooth_texture["too_smooth"] is True
            assert smooth_texture["index"] < 0.3 < sharp_texture["index"]


def test_without_a_texture_reference_the_check_is_null(
    client: TestClient, lesion_png: bytes
) -> None:
    assert _post(client, "/v1/predict", lesion_png).json()["texture"] is None
    assert _post(client, "/v1/segment", lesion_png).json()["texture"] is None
