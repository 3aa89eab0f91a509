"""What the code imports is what pyproject.toml declares: a chapter opened alone in Colab, whose
install cell installs ``medclass[book]``, finds every module it needs (issue: every chapter runs
on its own in Colab)."""

from __future__ import annotations

import ast
import os
import re
import sys

import nbformat
import pytest
import tomllib

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "medclass"
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "keras_cv": "keras-cv",
    "IPython": "ipython",
}
# Imported only under the Keras backend of the same name, which its user has installed; and
# google.colab, imported only in Colab, which provides it.
BACKENDS = {"jax"}
COLAB = {"google"}


def declared() -> dict[str, set[str]]:
    """Distribution names of the core dependencies ("core") and of each extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(specs):
        return {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in specs}

    return {"core": names(project["dependencies"])} | {
        extra: names(specs) for extra, specs in project["optional-dependencies"].items()
    }


FIRST_PARTY = {"medclass", "tools"}  # the package, and the checkout's own tools/ (not installed)


def third_party(tree: ast.AST) -> set[str]:
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names} - FIRST_PARTY - BACKENDS - COLAB


def medclass_modules(tree: ast.AST) -> set[str]:
    """The medclass modules ``tree`` imports (``from medclass import a, b``, ``import medclass.c``,
    ``from medclass.concepts import d``: ``concepts.d``; ``from medclass.concepts.e import f``:
    ``concepts.e``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "medclass":
            parts = node.module.split(".")
            if len(parts) == 1:
                found |= {alias.name for alias in node.names}
            elif len(parts) > 2:  # from medclass.datasets.dataset import Dataset
                found.add(".".join(parts[1:]))
            elif (PACKAGE / parts[1]).is_dir():  # a subpackage: the modules named, or the package
                found |= {
                    f"{parts[1]}.{alias.name}"
                    if (PACKAGE / parts[1] / f"{alias.name}.py").exists()
                    else parts[1]
                    for alias in node.names
                }
            else:
                found.add(parts[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("medclass.")}
    return found


def distribution(module: str) -> str:
    return DISTRIBUTIONS.get(module, module).lower()


def module_tree(name: str) -> ast.AST:
    path = PACKAGE / f"{name.replace('.', '/')}.py"
    return ast.parse((path if path.exists() else PACKAGE / name / "__init__.py").read_text())


def chapter_needs(notebook) -> set[str]:
    """Distributions a chapter needs: its own imports and those of the medclass modules it
    reaches, transitively."""
    code = "\n".join(
        cell.source for cell in notebook.cells if cell.cell_type == "code" and not cell.source.startswith("%")
    )
    tree = ast.parse(code)
    needed, seen, todo = third_party(tree), set(), medclass_modules(tree)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        module = module_tree(name)
        needed |= third_party(module)
        todo |= medclass_modules(module)
    return {distribution(module) for module in needed}


def test_every_chapter_finds_what_it_imports_in_medclass_book():
    lists = declared()
    available = lists["core"] | lists["book"]
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        missing = chapter_needs(nbformat.read(path, as_version=4)) - available
        assert not missing, f"{path.name} needs {sorted(missing)}, which medclass[book] does not install"


def test_every_module_import_is_declared_somewhere():
    everything = set().union(*declared().values())
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "tools").glob("*.py")]):
        missing = {distribution(m) for m in third_party(ast.parse(path.read_text()))} - everything
        assert not missing, (
            f"{path.relative_to(ROOT)} imports {sorted(missing)}, declared nowhere in pyproject.toml"
        )


def test_nothing_is_declared_that_nothing_imports():
    imported = {
        distribution(module)
        for path in [*PACKAGE.rglob("*.py")]
        for module in third_party(ast.parse(path.read_text()))
    }
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        imported |= chapter_needs(nbformat.read(path, as_version=4))
    unused = declared()["core"] | declared()["book"]
    # tensorflow is Keras's backend (imported by keras, and by the pipeline's tf.data).
    assert unused - imported - {"tensorflow"} == set(), "declared for the chapters but imported by none"


@pytest.mark.slow
@pytest.mark.case(
    "32.8",
    "the oldest Keras pyproject.toml allows (Colab's preinstalled Keras may be older than ours)",
    "the brain model, SliceStandardisation inside it, trains both phases, exports and reads back under it",
)
def test_the_oldest_keras_allowed_trains_and_reloads_the_model(tmp_path):
    """Installs that Keras (no dependencies: ours serve) into a folder put first on the path."""
    import subprocess

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    oldest = next(
        re.match(r"keras>=([\d.]+)", spec).group(1) for spec in declared if spec.startswith("keras>=")
    )
    install = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--target",
        str(tmp_path),
        f"keras=={oldest}",
    ]
    subprocess.run(install, check=True, capture_output=True)
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "scripts" / "train_and_reload.py")],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"read back with keras {oldest}" in run.stdout
