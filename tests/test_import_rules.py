"""Architecture rules: one direction of imports, and a TensorFlow-free training core.

app.py/pages -> helpers -> utils; utils never imports Streamlit or web frameworks.
api/ (the REST adapter) and utils.batch reach only utils: never Streamlit, helpers or pages.
Training, inference and model code must import on a JAX-only GPU machine, so they may
not import TensorFlow (or the tf.data modules) at module level.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB_FRAMEWORKS = {"streamlit", "fastapi", "starlette", "flask", "uvicorn"}
TF_ONLY_MODULES = {"tensorflow", "utils.pipelines", "utils.augment", "tf_keras_vis"}
BACKEND_AGNOSTIC = [
    *sorted((ROOT / "utils" / "training").glob("*.py")),
    *sorted((ROOT / "utils" / "models").glob("*.py")),
    *sorted((ROOT / "utils" / "wsi").glob("*.py")),  # the whole-slide tile loop
    *sorted((ROOT / "utils" / "inference").glob("*.py")),  # bundles load on a JAX box
    ROOT / "utils" / "resize.py",
    ROOT / "utils" / "train.py",
    ROOT / "utils" / "labels.py",
    ROOT / "utils" / "augment_config.py",
    ROOT / "utils" / "postprocess.py",
    ROOT / "utils" / "calibration.py",
]
# data.py decodes datasets with the tf.data helpers on purpose; a GPU box uses --arrays.
BACKEND_AGNOSTIC = [path for path in BACKEND_AGNOSTIC if path.name != "data.py"]


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:  # module level only: lazy imports inside functions are fine
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _all_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "utils").rglob("*.py")), ids=str)
def test_utils_never_imports_web_frameworks_or_upper_layers(path: Path) -> None:
    imported = _all_imports(path)
    assert not imported & WEB_FRAMEWORKS
    assert not imported & {"helpers", "pages", "app", "api"}


@pytest.mark.parametrize("path", sorted((ROOT / "helpers").rglob("*.py")), ids=str)
def test_helpers_never_import_pages_or_app(path: Path) -> None:
    assert not _all_imports(path) & {"pages", "app"}


@pytest.mark.parametrize("path", BACKEND_AGNOSTIC, ids=lambda p: str(p.relative_to(ROOT)))
def test_training_core_imports_without_tensorflow(path: Path) -> None:
    assert not _top_level_imports(path) & TF_ONLY_MODULES


@pytest.mark.parametrize(
    "path", [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))], ids=lambda p: p.name
)
def test_app_and_pages_only_reach_utils_through_helpers(path: Path) -> None:
    assert "utils" not in _all_imports(path)


@pytest.mark.parametrize("path", sorted((ROOT / "api").rglob("*.py")), ids=str)
def test_api_is_a_thin_adapter_over_utils(path: Path) -> None:
    imported = _all_imports(path)
    assert not imported & {"streamlit", "helpers", "pages", "app"}


@pytest.mark.parametrize("path", sorted((ROOT / "helpers").rglob("*.py")), ids=str)
def test_helpers_never_import_the_api(path: Path) -> None:
    assert "api" not in _all_imports(path)
