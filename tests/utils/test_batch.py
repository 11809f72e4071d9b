"""Tests of the batch CLI on tiny bundles: tasks, error rows, resuming, Dask equivalence.

The process-based local cluster and the SIGKILL test are in test_batch_cluster.py (slow).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from tests.utils.inference.test_bundle import save_classifier_bundle, save_segmenter_bundle
from utils.batch import BatchConfig, run_batch, runner
from utils.batch import models as batch_models
from utils.batch.__main__ import main
from utils.batch.runner import SYNCHRONOUS, list_items
from utils.batch.tasks import TaskOptions, get_task
from utils.encoding import rle_decode
from utils.errors import ConfigError, DatasetError, ModelError, ModelUnavailableError

SEGMENTER, CLASSIFIER = "ultrasound_segmenter", "ultrasound_classifier"


def save_batch_models(models_dir: Path) -> Path:
    """The tiny segmenter and classifier bundles, under the default bundle names."""
    save_segmenter_bundle(models_dir, SEGMENTER)
    save_classifier_bundle(models_dir, CLASSIFIER)
    return models_dir


@pytest.fixture(scope="session")
def batch_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_batch_models(tmp_path_factory.mktemp("batch_models"))


def write_cohort(folder: Path, n_images: int = 5) -> Path:
    """``n_images`` small speckle images (one in a subfolder), a corrupt PNG and a text file."""
    rng = np.random.default_rng(5)
    (folder / "site_b").mkdir(parents=True)
    for index in range(n_images):
        pixels = rng.gamma(2.0, 50.0, size=(36 + index, 44)).clip(0, 255).astype(np.uint8)
        name = f"site_b/case{index:02d}.png" if index == 0 else f"case{index:02d}.png"
        cv2.imwrite(str(folder / name), pixels)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"ignored")
    return folder


def make_config(input_dir: Path, out: Path, models_dir: Path, task: str, **changes) -> BatchConfig:
    options = TaskOptions(models_dir=models_dir, segmenter=SEGMENTER, classifier=CLASSIFIER)
    settings = {"scheduler": SYNCHRONOUS, "chunk_size": 2, "progress": False, **changes}
    return BatchConfig(input_dir=input_dir, task=task, out=out, options=options, **settings)


def without_timings(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns="seconds")


def test_list_items_finds_images_recursively_and_skips_hidden_and_other_files(
    tmp_path: Path,
) -> None:
    cohort = write_cohort(tmp_path / "cohort", n_images=3)
    (cohort / "IM0001").write_bytes(b"DICOM files often have no suffix")
    assert list_items(cohort) == [
        "IM0001",
        "broken.png",
        "case01.png",
        "case02.png",
        "site_b/case00.png",
    ]
    with pytest.raises(DatasetError, match="does not exist"):
        list_items(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No image files in"):
        list_items(tmp_path / "empty")


def test_unknown_tasks_are_config_errors_and_wsi_reads_slides() -> None:
    assert get_task("wsi").reads == "slide" and get_task("segment").reads == "image"
    with pytest.raises(ConfigError, match="Unknown batch task 'detect'; choose one of: classify"):
        get_task("detect")


def test_segment_rows_hold_the_mask_and_corrupt_files_are_error_rows(
    tmp_path: Path, batch_models_dir: Path
) -> None:
    cohort = write_cohort(tmp_path / "cohort")
    out = tmp_path / "seg.parquet"
    table = run_batch(make_config(cohort, out, batch_models_dir, "segment"))
    assert table.equals(pd.read_parquet(out))
    assert list(table["item"]) == sorted(list_items(cohort))
    broken = table.set_index("item").loc["broken.png"]
    assert broken["status"] == "error" and broken["error_type"] == "CorruptImageError"
    for row in table[table["status"] == "ok"].itertuples():
        mask = rle_decode({"size": [row.height, row.width], "counts": row.mask_rle})
        assert mask.sum() == row.lesion_area_px
    assert (table["status"] == "ok").sum() == 5
    # The tiny bundle's card has no descriptor check: no column is marked unreliable.
    assert (table.loc[table["status"] == "ok", "unreliable_descriptors"] == "[]").all()
    # Nor a texture reference: the index is there, the smoothness verdict is empty.
    ok = table[table["status"] == "ok"]
    assert (ok["texture_index"] > 0).all() and ok["too_smooth"].isna().all()


def test_segment_rows_name_the_descriptors_the_card_marks_unreliable(tmp_path: Path) -> None:
    lost = {"auc_malignant_vs_benign": {"reference": 0.95, "mask": 0.7}}
    lost["median_absolute_difference"] = 0.02
    agreement = {"descriptors": {"boundary_roughness": lost}}
    card = {"cv_pooled": {"native_resolution": {"measurement_agreement": agreement}}}
    # A reference no speckle image reaches: every image reads as too smooth.
    card["input_texture"] = {"percentiles": {"p01": 1e9}}
    models_dir = tmp_path / "models"
    save_segmenter_bundle(models_dir, SEGMENTER, **card)
    cohort = write_cohort(tmp_path / "cohort", n_images=2)
    config = make_config(cohort, tmp_path / "s.parquet", models_dir, "segment")
    config = replace(config, options=replace(config.options, threshold=0.01))
    ok = run_batch(config).query("status == 'ok'")
    assert ok["lesion_found"].all()  # a threshold this low finds a "lesion" everywhere
    assert (ok["unreliable_descriptors"] == '["boundary_roughness"]').all()
    assert ok["too_smooth"].astype(bool).all()


def test_classify_and_analyze_rows(tmp_path: Path, batch_models_dir: Path) -> None:
    cohort = write_cohort(tmp_path / "cohort", n_images=2)
    classify = run_batch(make_config(cohort, tmp_path / "c.parquet", batch_models_dir, "classify"))
    ok = classify[classify["status"] == "ok"]
    probabilities = ok[["prob_normal", "prob_benign", "prob_malignant"]].sum(axis=1)
    np.testing.assert_allclose(probabilities, 1.0, atol=1e-6)
    assert set(ok["prediction"]) <= {"normal", "benign", "malignant"}
    assert ok["refer"].isin([True, False]).all()
    # The test bundle ships no familiarity reference: the columns exist and are empty.
    assert ok["unfamiliar"].isna().all() and ok["familiarity_percentile"].isna().all()
    analyze = run_batch(
        make_config(cohort, tmp_path / "a.parquet", batch_models_dir, "analyze", chunk_size=1)
    )
    ok_analyze = analyze[analyze["status"] == "ok"]
    # The analyze task classifies exactly as the classify task does.
    np.testing.assert_allclose(ok_analyze["prob_benign"], ok["prob_benign"])
    assert ok_analyze["segmenter_cam_png"].str.startswith("iVBOR").all()
    assert (ok_analyze["classifier_cam_class"] == ok_analyze["prediction"]).all()
    assert (ok_analyze["texture_index"] > 0).all()


def test_an_interrupted_run_resumes_without_redoing_or_duplicating(
    tmp_path: Path, batch_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cohort = write_cohort(tmp_path / "cohort")
    clean = run_batch(make_config(cohort, tmp_path / "clean.parquet", batch_models_dir, "segment"))
    processed: list[str] = []
    crashed: list[bool] = []
    real_process_chunk = runner.process_chunk

    def crash_on_third_chunk(input_dir, items, task_name, config):
        if len(processed) == 4 and not crashed:
            crashed.append(True)
            raise KeyboardInterrupt("killed")
        processed.extend(items)
        return real_process_chunk(input_dir, items, task_name, config)

    monkeypatch.setattr(runner, "process_chunk", crash_on_third_chunk)
    out = tmp_path / "resumed.parquet"
    config = make_config(cohort, out, batch_models_dir, "segment")
    with pytest.raises(KeyboardInterrupt):
        run_batch(config)
    assert not out.exists() and len(list(out.with_name(out.name + ".parts").glob("part-*"))) == 2
    first_run = list(processed)
    resumed = run_batch(config)
    assert sorted(processed) == sorted(list_items(cohort))  # each image processed once
    assert set(processed[len(first_run) :]).isdisjoint(first_run)
    pd.testing.assert_frame_equal(without_timings(resumed), without_timings(clean))
    # A finished run re-run processes nothing and gives the same table.
    processed.clear()
    pd.testing.assert_frame_equal(without_timings(run_batch(config)), without_timings(clean))
    assert processed == []


def test_a_folder_of_another_run_is_refused(tmp_path: Path, batch_models_dir: Path) -> None:
    cohort = write_cohort(tmp_path / "cohort", n_images=1)
    out = tmp_path / "r.parquet"
    run_batch(make_config(cohort, out, batch_models_dir, "segment"))
    with pytest.raises(ConfigError, match="other settings \\(task differ\\)"):
        run_batch(make_config(cohort, out, batch_models_dir, "classify"))


def test_bad_options_and_missing_models_fail_before_any_work(
    tmp_path: Path, batch_models_dir: Path
) -> None:
    cohort = write_cohort(tmp_path / "cohort", n_images=1)
    out = tmp_path / "r.parquet"
    with pytest.raises(ConfigError, match="chunk_size must be a positive integer; got 0"):
        run_batch(make_config(cohort, out, batch_models_dir, "segment", chunk_size=0))
    with pytest.raises(ConfigError, match=r"must be a \.parquet file"):
        run_batch(make_config(cohort, tmp_path / "r.csv", batch_models_dir, "segment"))
    config = make_config(cohort, out, batch_models_dir, "segment")
    bad_threshold = BatchConfig(
        **{**config.__dict__, "options": TaskOptions(batch_models_dir, SEGMENTER, CLASSIFIER, 1.5)}
    )
    with pytest.raises(ConfigError, match="threshold must be between 0 and 1"):
        run_batch(bad_threshold)
    with pytest.raises(ModelUnavailableError, match="classifier bundle 'ultrasound_classifier'"):
        run_batch(make_config(cohort, out, tmp_path, "classify"))
    assert not out.with_name("r.parquet.parts").exists()


def test_a_damaged_model_stops_the_run_instead_of_failing_every_image(
    tmp_path: Path, batch_models_dir: Path
) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / f"{SEGMENTER}.json").write_bytes(
        (batch_models_dir / f"{SEGMENTER}.json").read_bytes()
    )
    (models_dir / f"{SEGMENTER}.keras").write_bytes(b"damaged")
    cohort = write_cohort(tmp_path / "cohort", n_images=1)
    batch_models.clear()
    with pytest.raises(ModelError, match="cannot be loaded"):
        run_batch(make_config(cohort, tmp_path / "r.parquet", models_dir, "segment"))


def test_dask_cluster_results_equal_the_single_process_run(
    tmp_path: Path, batch_models_dir: Path
) -> None:
    from distributed import LocalCluster

    cohort = write_cohort(tmp_path / "cohort", n_images=3)
    reference = run_batch(
        make_config(cohort, tmp_path / "one.parquet", batch_models_dir, "segment")
    )
    # Thread workers in this process (fast): the --scheduler tcp:// path through Dask.
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        distributed = run_batch(
            make_config(
                cohort,
                tmp_path / "dask.parquet",
                batch_models_dir,
                "segment",
                scheduler=cluster.scheduler_address,
            )
        )
    pd.testing.assert_frame_equal(without_timings(distributed), without_timings(reference))


def test_cli_reports_errors_with_status_2_and_summarises_a_run(
    tmp_path: Path, batch_models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cohort = write_cohort(tmp_path / "cohort", n_images=2)
    out = tmp_path / "cli.parquet"
    common = ["--input", str(cohort), "--out", str(out), "--models-dir", str(batch_models_dir)]
    assert main([*common, "--task", "wsi"]) == 2
    assert "wsi_model bundle 'nuclei_segmenter' is not installed" in capsys.readouterr().err
    assert main([*common, "--task", "segment", "--threshold", "2"]) == 2
    assert "threshold must be between 0 and 1" in capsys.readouterr().err
    assert main([*common, "--task", "segment", "--scheduler", SYNCHRONOUS, "--no-progress"]) == 0
    assert f"3 images, 2 ok, 1 errors -> {out}" in capsys.readouterr().out
    assert len(pd.read_parquet(out)) == 3


def test_a_part_interrupted_mid_write_is_discarded(tmp_path: Path, batch_models_dir: Path) -> None:
    cohort = write_cohort(tmp_path / "cohort", n_images=1)
    out = tmp_path / "r.parquet"
    parts = out.with_name("r.parquet.parts")
    parts.mkdir()
    leftover = parts / ".part-dead.parquet.0123.tmp"
    leftover.write_bytes(b"half a parquet file")
    table = run_batch(make_config(cohort, out, batch_models_dir, "segment"))
    assert not leftover.exists() and len(table) == 2


def test_wsi_task_gives_one_row_per_slide_and_error_rows_for_bad_slides(
    tmp_path: Path, nuclei_models_dir: Path, synthetic_slide: Path, slide_without_mpp: Path
) -> None:
    cohort = tmp_path / "slides"
    cohort.mkdir()
    shutil.copy(synthetic_slide, cohort / "a.tif")
    shutil.copy(slide_without_mpp, cohort / "b.tif")
    (cohort / "notes.txt").write_text("not a slide")
    config = make_config(
        cohort, tmp_path / "wsi.parquet", nuclei_models_dir, "wsi", scheduler=SYNCHRONOUS
    )
    table = run_batch(config).set_index("item")
    assert list(table.index) == ["a.tif", "b.tif"]
    ok = table.loc["a.tif"]
    assert ok["status"] == "ok" and ok["width"] == 1600 and ok["height"] == 1200
    assert ok["tiles_scored"] > 0 and ok["tissue_area_mm2"] > 0
    assert json.loads(ok["wsi_results_json"])["tiles"]["scored"] == ok["tiles_scored"]
    bad = table.loc["b.tif"]
    assert bad["status"] == "error" and bad["error_type"] == "MissingCalibrationError"
