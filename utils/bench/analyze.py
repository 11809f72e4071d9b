"""``analyze_ms``: the full analysis of one 500 x 500 ultrasound image, warm.

The seeds' naive pattern runs on the same image in the same process, which gives
``speedup_vs_naive``.

Timed region of both paths: decode the PNG bytes, segment, measure, classify, and the
Grad-CAMs of the segmenter and the classifier. Models and explainers are loaded and
warmed before timing, as the app and the API do at start-up.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from typing import Any

import numpy as np

from utils.analysis import AnalysisResult, AnalysisSettings, analyse_ultrasound
from utils.bench.naive import NaiveModels, naive_analysis
from utils.bench.outcome import BenchOptions, Outcome
from utils.bench.sample import SIDE, example_png
from utils.bench.stats import repeat_timed, timing_stats
from utils.explain import LESION_AREA, CamExplainer
from utils.image_io import load_image
from utils.inference.bundle import images_for_model, to_float_batch
from utils.inference.classifier import LesionClassifier
from utils.inference.segmenter import LesionSegmenter

__all__ = ["FastModels", "load_fast_models", "measure_analyze", "profile_analysis"]

#: Naive runs are slow (seconds each): fewer repeats than the fast path.
_NAIVE_REPEATS = {True: 2, False: 8}


class FastModels:
    """The predictors and explainers, loaded, compiled and warmed once."""

    def __init__(self, options: BenchOptions, *, with_classifier: bool) -> None:
        """Load the bundles and warm every compiled function the analysis uses."""
        folder = options.models_dir
        self.segmenter = LesionSegmenter.from_bundle(options.segmenter, models_dir=folder)
        self.segmenter_explainer = CamExplainer(self.segmenter.model)
        self.segmenter_explainer.explain(
            np.zeros(self.segmenter.input_shape, np.float32), LESION_AREA
        )
        self.classifier: LesionClassifier | None = None
        self.classifier_explainer: CamExplainer | None = None
        if with_classifier:
            self.classifier = LesionClassifier.from_bundle(options.classifier, models_dir=folder)
            cam_model = self.classifier.cam_model
            self.classifier_explainer = CamExplainer(cam_model)
            self.classifier_explainer.explain(np.zeros(cam_model.input_shape[1:], np.float32), 0)

    def analyse(self, png: bytes) -> AnalysisResult:
        """Decode and analyse one image (the timed unit of ``analyze_ms``)."""
        return analyse_ultrasound(
            load_image(png),
            AnalysisSettings(),
            segmenter=self.segmenter,
            classifier=self.classifier,
            segmenter_explainer=self.segmenter_explainer,
            classifier_explainer=self.classifier_explainer,
        )

    def naive_models(self) -> NaiveModels:
        """The same Keras models and layers, for the naive baseline."""
        classifier = self.classifier
        return NaiveModels(
            segmenter=self.segmenter.model,
            segmenter_shape=self.segmenter.input_shape,
            segmenter_layer=self.segmenter_explainer.default_layer,
            postprocess=self.segmenter.postprocess,
            classifier=None if classifier is None else classifier.model,
            classifier_shape=None if classifier is None else classifier.input_shape,
            classifier_layer=None
            if self.classifier_explainer is None
            else self.classifier_explainer.default_layer,
        )


def load_fast_models(options: BenchOptions) -> FastModels:
    """:class:`FastModels` with the classifier when its bundle is installed."""
    return FastModels(options, with_classifier=options.bundle_present(options.classifier))


def xla_cam_ab(models: FastModels, png: bytes, pairs: int) -> dict[str, Any]:
    """Paired A/B of the Grad-CAM fast path: XLA-compiled vs plain graph, interleaved.

    Both explainers explain the same model inputs in alternation, so load changes on a
    shared machine hit both alike; the ratio is the median of the per-pair ratios.
    """
    image = load_image(png)
    cases = [(models.segmenter.model, models.segmenter.input_shape, LESION_AREA)]
    if models.classifier is not None:
        cases.append((models.classifier.model, models.classifier.input_shape, 0))
    report = {}
    for model, shape, target in cases:
        batch = to_float_batch(images_for_model([image], shape), shape)[0]
        explainers = {flag: CamExplainer(model, jit_compile=flag) for flag in (True, False)}
        times: dict[bool, list[float]] = {True: [], False: []}
        for explainer in explainers.values():
            explainer.explain(batch, target)  # build and compile outside the clock
        for _ in range(pairs):
            for flag, explainer in explainers.items():
                times[flag] += repeat_timed(
                    lambda e=explainer, b=batch, t=target: e.explain(b, t), repeats=1, warmup=0
                )
        ratios = np.asarray(times[False]) / np.asarray(times[True])
        report[model.name] = {
            "xla_ms": timing_stats(times[True]),
            "plain_ms": timing_stats(times[False]),
            "plain_over_xla": round(float(np.median(ratios)), 2),
        }
    return report


def _step_medians(results: list[AnalysisResult]) -> dict[str, float]:
    """Median milliseconds of each analysis step, from the results' own timings."""
    steps = results[0].timings.keys()
    return {
        step: round(float(np.median([r.timings[step] for r in results])) * 1000, 2)
        for step in steps
    }


