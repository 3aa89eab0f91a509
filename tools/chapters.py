"""The book's chapters as files: which notebooks the table of contents holds, in what order,
their parameters cell's defaults, and their Colab badges and install cells.

Used by ``make book`` (tools/book.py), the tests and the benchmarks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_DIR = ROOT / "book" / "published"  # executed cpu/full chapters: what the book shows


def toc_files(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Every ``file:`` entry of the table of contents, in reading order."""

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                yield node["file"]
            for key in ("root", "parts", "chapters", "sections"):
                value = node.get(key)
                if isinstance(value, str):
                    yield value
                elif isinstance(value, list):
                    for child in value:
                        yield from walk(child)

    return list(walk(yaml.safe_load(toc_path.read_text())))


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks the table of contents lists, as paths."""
    return [
        root / f"{entry}.ipynb"
        for entry in toc_files(root / "_toc.yml")
        if (root / f"{entry}.ipynb").exists()
    ]


def notebook_defaults(notebook: Path) -> dict:
    """The literal values of a notebook's ``parameters`` cell (what papermill overrides)."""
    document = nbformat.read(notebook, as_version=4)
    cell = next(c for c in document.cells if "parameters" in c.metadata.get("tags", []))
    values = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return values


def uses_model(notebook: Path) -> bool:
    """Whether a chapter's code (not its parameters cell) builds or loads the profile's backbone."""
    document = nbformat.read(notebook, as_version=4)
    code = [
        c.source
        for c in document.cells
        if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
    ]
    return bool(re.search(r"\bbackbone\b", "\n".join(code)))


COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+?\.ipynb")
INSTALL_SPEC = re.compile(r"medclass(?:\[[\w,]+\])? @ git\+[^\s\"']+")


def repository() -> tuple[str, str]:
    """The repository URL and branch, set once in ``_config.yml``."""
    settings = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return settings["url"].rstrip("/"), settings["branch"]


def expected_links(notebook: Path) -> tuple[str, str]:
    """The Colab link and the pip install spec a notebook must carry."""
    url, branch = repository()
    owner_repo = url.split("github.com/", 1)[1]
    relative = notebook.resolve().relative_to(ROOT).as_posix()
    return (
        f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{relative}",
        f"medclass[book] @ git+{url}@{branch}",
    )


def link_problems(notebook: Path, fix: bool = False) -> list[str]:
    """Colab badges and install cells that disagree with ``_config.yml``; rewritten if ``fix``."""
    colab, install = expected_links(notebook)
    document = nbformat.read(notebook, as_version=4)
    found = {"colab": [], "install": []}
    for cell in document.cells:
        found["colab"] += COLAB_LINK.findall(cell.source)
        found["install"] += INSTALL_SPEC.findall(cell.source)
        if fix:
            cell.source = INSTALL_SPEC.sub(install, COLAB_LINK.sub(colab, cell.source))
    problems = []
    for kind, expected in (("colab", colab), ("install", install)):
        if not found[kind]:
            problems.append(f"{notebook.name}: no {kind} link")
        problems += [
            f"{notebook.name}: {kind} link {link} should be {expected}"
            for link in found[kind]
            if link != expected
        ]
    if fix and problems:
        nbformat.write(document, notebook)
    return problems
