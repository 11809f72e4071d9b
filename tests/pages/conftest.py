"""Page tests run without a classifier unless they ask for one.

The pages' no-classifier state must stay tested whatever ``saved_models/`` holds, so the
loader is patched to return None; tests that want a classifier request the
``tiny_classifier`` (a random tiny bundle) or ``shipped_classifier`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import helpers.models

_WITH_CLASSIFIER = {"tiny_classifier", "shipped_classifier"}


@pytest.fixture(autouse=True)
def _no_classifier_unless_asked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if not _WITH_CLASSIFIER & set(request.fixturenames):
        monkeypatch.setattr(helpers.models, "load_classifier", lambda *args, **kwargs: None)
    yield
    helpers.models.clear_analysis_caches()
