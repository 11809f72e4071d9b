from __future__ import annotations

import json
from pathlib import Path

import pytest

from utils.bench.report import (
    END_MARKER,
    START_MARKER,
    format_value,
    markdown_block,
    rewrite_block,
    rewrite_readme,
    text_table,
    write_json,
)
from utils.errors import ConfigError

README = f"""# Project

Intro.

## Performance

{START_MARKER}
old numbers
{END_MARKER}

## After
Kept.
"""


def report() -> dict:
    return {
        "created": "2026-11-23 06:00 UTC",
        "quick": False,
        "machine": {
            "cpu_model": "Example CPU",
            "cores": 2,
            "keras_backend": "tensorflow",
            "device": "cpu",
        },
        "versions": {"python": "3.11", "keras": "3.15", "jax": None},
        "results": {
            "analyze_ms": {"median": 250.0, "p95": 310.5, "n": 30},
            "speedup_vs_naive": 4.2,
            "classify_img_per_s": None,
            "segment_img_per_s": {"median": 40.0, "p95": 35.0, "n": 8, "batch_size": 16},
            "wsi_synthetic_peak_rss_mb": {"5000 x 5000": 700.0, "20000 x 20000": 702.5},
            "custom_key": 3,
        },
        "skipped": {"classify_img_per_s": "bundle 'ultrasound_classifier' is not installed"},
    }


def test_format_value_of_each_result_kind() -> None:
    assert format_value(None) == ("—", "—")
    assert format_value({"median": 250.0, "p95": 310.5, "n": 3}) == ("250.0", "310.5")
    assert format_value({"median": 40.0, "p95": 35.0, "batch_size": 16})[0] == "40.0 (batch 16)"
    assert format_value(4.2) == ("4.20", "")
    assert format_value({"a": 1.0, "b": 12.0}) == ("a: 1.00, b: 12.0", "")


def test_rewrite_block_replaces_only_between_the_markers() -> None:
    new = rewrite_block(README, "| new | table |")
    assert "old numbers" not in new
    assert f"{START_MARKER}\n| new | table |\n{END_MARKER}" in new
    assert new.startswith("# Project\n\nIntro.") and new.endswith("## After\nKept.\n")
    assert rewrite_block(new, "| new | table |") == new  # idempotent


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# no markers\n", "found 0 and 0"),
        (README + START_MARKER, "found 2 and 1"),
        (f"{END_MARKER}\n{START_MARKER}\n", "comes before"),
    ],
)
def test_rewrite_block_rejects_missing_repeated_or_swapped_markers(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        rewrite_block(text, "x")


def test_markdown_block_has_machine_table_and_skip_reasons() -> None:
    block = markdown_block(report())
    assert "Example CPU, 2 usable cores, Keras backend tensorflow on cpu" in block
    assert "jax" not in block  # libraries that are not installed are not listed
    assert "| Full analysis of one 500×500 image, warm | 250.0 | 310.5 | ms | goal ≤ 300 |" in block
    assert "skipped: bundle 'ultrasound_classifier' is not installed" in block
    assert "| custom_key | 3.00 |" in block


def test_text_table_lists_every_result_key() -> None:
    table = text_table(report())
    for key in report()["results"]:
        assert key in table


def test_rewrite_readme_on_a_copy(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    rewrite_readme(readme, report())
    text = readme.read_text(encoding="utf-8")
    assert "| Speed-up of the analysis over the naive pattern | 4.20 |" in text
    assert text.endswith("## After\nKept.\n")


def test_rewrite_readme_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        rewrite_readme(tmp_path / "missing.md", report())


def test_write_json_round_trips_and_refuses_nan(tmp_path: Path) -> None:
    path = tmp_path / "out" / "bench.json"
    write_json(path, report())
    assert json.loads(path.read_text()) == report()
    with pytest.raises(ValueError, match="not JSON compliant"):
        write_json(path, {"results": {"x": float("nan")}})
