"""Each helper module says where a reader first meets it: the first chapter, in the book's
reading order (``_toc.yml``), that imports it. From every later chapter that note points back
to a page already read (issue: one place per dataset, a visible training loop...)."""

from __future__ import annotations

import ast
import re

import nbformat
import yaml

from tests.conftest import ROOT
from tests.test_dependencies import medclass_modules, module_tree

NOTE = re.compile(r'First used in chapter "([^"]+)" \(notebooks/(\w+)\.ipynb\)')


def reading_order() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]
    return [name.removeprefix("notebooks/") for name in files if name.startswith("notebooks/")]


def first_chapters() -> dict[str, tuple[str, str]]:
    """medclass module -> (notebook, its title) of the first chapter that imports it."""
    first = {}
    for name in reading_order():
        notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        title = notebook.cells[0].source.splitlines()[0].removeprefix("# ")
        code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
        for module in medclass_modules(ast.parse(code)):
            first.setdefault(module, (name, title))
    return first


def test_each_module_names_the_first_chapter_that_uses_it():
    first = first_chapters()
    assert {"training", "data", "models"} <= set(first), "the chapters' imports were not found"
    for module, (notebook, title) in sorted(first.items()):
        docstring = ast.get_docstring(module_tree(module)) or ""
        note = NOTE.search(" ".join(docstring.split()))
        assert note, f'medclass.{module}: its docstring should say First used in chapter "{title}" ...'
        assert note.groups() == (title, notebook), (
            f"medclass.{module} names {note.group(2)}, but the first chapter that imports it is {notebook}"
        )
