"""Library folders are layered: each imports only from folders below it, never from a
peer or from above (docs/architecture.md, "Layers of the library")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "model_lifecycle"
# lowest first; folders on one line are peers and do not import each other
LAYERS = [
    ("models",),
    ("ssl", "data", "trust"),
    ("augment",),
    ("training",),
    ("compression", "evaluation"),
    ("io",),
    ("serving",),
]
LAYER_OF = {folder: level for level, folders in enumerate(LAYERS) for folder in folders}


def imported_folders(folder: str) -> dict[str, str]:
    """``{imported library folder: first file importing it}`` for every module of
    ``folder``, imports inside functions included."""
    found: dict[str, str] = {}
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "model_lifecycle" and len(parts) > 1 and parts[1] != folder \
                        and parts[1] in LAYER_OF:
                    found.setdefault(parts[1], path.name)
    return found


def test_every_library_folder_is_in_a_layer():
    folders = {p.name for p in PACKAGE.iterdir()
               if p.is_dir() and (p / "__init__.py").exists() and p.name != "pipelines"}
    assert folders == set(LAYER_OF)


@pytest.mark.parametrize("folder", sorted(LAYER_OF))
def test_a_folder_imports_only_from_layers_below_it(folder):
    upward = {other: where for other, where in imported_folders(folder).items()
              if LAYER_OF[other] >= LAYER_OF[folder]}
    assert not upward, f"{folder} imports {upward} (same layer or above)"


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
    # the rule can fail: a module of `models` importing `training` is reported
    fake = tmp_path / "model_lifecycle"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "bad.py").write_text(
        "def f():\n    from model_lifecycle.training.loop import fit\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    assert imported_folders("models") == {"training": "bad.py"}
