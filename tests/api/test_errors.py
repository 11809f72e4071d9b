"""Bad input, missing models, authentication and logging: always a JSON 4xx/503, never a 500."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.settings import ApiSettings
from tests.api.conftest import make_client, png_bytes
from utils.errors import ConfigError

ALL_POSTS = ("/v1/predict", "/predict", "/v1/segment", "/v1/explain", "/v1/analyze")


def _post(client: TestClient, path: str, data: bytes, name: str = "scan.png", **form: str):
    return client.post(path, files={"file": (name, data)}, data=form)


def _assert_error(response, status: int, error: str, match: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == error
    assert match in body["detail"]
    return body


@pytest.mark.parametrize("path", ALL_POSTS)
def test_every_upload_endpoint_rejects_bad_images(client: TestClient, path: str) -> None:
    _assert_error(_post(client, path, b""), 422, "EmptyFileError", "empty (0 bytes)")
    _assert_error(
        _post(client, path, b"patient notes, not an image"), 415, "UnsupportedFormatError", "PNG"
    )
    truncated = png_bytes(np.zeros((30, 30), np.uint8))[:70]
    _assert_error(_post(client, path, truncated), 422, "CorruptImageError")
    body = _assert_error(client.post(path), 422, "ValidationError", "body.file")
    assert body["errors"] == [{"loc": ["body", "file"], "msg": "Field required"}]


def test_the_format_is_sniffed_from_the_bytes_not_the_name(
    client: TestClient, lesion_png: bytes
) -> None:
    assert _post(client, "/v1/segment", lesion_png, name="scan.txt").status_code == 200
    jpeg = cv2.imencode(".jpg", np.full((40, 40), 80, np.uint8))[1].tobytes()
    assert _post(client, "/v1/segment", jpeg, name="scan.png").status_code == 200
    _assert_error(
        _post(client, "/v1/segment", b"GIF89a" + bytes(40), name="scan.png"),
        415,
        "UnsupportedFormatError",
    )


def test_too_many_pixels_is_413(tiny_models_dir: Path) -> None:
    with make_client(tiny_models_dir, max_pixels=1000) as client:
        response = _post(client, "/v1/segment", png_bytes(np.zeros((40, 40), np.uint8)))
    _assert_error(response, 413, "ImageTooLargeError", "0.0 million pixels")


def test_too_many_bytes_is_413_whether_declared_chunked_or_within_the_form(
    tiny_models_dir: Path,
) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    big = png_bytes(noise)  # about 40 kB of incompressible pixels
    with make_client(tiny_models_dir, max_upload_bytes=10_000) as client:
        # Body over the limit plus the form allowance: refused from Content-Length.
        huge = big * 3
        _assert_error(_post(client, "/v1/segment", huge), 413, "RequestTooLarge", "bytes")
        # Over the upload limit but within the allowance: refused by the image loader.
        _assert_error(_post(client, "/v1/segment", big), 413, "ImageTooLargeError", "limit")
        # A chunked body has no Content-Length: counted as it arrives.
        chunks = (huge[i : i + 8192] for i in range(0, len(huge), 8192))
        response = client.post(
            "/v1/segment",
            content=chunks,
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        _assert_error(response, 413, "RequestTooLarge")


@pytest.mark.parametrize(
    ("path", "form", "field"),
    [
        ("/v1/segment", {"threshold": "1.5"}, "threshold"),
        ("/v1/segment", {"threshold": "nan"}, "threshold"),
        ("/v1/segment", {"pixel_spacing_mm": "-0.1"}, "pixel_spacing_mm"),
        ("/v1/segment", {"mask_format": "jpeg"}, "mask_format"),
        ("/v1/explain", {"cam_method": "saliency"}, "cam_method"),
        ("/v1/explain", {"model": "detector"}, "model"),
        ("/v1/explain", {"target_class": "-1"}, "target_class"),
        ("/v1/analyze", {"threshold": "zero"}, "threshold"),
    ],
)
def test_invalid_form_fields_are_422(
    client: TestClient, lesion_png: bytes, path: str, form: dict[str, str], field: str
) -> None:
    _assert_error(_post(client, path, lesion_png, **form), 422, "ValidationError", f"body.{field}")


def test_a_class_the_classifier_lacks_is_400(client: TestClient, lesion_png: bytes) -> None:
    response = _post(client, "/v1/explain", lesion_png, model="classifier", target_class="3")
    _assert_error(response, 400, "ConfigError", "target class index 3")


def test_missing_models_answer_503(
    segmenter_only_dir: Path, tmp_path: Path, lesion_png: bytes
) -> None:
    with make_client(segmenter_only_dir) as client:
        for path in ("/v1/predict", "/predict"):
            _assert_error(
                _post(client, path, lesion_png), 503, "ModelUnavailableError", "not installed"
            )
        response = _post(client, "/v1/explain", lesion_png, model="classifier")
        _assert_error(response, 503, "ModelUnavailableError", "ultrasound_classifier")
    with make_client(tmp_path) as client:  # an empty models folder
        for path in ("/v1/segment", "/v1/explain", "/v1/analyze"):
            _assert_error(
                _post(client, path, lesion_png), 503, "ModelUnavailableError", "segmenter"
            )


def test_a_damaged_bundle_is_503_naming_the_problem(
    tiny_models_dir: Path, tmp_path: Path, lesion_png: bytes
) -> None:
    for suffix in (".json", ".md"):
        (tmp_path / f"ultrasound_segmenter{suffix}").write_bytes(
            (tiny_models_dir / f"ultrasound_segmenter{suffix}").read_bytes()
        )
    (tmp_path / "ultrasound_segmenter.keras").write_bytes(b"not a keras zip")
    with make_client(tmp_path) as client:
        response = _post(client, "/v1/segment", lesion_png)
        assert client.get("/health").json()["models"]["segmenter"]["loaded"] is False
    _assert_error(response, 503, "ModelUnavailableError", "cannot be loaded")


def test_unknown_paths_and_methods_answer_json(client: TestClient) -> None:
    _assert_error(client.get("/v2/nothing"), 404, "NotFound")
    _assert_error(client.get("/v1/segment"), 405, "MethodNotAllowed")


def test_bearer_token_is_required_when_configured(tiny_models_dir: Path, lesion_png: bytes) -> None:
    with make_client(tiny_models_dir, token="s3cret") as client:
        assert client.get("/health").status_code == 200  # open for liveness probes
        for path in ALL_POSTS:
            response = _post(client, path, lesion_png)
            _assert_error(response, 401, "Unauthorized", "Bearer")
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = client.get("/v1/models", headers={"Authorization": "Bearer guess"})
        _assert_error(wrong, 401, "Unauthorized")
        right = client.post(
            "/v1/segment",
            files={"file": ("scan.png", lesion_png)},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert right.status_code == 200
    with make_client(tiny_models_dir, token="") as client:  # empty token: auth off
        assert client.get("/v1/models").status_code == 200


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = ApiSettings.from_env(
        {"API_TOKEN": "t", "API_MAX_UPLOAD_BYTES": "1000", "API_MODELS_DIR": str(tmp_path)}
    )
    assert settings.auth_enabled and settings.max_upload_bytes == 1000
    assert settings.models_dir == tmp_path and settings.max_pixels == 16_000_000
    assert not ApiSettings.from_env({}).auth_enabled
    with pytest.raises(ConfigError, match="API_MAX_PIXELS: Input should be greater"):
        ApiSettings.from_env({"API_MAX_PIXELS": "0"})
    with pytest.raises(ConfigError, match="API_MAX_CONCURRENT"):
        ApiSettings.from_env({"API_MAX_CONCURRENT": "many"})


def test_no_image_or_patient_data_is_logged(
    client: TestClient, lesion_png: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    name = "DOE^JANE_MRN123456.png"
    with caplog.at_level(logging.DEBUG):
        _post(client, "/v1/analyze", lesion_png, name=name)
        _post(client, "/v1/segment", b"DOE^JANE MRN123456 free text", name=name)
        _post(client, "/v1/segment", lesion_png[:80], name=name)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "POST /v1/analyze 200" in logged  # the access log works...
    assert "POST /v1/segment 415" in logged
    assert "DOE" not in logged and "MRN123456" not in logged  # ...without names or text
    # Nor image bytes, raw or base64 (Pillow's debug log names PNG chunks, not their data).
    assert repr(lesion_png[:12])[2:-1] not in logged and "iVBORw0KGgo" not in logged
