"""What the Histopathology page computes and shows, without Streamlit (unit-testable).

* **Inputs**: the shared whole-slide image when the datasets folder has it, or an
  uploaded slide saved to a private temporary file (tiffslide reads from paths).
* **Models**: the nuclei segmenter (the default: label-free cellularity and
  pleomorphism maps) and every classification bundle that takes square RGB tiles.
* **Analysis**: :func:`run_slide_analysis` wraps :func:`utils.wsi.pipeline.analyse_slide`.
* **Display**: heatmap overlays, detections, the region table, and for one region the
  nuclei overlay and morphometry table.

Model caching lives in :mod:`helpers.histo_models`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from utils.errors import ConfigError, EmptyFileError, ImageTooLargeError, TumorLensError
from utils.inference.bundle import available_bundles
from utils.paths import SAVED_MODELS_DIR, default_datasets_dir
from utils.wsi.outputs import colour_map, detections_image, overlay_image, regions_geojson
from utils.wsi.pipeline import ProgressCallback, WsiOptions, WsiResult, analyse_slide
from utils.wsi.reader import open_slide
from utils.wsi.scorers import (
    DEFAULT_NUCLEI_BUNDLE,
    ClassifierScorer,
    NucleiScorer,
    TileScorer,
    check_tile_input,
)

__all__ = [
    "MAX_UPLOAD_BYTES",
    "UPLOAD_TYPES",
    "ModelChoice",
    "TumorLensError",
    "WsiOptions",
    "dataset_slides",
    "detections_view",
    "heatmap_view",
    "models_dir",
    "nuclei_installed",
    "nuclei_view",
    "region_crop",
    "region_rows",
    "results_files",
    "run_slide_analysis",
    "save_upload",
    "slide_model_choices",
]

UPLOAD_TYPES: Final = ("svs", "tif", "tiff", "png", "jpg", "jpeg")
#: Largest upload kept (Streamlit's own default limit is 200 MB).
MAX_UPLOAD_BYTES: Final = 2 * 1024**3
#: Side of the region crop, in model pixels, for the nuclei view.
REGION_CROP_PX: Final = 512
_BOUNDARY_RGB: Final = (0, 255, 0)

#: Where the page looks for bundles (tests point it elsewhere).
MODELS_DIR: Path = SAVED_MODELS_DIR


def models_dir() -> Path:
    """The folder of the bundles the page offers."""
    return MODELS_DIR


@dataclass(frozen=True)
class ModelChoice:
    """A model the page offers: bundle name, label, kind and default detection threshold."""

    bundle: str
    label: str
    kind: str

    @property
    def default_threshold(self) -> float:
        """The scorer's own default (nuclear area fraction or class probability)."""
        scorer = NucleiScorer if self.kind == "nuclei" else ClassifierScorer
        return float(scorer.default_threshold)


def nuclei_installed() -> bool:
    """Whether the nuclei segmenter bundle is in the models folder."""
    return DEFAULT_NUCLEI_BUNDLE in available_bundles(models_dir())


def slide_model_choices() -> list[ModelChoice]:
    """The nuclei model (when installed) first, then RGB tile classifiers."""
    choices = []
    folder = models_dir()
    for name in available_bundles(folder):
        try:
            card = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if name == DEFAULT_NUCLEI_BUNDLE:
            choices.insert(0, ModelChoice(name, "Nuclei: cellularity and pleomorphism", "nuclei"))
            continue
        if card.get("task") != "classification":
            continue
        try:
            tile_px = check_tile_input(tuple(card.get("input_shape", ())), name)
        except (TumorLensError, TypeError, ValueError):
            continue  # grayscale or non-square: an ultrasound model, not a tile model
        classes = "/".join(card.get("class_names", []))
        choices.append(ModelChoice(name, f"{name}: {classes} ({tile_px} px tiles)", "classifier"))
    return choices


def dataset_slides() -> dict[str, Path]:
    """Whole-slide images in the shared datasets folder, by file name."""
    folder = default_datasets_dir() / "wsi"
    if not folder.is_dir():
        return {}
    return {path.name: path for path in sorted(folder.glob("*.svs"))}


def save_upload(data: bytes, name: str) -> Path:
    """Write an uploaded slide to a private temporary file named by its content hash.

    Raises:
        EmptyFileError: The upload is empty.
        ImageTooLargeError: It is larger than :data:`MAX_UPLOAD_BYTES`.
        ConfigError: The extension is not a slide type.
    """
    if not data:
        raise EmptyFileError(f"Upload {name!r} is empty (0 bytes); choose a slide file.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageTooLargeError(
            f"Upload {name!r} is {len(data) / 1024**3:.1f} GiB; the limit is "
            f"{MAX_UPLOAD_BYTES / 1024**3:.0f} GiB. Use the command line for larger slides."
        )
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix not in UPLOAD_TYPES:
        raise ConfigError(
            f"Upload {name!r} is not a slide type; allowed: {', '.join(UPLOAD_TYPES)}."
        )
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "tumorlens-slides"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{digest}.{suffix}"
    if not path.is_file():
        path.write_bytes(data)
    return path


def run_slide_analysis(
    path: Path,
    scorer: TileScorer,
    options: WsiOptions,
    *,
    mpp: float | None = None,
    progress: ProgressCallback | None = None,
) -> WsiResult:
    """Open the slide and analyse it (errors are :class:`TumorLensError` for the page)."""
    with open_slide(path, mpp=mpp) as slide:
        return analyse_slide(slide, scorer, options, progress=progress)


def heatmap_view(result: WsiResult, map_name: str, opacity: float) -> np.ndarray:
    """The thumbnail with the map ``map_name`` blended over the tissue."""
    rgba = colour_map(result.map(map_name), result.tissue.mask)
    return overlay_image(result.thumbnail, rgba, opacity)


def detections_view(result: WsiResult) -> np.ndarray:
    """The thumbnail with numbered regions."""
    return detections_image(result)


def region_rows(result: WsiResult) -> pd.DataFrame | None:
    """One row per detected region, or ``None`` when there is none."""
    if not result.summary.regions:
        return None
    return pd.DataFrame(
        [
            {
                "region": region.id,
                "area (mm²)": round(region.area_mm2, 4),
                f"mean {result.detection_map}": round(region.mean_score, 3),
                f"max {result.detection_map}": round(region.max_score, 3),
                "x": region.bbox[0],
                "y": region.bbox[1],
                "width": region.bbox[2],
                "height": region.bbox[3],
            }
            for region in result.summary.regions
        ]
    )


def results_files(result: WsiResult) -> dict[str, str]:
    """``results.json`` and ``regions.geojson`` contents, for download buttons."""
    return {
        "results.json": json.dumps(result.to_dict(), indent=2),
        "regions.geojson": json.dumps(regions_geojson(result)),
    }


def region_crop(
    path: Path, result: WsiResult, region_id: int, *, mpp: float | None = None
) -> tuple[np.ndarray, float]:
    """A window of the slide centred on a region, at the analysis magnification.

    Returns:
        ``(rgb, mpp)``: up to :data:`REGION_CROP_PX` square pixels and their scale.

    Raises:
        ConfigError: No region ``region_id``.
    """
    regions = {region.id: region for region in result.summary.regions}
    if region_id not in regions:
        raise ConfigError(f"No region {region_id}; this slide has {len(regions)} regions.")
    x, y, width, height = regions[region_id].bbox
    with open_slide(path, mpp=mpp) as slide:
        side = min(round(REGION_CROP_PX * result.target_mpp / slide.mpp), slide.width, slide.height)
        left = int(np.clip(x + width // 2 - side // 2, 0, slide.width - side))
        top = int(np.clip(y + height // 2 - side // 2, 0, slide.height - side))
        out = min(REGION_CROP_PX, side) if slide.mpp > result.target_mpp else REGION_CROP_PX
        crop = slide.read_region(left, top, side, side, out)
        return crop, slide.mpp * side / out


def nuclei_view(segmenter: Any, rgb: np.ndarray, mpp: float) -> tuple[np.ndarray, Any]:
    """Nuclei boundaries drawn on ``rgb``, and the morphometry of the nuclei.

    Returns:
        ``(overlay, morphometry)``: the morphometry is
        ``utils.histo.morphometry.NucleiMorphometry``.
    """
    from utils.histo.morphometry import measure_nuclei

    nuclei = segmenter.segment(rgb, mpp=mpp)
    overlay = rgb.copy()
    overlay[find_boundaries(np.asarray(nuclei.instances), mode="outer")] = _BOUNDARY_RGB
    return overlay, measure_nuclei(nuclei.instances, rgb, mpp)
