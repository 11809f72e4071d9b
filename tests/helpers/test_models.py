from __future__ import annotations

import json
from pathlib import Path

from helpers.models import classifier_caption, ultrasound_classifier_bundles

ULTRASOUND = ["normal", "benign", "malignant"]


def _bundle(folder: Path, name: str, card: dict | str) -> None:
    (folder / f"{name}.keras").write_bytes(b"")
    text = card if isinstance(card, str) else json.dumps(card)
    (folder / f"{name}.json").write_text(text)


def test_ultrasound_classifiers_are_listed_default_first(tmp_path: Path) -> None:
    _bundle(
        tmp_path, "ultrasound_classifier", {"task": "classification", "class_names": ULTRASOUND}
    )
    _bundle(tmp_path, "aaa_variant", {"task": "classification", "class_names": ULTRASOUND})
    _bundle(tmp_path, "pcam", {"task": "classification", "class_names": ["normal", "tumour"]})
    _bundle(tmp_path, "seg", {"task": "segmentation", "postprocess": {}})
    _bundle(tmp_path, "broken", "{not json")
    assert ultrasound_classifier_bundles(tmp_path) == ["ultrasound_classifier", "aaa_variant"]


def test_caption_gives_title_status_and_speed(tmp_path: Path) -> None:
    card = {
        "task": "classification",
        "title": "Guided",
        "status": "cross-validated",
        "speed": {"single_image_ms": "89 ms"},
    }
    _bundle(tmp_path, "guided", card)
    assert classifier_caption("guided", tmp_path) == ("Guided", "cross-validated. Speed: 89 ms")
    _bundle(tmp_path, "bare", {"task": "classification"})
    assert classifier_caption("bare", tmp_path) == ("bare", "no status in its card")
    title, note = classifier_caption("missing", tmp_path)
    assert title == "missing" and "No model card missing.json" in note
