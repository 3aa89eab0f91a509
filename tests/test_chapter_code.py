"""d2l's contract: the Keras a reader came for is written in the chapter's cells, and the
package's function of the same name, which later chapters and the tests call, is that same code."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap

import nbformat
import numpy as np
import pytest
import tensorflow as tf

from medclass import fitting, models
from medclass.concepts import residual, transfer
from medclass.recipe import Recipe
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


def _cells_defining(chapter: str, *names: str) -> str:
    """The code cells of ``chapter`` that define one of ``names``, imports included."""
    pattern = re.compile(rf"^def ({'|'.join(names)})\(", re.M)
    notebook = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4)
    return "\n".join(
        cell.source for cell in notebook.cells if cell.cell_type == "code" and pattern.search(cell.source)
    )


def _images(count: int, seed: int):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (count, 32, 32, 3)).astype("float32")
    labels = (np.arange(count) % 2).astype("float32")
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)


def test_the_training_chapters_keras_cells_train_as_written(tmp_path):
    """brain_02's build_classifier, unfreeze_top_blocks and fit_phase, run from the chapter's
    own cells in a fresh namespace (the chapter's first import, pathlib's Path, given), train
    both phases: the head alone, then the top blocks with BatchNormalization kept frozen."""
    namespace: dict = {}
    source = _cells_defining("brain_02_training", "build_classifier", "fit_phase", "unfreeze_top_blocks")
    exec("from pathlib import Path\n" + source, namespace)
    model, base = namespace["build_classifier"]("mobilenet_v2", None, 32, 2, alpha=0.35)
    recipe = Recipe(epochs_frozen=1, epochs_finetune=1, unfreeze_blocks=2, patience=2)
    train, val = _images(16, 0), _images(8, 1)
    best, first_epoch = tmp_path / "best.weights.h5", 0
    for index, phase in enumerate(recipe.phases()):
        if phase.unfreeze_blocks:
            namespace["unfreeze_top_blocks"](base, phase.unfreeze_blocks)
        loss, metrics = recipe.loss_and_metrics(2)
        history = namespace["fit_phase"](
            model,
            phase,
            train,
            validation_data=val,
            recipe=recipe,
            loss=loss,
            metrics=metrics,
            best_path=best,
            backup_dir=tmp_path / f"backup-{index}",
            first_epoch=first_epoch,
            shuffle=False,
            verbose=0,
        )
        first_epoch += len(history.epoch)
        assert not (tmp_path / f"backup-{index}").exists(), "BackupAndRestore removes a finished fit's backup"
    assert first_epoch == 2 and best.exists()
    assert base.trainable_weights, "phase 2 trains the top blocks"
    assert not any(layer.trainable for layer in models.batch_norm_layers(base))


def test_the_transfer_chapters_strategy_trains_as_written():
    """concepts_03's train_strategy, from the chapter's cell, trains both phases of a strategy."""
    namespace: dict = {"models": models}  # the chapter's import cell: from medclass import models
    exec(_cells_defining("concepts_03_transfer", "train_strategy"), namespace)
    setup = transfer.Setup("mobilenet_v2", None, (32, 32), alpha=0.35, epochs=2, unfreeze_blocks=2)
    history = namespace["train_strategy"](
        "ImageNet, fine-tuned, BatchNorm training", setup, _images(16, 0), _images(8, 1)
    )
    assert list(history["epoch"]) == [1, 2] and {"val_accuracy", "val_auc"} <= set(history.columns)
