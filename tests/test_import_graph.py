"""The library's import graph runs one way, up the layers below (GUIDE §7): a module imports only its own
layer and those beneath it."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "recsys_core"
# Lowest first; the modules at the top of the package (config, schema, bundle, ...) are the bottom layer.
LAYERS = ("features", "data", "models", "serving", "evaluation", "training", "report")
TOP_LEVEL = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")


def _layer(module: str) -> int:
    """0 for a top-level module of `recsys_core`, 1 + its index in `LAYERS` for a subpackage's module."""
    part = module.split(".")[1]
    return LAYERS.index(part) + 1 if part in LAYERS else 0


def _library_imports(path: pathlib.Path) -> set[str]:
    """Modules of `recsys_core` that `path` imports (`from recsys_core import x` counts as `recsys_core.x`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "recsys_core":
            names.update(f"recsys_core.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recsys_core."):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("recsys_core."))
    return names


def test_every_folder_of_modules_is_a_package_that_setup_py_ships():
    folders = {path.parent for path in PACKAGE.rglob("*.py")}
    assert not sorted(str(folder) for folder in folders if not (folder / "__init__.py").exists())


def test_the_package_top_holds_few_modules():
    assert len(TOP_LEVEL) <= 10, TOP_LEVEL


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path):
    own = _layer("recsys_core." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    above = sorted(name for name in _library_imports(path) if _layer(name) > own)
    assert not above, f"{path} imports {above}, above its layer"


def _imports(nodes) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_registry_imports_no_tensorflow():
    assert "tensorflow" not in _imports(ast.walk(ast.parse((PACKAGE / "registry.py").read_text())))


def test_the_schema_module_imports_tensorflow_only_when_reading_a_file():
    assert "tensorflow" not in _imports(ast.parse((PACKAGE / "schema.py").read_text()).body)
