"""Training and cross-validation of TumorLens models (used by ``python -m utils.train``)."""
