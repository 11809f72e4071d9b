"""What one measurement hands back, and the options every measurement reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from utils.paths import PROJECT_ROOT, SAVED_MODELS_DIR, default_datasets_dir

__all__ = ["BenchOptions", "Outcome"]


@dataclass
class Outcome:
    """Results of one measurement.

    Attributes:
        results: Values by JSON key (a timing object, a number, or ``None``).
        skipped: Why each ``None`` result could not be measured.
        details: Extra tables for the JSON (sweeps, per-step times, memory curves).
    """

    results: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def skip(self, key: str, reason: str) -> None:
        """Record ``key`` as not measured, with the reason."""
        self.results[key] = None
        self.skipped[key] = reason

    def merge(self, other: Outcome) -> None:
        """Add another outcome's keys (later measurements win on a clash)."""
        self.results.update(other.results)
        for key, value in other.results.items():
            if value is not None:
                self.skipped.pop(key, None)
        self.skipped.update(other.skipped)
        self.details.update(other.details)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        """Inverse of :meth:`to_dict`."""
        return cls(
            dict(data.get("results", {})),
            dict(data.get("skipped", {})),
            dict(data.get("details", {})),
        )


@dataclass(frozen=True)
class BenchOptions:
    """Settings shared by the measurements (``quick`` shrinks every repeat count).

    Attributes:
        quick: Few repeats and small sizes: a smoke run, not a measurement to report.
        models_dir: Folder of the model bundles.
        segmenter: Ultrasound segmenter bundle name.
        classifier: Ultrasound classifier bundle name.
        nuclei: Nuclei segmenter bundle name (the WSI model).
        datasets_dir: Shared datasets folder (for the Aperio slide).
        repeats: Warm repeats of the analysis; ``None``: 30, or 5 when quick.
        api_clients: Concurrent API clients.
        api_seconds: Length of the API load, in seconds.
    """

    quick: bool = False
    models_dir: Path = SAVED_MODELS_DIR
    segmenter: str = "ultrasound_segmenter"
    classifier: str = "ultrasound_classifier"
    nuclei: str = "nuclei_segmenter"
    datasets_dir: Path = field(default_factory=default_datasets_dir)
    repeats: int | None = None
    api_clients: int = 8
    api_seconds: float = 10.0

    @property
    def analysis_repeats(self) -> int:
        """Warm repeats of the ultrasound analysis."""
        return self.repeats if self.repeats is not None else (5 if self.quick else 30)

    @property
    def slide(self) -> Path:
        """The real Aperio slide of the WSI measurement."""
        return Path(self.datasets_dir) / "wsi" / "CMU-1-Small-Region.svs"

    @property
    def project_root(self) -> Path:
        """Where subprocesses run (``python -m ...`` resolves the project from there)."""
        return PROJECT_ROOT

    def bundle_present(self, name: str) -> bool:
        """Whether ``models_dir`` holds the bundle (model file and card)."""
        folder = Path(self.models_dir)
        return (folder / f"{name}.keras").is_file() and (folder / f"{name}.json").is_file()

    def missing_reason(self, name: str) -> str:
        """The ``skipped`` reason of a measurement whose bundle is missing."""
        return f"bundle {name!r} is not installed in {self.models_dir}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings), for the child processes and the report."""
        return {
            item.name: str(value) if isinstance(value, Path) else value
            for item in fields(self)
            for value in [getattr(self, item.name)]
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchOptions:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        for key in ("models_dir", "datasets_dir"):
            if key in values:
                values[key] = Path(values[key])
        return cls(**values)
