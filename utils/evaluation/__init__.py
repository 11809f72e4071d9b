"""Metrics and reports shared by cross-validation and ``python -m utils.evaluate``."""
