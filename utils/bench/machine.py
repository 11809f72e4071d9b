"""What the numbers were measured on: CPU, cores, backend, device, library versions."""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "machine_info", "versions"]

#: Libraries whose versions go into the JSON (``None`` when not installed).
VERSIONED = ("keras", "tensorflow", "jax", "numpy", "cv2", "streamlit", "tf_keras_vis")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else :func:`platform.processor`."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _usable_cores() -> int:
    # The scheduler's affinity is what a process can really use (containers, taskset).
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _device(backend: str) -> str:
    """The device the backend computes on: ``"cpu"`` or the first accelerator's name."""
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return f"gpu ({len(gpus)})" if gpus else "cpu"
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            return f"{device.platform} ({device.device_kind})"
    except Exception as error:  # a broken accelerator stack must not stop the benchmark
        return f"unknown ({type(error).__name__})"
    return "cpu"


def machine_info() -> dict[str, Any]:
    """CPU model, usable and total cores, memory, OS, Keras backend and device."""
    import keras

    backend = keras.backend.backend()
    memory_gib = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu_model": cpu_model(),
        "cores": _usable_cores(),
        "cpu_count": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "keras_backend": backend,
        "device": _device(backend),
    }


def versions() -> dict[str, str | None]:
    """Python and library versions; ``None`` for a library that is not importable."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            module = importlib.import_module(name)
        except Exception:  # ImportError, or a broken install raising something else
            found[name] = None
            continue
        found["opencv" if name == "cv2" else name] = getattr(module, "__version__", "unknown")
    return found
