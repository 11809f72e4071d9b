"""Benchmark harness: ``python -m utils.bench --json OUT`` (``make bench``).

Each measurement lives in its own module and returns an :class:`Outcome` (results
keyed as in the JSON, reasons for the keys it had to skip, and details). The harness
(:mod:`utils.bench.harness`) runs them, in fresh subprocesses where isolation matters,
and :mod:`utils.bench.report` prints the table, writes the JSON and rewrites the
README's performance block. Nothing here asserts a speed: it prints numbers.
"""
