"""Tiny synthetic PCam and BreakHis folders for the patch training and evaluation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Pink (eosin) background; tumour patches get many dark purple (haematoxylin) blobs.
_EOSIN = (230, 170, 200)
_HAEMATOXYLIN = (70, 40, 120)


def he_patch(rng: np.random.Generator, side: int, tumour: bool) -> np.ndarray:
    """A uint8 RGB H&E-like patch: noisy pink tissue, with dense dark nuclei if ``tumour``."""
    image = np.clip(rng.normal(_EOSIN, 12, (side, side, 3)), 0, 255)
    n_nuclei = 12 if tumour else 2
    rows, cols = np.mgrid[:side, :side]
    for _ in range(n_nuclei):
        y, x = rng.integers(0, side, 2)
        radius = side / 14
        image[(rows - y) ** 2 + (cols - x) ** 2 <= radius**2] = _HAEMATOXYLIN
    return image.astype(np.uint8)


def write_pcam_folder(
    root: Path, labels: list[int], *, side: int = 96, seed: int = 0, unlabelled: int = 1
) -> Path:
    """A Kaggle-layout PCam folder: ``train/<id>.tif``, ``test/<id>.tif``, labels CSV."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rows = ["id,label"]
    for index, label in enumerate(labels):
        patch_id = f"patch{index:03d}"
        Image.fromarray(he_patch(rng, side, bool(label))).save(root / "train" / f"{patch_id}.tif")
        rows.append(f"{patch_id},{label}")
    for index in range(unlabelled):
        Image.fromarray(he_patch(rng, side, False)).save(root / "test" / f"test{index}.tif")
    (root / "train_labels.csv").write_text("\n".join(rows) + "\n")
    return root


#: (class letter, subtype code, patient) of the synthetic BreakHis images.
BREAKHIS_IMAGES = (
    ("B", "A", "22549AB"),
    ("B", "F", "25197"),
    ("B", "PT", "21998CD"),
    ("B", "TA", "3411F"),
    ("B", "F", "25197"),
    ("M", "DC", "2523"),
    ("M", "LC", "12204"),
    ("M", "MC", "10147"),
    ("M", "PC", "9146"),
    ("M", "DC", "2523"),
)


def write_breakhis_folder(root: Path, *, seed: int = 0) -> Path:
    """A flat BreakHis folder of small images named like the release."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for index, (letter, code, patient) in enumerate(BREAKHIS_IMAGES):
        name = f"SOB_{letter}_{code}-14-{patient}-40-{index + 1:03d}.png"
        patch = he_patch(rng, 48, letter == "M")[:, :40]  # not square, like the release
        Image.fromarray(np.ascontiguousarray(patch)).save(root / name)
    return root
