"""The library's import graph runs one way: schema -> data -> features -> models (GUIDE §7)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "recsys_core"
# part -> modules it must not import; schema.py and registry.py must stay cheap to import.
FORBIDDEN = {
    "schema.py": ("recsys_core.data", "recsys_core.features", "recsys_core.models"),
    "registry.py": ("recsys_core.models", "tensorflow"),
    "data": ("recsys_core.models",),
    "features": ("recsys_core.data", "recsys_core.models"),
}


def _imports(nodes) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_no_module_imports_against_the_flow(part):
    files = [PACKAGE / part] if part.endswith(".py") else sorted((PACKAGE / part).glob("*.py"))
    for path in files:
        tree = ast.parse(path.read_text())
        for name in _imports(ast.walk(tree)):
            assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[part]), (
                f"{path} imports {name}"
            )


def test_the_schema_module_imports_tensorflow_only_when_reading_a_file():
    assert "tensorflow" not in _imports(ast.parse((PACKAGE / "schema.py").read_text()).body)
