"""Issue 31: every exercise is answerable on its page. An exercise that asks the reader to
change a setting (`name = value`) names a parameter the chapter declares, with a value of the
parameter's type."""

from __future__ import annotations

import ast
import re

import nbformat
import pytest

from tools import chapters

ASSIGNMENT = re.compile(r"`(\w+)\s*=\s*([^`]+)`")


def _exercises(notebook) -> str:
    cells = [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]
    start = next((i for i, source in enumerate(cells) if source.startswith("## Exercises")), None)
    return "\n".join(cells[start:]) if start is not None else ""


@pytest.mark.parametrize("source", chapters.toc_notebooks(), ids=lambda path: path.stem)
def test_every_setting_an_exercise_names_is_a_parameter_of_its_chapter(source):
    notebook = nbformat.read(source, as_version=4)
    declared = chapters.notebook_defaults(source)
    problems = []
    for name, value in ASSIGNMENT.findall(_exercises(notebook)):
        if name not in declared:
            problems.append(f"`{name} = {value}` is not a parameter of {source.stem}")
            continue
        try:
            given = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            problems.append(f"`{name} = {value}`: not a literal a reader can type in the parameters cell")
            continue
        default = declared[name]
        if default is not None and given is not None and not isinstance(given, type(default)):
            if not (isinstance(default, (int, float)) and isinstance(given, (int, float))):
                problems.append(f"`{name} = {value}`: the default is a {type(default).__name__}")
    assert problems == [], "\n".join(problems)


def test_the_check_catches_a_setting_the_chapter_does_not_have(tmp_path):
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("epochs_frozen = 5", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_markdown_cell("## Exercises\n\n1. `epoch_frozen = 10`, `epochs_frozen = 10`."),
        ]
    )
    path = tmp_path / "chapter.ipynb"
    nbformat.write(notebook, path)
    found = ASSIGNMENT.findall(_exercises(nbformat.read(path, as_version=4)))
    declared = chapters.notebook_defaults(path)
    assert [name for name, _ in found if name not in declared] == ["epoch_frozen"]
