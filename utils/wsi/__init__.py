"""Whole-slide image analysis: reading, tissue, tiling, scoring, heatmaps and regions.

Entry points: :func:`utils.wsi.reader.open_slide`, :func:`utils.wsi.scorers.load_scorer`,
:func:`utils.wsi.pipeline.analyse_slide`, :func:`utils.wsi.outputs.write_outputs`, and the
command line ``python -m utils.wsi`` (:mod:`utils.wsi.cli`).
"""
