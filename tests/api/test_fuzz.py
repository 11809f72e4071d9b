"""Schema-driven fuzzing of the app's own OpenAPI (schemathesis, in-process ASGI).

Every generated request (odd form values, random bytes as the file, missing fields)
must answer a documented status with a body matching the schema, and never a 5xx.
The default run keeps a few examples per operation; the slow run many more.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from api.app import create_app
from api.services import ModelServices
from api.settings import ApiSettings

# The schema comes from the routes alone, so it is loaded at import time from an app
# without models; the fixture below gives that app the tiny models before any call.
fuzzed_app = create_app(ApiSettings(models_dir=Path("/nonexistent")))
schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)


@pytest.fixture(scope="module", autouse=True)
def _tiny_models(tiny_models_dir: Path) -> None:
    services = ModelServices(ApiSettings(models_dir=tiny_models_dir))
    services.load()  # the ASGI transport does not run the lifespan
    fuzzed_app.state.services = services


_FUZZ_SETTINGS = {"deadline": None, "suppress_health_check": list(HealthCheck), "derandomize": True}


@schema.parametrize()
@settings(max_examples=8, **_FUZZ_SETTINGS)
def test_no_server_errors_and_responses_match_the_schema(case) -> None:
    response = case.call()
    assert response.status_code < 500, response.text
    # Every other built-in check applies; this one cannot: the schema says "binary" for
    # the file, and no schema can say "a decodable image", so random bytes get a 415/422.
    case.validate_response(response, excluded_checks=[checks.positive_data_acceptance])


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=100, **_FUZZ_SETTINGS)
def test_no_server_errors_thorough(case) -> None:
    case.call_and_validate(checks=[checks.not_a_server_error])
