"""Keras models of TumorLens: segmentation networks and their losses and metrics."""
