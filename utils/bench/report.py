"""The benchmark's outputs: a text table, the JSON file, and the README's Markdown block."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from utils.errors import ConfigError

__all__ = [
    "END_MARKER",
    "METRICS",
    "START_MARKER",
    "format_value",
    "markdown_block",
    "rewrite_block",
    "rewrite_readme",
    "text_table",
    "write_json",
]

START_MARKER: Final = "<!-- bench:start -->"
END_MARKER: Final = "<!-- bench:end -->"

#: Every reported key, in table order: (what it is, unit, goal or "").
METRICS: Final[dict[str, tuple[str, str, str]]] = {
    "analyze_ms": ("Full analysis of one 500×500 image, warm", "ms", "≤ 300"),
    "naive_analyze_ms": ("Same, seeds' pattern (predict + Grad-CAM per call)", "ms", ""),
    "speedup_vs_naive": ("Speed-up of the analysis over the naive pattern", "×", "≥ 3"),
    "analyze_segment_only_ms": ("Analysis without a classifier, warm", "ms", ""),
    "naive_analyze_segment_only_ms": ("Same, seeds' pattern", "ms", ""),
    "speedup_vs_naive_segment_only": ("Speed-up without a classifier", "×", ""),
    "classify_img_per_s": ("Classifier throughput, best batch size", "img/s", "≥ 50"),
    "segment_img_per_s": ("Segmenter throughput, best batch size", "img/s", ""),
    "wsi_tiles_per_s": ("Whole slide (CMU-1-Small-Region), nuclei model", "tiles/s", ""),
    "wsi_peak_rss_mb": ("Whole slide, peak resident memory", "MiB", ""),
    "wsi_synthetic_peak_rss_mb": ("Peak memory by synthetic slide size", "MiB", "flat"),
    "wsi_peak_rss_growth_mb": ("Peak memory growth, smallest to largest slide", "MiB", "≈ 0"),
    "api_rps": ("REST API /v1/analyze under loopback load", "req/s", ""),
    "api_p95_ms": ("REST API latency, 95th percentile", "ms", ""),
    "app_first_result_s": ("App cold start to first full result", "s", ""),
}


def _number(value: float) -> str:
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def format_value(value: Any) -> tuple[str, str]:
    """``(median, p95)`` cells of one result (a timing object, a number or a mapping)."""
    if value is None:
        return "—", "—"
    if isinstance(value, dict) and "median" in value:
        extra = f" (batch {value['batch_size']})" if "batch_size" in value else ""
        return _number(value["median"]) + extra, _number(value["p95"])
    if isinstance(value, dict):
        return ", ".join(f"{size}: {_number(peak)}" for size, peak in value.items()), ""
    return _number(float(value)), ""


def _rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(key, label, unit, median, p95, note) for every key measured or skipped."""
    results, skipped = report["results"], report.get("skipped", {})
    keys = [key for key in METRICS if key in results]
    keys += sorted(key for key in results if key not in METRICS)
    rows = []
    for key in keys:
        label, unit, goal = METRICS.get(key, (key, "", ""))
        median, p95 = format_value(results[key])
        note = f"skipped: {skipped[key]}" if key in skipped else (f"goal {goal}" if goal else "")
        rows.append((key, label, unit, median, p95, note))
    return rows


def text_table(report: dict[str, Any]) -> str:
    """The results as a fixed-width table for the terminal."""
    rows = _rows(report)
    width = max([len(row[0]) for row in rows] + [6])
    lines = [f"{'metric':<{width}}  {'median':>22}  {'p95':>10}  unit     note"]
    for key, _label, unit, median, p95, note in rows:
        lines.append(f"{key:<{width}}  {median:>22}  {p95:>10}  {unit:<7}  {note}")
    return "\n".join(lines)


def _machine_line(report: dict[str, Any]) -> str:
    machine, versions = report["machine"], report["versions"]
    libraries = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
    return (
        f"{machine['cpu_model']}, {machine['cores']} usable cores, Keras backend "
        f"{machine['keras_backend']} on {machine['device']}; {libraries}."
    )


def markdown_block(report: dict[str, Any]) -> str:
    """The README's performance block: machine, table, and how it was produced."""
    lines = [
        f"Measured by `make bench` on {report['created']}"
        + (" (quick run: few repeats)" if report.get("quick") else "")
        + f": {_machine_line(report)}",
        "",
        "| Metric | Median | p95 | Unit | Note |",
        "|---|---|---|---|---|",
    ]
    for _key, label, unit, median, p95, note in _rows(report):
        lines.append(f"| {label} | {median} | {p95} | {unit} | {note} |")
    lines += [
        "",
        "Timings are over repeated warm runs in one benchmark run on a shared machine; "
        "`artifacts/bench.json` holds every sample and detail.",
    ]
    return "\n".join(lines)


def rewrite_block(text: str, block: str) -> str:
    """Replace what lies between the bench markers of ``text`` with ``block``.

    Raises:
        ConfigError: The markers are missing, repeated or out of order.
    """
    starts, ends = text.count(START_MARKER), text.count(END_MARKER)
    if starts != 1 or ends != 1:
        raise ConfigError(
            f"Expected one {START_MARKER} and one {END_MARKER} line; found {starts} and {ends}."
        )
    if text.index(END_MARKER) < text.index(START_MARKER):
        raise ConfigError(f"{END_MARKER} comes before {START_MARKER}; swap them.")
    head, rest = text.split(START_MARKER)
    tail = rest.split(END_MARKER)[1]
    return f"{head}{START_MARKER}\n{block.strip()}\n{END_MARKER}{tail}"


def rewrite_readme(path: Path, report: dict[str, Any]) -> None:
    """Rewrite only the bench block of the Markdown file at ``path``.

    Raises:
        ConfigError: The file is missing or lacks well-formed markers.
    """
    if not Path(path).is_file():
        raise ConfigError(f"README {path} does not exist.")
    text = Path(path).read_text(encoding="utf-8")
    Path(path).write_text(rewrite_block(text, markdown_block(report)), encoding="utf-8")


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write the report as indented JSON, creating the folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
