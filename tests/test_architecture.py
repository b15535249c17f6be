"""The package's shape: stage subpackages in one-way layers (import-linter), small modules that say
what they own, short functions, and a layer list in docs/ that matches the contract."""

import ast
import re
import tomllib

import pytest

from fer.config import PACKAGE_DIR, PROJECT_DIR

MODULES = sorted(p for p in PACKAGE_DIR.rglob("*.py") if p.name != "__main__.py")
MODULE_LINES = 400  # a module past it holds more than one concept
FUNCTION_LINES = 80  # a function past it does more than one thing
CONTRACTS = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _name(path):
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_each_module_is_small_and_opens_with_what_it_owns(path):
    source = path.read_text()
    lines = source.count("\n")
    assert lines <= MODULE_LINES, f"{_name(path)} has {lines} lines; split it by concept"
    doc = ast.get_docstring(ast.parse(source))
    assert doc and len(doc.splitlines()[0]) > 20, f"{_name(path)} needs a first docstring line saying what it owns"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_function_is_longer_than_a_screen_and_a_half(path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > FUNCTION_LINES]
    assert not long, f"{_name(path)}: {', '.join(long)}; split by step"


def test_the_top_holds_the_foundation_and_the_stages_are_packages():
    top = sorted(p.stem for p in PACKAGE_DIR.glob("*.py"))
    assert top == ["__init__", "__main__", "config", "devices", "quiet"]
    stages = sorted(p.parent.name for p in PACKAGE_DIR.glob("*/__init__.py"))
    assert stages == ["apps", "cli", "data", "evaluation", "inference", "reporting", "training"]


def test_import_linter_keeps_every_contract():
    """``lint-imports``: the layers, the foundation importing no stage, no cycle inside a stage.
    Run through its Python API, which exits like the command does."""
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(PROJECT_DIR / "pyproject.toml"), no_cache=True, no_logo=True) == 0, "a layer contract is broken: run `lint-imports` to see which import"


def test_the_layers_contract_names_every_stage_once():
    layers = next(c for c in CONTRACTS if c["type"] == "layers")["layers"]
    named = [name.strip() for layer in layers for name in layer.split("|")]
    stages = sorted(p.parent.name for p in PACKAGE_DIR.glob("*/__init__.py"))
    assert sorted(named) == stages


def test_docs_list_the_layers_as_the_contract_orders_them():
    layers = next(c for c in CONTRACTS if c["type"] == "layers")["layers"]
    doc = (PROJECT_DIR / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `([a-z|\\ ]+)` \|", doc, flags=re.M)  # "apps \| training": a pipe escaped in a table
    assert [re.sub(r"[ \\]", "", r) for r in rows] == [layer.replace(" ", "") for layer in layers]
    for stage in ("data", "inference", "evaluation", "training", "apps", "reporting", "cli"):
        doc_line = ast.get_docstring(ast.parse((PACKAGE_DIR / stage / "__init__.py").read_text()))
        assert doc_line, f"fer/{stage}/__init__.py must say what the stage holds"
