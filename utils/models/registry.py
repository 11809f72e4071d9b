"""Build a model by name from a registry of builders, with errors that list the options."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import keras

from utils.errors import ConfigError


def build_registered(
    registry: Mapping[str, Callable[..., keras.Model]], family: str, arch: str, **kwargs: Any
) -> keras.Model:
    """Call ``registry[arch](**kwargs)``.

    Args:
        registry: Architecture name → builder.
        family: What the registry builds, for messages (e.g. ``"segmentation"``).
        arch: The architecture name.
        **kwargs: The builder's options.

    Raises:
        ConfigError: ``arch`` is not in the registry (the message lists the valid names),
            or an option is not one the builder takes (the message lists those).
    """
    builder = registry.get(arch)
    if builder is None:
        valid = ", ".join(sorted(registry))
        raise ConfigError(f"Unknown {family} architecture {arch!r}; valid names: {valid}.")
    signature = inspect.signature(builder)
    try:
        # Bind first so a misspelt option is a config mistake, while TypeErrors raised
        # inside the builder are not disguised as one.
        signature.bind(**kwargs)
    except TypeError as error:
        raise ConfigError(
            f"Invalid options {sorted(kwargs)} for {family} architecture {arch!r} "
            f"({error}); allowed options: {', '.join(signature.parameters)}."
        ) from error
    return builder(**kwargs)
