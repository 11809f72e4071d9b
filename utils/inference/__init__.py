"""Inference with shipped models: loaded once, compiled once, batched."""
