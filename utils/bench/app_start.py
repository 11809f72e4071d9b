"""``app_first_result_s``: from a cold start of the app to its first full result.

Each run is a fresh Python process that drives the Analyse page with Streamlit's
``AppTest`` (the page's own script, the built-in example it selects by default, the
real cached model loaders), as a browser session would. The clock starts right before
the process is spawned and stops when the page has rendered its images and its
measurement table, so it includes the interpreter start, the imports, loading and
warming the models and the first analysis.

The driver is a separate program passed to ``python -c``: ``utils`` never imports
Streamlit, it only starts a process that does, as it would start a browser.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from utils.bench.outcome import BenchOptions, Outcome
from utils.bench.stats import timing_stats
from utils.paths import SAVED_MODELS_DIR

__all__ = ["DRIVER", "measure_app_start"]

PAGE = Path("pages") / "1_Analyse.py"
_RUNS = {False: 3, True: 1}
_TIMEOUT_S = 900

DRIVER = """
import json, sys, time
from streamlit.testing.v1 import AppTest
app = AppTest.from_file(sys.argv[1], default_timeout=float(sys.argv[2])).run()
done_at = time.time()
print(json.dumps({
    "done_at": done_at,
    "exceptions": [str(item.value) for item in app.exception][:3],
    "errors": [str(item.value) for item in app.error][:3],
    "images": len(app.image),
    "tables": len(app.dataframe),
}))
"""


def cold_start(options: BenchOptions) -> tuple[float, dict]:
    """One cold start: seconds to the first full result, and what the page showed.

    Raises:
        RuntimeError: The driver failed, or the page showed no result.
    """
    command = [sys.executable, "-c", DRIVER, str(PAGE), str(_TIMEOUT_S)]
    started = time.time()
    done = subprocess.run(
        command,
        cwd=options.project_root,
        capture_output=True,
        text=True,
        check=False,
        timeout=_TIMEOUT_S + 60,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the app driver exited with {done.returncode}: {done.stderr[-600:]}")
    shown = json.loads(lines[-1])
    if shown["exceptions"] or shown["errors"] or not shown["images"] or not shown["tables"]:
        raise RuntimeError(f"the Analyse page showed no full result: {shown}")
    return shown["done_at"] - started, shown


def measure_app_start(options: BenchOptions) -> Outcome:
    """Cold-start the Analyse page a few times (once when quick)."""
    outcome = Outcome()
    key = "app_first_result_s"
    if Path(options.models_dir).resolve() != SAVED_MODELS_DIR.resolve():
        outcome.skip(key, f"the app reads {SAVED_MODELS_DIR} only, not {options.models_dir}")
        return outcome
    if not options.bundle_present(options.segmenter):
        outcome.skip(key, options.missing_reason(options.segmenter))
        return outcome
    seconds, shown = [], {}
    try:
        for _ in range(_RUNS[options.quick]):
            elapsed, shown = cold_start(options)
            seconds.append(elapsed)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        outcome.skip(key, f"measurement failed: {error}")
        return outcome
    outcome.results[key] = timing_stats(seconds, scale=1.0)
    outcome.details["app_start"] = {
        "page": str(PAGE),
        "classifier_installed": options.bundle_present(options.classifier),
        "panels": shown,
        "samples_s": [round(value, 2) for value in seconds],
    }
    return outcome
