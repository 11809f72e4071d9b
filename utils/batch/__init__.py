"""Batch and cohort processing on Dask: ``python -m utils.batch --input DIR --task ...``.

* :mod:`utils.batch.tasks`: what one item becomes (a flat result row), per task.
* :mod:`utils.batch.models`: each worker process loads a model once and reuses it.
* :mod:`utils.batch.store`: finished chunks land as Parquet parts, so a restart skips
  them and a crash loses at most the chunks in flight; the final table is merged
  atomically.
* :mod:`utils.batch.runner`: lists the cohort, submits chunks to a Dask cluster (a
  local one by default) and shows progress.
"""

from utils.batch.runner import BatchConfig, run_batch

__all__ = ["BatchConfig", "run_batch"]
