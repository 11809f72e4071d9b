"""Tests of the Models page helpers: card tables, weights identity, evaluation plots."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from helpers.model_card_figures import (
    card_plots,
    confusion_figure,
    reliability_figure,
    roc_figure,
)
from helpers.model_card_metrics import (
    cross_site_note,
    cv_fold_rows,
    cv_summary_rows,
    evaluation_class_names,
    evaluation_value,
    familiarity_rows,
    per_class_rows,
    pooled_metric_rows,
)
from helpers.model_cards import (
    bundle_cards,
    cached_weights_info,
    card_rows,
    loaded_by,
    overview_rows,
    setting_rows,
    weights_info,
)
from tests.utils.inference.test_bundle import save_classifier_bundle, save_segmenter_bundle
from utils.errors import ModelError
from utils.evaluation.classification import classification_plot_data
from utils.training.classifier_card import build_classifier_card, pooled_cv_section

NAMES = ["normal", "benign", "malignant"]


def _predictions(seed: int = 0, n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Random but informative probabilities of 3 classes and their true labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[labels]
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), labels


def synthetic_evaluation(seed: int = 0) -> dict:
    """Plot data written by the real producer from synthetic predictions."""
    return classification_plot_data(*_predictions(seed), NAMES)


def shipped_card() -> dict:
    """A card as utils.training.classifier_card ships it, from synthetic predictions."""
    cv = cv_block()
    final = {
        "config": {"weights": None},
        "architecture": "compact_cnn",
        "input_shape": [32, 32, 1],
        "class_names": NAMES,
        "temperature": 1.3,
        "n_images": 90,
        "epochs_run": 3,
        "class_weights": dict.fromkeys(NAMES, 1.0),
    }
    pooled = pooled_cv_section(*_predictions(), tuple(NAMES))
    return build_classifier_card(cv, final, pooled, {"n_images": 90}, version="test")


def cv_block() -> dict:
    folds = [
        {"fold": k, "n_val": 30, "accuracy": acc, "ece": 0.05, "confusion_matrix": matrix}
        for k, (acc, matrix) in enumerate(
            [(0.8, [[9, 1, 0], [1, 8, 1], [0, 2, 8]]), (0.7, [[8, 2, 0], [2, 7, 1], [1, 1, 8]])]
        )
    ]
    summary = {
        "accuracy": {"mean": 0.75, "sd": 0.0707, "n": 2},
        "macro_auc": {"mean": None, "sd": None, "n": 0},
        "ece": {"mean": 0.05, "sd": 0.0, "n": 2},
    }
    return {"n_folds": 2, "folds": folds, "summary": summary}


# ----------------------------------------------------------------------------- bundles


def test_bundle_cards_lists_every_bundle_with_its_markdown_and_card_check(tmp_path: Path) -> None:
    save_segmenter_bundle(tmp_path)
    save_classifier_bundle(tmp_path, evaluation=synthetic_evaluation())
    (tmp_path / "tiny_segmenter.md").unlink()  # rendered from the JSON when absent
    broken = json.loads((tmp_path / "tiny_classifier.json").read_text())
    broken["class_names"] = ["only_one"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    (tmp_path / "broken.keras").write_bytes((tmp_path / "tiny_classifier.keras").read_bytes())
    (tmp_path / "orphan.keras").write_bytes(b"no card beside it")

    cards = {card.name: card for card in bundle_cards(tmp_path)}

    assert sorted(cards) == ["broken", "tiny_classifier", "tiny_segmenter"]
    assert cards["tiny_classifier"].problem is None
    assert "class_names must list at least 2" in cards["broken"].problem
    assert cards["tiny_segmenter"].markdown.startswith("# tiny_segmenter")
    assert cards["tiny_classifier"].weights_path == tmp_path / "tiny_classifier.keras"
    rows = overview_rows(list(cards.values()))
    assert [row["card check"] for row in rows] == ["invalid (see its tab)", "valid", "valid"]


def test_a_card_that_is_not_json_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "bad.keras").write_bytes(b"x")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"bad\.json is not valid JSON"):
        bundle_cards(tmp_path)


def test_a_card_that_is_a_json_list_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "listy.keras").write_bytes(b"x")
    (tmp_path / "listy.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="must be a JSON object"):
        bundle_cards(tmp_path)


def test_an_empty_or_missing_folder_has_no_bundles(tmp_path: Path) -> None:
    assert bundle_cards(tmp_path) == []
    assert bundle_cards(tmp_path / "missing") == []


def test_loaded_by_names_the_analyse_page_roles() -> None:
    assert "segmentation" in loaded_by("ultrasound_segmenter")
    assert "classification" in loaded_by("ultrasound_classifier")
    assert loaded_by("histo_patch").startswith("not loaded by the Analyse page")


# ----------------------------------------------------------------------------- weights


def test_weights_info_hashes_the_exact_bytes(tmp_path: Path) -> None:
    path = tmp_path / "w.keras"
    payload = bytes(range(256)) * 5000  # > 1 MB: more than one read chunk
    path.write_bytes(payload)
    info = weights_info(path)
    assert info.sha256 == hashlib.sha256(payload).hexdigest()
    assert info.size_bytes == len(payload)
    assert info.modified.tzinfo is not None
    fields = {row["field"]: row["value"] for row in info.rows()}
    assert fields["SHA-256"] == info.sha256 and "1,280,000 bytes" in fields["size"]


def test_cached_weights_info_rehashes_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "w.keras"
    path.write_bytes(b"first")
    first = cached_weights_info(path).sha256
    path.write_bytes(b"second version")
    assert cached_weights_info(path).sha256 == hashlib.sha256(b"second version").hexdigest()
    assert first != cached_weights_info(path).sha256


@pytest.mark.parametrize("reader", [weights_info, cached_weights_info])
def test_missing_weights_are_a_model_error(tmp_path: Path, reader) -> None:
    with pytest.raises(ModelError, match=r"Weights file .*gone.keras cannot be read"):
        reader(tmp_path / "gone.keras")


# ----------------------------------------------------------------------------- card tables


def test_card_rows_say_when_a_field_is_not_recorded() -> None:
    rows = {row["field"]: row["value"] for row in card_rows({"task": "classification"})}
    assert rows["task"] == "classification"
    assert rows["classes"] == "not recorded in this card"
    rows = {
        row["field"]: row["value"]
        for row in card_rows({"class_names": NAMES, "input_shape": [8, 8, 1]})
    }
    assert rows["classes"] == "normal, benign, malignant" and rows["input shape"] == "8, 8, 1"


def test_setting_rows_show_postprocess_and_temperature() -> None:
    rows = setting_rows({"postprocess": {"threshold": 0.4}, "task": "segmentation"})
    assert rows == [{"setting": "postprocess.threshold", "value": "0.4"}]
    rows = setting_rows({"task": "classification", "temperature": 1.7})
    assert {"setting": "temperature", "value": "1.7"} in rows
    rows = setting_rows({"task": "classification"})
    assert rows[0]["value"].startswith("not recorded")


def test_cv_summary_reads_cv_metrics_or_the_cv_json_summary() -> None:
    house = {"cv_metrics": {"dice_mean": {"mean": 0.812345, "sd": 0.0213, "n": 5}}}
    assert cv_summary_rows(house) == [
        {"metric": "dice_mean", "mean ± sd": "0.812 ± 0.021", "folds": "5"}
    ]
    rows = cv_summary_rows({"cv": cv_block()})
    assert rows[0] == {"metric": "accuracy", "mean ± sd": "0.750 ± 0.071", "folds": "2"}
    assert rows[1]["mean ± sd"].startswith("n/a")
    assert cv_summary_rows({"task": "segmentation"}) is None


def test_cv_fold_rows_keep_numeric_columns_only() -> None:
    rows = cv_fold_rows({"cv": cv_block()})
    assert rows == [
        {"fold": 0, "n_val": 30, "accuracy": 0.8, "ece": 0.05},
        {"fold": 1, "n_val": 30, "accuracy": 0.7, "ece": 0.05},
    ]
    assert cv_fold_rows({"cv": {"folds": []}}) is None
    assert cv_fold_rows({}) is None


# ----------------------------------------------------------------------------- evaluation data


def test_evaluation_value_prefers_pooled_plots_then_evaluation_then_cv() -> None:
    card = {
        "calibration": {"method": "temperature scaling"},  # settings, not plot data
        "cv_pooled": {"plots": {"roc": {"a": 1}}},
        "evaluation": {"roc": {}, "confusion_matrix": [[1]]},
        "cv": {"confusion_matrix": [[2]], "reliability": {"edges": []}},
    }
    assert evaluation_value(card, "roc") == ({"a": 1}, "cv_pooled.plots.roc")
    assert evaluation_value(card, "confusion_matrix") == ([[1]], "evaluation.confusion_matrix")
    assert evaluation_value(card, "reliability", "calibration") == (
        {"edges": []},
        "cv.reliability",
    )
    assert evaluation_value({"calibration": {"edges": []}}, "reliability", "calibration") is None
    assert evaluation_value({}, "roc") is None


def test_class_names_come_with_the_plot_data() -> None:
    card = {"class_names": ["a", "b"], "cv_pooled": {"plots": {"class_names": ["x", "y"]}}}
    assert evaluation_class_names(card) == ["x", "y"]
    assert evaluation_class_names({"class_names": ["a", "b"]}) == ["a", "b"]
    assert evaluation_class_names({}) is None


def test_a_shipped_card_shows_its_pooled_metrics_and_settings() -> None:
    card = shipped_card()
    pooled = card["cv_pooled"]["metrics"]
    rows = {row["metric"]: row for row in pooled_metric_rows(card)}
    assert rows["n"]["value"] == "90"
    assert rows["accuracy"]["value"] == f"{pooled['accuracy']:.3f}"
    low, high = pooled["ci95"]["accuracy"]
    assert rows["accuracy"]["95% CI"] == f"{low:.3f} – {high:.3f}"
    assert rows["ece"]["95% CI"] == "not recorded"
    classes = per_class_rows(card)
    assert [row["class"] for row in classes] == NAMES
    assert classes[2]["support"] == 30
    settings = {row["setting"]: row["value"] for row in setting_rows(card)}
    assert settings["temperature"] == "1.3"
    assert settings["calibration.method"].startswith("temperature scaling")
    assert cv_summary_rows(card)[0]["metric"] == "accuracy"
    assert pooled_metric_rows({"task": "classification"}) is None
    assert per_class_rows({"task": "classification"}) is None


def test_a_segmenter_card_shows_its_pooled_dice_and_false_positive_rate() -> None:
    metrics = {
        "n": 120,
        "lesion_dice": 0.786,
        "normal_false_positive_rate": 0.25,
        "ci95": {"lesion_dice": [0.78, 0.79], "normal_false_positive_rate": [0.15, 0.36]},
    }
    rows = {row["metric"]: row for row in pooled_metric_rows({"cv_pooled": {"metrics": metrics}})}
    assert list(rows) == ["n", "lesion_dice", "normal_false_positive_rate"]
    assert rows["lesion_dice"]["value"] == "0.786"
    assert rows["normal_false_positive_rate"]["95% CI"] == "0.150 – 0.360"


def test_pooled_metrics_not_computable_say_so() -> None:
    card = {"cv_pooled": {"metrics": {"n": 4, "auc_malignant": None, "ci95": None}}}
    rows = {row["metric"]: row["value"] for row in pooled_metric_rows(card)}
    assert rows == {"n": "4", "auc_malignant": "n/a (not computable on these images)"}


def test_a_confusion_matrix_only_in_the_folds_is_their_sum() -> None:
    value, where = evaluation_value({"cv": cv_block()}, "confusion_matrix")
    assert value == [[17, 3, 0], [3, 15, 2], [1, 3, 16]]
    assert where == "sum over the 2 folds' held-out sets"


@pytest.mark.parametrize(
    ("matrices", "message"),
    [
        ([[[1, 0], [0, 1]], [[1, 0, 0], [0, 1, 0], [0, 0, 1]]], "different shapes"),
        ([[[1, -1], [0, 1]], [[1, 0], [0, 1]]], "non-negative integer counts"),
    ],
)
def test_fold_matrices_that_cannot_be_summed_are_a_model_error(matrices, message: str) -> None:
    card = {"cv": {"folds": [{"confusion_matrix": matrix} for matrix in matrices]}}
    with pytest.raises(ModelError, match=message):
        evaluation_value(card, "confusion_matrix")


def test_card_plots_draw_the_recorded_curves_of_a_shipped_card() -> None:
    card = shipped_card()
    plots = card["cv_pooled"]["plots"]
    roc, reliability, confusion = card_plots(card)
    assert roc.note == "from the card's cv_pooled.plots.roc"
    traces = {trace.name: trace for trace in roc.figure.data}
    auc = plots["roc"]["malignant"]["auc"]
    assert f"malignant (AUC {auc:.3f})" in traces
    np.testing.assert_allclose(
        traces[f"malignant (AUC {auc:.3f})"].x, plots["roc"]["malignant"]["fpr"]
    )
    # The ECE computed from the recorded bins matches the card's pooled ECE.
    title = reliability.figure.layout.title.text
    ece = float(re.search(r"ECE ([\d.]+)", title).group(1))
    assert ece == pytest.approx(card["cv_pooled"]["metrics"]["ece"], abs=1.5e-3)
    assert reliability.note == "from the card's cv_pooled.plots.reliability"
    heatmap = confusion.figure.data[0]
    assert np.array_equal(np.array(heatmap.z), np.array(plots["confusion_matrix"]))
    assert list(heatmap.x) == NAMES


def test_card_plots_say_not_recorded_and_never_draw_from_nothing() -> None:
    plots = card_plots({"task": "segmentation"})
    assert [plot.figure for plot in plots] == [None, None, None]
    assert {plot.note for plot in plots} == {"not recorded in this card"}
    assert not any(plot.malformed for plot in plots)


def test_card_plots_report_malformed_data_instead_of_raising() -> None:
    card = {
        "class_names": NAMES,
        "evaluation": {"roc": "high", "confusion_matrix": [[1, 2], [3, 4]]},
    }
    roc, reliability, confusion = card_plots(card)
    assert roc.malformed and "roc must map each class name" in roc.note
    assert not reliability.malformed and reliability.figure is None
    assert confusion.malformed and "2 rows but the card names 3 classes" in confusion.note


def test_roc_without_a_recorded_auc_uses_the_area_under_the_recorded_points() -> None:
    figure = roc_figure([{"class": "malignant", "fpr": [0, 0, 1], "tpr": [0, 1, 1]}])
    assert figure.data[1].name == "malignant (AUC 1.000)"
    figure = roc_figure({"x": {"fpr": [0, 0.5, 1], "tpr": [0, 0.5, 1]}})
    assert figure.data[1].name == "x (AUC 0.500)"


@pytest.mark.parametrize(
    ("roc", "message"),
    [
        ({"m": {"fpr": [0, 1]}}, "must hold 'fpr' and 'tpr'"),
        ({"m": {"fpr": [0, 1.5], "tpr": [0, 1]}}, r"fpr must be a list of numbers in \[0, 1\]"),
        ({"m": {"fpr": [0, 0.5, 1], "tpr": [0, 1]}}, "equally long fpr and tpr"),
        ({"m": {"fpr": [0], "tpr": [1]}}, "at least 2 points"),
        ({}, "roc holds no curve"),
        ([{"fpr": [0, 1], "tpr": [0, 1]}], "roc must map each class name"),
    ],
)
def test_bad_roc_data_is_a_model_error(roc, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        roc_figure(roc)


def test_reliability_without_a_recorded_ece_computes_it_from_the_bins() -> None:
    bins = {
        "edges": [0.0, 0.5, 1.0],
        "counts": [2, 8],
        "mean_confidence": [0.4, 0.9],
        "accuracy": [0.5, 0.75],
    }
    # (2 * 0.1 + 8 * 0.15) / 10 = 0.14
    assert "ECE 0.140" in reliability_figure(bins).layout.title.text
    empty_bin = {**bins, "counts": [0, 8], "mean_confidence": [None, 0.9], "accuracy": [None, 0.75]}
    assert "ECE 0.150" in reliability_figure(empty_bin).layout.title.text


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ([0.1, 0.2], "calibration must be an object"),
        ({"edges": [0, 1]}, "calibration lacks counts, mean_confidence, accuracy"),
        (
            {"edges": [0, 0.5, 1], "counts": [1], "mean_confidence": [0.3], "accuracy": [1]},
            "needs n\\+1 edges",
        ),
        (
            {"edges": [0, 1], "counts": [-1], "mean_confidence": [0.3], "accuracy": [1]},
            "non-negative integers",
        ),
        (
            {"edges": [0, 1], "counts": [1], "mean_confidence": [0.3], "accuracy": [2]},
            "accuracy must be a list of numbers in \\[0, 1\\] or null",
        ),
    ],
)
def test_bad_calibration_data_is_a_model_error(calibration, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        reliability_figure(calibration)


@pytest.mark.parametrize(
    ("matrix", "names", "message"),
    [
        ([[1, 2, 3], [4, 5, 6]], None, "square list of rows"),
        ([[1.5, 0], [0, 1]], None, "non-negative integer counts"),
        ([], None, "square list of rows"),
        ([[1, 0], [0, 1]], NAMES, "2 rows but the card names 3 classes"),
    ],
)
def test_bad_confusion_matrices_are_a_model_error(matrix, names, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        confusion_figure(matrix, names)


def test_confusion_without_class_names_numbers_the_classes() -> None:
    figure = confusion_figure([[3, 1], [0, 4]], None)
    assert list(figure.data[0].x) == ["class 0", "class 1"]


def _cross_dataset_card(task: str, metric: str) -> dict:
    return {
        "task": task,
        "cross_dataset": {
            "split": "dataset",
            "per_fold": [
                {"held_out_dataset": "bus-bra", metric: 0.659},
                {"held_out_dataset": "busi", metric: 0.705},
            ],
        },
        "cross_dataset_reference": {"summary": {metric: {"mean": 0.79, "sd": 0.01, "n": 2}}},
    }


@pytest.mark.parametrize(
    ("task", "metric", "label"),
    [
        ("classification", "auc_malignant", "malignant-vs-rest AUC"),
        ("segmentation", "dice_mean", "lesion Dice"),
    ],
)
def test_cross_site_note_quotes_each_held_out_dataset_and_the_reference(
    task: str, metric: str, label: str
) -> None:
    note = cross_site_note(_cross_dataset_card(task, metric))
    assert note is not None
    assert f"{label} was 0.66 on bus-bra and 0.70 on busi, against 0.79 when" in note
    assert "Expect lower accuracy" in note


def test_cross_site_note_without_a_reference_quotes_the_held_out_scores_only() -> None:
    card = _cross_dataset_card("classification", "auc_malignant")
    del card["cross_dataset_reference"]
    note = cross_site_note(card)
    assert note is not None and "0.66 on bus-bra and 0.70 on busi." in note


@pytest.mark.parametrize(
    "change",
    [
        lambda card: card.pop("cross_dataset"),
        lambda card: card["cross_dataset"].update(split="grouped"),
        lambda card: card["cross_dataset"].update(per_fold=[{"held_out_dataset": "busi"}]),
        lambda card: card.update(task="nuclei"),
    ],
)
def test_cross_site_note_is_none_without_a_leave_one_dataset_out_run(change) -> None:
    card = _cross_dataset_card("classification", "auc_malignant")
    change(card)
    assert cross_site_note(card) is None


def _spread(mean: float) -> dict:
    return {"mean": mean, "sd": 0.01, "per_fold": [mean]}


def test_familiarity_rows_give_the_false_alarm_outside_and_cross_site_rates() -> None:
    card = {
        "familiarity": {
            "validation": {
                "held_out_flagged": _spread(0.062),
                "outside": {
                    "Tissue_Images": {"n": 30, "flagged": _spread(0.96), "auroc": _spread(0.988)}
                },
                "cross_site": {
                    "busi->bus-bra": {
                        "flagged_same_site": _spread(0.059),
                        "flagged_other_site": _spread(0.374),
                        "auroc": _spread(0.846),
                    }
                },
            }
        }
    }
    rows = familiarity_rows(card)
    assert rows[0]["flagged unfamiliar"] == "6%" and rows[0]["AUROC vs held-out"] == ""
    assert rows[1] == {
        "images": "Tissue_Images (30 images, outside the training data)",
        "flagged unfamiliar": "96%",
        "AUROC vs held-out": "0.988",
    }
    assert rows[2]["images"] == "bus-bra patients, flag fitted on busi only (another site)"
    assert rows[2]["flagged unfamiliar"] == "37% (same site: 6%)"
    assert familiarity_rows({"familiarity": {"file": "x.npz"}}) is None
    assert familiarity_rows({}) is None
