"""The one image loader of TumorLens: ultrasound and H&E images in, RGB uint8 out.

:func:`load_image` reads PNG, JPEG, BMP, TIFF and single-frame DICOM from a path, raw
bytes or a binary file-like object (e.g. a Streamlit upload) and always returns a
:class:`LoadedImage` whose pixels are a C-contiguous ``(H, W, 3)`` ``uint8`` RGB array,
so every later stage (preprocessing, models, display) sees one layout.

Conversion rules, applied to every source:

* The format is detected from the bytes, never from the file extension.
* Grayscale sources are replicated to three identical channels.
* Transparent pixels are composited onto black: ultrasound exports are often RGBA with
  a transparent area outside the scan sector, which must read as "no signal".
* Sources with more than 8 bits per sample (16-bit PNG/TIFF, 32-bit int, float TIFF,
  DICOM without a VOI window) are rescaled linearly from their actual minimum..maximum
  over all channels to 0..255; a constant image becomes all zeros. 8-bit sources keep
  their values.
* The EXIF orientation tag is applied, so phone photos of slides come out upright.
* DICOM: the modality LUT (rescale slope/intercept) and the VOI LUT or window are
  applied, MONOCHROME1 is inverted so that bright always means high signal, and the
  physical pixel spacing is read into :attr:`ImageMetadata.pixel_spacing_mm`. Patient
  identifiers are never copied into the metadata.

Every failure raises a :class:`~utils.errors.TumorLensError` subclass whose message says
what was received and what is allowed. Sizes are checked before any pixel is decoded:
the byte count against ``max_bytes`` and the header's width x height against
``max_pixels``. Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) stays
active on top and is reported as :class:`~utils.errors.ImageTooLargeError`; this module
never changes that global, nor ``ImageFile.LOAD_TRUNCATED_IMAGES``, so truncated files
fail instead of loading half grey.
"""

from utils.image_io.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from utils.image_io.loader import load_image
from utils.image_io.messages import BYTES_SOURCE
from utils.image_io.results import ImageMetadata, LoadedImage
from utils.image_io.sniffing import SUPPORTED_FORMATS

__all__ = [
    "BYTES_SOURCE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "ImageMetadata",
    "LoadedImage",
    "load_image",
]
