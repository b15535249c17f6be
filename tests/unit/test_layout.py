"""The package's shape: small modules that say what they own, imports that flow one way."""

import ast

import pytest

from fer.config import PACKAGE_DIR

MODULES = sorted(p for p in PACKAGE_DIR.rglob("*.py") if p.name != "__main__.py")
LIMIT = 420  # "under ~400 lines": a module past it holds more than one concept


def _name(path):
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_each_module_is_small_and_opens_with_what_it_owns(path):
    source = path.read_text()
    lines = source.count("\n")
    assert lines <= LIMIT, f"{_name(path)} has {lines} lines; split it by concept"
    doc = ast.get_docstring(ast.parse(source))
    assert doc and len(doc.splitlines()[0]) > 20, f"{_name(path)} needs a first docstring line saying what it owns"


def _imports(path):
    """The fer modules ``path`` imports anywhere (module level or inside functions); a package's
    submodules count as the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fer":
            names = [node.module] if node.module != "fer" else [f"fer.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "fer"]
        found |= {".".join(n.split(".")[:2]) for n in names}
    return found


def test_no_import_cycle_between_modules():
    graph = {}
    for path in MODULES:
        top = ".".join(_name(path).split(".")[:2])
        graph.setdefault(top, set()).update(_imports(path))
    for node, deps in graph.items():
        deps.discard(node)
        deps.discard("fer")  # the package itself: CLASSES and the two entry points
    graph.pop("fer", None)
    seen, stack = {}, []

    def visit(node):
        seen[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            assert seen.get(dep) != "open", "import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep])
            if dep not in seen:
                visit(dep)
        stack.pop()
        seen[node] = "done"

    for node in sorted(graph):
        if node not in seen:
            visit(node)
    assert {"fer.export", "fer.predict", "fer.runtimes"} <= set(graph)
