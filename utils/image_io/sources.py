"""Reading a path, raw bytes or a binary stream into bytes, enforcing the byte limit."""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

from utils.errors import InvalidImageError
from utils.image_io.limits import check_byte_count
from utils.image_io.messages import BYTES_SOURCE


def read_source(source: object, max_bytes: int) -> tuple[bytes, str]:
    """Return the source's bytes and display name, enforcing the byte limit first."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        check_byte_count(view.nbytes, BYTES_SOURCE, max_bytes)
        return view.tobytes(), BYTES_SOURCE
    if isinstance(source, str | PathLike):
        return _read_path(Path(source), max_bytes)
    if hasattr(source, "read"):
        return _read_stream(source, max_bytes)
    raise TypeError(
        f"load_image expects a path, bytes or a binary file object; got {type(source).__name__}."
    )


def _read_path(path: Path, max_bytes: int) -> tuple[bytes, str]:
    try:
        size = path.stat().st_size
    except FileNotFoundError as error:
        raise InvalidImageError(
            f"File not found: '{path}'. Check the path and that the file still exists."
        ) from error
    except OSError as error:
        raise InvalidImageError(f"Cannot read '{path}': {error.strerror}.") from error
    if path.is_dir():
        raise InvalidImageError(f"'{path}' is a folder, not an image file. Choose one image.")
    check_byte_count(size, path.name, max_bytes)
    try:
        with path.open("rb") as stream:
            # One byte more than allowed, in case the file grew since stat().
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise InvalidImageError(f"Cannot read '{path}': {error.strerror}.") from error
    check_byte_count(len(data), path.name, max_bytes)
    return data, path.name


def _read_stream(stream: Any, max_bytes: int) -> tuple[bytes, str]:
    stream_name = getattr(stream, "name", None)
    name = Path(stream_name).name if isinstance(stream_name, str) and stream_name else None
    name = name or BYTES_SOURCE
    # Reading one byte past the limit tells "too large" apart without reading it all.
    data = stream.read(max_bytes + 1)
    if not isinstance(data, bytes | bytearray):
        raise TypeError(
            f"load_image needs a stream opened in binary mode ('rb'); {name} returned "
            f"{type(data).__name__}."
        )
    check_byte_count(len(data), name, max_bytes)
    return bytes(data), name
