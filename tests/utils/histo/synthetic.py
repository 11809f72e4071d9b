"""A tiny synthetic MoNuSeg-layout folder: H&E-like tiles with disc nuclei."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import disk

from utils.histo.data import NucleiTiles

SIZE = 64


def synthetic_tile(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A pink 64x64 tile with purple disc nuclei, and their instance labels."""
    rng = np.random.default_rng(seed)
    rgb = np.empty((SIZE, SIZE, 3), np.uint8)
    rgb[:] = (230, 170, 210)
    rgb = np.clip(rgb + rng.integers(-10, 10, rgb.shape), 0, 255).astype(np.uint8)
    labels = np.zeros((SIZE, SIZE), np.int32)
    for label, (row, col) in enumerate([(14, 14), (14, 44), (44, 20), (46, 48)], start=1):
        rows, cols = disk((row + seed % 3, col), 6 + seed % 2, shape=labels.shape)
        labels[rows, cols] = label
        rgb[rows, cols] = (90, 60, 150)
    return rgb, labels


def write_monuseg_folder(root: Path, count: int = 3, *, xml_for_first: bool = True) -> Path:
    """``root/Tissue_Images/*.tif``, ``Binary_masks/*.png`` (0/255), one Aperio XML file."""
    for folder in ("Tissue_Images", "Binary_masks", "Annotations"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        name = f"TCGA-AA-{1000 + index}-01Z-00-DX1"
        rgb, labels = synthetic_tile(index)
        Image.fromarray(rgb).save(root / "Tissue_Images" / f"{name}.tif")
        Image.fromarray(((labels > 0) * 255).astype(np.uint8)).save(
            root / "Binary_masks" / f"{name}.png"
        )
        if index == 0 and xml_for_first:
            regions = "".join(
                f'<Region Id="{label}"><Vertices>'
                + "".join(
                    f'<Vertex X="{col + 6 * np.cos(a):.1f}" Y="{row + 6 * np.sin(a):.1f}"/>'
                    for a in np.linspace(0, 2 * np.pi, 16, endpoint=False)
                )
                + "</Vertices></Region>"
                for label, (row, col) in enumerate([(14, 14), (14, 44)], start=1)
            )
            xml = (
                f"<Annotations><Annotation><Regions>{regions}</Regions></Annotation></Annotations>"
            )
            (root / "Annotations" / f"{name}.xml").write_text(xml)
    return root


def synthetic_tiles(count: int = 4) -> NucleiTiles:
    """In-memory tiles for training tests, one patient each."""
    pairs = [synthetic_tile(index) for index in range(count)]
    return NucleiTiles(
        images=[rgb for rgb, _ in pairs],
        instances=[labels for _, labels in pairs],
        names=[f"tile{index}" for index in range(count)],
        groups=[f"patient{index}" for index in range(count)],
        truth_kinds=["mask_connected_components"] * count,
    )
