"""The descriptor-fidelity table and warning, read from a segmenter card."""

from __future__ import annotations

from typing import Any

import pytest

from helpers.descriptor_fidelity import (
    descriptor_fidelity_note,
    descriptor_fidelity_rows,
    star_lost_descriptors,
)


def _card(descriptors: dict[str, Any]) -> dict[str, Any]:
    agreement = {"measurement_agreement": {"descriptors": descriptors}}
    return {"cv_pooled": {"native_resolution": agreement}}


def _entry(reference: float | None, mask: float | None, difference: float = 0.01) -> dict:
    return {
        "n": 10,
        "median_difference": 0.0,
        "median_absolute_difference": difference,
        "auc_malignant_vs_benign": {"reference": reference, "mask": mask},
    }


CARD = _card(
    {
        "boundary_roughness": _entry(0.95, 0.74),  # higher in malignant, lost
        "solidity": _entry(0.10, 0.32),  # lower in malignant: separations 0.90 -> 0.68, lost
        "depth_width_ratio": _entry(0.75, 0.76),  # kept
        "circularity": _entry(0.30, 0.36),  # 0.70 -> 0.64: neither lost nor kept
        "posterior_ratio": None,  # no values
        "margin_lobulations": _entry(None, 0.6),  # one class missing
    }
)


def test_rows_give_each_descriptors_separation_whichever_way_it_runs() -> None:
    rows = descriptor_fidelity_rows(CARD)
    assert rows is not None
    by_name = {row["Descriptor"]: row for row in rows}
    assert set(by_name) == {"Boundary roughness", "Solidity", "Depth/width ratio", "Circularity"}
    solidity = by_name["Solidity"]
    assert solidity["Separates malignant from benign (AUC), expert outline"] == "0.90"
    assert solidity["... model's outline"] == "0.68"


def test_the_note_names_what_is_lost_and_what_is_kept() -> None:
    note = descriptor_fidelity_note(CARD)
    assert note is not None
    assert "boundary roughness 0.74 against 0.95" in note
    assert "solidity 0.68 against 0.90" in note
    assert "These kept it: depth/width ratio." in note
    assert "circularity" not in note
    assert note.endswith("Judge the margin on the image itself.")


def test_nothing_lost_means_no_note_but_still_a_table() -> None:
    card = _card({"depth_width_ratio": _entry(0.75, 0.76)})
    assert descriptor_fidelity_note(card) is None
    assert descriptor_fidelity_rows(card) is not None


@pytest.mark.parametrize(
    "card",
    [{}, {"cv_pooled": None}, _card({}), _card({"solidity": "bad"}), {"cv_pooled": {"x": 1}}],
)
def test_cards_without_the_section_give_nothing(card: dict[str, Any]) -> None:
    assert descriptor_fidelity_rows(card) is None
    assert descriptor_fidelity_note(card) is None


def test_rows_of_lost_descriptors_are_starred_and_the_rest_kept() -> None:
    rows = [
        {"name": "Area", "value": "10", "unit": "px²", "meaning": "size"},
        {"name": "Boundary roughness", "value": "1.02", "unit": "", "meaning": "margin"},
        {"name": "Depth/width ratio", "value": "0.8", "unit": "", "meaning": "orientation"},
    ]
    starred, any_starred = star_lost_descriptors(rows, CARD)
    assert any_starred
    assert [row["name"] for row in starred] == ["Area", "Boundary roughness *", "Depth/width ratio"]
    assert rows[1]["name"] == "Boundary roughness"  # the input is not modified
    assert star_lost_descriptors(rows, {}) == (rows, False)
