"""Tests for utils.phantoms: determinism, ground truth, the B-mode cues, errors and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from utils.errors import ConfigError
from utils.measurements import LesionMeasurements, measure_lesion
from utils.phantoms import (
    DEFAULT_EXAMPLES,
    KINDS,
    LABELS,
    PROBES,
    Phantom,
    generate_phantom,
    main,
)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
LESION_KINDS = [kind for kind in KINDS if kind != "normal"]
# (seed, probe) pairs on which every kind must show its cues.
CUE_CASES = [(0, "linear"), (0, "sector"), (5, "linear"), (6, "sector")]
EXPECTED_POSTERIOR = {
    "benign_oval": "enhancement",
    "cyst": "enhancement",
    "malignant_irregular": "shadowing",
}


@pytest.fixture(scope="module")
def phantoms() -> dict[tuple[str, int, str], Phantom]:
    """Every kind at the default size, for every (seed, probe) of ``CUE_CASES``."""
    return {
        (kind, seed, probe): generate_phantom(kind, seed=seed, probe=probe)
        for kind in KINDS
        for seed, probe in CUE_CASES
    }


@pytest.fixture(scope="module")
def measured(phantoms) -> dict[tuple[str, int, str], LesionMeasurements]:
    return {
        key: measure_lesion(p.mask, p.image, p.pixel_spacing_mm)
        for key, p in phantoms.items()
        if p.kind != "normal"
    }


# --- output contract -------------------------------------------------------------------------


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("kind", KINDS)
def test_shapes_dtypes_and_metadata(phantoms, kind: str, probe: str) -> None:
    phantom = phantoms[(kind, 0, probe)]
    assert phantom.image.shape == phantom.mask.shape == (400, 500)
    assert phantom.image.dtype == np.uint8
    assert phantom.mask.dtype == np.bool_
    assert (phantom.kind, phantom.label, phantom.probe) == (kind, LABELS[kind], probe)
    assert (phantom.seed, phantom.pixel_spacing_mm) == (0, 0.1)
    # Speckled tissue fills the view: many gray levels, not a flat or saturated image.
    assert len(np.unique(phantom.image)) > 100
    assert 60 < phantom.image[phantom.image > 0].mean() < 180


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("size", [(64, 64), (96, 160), (300, 120)])
def test_other_sizes(size: tuple[int, int], probe: str) -> None:
    phantom = generate_phantom("cyst", size=size, seed=3, probe=probe, pixel_spacing_mm=0.2)
    assert phantom.image.shape == phantom.mask.shape == size
    assert phantom.mask.any()
    assert phantom.pixel_spacing_mm == 0.2


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("kind", KINDS)
def test_mask_is_empty_exactly_for_normal(phantoms, kind: str, probe: str) -> None:
    mask = phantoms[(kind, 0, probe)].mask
    assert mask.any() == (kind != "normal")
    if kind != "normal":
        _, n_components = ndimage.label(mask, structure=np.ones((3, 3)))
        assert n_components == 1
        assert 0.005 < mask.mean() < 0.1  # a lesion of a few to tens of mm²


def test_black_outside_the_field_of_view(phantoms) -> None:
    linear = phantoms[("benign_oval", 0, "linear")].image
    assert not linear[:, :10].any() and not linear[:, -10:].any() and not linear[-5:].any()
    sector = phantoms[("benign_oval", 0, "sector")].image
    assert not sector[-1, :20].any() and not sector[-1, -20:].any()  # fan corners
    assert sector[0, 0] == 0 and sector[200, 250] > 0


def test_same_seed_and_arguments_give_identical_phantoms() -> None:
    first = generate_phantom("malignant_irregular", size=(128, 160), seed=7, probe="sector")
    again = generate_phantom("malignant_irregular", size=(128, 160), seed=7, probe="sector")
    other = generate_phantom("malignant_irregular", size=(128, 160), seed=8, probe="sector")
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.mask, again.mask)
    assert not np.array_equal(first.image, other.image)


def test_a_seed_shares_its_breast_across_kinds(phantoms) -> None:
    # Separate random streams: the benign phantom is the normal one plus a lesion, so
    # the tissue above the lesion (out of reach of the PSF and the display filter) matches.
    lesion = phantoms[("benign_oval", 0, "linear")]
    normal = phantoms[("normal", 0, "linear")]
    top = np.nonzero(lesion.mask.any(axis=1))[0][0]
    assert np.array_equal(lesion.image[: top - 15], normal.image[: top - 15])
    assert not np.array_equal(lesion.image, normal.image)


# --- the B-mode cues -------------------------------------------------------------------------


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("kind", LESION_KINDS)
def test_lesion_is_darker_than_the_surrounding_tissue(phantoms, kind: str, probe: str) -> None:
    phantom = phantoms[(kind, 0, probe)]
    ring = ndimage.binary_dilation(phantom.mask, iterations=10) & ~phantom.mask
    inside = phantom.image[phantom.mask].mean()
    assert inside / phantom.image[ring].mean() < 0.6


@pytest.mark.parametrize(("seed", "probe"), CUE_CASES)
def test_benign_oval_is_parallel_with_posterior_enhancement(measured, seed, probe) -> None:
    result = measured[("benign_oval", seed, probe)]
    assert result.posterior_acoustic_feature == EXPECTED_POSTERIOR["benign_oval"]
    assert result.orientation == "parallel"
    assert result.mean_echogenicity_ratio < 0.6


@pytest.mark.parametrize(("seed", "probe"), CUE_CASES)
def test_cyst_is_anechoic_with_posterior_enhancement(measured, seed, probe) -> None:
    result = measured[("cyst", seed, probe)]
    assert result.posterior_acoustic_feature == "enhancement"
    assert result.mean_echogenicity_ratio < 0.3  # anechoic: near black
    assert result.circularity > 0.95  # round


@pytest.mark.parametrize(("seed", "probe"), CUE_CASES)
def test_malignant_is_not_parallel_irregular_with_shadowing(measured, seed, probe) -> None:
    result = measured[("malignant_irregular", seed, probe)]
    benign = measured[("benign_oval", seed, probe)]
    assert result.posterior_acoustic_feature == "shadowing"
    assert result.orientation == "not parallel"
    assert result.circularity < benign.circularity - 0.15
    assert result.margin_lobulations > benign.margin_lobulations


# --- errors ----------------------------------------------------------------------------------


def test_unknown_kind_lists_the_valid_kinds() -> None:
    with pytest.raises(ConfigError, match=r"unknown phantom kind 'tumour'.*benign_oval.*normal"):
        generate_phantom("tumour")


def test_unknown_probe_lists_the_valid_probes() -> None:
    with pytest.raises(ConfigError, match=r"unknown probe 'convex'; valid: linear, sector"):
        generate_phantom("normal", probe="convex")


@pytest.mark.parametrize(
    "size",
    [(63, 100), (100, 2049), (0, 100), (100.0, 200), (True, 100), (100,), (64, 64, 3), "400"],
)
def test_bad_size_is_rejected(size: object) -> None:
    with pytest.raises(ConfigError, match=r"size must be \(height, width\).*64 to 2048"):
        generate_phantom("normal", size=size)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_bad_seed_is_rejected(seed: object) -> None:
    with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
        generate_phantom("normal", seed=seed)


@pytest.mark.parametrize("spacing", [0, -0.1, math.nan, math.inf, "0.1", True])
def test_bad_pixel_spacing_is_rejected(spacing: object) -> None:
    with pytest.raises(ConfigError, match="pixel_spacing_mm must be a positive number"):
        generate_phantom("normal", pixel_spacing_mm=spacing)


# --- CLI and the shipped examples ------------------------------------------------------------


def test_cli_writes_images_masks_index_and_readme(tmp_path: Path, capsys) -> None:
    assert main(["--out", str(tmp_path), "--size", "96", "128", "--pixel-spacing", "0.2"]) == 0
    assert "Wrote 8 phantoms" in capsys.readouterr().out
    index = json.loads((tmp_path / "index.json").read_text())
    assert [entry["name"] for entry in index["examples"]] == [s.name for s in DEFAULT_EXAMPLES]
    for entry, spec in zip(index["examples"], DEFAULT_EXAMPLES, strict=True):
        assert (entry["kind"], entry["seed"], entry["probe"]) == (spec.kind, spec.seed, spec.probe)
        assert entry["label"] == LABELS[spec.kind]
        assert entry["pixel_spacing_mm"] == 0.2
        image = cv2.imread(str(tmp_path / entry["image"]), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(tmp_path / entry["mask"]), cv2.IMREAD_UNCHANGED)
        assert image.shape == mask.shape == (96, 128)
        assert set(np.unique(mask)) <= {0, 255}
        assert mask.any() == (spec.kind != "normal")
        assert (entry["reference_measurements"] is None) == (spec.kind == "normal")
    assert "synthetic" in (tmp_path / "README.md").read_text()


def test_cli_reports_a_bad_option(tmp_path: Path, capsys) -> None:
    assert main(["--out", str(tmp_path), "--size", "10", "10"]) == 2
    assert "size must be" in capsys.readouterr().err


def test_shipped_examples_match_their_index() -> None:
    index = json.loads((EXAMPLES_DIR / "index.json").read_text())
    assert len(index["examples"]) == len(DEFAULT_EXAMPLES)
    assert sum(path.stat().st_size for path in EXAMPLES_DIR.iterdir()) < 1.5e6
    for entry in index["examples"]:
        image = cv2.imread(str(EXAMPLES_DIR / entry["image"]), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(EXAMPLES_DIR / entry["mask"]), cv2.IMREAD_UNCHANGED) > 0
        assert max(image.shape) <= 512 and image.shape == tuple(entry["size"])
        phantom = generate_phantom(
            entry["kind"],
            size=tuple(entry["size"]),
            seed=entry["seed"],
            pixel_spacing_mm=entry["pixel_spacing_mm"],
            probe=entry["probe"],
        )
        # Regenerating from the index reproduces the files (allowing last-bit float
        # differences between machines to flip a rare gray level by one).
        assert np.array_equal(phantom.mask, mask)
        difference = np.abs(phantom.image.astype(int) - image)
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
        if entry["kind"] != "normal":
            result = measure_lesion(mask, image, entry["pixel_spacing_mm"])
            assert result.posterior_acoustic_feature == EXPECTED_POSTERIOR[entry["kind"]]
            recorded = entry["reference_measurements"]
            assert recorded["posterior_acoustic_feature"] == result.posterior_acoustic_feature
            assert recorded["orientation"] == result.orientation
