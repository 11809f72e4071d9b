"""API settings, read from the environment once at startup.

Variables (unset ones keep their default):

* ``API_TOKEN``: bearer token required on ``/v1/...`` and ``/predict``; unset or empty
  disables authentication (``/health`` is always open).
* ``API_MAX_UPLOAD_BYTES``: largest accepted upload, in bytes (default 20 MiB).
* ``API_MAX_PIXELS``: largest accepted width x height (default 16 million).
* ``API_MODELS_DIR``: folder of the model bundles (default ``saved_models/``).
* ``API_SEGMENTER`` / ``API_CLASSIFIER``: bundle names (default
  ``ultrasound_segmenter`` / ``ultrasound_classifier``).
* ``API_MAX_CONCURRENT``: model runs at once, which bounds memory under load (default 4).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from utils.errors import ConfigError
from utils.inference.bundle import DEFAULT_CLASSIFIER_BUNDLE, DEFAULT_SEGMENTER_BUNDLE
from utils.paths import SAVED_MODELS_DIR

__all__ = ["ApiSettings"]

_ENV_NAMES = {
    "token": "API_TOKEN",
    "max_upload_bytes": "API_MAX_UPLOAD_BYTES",
    "max_pixels": "API_MAX_PIXELS",
    "models_dir": "API_MODELS_DIR",
    "segmenter_bundle": "API_SEGMENTER",
    "classifier_bundle": "API_CLASSIFIER",
    "max_concurrent": "API_MAX_CONCURRENT",
}


class ApiSettings(BaseModel):
    """What the API needs besides its code; immutable once the app is created."""

    model_config = ConfigDict(frozen=True)

    token: SecretStr | None = Field(
        None, description="Bearer token; None or empty disables authentication."
    )
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest upload, bytes.")
    max_pixels: int = Field(16_000_000, ge=1, description="Largest width x height accepted.")
    models_dir: Path = Field(SAVED_MODELS_DIR, description="Folder of the model bundles.")
    segmenter_bundle: str = Field(DEFAULT_SEGMENTER_BUNDLE, min_length=1)
    classifier_bundle: str = Field(DEFAULT_CLASSIFIER_BUNDLE, min_length=1)
    max_concurrent: int = Field(4, ge=1, le=64, description="Model runs at once.")

    @property
    def auth_enabled(self) -> bool:
        """Whether requests need ``Authorization: Bearer <token>``."""
        return self.token is not None and bool(self.token.get_secret_value())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        """Settings from ``API_*`` environment variables (see the module docstring).

        Raises:
            ConfigError: A variable has an invalid value (the message names it).
        """
        environ = os.environ if environ is None else environ
        values = {field: environ[name] for field, name in _ENV_NAMES.items() if name in environ}
        try:
            return cls(**values)
        except ValidationError as error:
            problems = "; ".join(
                f"{_ENV_NAMES[str(issue['loc'][0])]}: {issue['msg']}" for issue in error.errors()
            )
            raise ConfigError(f"Invalid API settings in the environment: {problems}.") from error
