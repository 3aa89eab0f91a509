"""d2l's contract: the Keras a reader came for is written in the chapter's cells, and the
package's function of the same name, which later chapters and the tests call, is that same code."""

from __future__ import annotations

import ast
import inspect
import textwrap

import nbformat
import pytest

from medclass import fitting, models
from medclass.concepts import residual, transfer
from tests.conftest import ROOT

WRITTEN_ON_THE_PAGE = [
    ("concepts_02_resnet", residual, "deep_cnn"),
    ("concepts_02_resnet", residual, "gradient_norms"),
    ("brain_02_training", models, "build_classifier"),
    ("brain_02_training", fitting, "fit_phase"),
    ("brain_02_training", models, "unfreeze_top_blocks"),
    ("concepts_03_transfer", transfer, "train_strategy"),
]


def _without_docstrings(tree: ast.AST) -> str:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def chapter_functions(chapter: str) -> dict[str, str]:
    """Each function a chapter's code cells define, as its AST without docstrings."""
    found = {}
    for cell in nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4).cells:
        if cell.cell_type == "code":
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.FunctionDef):
                    found[node.name] = _without_docstrings(node)
    return found


@pytest.mark.parametrize(("chapter", "module", "name"), WRITTEN_ON_THE_PAGE)
def test_the_chapter_writes_in_its_cells_the_code_the_package_keeps(chapter, module, name):
    written = chapter_functions(chapter)
    assert name in written, f"{chapter} no longer defines {name} in a cell"
    kept = ast.parse(textwrap.dedent(inspect.getsource(getattr(module, name)))).body[0]
    assert written[name] == _without_docstrings(kept), (
        f"{chapter}'s {name} and {module.__name__}.{name} differ: change both"
    )


def test_the_constants_the_written_functions_read_agree():
    """deep_cnn reads BN_MOMENTUM: the chapter's value and the package's are the same."""
    notebook = nbformat.read(ROOT / "notebooks" / "concepts_02_resnet.ipynb", as_version=4)
    values = [
        ast.literal_eval(node.value)
        for cell in notebook.cells
        if cell.cell_type == "code"
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "BN_MOMENTUM"
    ]
    assert values == [residual.BN_MOMENTUM]


def test_a_changed_line_is_caught():
    """The comparison can fail: one argument changed in the package's source is a difference."""
    kept = textwrap.dedent(inspect.getsource(residual.deep_cnn)).replace(
        'padding="same", activation', 'padding="valid", activation'
    )
    assert _without_docstrings(ast.parse(kept).body[0]) != chapter_functions("concepts_02_resnet")["deep_cnn"]
