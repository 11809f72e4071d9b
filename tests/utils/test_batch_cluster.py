"""Slow batch tests: a 2-process Dask cluster, and a run killed with SIGKILL then resumed.

Each starts fresh Python processes that import TensorFlow, hence ``slow``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.utils.test_batch import make_config, save_batch_models, without_timings, write_cohort
from utils.batch import models as batch_models
from utils.batch import run_batch
from utils.batch.runner import SYNCHRONOUS, list_items
from utils.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batch_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_batch_models(tmp_path_factory.mktemp("batch_models"))


def test_two_worker_process_cluster_equals_the_single_process_run_and_loads_once_per_worker(
    tmp_path: Path, batch_models_dir: Path
) -> None:
    from distributed import Client, LocalCluster

    cohort = write_cohort(tmp_path / "cohort", n_images=7)
    reference = run_batch(
        make_config(cohort, tmp_path / "one.parquet", batch_models_dir, "analyze")
    )
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        distributed = run_batch(
            make_config(
                cohort,
                tmp_path / "dask.parquet",
                batch_models_dir,
                "analyze",
                chunk_size=1,  # 8 chunks on 2 workers: each worker runs several
                scheduler=cluster.scheduler_address,
            )
        )
        loads = client.run(batch_models.load_count)
    pd.testing.assert_frame_equal(without_timings(distributed), without_timings(reference))
    # Each worker loaded the segmenter and the classifier once, whatever it ran.
    assert sorted(loads.values()) == [2, 2], loads


def _parts(out: Path) -> list[Path]:
    return sorted(out.with_name(out.name + ".parts").glob("part-*.parquet"))


def test_a_run_killed_mid_way_resumes_to_the_same_table(
    tmp_path: Path, batch_models_dir: Path
) -> None:
    cohort = write_cohort(tmp_path / "cohort", n_images=24)
    out = tmp_path / "killed.parquet"
    command = [
        sys.executable, "-m", "utils.batch",
        "--input", str(cohort), "--task", "analyze", "--out", str(out),
        "--models-dir", str(batch_models_dir), "--chunk-size", "1", "--no-progress",
    ]  # fmt: skip
    process = subprocess.Popen(
        [*command, "--scheduler", SYNCHRONOUS],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while len(_parts(out)) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = len(_parts(out))
    total = len(list_items(cohort))
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 3 <= finished_before < total and not out.exists()
    # Resume on the default local cluster (2 worker processes): only the rest is run.
    resumed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=540)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{total} images, {total - 1} ok, 1 errors" in resumed.stdout
    assert len(_parts(out)) == total  # one part per chunk of one image: nothing redone
    table = pd.read_parquet(out)
    assert list(table["item"]) == sorted(list_items(cohort))  # complete, no duplicates
    clean = run_batch(make_config(cohort, tmp_path / "clean.parquet", batch_models_dir, "analyze"))
    pd.testing.assert_frame_equal(without_timings(table), without_timings(clean))
