"""Model bundles in ``saved_models/``: the ``.keras`` file, its card (JSON) and a summary (MD).

Every shipped model ``NAME`` is three files side by side:

* ``NAME.keras``: the Keras 3 model (architecture + weights);
* ``NAME.json``: the card: task, architecture, configuration, what it was trained on
  and from (random init or which weights), cross-validation metrics with spread,
  post-processing / calibration parameters, intended use and known failure modes;
* ``NAME.md``: the same card as short Markdown for people.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import keras

from utils.errors import ModelError
from utils.familiarity import familiarity_path
from utils.paths import SAVED_MODELS_DIR

LOGGER = logging.getLogger(__name__)

INTENDED_USE = (
    "Decision support for trained readers of breast imaging; not a diagnosis and not a "
    "certified medical device. Outputs must be reviewed by a qualified clinician."
)


def save_model_bundle(
    model: keras.Model,
    name: str,
    card: dict[str, Any],
    *,
    models_dir: Path = SAVED_MODELS_DIR,
) -> Path:
    """Save ``model`` with its card as ``models_dir/NAME.{keras,json,md}``.

    Args:
        model: The trained model.
        name: Bundle name, e.g. ``"ultrasound_segmenter"``.
        card: Card fields (see module docstring); ``intended_use``, ``name``,
            ``keras_version`` and ``created`` are filled in when absent.
        models_dir: Destination folder.

    Returns:
        Path of the ``.keras`` file.

    A familiarity reference of the bundle's previous weights (``NAME.familiarity.npz``
    and the card's ``familiarity`` section) is removed, since it no longer applies.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    card = {
        "name": name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "keras_version": keras.__version__,
        "intended_use": INTENDED_USE,
        **card,
    }
    model_path = models_dir / f"{name}.keras"
    # A familiarity reference describes the old weights' features: drop it with them
    # (python -m utils.train familiarity fits the new one).
    stale = familiarity_path(model_path)
    if stale.exists() or "familiarity" in card:
        stale.unlink(missing_ok=True)
        card.pop("familiarity", None)
        LOGGER.warning("%s: removed the previous weights' familiarity reference; refit it.", name)
    model.save(model_path)
    (models_dir / f"{name}.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    (models_dir / f"{name}.md").write_text(card_to_markdown(card))
    return model_path


def load_model_card(name: str, *, models_dir: Path = SAVED_MODELS_DIR) -> dict[str, Any]:
    """Read ``models_dir/NAME.json``.

    Raises:
        ModelError: The card is missing or not valid JSON.
    """
    path = models_dir / f"{name}.json"
    if not path.is_file():
        available = sorted(p.stem for p in models_dir.glob("*.json"))
        listing = ", ".join(available) or "none"
        raise ModelError(f"No model card {path.name} in {models_dir}; available: {listing}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ModelError(f"Model card {path} is not valid JSON: {error}") from error


def _format_metric(value: Any) -> str:
    if isinstance(value, dict) and "mean" in value:
        if value["mean"] is None:
            return "n/a"
        return f"{value['mean']:.3f} ± {value['sd']:.3f} (n={value['n']})"
    return str(value)


def update_model_card(
    name: str, updates: dict[str, Any], *, models_dir: Path = SAVED_MODELS_DIR
) -> dict[str, Any]:
    """Merge ``updates`` into ``models_dir/NAME.json`` and re-render ``NAME.md``.

    The model file is untouched: this records evidence gathered after shipping (a
    cross-validation run, a shortcut audit) next to the model it describes.

    Returns:
        The updated card.

    Raises:
        ModelError: The card is missing or not valid JSON.
    """
    card = {**load_model_card(name, models_dir=models_dir), **updates}
    (models_dir / f"{name}.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    (models_dir / f"{name}.md").write_text(card_to_markdown(card))
    return card


def card_to_markdown(card: dict[str, Any]) -> str:
    """Render a card as short Markdown (title, use, data, metrics, limitations)."""
    lines = [f"# {card.get('title', card['name'])}", ""]
    if "status" in card:
        lines += [f"> **Status:** {card['status']}", ""]
    lines += [f"**Intended use.** {card['intended_use']}", ""]
    for heading, key in (
        ("Task", "task"),
        ("Architecture", "architecture"),
        ("Trained from", "trained_from"),
    ):
        if key in card:
            lines.append(f"- **{heading}:** {card[key]}")
    if "training_data" in card:
        lines += [
            "",
            "## Training data",
            "",
            "```json",
            json.dumps(card["training_data"], indent=2),
            "```",
        ]
    if "cv_metrics" in card:
        lines += ["", "## Cross-validation", "", "| metric | mean ± sd |", "|---|---|"]
        lines += [
            f"| {key} | {_format_metric(value)} |" for key, value in card["cv_metrics"].items()
        ]
    if "architecture_comparison" in card:
        lines += ["", "## Architectures compared", ""]
        lines += [f"- {row}" for row in card["architecture_comparison"]]
    if "postprocess" in card:
        lines += ["", "## Post-processing", "", f"`{json.dumps(card['postprocess'])}`"]
    if "limitations" in card:
        lines += ["", "## Known failure modes and limitations", ""]
        lines += [f"- {item}" for item in card["limitations"]]
    # Everything else in the card still belongs in front of people, verbatim.
    for key, value in card.items():
        if key in _RENDERED_KEYS:
            continue
        title = key.replace("_", " ").capitalize()
        if isinstance(value, dict | list):
            lines += ["", f"## {title}", "", "```json", json.dumps(value, indent=2), "```"]
        else:
            lines += ["", f"**{title}.** {value}"]
    return "\n".join(lines) + "\n"


_RENDERED_KEYS = frozenset(
    {
        "name",
        "title",
        "status",
        "intended_use",
        "task",
        "architecture",
        "trained_from",
        "training_data",
        "cv_metrics",
        "architecture_comparison",
        "postprocess",
        "limitations",
    }
)
