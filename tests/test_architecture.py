"""The code's shape (issue 31): no two modules of the package, nor two of ``tools/``, import each
other, however far round, and no function of ``src/`` is longer than a screen."""

from __future__ import annotations

import ast

from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from tests.conftest import ROOT
from tests.test_dependencies import PACKAGE, medclass_modules

TOOLS = ROOT / "tools"

LONGEST_FUNCTION = 60  # lines, docstring included


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imports_of(name: str) -> set[str]:
    """The medclass modules ``name`` imports anywhere in it (inside functions too: an import
    moved into a function hides a circle from Python's start-up, not from the reader)."""
    path = PACKAGE / f"{name.replace('.', '/')}.py"
    tree = ast.parse((path if path.exists() else PACKAGE / name / "__init__.py").read_text())
    found = medclass_modules(tree)
    for node in ast.walk(tree):  # relative imports, which medclass_modules does not read
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{name}: use absolute imports (from medclass... import ...)")
    return {module for module in found if module != name}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other through imports."""
    names = sorted(edges)
    index = {name: i for i, name in enumerate(names)}
    pairs = [(index[a], index[b]) for a, targets in edges.items() for b in targets if b in index]
    graph = csr_matrix(
        ([1] * len(pairs), ([a for a, _ in pairs], [b for _, b in pairs])), shape=(len(names),) * 2
    )
    _, labels = connected_components(graph, directed=True, connection="strong")
    groups: dict[int, list[str]] = {}
    for name, label in zip(names, labels, strict=True):
        groups.setdefault(int(label), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def test_circles_finds_a_circle_of_three_and_nothing_in_a_chain():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_two_medclass_modules_import_each_other():
    edges = {name: imports_of(name) for name in module_names()}
    assert circles(edges) == []


def tools_imports(path) -> set[str]:
    """The modules of ``tools/`` that the file at ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "tools":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tools."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("tools.")}
    return found - {path.stem}


def test_no_two_tools_import_each_other():
    edges = {path.stem: tools_imports(path) for path in sorted(TOOLS.glob("*.py"))}
    assert circles(edges) == []


def test_no_function_in_the_package_runs_past_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > LONGEST_FUNCTION:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []
