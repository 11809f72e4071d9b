"""Files of a whole-slide analysis: PNG figures, results.json and QuPath-ready GeoJSON.

``write_outputs(result, out_dir)`` writes

* ``heatmap.png``: the detection map, coloured, transparent outside tissue;
* ``overlay.png``: the heatmap over the thumbnail;
* ``detections.png``: the thumbnail with numbered region contours and boxes;
* ``analysis_report.png``: six panels (thumbnail, tissue, the maps, detections...);
* ``results.json``: slide, settings, tiles, timings, map statistics, regions, burden;
* ``regions.geojson``: a FeatureCollection of the regions as polygons in level-0 pixel
  coordinates, which QuPath imports (File > Import objects);
* ``heatmaps.npz``: the maps and the tissue mask as arrays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import cv2
import matplotlib as mpl
import numpy as np

from utils.wsi.pipeline import WsiResult

mpl.use("Agg")  # files only, never a window (and safe in threads)
import matplotlib.pyplot as plt

__all__ = [
    "OUTPUT_FILES",
    "colour_map",
    "detections_image",
    "overlay_image",
    "regions_geojson",
    "write_outputs",
]

OUTPUT_FILES: Final = (
    "heatmap.png",
    "overlay.png",
    "detections.png",
    "analysis_report.png",
    "results.json",
    "regions.geojson",
    "heatmaps.npz",
)
_CMAP: Final = "magma"
_REGION_RGB: Final = (0, 200, 255)


def _value_range(values: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    inside = values[mask & np.isfinite(values)]
    if not inside.size:
        return 0.0, 1.0
    low, high = float(np.percentile(inside, 1)), float(np.percentile(inside, 99))
    return (low, high) if high > low else (low, low + 1e-6)


def colour_map(
    values: np.ndarray, mask: np.ndarray, value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """(h, w, 4) uint8 RGBA of ``values``; transparent outside ``mask`` or where NaN.

    Args:
        values: (h, w) map.
        mask: (h, w) bool, where to show it.
        value_range: (low, high) mapped to the ends of the colour map; default the 1st
            and 99th percentiles inside ``mask``.
    """
    low, high = value_range or _value_range(values, mask)
    scaled = np.clip((np.nan_to_num(values, nan=low) - low) / (high - low), 0.0, 1.0)
    rgba = (mpl.colormaps[_CMAP](scaled) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(mask & np.isfinite(values), 255, 0)
    return rgba


def overlay_image(thumbnail: np.ndarray, rgba: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """RGB ``thumbnail`` with ``rgba`` blended on top at ``opacity``."""
    alpha = (rgba[..., 3:4].astype(np.float32) / 255.0) * opacity
    blended = thumbnail.astype(np.float32) * (1 - alpha) + rgba[..., :3] * alpha
    return blended.round().astype(np.uint8)


def detections_image(result: WsiResult) -> np.ndarray:
    """The thumbnail with each region's contour, box and number drawn on it."""
    image = result.thumbnail.copy()
    sx, sy = result.tissue.downsample
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for region in result.summary.regions:
        points = np.array([[x / sx, y / sy] for x, y in region.polygon], dtype=np.int32)
        cv2.polylines(image, [points], True, _REGION_RGB, thickness)
        x, y, w, h = region.bbox
        top_left = (round(x / sx), round(y / sy))
        bottom_right = (round((x + w) / sx), round((y + h) / sy))
        cv2.rectangle(image, top_left, bottom_right, (255, 255, 0), thickness)
        cv2.putText(
            image,
            str(region.id),
            (top_left[0], max(10, top_left[1] - 3)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            (255, 255, 0),
            thickness,
        )
    return image


def regions_geojson(result: WsiResult) -> dict[str, Any]:
    """The regions as a GeoJSON FeatureCollection in level-0 pixels (QuPath's convention)."""
    label = next(spec.label for spec in result.map_specs if spec.name == result.detection_map)
    features = []
    for region in result.summary.regions:
        features.append(
            {
                "type": "Feature",
                "id": f"region-{region.id}",
                "geometry": {"type": "Polygon", "coordinates": [region.polygon]},
                "properties": {
                    "objectType": "annotation",
                    "name": f"Region {region.id}",
                    "classification": {
                        "name": f"{label} >= {result.threshold:g}",
                        "color": list(_REGION_RGB),
                    },
                    "measurements": {
                        "area_mm2": round(region.area_mm2, 5),
                        "mean_score": round(region.mean_score, 5),
                        "max_score": round(region.max_score, 5),
                    },
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _report_figure(result: WsiResult, overlay: np.ndarray, detections: np.ndarray):
    tissue = result.tissue.mask
    panels: list[tuple[str, Any]] = [
        ("Slide thumbnail", result.thumbnail),
        (f"Tissue ({result.summary.tissue_area_mm2:.2f} mm²)", tissue),
    ]
    for spec, values in zip(result.map_specs, result.maps, strict=True):
        panels.append((f"{spec.label} ({spec.unit})", ("map", values)))
    panels.append(
        (
            f"{len(result.summary.regions)} region{'' if len(result.summary.regions) == 1 else 's'}"
            f", burden {result.summary.burden_percent:.1f}% of tissue",
            detections,
        )
    )
    if len(panels) < 6:
        panels.insert(-1, ("Detection heatmap overlay", overlay))
    if len(panels) < 6:
        panels.append(("histogram", None))
    figure, axes = plt.subplots(2, 3, figsize=(15, 9.5), dpi=100)
    for axis, (title, content) in zip(axes.ravel(), panels[:6], strict=False):
        axis.set_title(title, fontsize=10)
        if content is None:
            values = result.map(result.detection_map)[tissue]
            values = values[np.isfinite(values)]
            axis.hist(values, bins=40, color="#884488")
            axis.axvline(result.threshold, color="k", linestyle="--", label="threshold")
            axis.set_xlabel(result.detection_map)
            axis.set_title("Detection scores in tissue", fontsize=10)
            axis.legend()
            continue
        axis.axis("off")
        if isinstance(content, tuple):
            values = content[1]
            low, high = _value_range(values, tissue)
            shown = np.where(tissue, values, np.nan)
            image = axis.imshow(shown, cmap=_CMAP, vmin=low, vmax=high)
            figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
        else:
            axis.imshow(content, cmap="gray" if content.ndim == 2 else None)
    slide = result.slide
    figure.suptitle(
        f"{slide['file']}: {slide['width']} x {slide['height']} px at {slide['mpp']:.3f} µm/px; "
        f"model {result.model}; {result.tiles_scored} tiles of {result.tile_px} px at "
        f"{result.target_mpp:g} µm/px. Research use: not a diagnosis.",
        fontsize=10,
    )
    figure.tight_layout()
    return figure


def _save_png(path: Path, image: np.ndarray) -> None:
    code = cv2.COLOR_RGBA2BGRA if image.shape[-1] == 4 else cv2.COLOR_RGB2BGR
    cv2.imwrite(str(path), cv2.cvtColor(image, code))


def write_outputs(result: WsiResult, out_dir: str | Path) -> dict[str, Path]:
    """Write every output file into ``out_dir`` (created) and return their paths."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in OUTPUT_FILES}
    tissue = result.tissue.mask
    heat = colour_map(result.map(result.detection_map), tissue)
    overlay = overlay_image(result.thumbnail, heat)
    detections = detections_image(result)
    _save_png(paths["heatmap.png"], heat)
    _save_png(paths["overlay.png"], overlay)
    _save_png(paths["detections.png"], detections)
    figure = _report_figure(result, overlay, detections)
    figure.savefig(paths["analysis_report.png"])
    plt.close(figure)
    paths["results.json"].write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    paths["regions.geojson"].write_text(json.dumps(regions_geojson(result)) + "\n")
    np.savez_compressed(
        paths["heatmaps.npz"],
        **{spec.name: values for spec, values in zip(result.map_specs, result.maps, strict=True)},
        tissue=tissue,
        downsample=np.array(result.tissue.downsample),
    )
    return paths
