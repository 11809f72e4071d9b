from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest

from utils.errors import ModelError
from utils.model_card import (
    INTENDED_USE,
    card_to_markdown,
    load_model_card,
    save_model_bundle,
    update_model_card,
)


def _tiny_model() -> keras.Model:
    inputs = keras.Input((4,), name="features")
    return keras.Model(inputs, keras.layers.Dense(2, name="scores")(inputs))


def test_bundle_writes_model_card_and_markdown(tmp_path: Path) -> None:
    card = {
        "task": "segmentation",
        "trained_from": "random initialisation",
        "cv_metrics": {"dice_mean": {"mean": 0.8, "sd": 0.02, "n": 5}},
        "limitations": ["not validated on Doppler images"],
    }
    path = save_model_bundle(_tiny_model(), "demo", card, models_dir=tmp_path)
    assert path == tmp_path / "demo.keras" and path.exists()
    saved = load_model_card("demo", models_dir=tmp_path)
    assert saved["intended_use"] == INTENDED_USE and saved["trained_from"].startswith("random")
    markdown = (tmp_path / "demo.md").read_text()
    assert "0.800 ± 0.020 (n=5)" in markdown and "Doppler" in markdown


def test_reshipping_drops_the_old_weights_familiarity_reference(tmp_path: Path, caplog) -> None:
    card = {"task": "classification", "familiarity": {"file": "demo.familiarity.npz"}}
    sidecar = tmp_path / "demo.familiarity.npz"
    sidecar.write_bytes(b"reference of the old weights")
    save_model_bundle(_tiny_model(), "demo", card, models_dir=tmp_path)
    assert not sidecar.exists()
    assert "familiarity" not in load_model_card("demo", models_dir=tmp_path)
    assert "refit it" in caplog.text
    caplog.clear()
    save_model_bundle(_tiny_model(), "demo", {"task": "classification"}, models_dir=tmp_path)
    assert "refit" not in caplog.text  # nothing to drop, nothing said


def test_missing_card_lists_available_ones(tmp_path: Path) -> None:
    (tmp_path / "segmenter.json").write_text("{}")
    with pytest.raises(ModelError, match="available: segmenter"):
        load_model_card("classifier", models_dir=tmp_path)


def test_corrupt_card_is_reported(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model_card("broken", models_dir=tmp_path)


def test_markdown_marks_missing_metrics() -> None:
    card = {"name": "x", "intended_use": "demo", "cv_metrics": {"ece": {"mean": None}}}
    assert "| ece | n/a |" in card_to_markdown(card)
    json.dumps(card)


def test_update_model_card_merges_and_rerenders(tmp_path: Path) -> None:
    path = save_model_bundle(_tiny_model(), "tiny", {"task": "x"}, models_dir=tmp_path)
    before = path.read_bytes()
    card = update_model_card("tiny", {"audit": {"dice": 0.9}}, models_dir=tmp_path)
    assert card["task"] == "x" and card["audit"] == {"dice": 0.9}
    assert load_model_card("tiny", models_dir=tmp_path)["audit"] == {"dice": 0.9}
    assert '"dice": 0.9' in (tmp_path / "tiny.md").read_text()
    assert path.read_bytes() == before


def test_update_model_card_of_a_missing_bundle_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"No model card ghost\.json"):
        update_model_card("ghost", {"a": 1}, models_dir=tmp_path)
