"""Run a batch task over a folder: list it, skip what is finished, process the rest in chunks.

Chunks run on Dask: a :class:`distributed.LocalCluster` of worker processes by default
(one thread each, since TensorFlow already uses every core of a process), an existing
cluster when a ``tcp://`` scheduler address is given, or in this process with
``scheduler="synchronous"`` (no cluster: the reference for equivalence checks and for
debugging). Each finished chunk is saved as a part before the next is awaited, so a
crash loses only chunks in flight.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from utils.batch.store import ResultStore
from utils.batch.tasks import TaskOptions, get_task, require_models
from utils.errors import ConfigError, DatasetError, ModelError, TumorLensError
from utils.image_io import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, load_image

__all__ = [
    "IMAGE_SUFFIXES",
    "SYNCHRONOUS",
    "BatchConfig",
    "list_items",
    "process_chunk",
    "run_batch",
]

#: File suffixes listed as images (the format is still sniffed from the bytes); files
#: without a suffix are listed too, since DICOM files often have none.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom", ""})
#: Whole-slide files the ``wsi`` task lists (pyramidal TIFF/SVS, or large plain images).
SLIDE_SUFFIXES = frozenset({".svs", ".tif", ".tiff", ".png", ".jpg", ".jpeg"})
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
#: ``scheduler`` value that runs every chunk in this process, without Dask.
SYNCHRONOUS = "synchronous"


@dataclass(frozen=True)
class BatchConfig:
    """One batch run.

    Attributes:
        input_dir: Folder of images (searched recursively; hidden files are skipped).
        task: Task name (see :data:`utils.batch.tasks.TASKS`).
        out: Output ``.parquet`` file; its parts go to ``OUT.parts/``.
        options: Models and analysis settings of the task.
        scheduler: ``None`` for a local cluster, ``"synchronous"`` for this process,
            or a scheduler address such as ``tcp://host:8786``.
        n_workers: Worker processes of the local cluster.
        chunk_size: Images per chunk (the unit of work and of saved progress).
        max_bytes: Largest file accepted per image.
        max_pixels: Largest image accepted, in pixels.
        progress: Show a progress bar.
    """

    input_dir: Path
    task: str
    out: Path
    options: TaskOptions
    scheduler: str | None = None
    n_workers: int = 2
    chunk_size: int = 8
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    progress: bool = True


def list_items(input_dir: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[str]:
    """Image files under ``input_dir``, as sorted POSIX paths relative to it.

    Raises:
        DatasetError: The folder does not exist or holds no image file.
    """
    if not input_dir.is_dir():
        raise DatasetError(f"The input folder {input_dir} does not exist or is not a folder.")
    items = sorted(
        path.relative_to(input_dir).as_posix()
        for path in input_dir.rglob("*")
        if path.is_file()
        and path.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in path.relative_to(input_dir).parts)
    )
    if not items:
        raise DatasetError(
            f"No image files in {input_dir} (looked for {', '.join(sorted(suffixes - {''}))} "
            "and files without a suffix)."
        )
    return items


def _process_item(
    input_dir: Path, item: str, task_name: str, config: dict[str, Any]
) -> dict[str, Any]:
    start = time.perf_counter()
    row: dict[str, Any] = {"item": item, "status": "ok", "error_type": None, "error": None}
    row.update(height=None, width=None)
    task = get_task(task_name)
    try:
        if task.reads == "slide":  # streamed tile by tile: never decoded whole
            row.update(task.run(input_dir / item, config["options"]))
        else:
            image = load_image(
                input_dir / item, max_bytes=config["max_bytes"], max_pixels=config["max_pixels"]
            )
            row.update(height=image.pixels.shape[0], width=image.pixels.shape[1])
            row.update(task.run(image, config["options"]))
    except ModelError:
        raise  # a broken model is not the image's fault: stop instead of failing every row
    except TumorLensError as error:  # bad input in a cohort is a row, not a crash
        row.update(status="error", error_type=type(error).__name__, error=_stable(str(error)))
    row["seconds"] = time.perf_counter() - start
    return row


def _stable(message: str) -> str:
    """The message without object addresses (a decoder may quote ``<... at 0x7f...>``).

    So the same file gives the same row in every run.
    """
    return _ADDRESS.sub("", message)


def process_chunk(
    input_dir: str, items: Sequence[str], task_name: str, config: dict[str, Any]
) -> list[dict[str, Any]]:
    """Process one chunk of items (runs on a worker); one row per item, in order."""
    return [_process_item(Path(input_dir), item, task_name, config) for item in items]


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _validate(config: BatchConfig) -> None:
    for name in ("n_workers", "chunk_size", "max_bytes", "max_pixels"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
    threshold = config.options.threshold
    if threshold is not None and not 0 < threshold < 1:
        raise ConfigError(f"The threshold must be between 0 and 1 (exclusive); got {threshold}.")
    spacing = config.options.pixel_spacing_mm
    if spacing is not None and not 0 < spacing <= 10:
        raise ConfigError(f"The pixel spacing must be in (0, 10] mm; got {spacing}.")


def _manifest(config: BatchConfig) -> dict[str, Any]:
    return {
        "task": config.task,
        "input_dir": str(config.input_dir.resolve()),
        "options": config.options.as_dict(),
        "max_bytes": config.max_bytes,
        "max_pixels": config.max_pixels,
    }


def run_batch(config: BatchConfig) -> pd.DataFrame:
    """Process every image of ``config.input_dir`` not already finished; merge the results.

    Returns:
        The merged table (also written to ``config.out``), one row per image.

    Raises:
        ConfigError: Unknown or unavailable task, or invalid options.
        ModelUnavailableError: A bundle the task needs is missing.
        DatasetError: The input folder is missing or holds no images.
    """
    _validate(config)
    task = get_task(config.task)
    require_models(task, config.options)
    suffixes = SLIDE_SUFFIXES if task.reads == "slide" else IMAGE_SUFFIXES
    items = list_items(config.input_dir, suffixes)
    store = ResultStore(config.out)
    finished = store.open(_manifest(config))
    remaining = [item for item in items if item not in finished]
    chunks = list(_chunks(remaining, config.chunk_size))
    worker_config = {
        "options": config.options,
        "max_bytes": config.max_bytes,
        "max_pixels": config.max_pixels,
    }
    with tqdm(
        total=len(items),
        initial=len(items) - len(remaining),
        unit="image",
        desc=f"{config.task}",
        disable=not config.progress,
    ) as bar:
        results = _run_chunks(config, chunks, worker_config)
        for rows in results:
            store.write_part(rows)
            bar.update(len(rows))
    return store.merge()


def _run_chunks(
    config: BatchConfig, chunks: list[list[str]], worker_config: dict[str, Any]
) -> Iterator[list[dict[str, Any]]]:
    """Yield each chunk's rows as it finishes (in any order)."""
    input_dir = str(config.input_dir)
    if config.scheduler == SYNCHRONOUS:
        for chunk in chunks:
            yield process_chunk(input_dir, chunk, config.task, worker_config)
        return
    if not chunks:
        return
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if config.scheduler is None:
        cluster = LocalCluster(
            n_workers=config.n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
    client = Client(cluster if cluster is not None else config.scheduler)
    try:
        futures = [
            client.submit(process_chunk, input_dir, chunk, config.task, worker_config, pure=False)
            for chunk in chunks
        ]
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
