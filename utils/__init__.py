"""TumorLens ML core: image I/O, datasets, models, training and evaluation.

This package never imports Streamlit or any web framework; the app (``app.py``,
``pages/``), the REST API and the CLIs are thin adapters over it.
"""

__version__ = "0.1.0"
