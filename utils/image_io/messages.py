"""How error messages name the input, and the translation of decoder failures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from PIL import Image

from utils.errors import CorruptImageError, ImageTooLargeError, TumorLensError

#: ``ImageMetadata.source`` of images given as bytes or as an unnamed stream.
BYTES_SOURCE: Final[str] = "<bytes>"


def subject(name: str) -> str:
    """Name the input at the start of a message: the quoted file name, or "The uploaded data"."""
    return "The uploaded data" if name == BYTES_SOURCE else f"'{name}'"


@contextmanager
def decoding_errors(image_format: str, name: str) -> Iterator[None]:
    """Turn any decoder failure into a TumorLens error naming the file and format."""
    try:
        yield
    except TumorLensError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLargeError(
            f"{subject(name)} has more pixels than the decoder's safety limit ({error}). "
            "Downscale or crop it first."
        ) from error
    except MemoryError:
        raise
    except Exception as error:
        # Decoders raise many types on damaged input (OSError, SyntaxError, ValueError,
        # struct.error, zlib.error...); for the user they all mean the same thing.
        raise CorruptImageError(
            f"{subject(name)} is a damaged or incomplete {image_format} file and cannot be "
            f"decoded ({error}). Export or download it again."
        ) from error
