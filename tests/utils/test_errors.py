from __future__ import annotations

import inspect

import utils.errors as errors


def test_every_error_derives_from_the_base_and_has_an_http_status() -> None:
    classes = [obj for _, obj in inspect.getmembers(errors, inspect.isclass)]
    assert classes, "errors module defines no classes"
    for cls in classes:
        assert issubclass(cls, errors.TumorLensError)
        assert 400 <= cls.http_status < 600


def test_bad_input_errors_map_to_client_errors() -> None:
    for cls in (errors.EmptyFileError, errors.UnsupportedFormatError, errors.ImageTooLargeError):
        assert 400 <= cls.http_status < 500
