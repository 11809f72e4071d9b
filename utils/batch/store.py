"""Resumable results: one Parquet part per finished chunk, merged atomically at the end.

For ``--out results.parquet`` the parts live in ``results.parquet.parts/``, beside a
``manifest.json`` of the task and options. Each part is written to a temporary name
and renamed into place, so after a crash every part on disk is complete; a restart
reads the ``item`` column of the parts and skips those items. The parts are kept after
the merge (they are the record of what finished); deleting the folder starts afresh.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from utils.errors import ConfigError

__all__ = ["LEADING_COLUMNS", "ResultStore"]

_PART_GLOB = "part-*.parquet"
#: Columns every row has, first in the merged table; the task's columns follow, sorted.
LEADING_COLUMNS = ("item", "status", "error_type", "error", "height", "width", "seconds")


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    frame.to_parquet(temporary, index=False)
    os.replace(temporary, path)  # atomic on POSIX: the file is whole or absent


class ResultStore:
    """The parts folder and the final table of one batch output."""

    def __init__(self, out: Path) -> None:
        """Use ``out`` for the merged table and ``out.parts/`` for the parts."""
        if out.suffix != ".parquet":
            raise ConfigError(f"The output must be a .parquet file; got {out}.")
        self.out = out
        self.parts_dir = out.with_name(out.name + ".parts")

    def open(self, manifest: dict[str, Any]) -> set[str]:
        """Create the parts folder or check that it holds the same run; return the finished items.

        Raises:
            ConfigError: The folder holds a run with another task or options (the
                message says what differs and how to start afresh).
        """
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        manifest_path = self.parts_dir / "manifest.json"
        if manifest_path.is_file():
            previous = json.loads(manifest_path.read_text(encoding="utf-8"))
            if previous != manifest:
                changed = sorted(
                    key for key in {*previous, *manifest} if previous.get(key) != manifest.get(key)
                )
                raise ConfigError(
                    f"{self.parts_dir} holds results of a run with other settings "
                    f"({', '.join(changed)} differ); use another --out, or delete that folder "
                    "to start afresh."
                )
        else:
            manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        for leftover in self.parts_dir.glob(".*.tmp"):  # a part interrupted mid-write
            leftover.unlink(missing_ok=True)
        return self.finished_items()

    def _parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob(_PART_GLOB))

    def finished_items(self) -> set[str]:
        """Items present in some part."""
        items: set[str] = set()
        for part in self._parts():
            items.update(pd.read_parquet(part, columns=["item"])["item"])
        return items

    def write_part(self, rows: Sequence[dict[str, Any]]) -> Path:
        """Save the rows of one finished chunk as a new part."""
        path = self.parts_dir / f"part-{uuid.uuid4().hex}.parquet"
        _atomic_parquet(pd.DataFrame(list(rows)), path)
        return path

    def merge(self) -> pd.DataFrame:
        """Write every part's rows, one per item, sorted by item, to the output file.

        Returns:
            The merged table.
        """
        frames = [pd.read_parquet(part) for part in self._parts()]
        frames = [frame for frame in frames if not frame.empty]
        merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"item": []})
        # Finished items are skipped, so only two runs sharing one folder at once could
        # write an item twice; both copies hold the same result.
        merged = merged.drop_duplicates("item").sort_values("item", ignore_index=True)
        leading = [column for column in LEADING_COLUMNS if column in merged.columns]
        merged = merged[leading + sorted(set(merged.columns) - set(leading))]
        self.out.parent.mkdir(parents=True, exist_ok=True)
        _atomic_parquet(merged, self.out)
        return merged