def measure_analyze(options: BenchOptions) -> Outcome:
    """Time the fast analysis and the naive baseline on the same 500 x 500 image."""
    outcome = Outcome()
    if not options.bundle_present(options.segmenter):
        reason = options.missing_reason(options.segmenter)
        for key in ("analyze_ms", "naive_analyze_ms", "speedup_vs_naive"):
            outcome.skip(key, reason)
        return outcome
    models = load_fast_models(options)
    png = example_png()
    kept: list[AnalysisResult] = []
    fast = repeat_timed(
        lambda: kept.append(models.analyse(png)), repeats=options.analysis_repeats, warmup=2
    )
    naive_models = models.naive_models()
    naive_repeats = _NAIVE_REPEATS[options.quick]
    if options.repeats is not None:
        naive_repeats = min(naive_repeats, options.repeats)
    naive = repeat_timed(lambda: naive_analysis(png, naive_models), repeats=naive_repeats, warmup=1)
    fast_stats, naive_stats = timing_stats(fast), timing_stats(naive)
    speedup = round(naive_stats["median"] / fast_stats["median"], 2)
    full = models.classifier is not None
    suffix = "" if full else "_segment_only"
    outcome.results[f"analyze{suffix}_ms"] = fast_stats
    outcome.results[f"naive_analyze{suffix}_ms"] = naive_stats
    outcome.results[f"speedup_vs_naive{suffix}"] = speedup
    if not full:
        reason = (
            f"{options.missing_reason(options.classifier)}: the analysis without a "
            "classifier is reported as *_segment_only"
        )
        for key in ("analyze_ms", "naive_analyze_ms", "speedup_vs_naive"):
            outcome.skip(key, reason)
    outcome.details["xla_gradcam_ab"] = xla_cam_ab(models, png, 3 if options.quick else 10)
    outcome.details["analyze"] = {
        "image": f"{SIDE}x{SIDE} PNG from examples/malignant_irregular_01.png",
        "with_classifier": full,
        "fast_step_median_ms": _step_medians(kept),
        "fast_samples_ms": [round(s * 1000, 1) for s in fast],
        "naive_samples_ms": [round(s * 1000, 1) for s in naive],
    }
    return outcome


def profile_analysis(options: BenchOptions, *, runs: int = 10, top: int = 25) -> str:
    """Profile ``runs`` warm fast analyses: the ``top`` functions by cumulative time."""
    models = load_fast_models(options)
    png = example_png()
    models.analyse(png)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        models.analyse(png)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
    return text.getvalue()


def measure_profile(options: BenchOptions) -> dict[str, Any]:
    """The profile as a detail entry (``--profile``)."""
    return {"analyze_profile": profile_analysis(options)}
