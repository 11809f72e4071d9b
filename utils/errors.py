"""Typed errors for every public boundary of TumorLens.

All errors derive from :class:`TumorLensError`, so the app can catch one type,
show ``str(error)`` to the user and keep running, and the API can map it to a
4xx answer. Messages say what was received and what is allowed, in words a
clinician can act on.
"""

from __future__ import annotations


class TumorLensError(Exception):
    """Base class of every error TumorLens raises on bad input or configuration."""

    #: HTTP status an API adapter should answer with.
    http_status: int = 400


class InvalidImageError(TumorLensError):
    """The input is not a usable image (empty, corrupt, truncated, not an image)."""

    http_status = 422


class EmptyFileError(InvalidImageError):
    """The file or upload has zero bytes."""


class CorruptImageError(InvalidImageError):
    """The file claims to be an image but cannot be decoded (truncated or damaged)."""


class UnsupportedFormatError(InvalidImageError):
    """The file is not in a supported image format."""

    http_status = 415


class UnsupportedDicomError(UnsupportedFormatError):
    """The DICOM file is valid but of a kind TumorLens cannot read (multi-frame, compressed...)."""


class ImageTooLargeError(InvalidImageError):
    """The file is larger than the byte limit, or the image has too many pixels."""

    http_status = 413


class ImageDimensionError(InvalidImageError):
    """The image has a zero dimension or a shape TumorLens cannot use."""


class EmptyMaskError(InvalidImageError):
    """A mask has no foreground pixel, so there is nothing to measure."""


class DatasetError(TumorLensError):
    """A dataset folder is missing, empty, or not in a recognised layout."""


class ConfigError(TumorLensError):
    """An option, name or setting is not one of the allowed values."""


class ModelError(TumorLensError):
    """A model or weights file is missing, unreadable or incompatible."""

    http_status = 500


class ModelUnavailableError(ModelError):
    """The model a request needs is not installed (e.g. no classifier bundle yet)."""

    http_status = 503


class NoTissueError(InvalidImageError):
    """An H&E image holds too little stained tissue to estimate stains or measure nuclei."""


class MissingCalibrationError(InvalidImageError):
    """The image lacks a physical scale (microns per pixel) the analysis needs; pass it."""
