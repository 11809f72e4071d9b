"""AppTest tests for the home page (``app.py``)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP_PATH = str(Path(__file__).resolve().parent.parent / "app.py")


def test_home_page_renders_disclaimer_and_status_tables() -> None:
    app = AppTest.from_file(APP_PATH, default_timeout=60).run()
    assert not app.exception
    assert app.title[0].value == "TumorLens"
    assert any("not a diagnosis" in warning.value for warning in app.warning)
    assert len(app.table) == 2


def test_home_page_survives_missing_datasets_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TUMORLENS_DATA_DIR", str(tmp_path / "nowhere"))
    app = AppTest.from_file(APP_PATH, default_timeout=60).run()
    assert not app.exception
    assert "not found" in app.table[1].value.to_string()
