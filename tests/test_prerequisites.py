"""A chapter opened alone makes what the chapters before it make: the split, and the model."""

from __future__ import annotations

import json

import nbformat
import pytest
import yaml

from medclass import prerequisites
from tests.conftest import ROOT

PROFILES = ROOT / "notebooks" / "profiles"


def demo_parameters(chapter: str) -> dict:
    return yaml.safe_load((PROFILES / "demo" / f"{chapter}.yaml").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "chapter"), [("brain_mri", "brain_01_data"), ("ham10000", "skin_01_data")]
)
def test_a_split_made_for_a_lone_chapter_is_the_data_chapters_byte_for_byte(
    demo_book, dataset, chapter, tmp_path
):
    settings = demo_parameters(chapter)
    made = prerequisites.split_for(
        dataset,
        tmp_path / dataset,
        data_dir=ROOT / settings["data_dir"],
        synthetic=settings["synthetic"],
        seed=settings["seed"],
        max_images=settings["max_images"],
        br35h_in_training=settings.get("br35h_in_training", True),
    )
    written_by_the_chapter = ROOT / settings["output_dir"] / dataset / "manifest.csv"
    assert made.read_bytes() == written_by_the_chapter.read_bytes()


def test_a_split_that_is_there_is_used_not_made_again(tmp_path, capsys):
    (tmp_path / "manifest.csv").write_text("path,label,split\n")
    made = prerequisites.split_for(
        "brain_mri", tmp_path, data_dir=None, synthetic=True, seed=1, max_images=None, br35h_in_training=True
    )
    assert made == tmp_path / "manifest.csv" and capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="No data chapter makes a split of 'br35h'"):
        prerequisites.split_for(
            "br35h",
            tmp_path / "x",
            data_dir=None,
            synthetic=True,
            seed=1,
            max_images=None,
            br35h_in_training=True,
        )


@pytest.mark.slow
@pytest.mark.parametrize("chapter", ["brain_02_training", "brain_03_evaluation", "skin_03_evaluation"])
def test_a_chapter_runs_alone_in_an_empty_folder(chapter, tmp_path):
    """As a Colab badge opens it: nothing from earlier chapters, a working directory of its own.
    Only the folders change from the demo profile's parameters."""
    import papermill

    settings = {**demo_parameters(chapter), "output_dir": "outputs", "data_dir": "data"}
    target = tmp_path / "run" / f"{chapter}.ipynb"
    target.parent.mkdir()
    papermill.execute_notebook(
        str(ROOT / "notebooks" / f"{chapter}.ipynb"),
        str(target),
        parameters=settings,
        kernel_name="python3",
        cwd=str(target.parent),
        progress_bar=False,
    )
    executed = nbformat.read(target, as_version=4)
    text = json.dumps([cell.get("outputs", []) for cell in executed.cells])
    assert "No split in outputs/" in text, "the split is made, and said so"
    if chapter.endswith("_evaluation"):
        assert "No model in outputs/" in text, "the model is trained, and said so"
        dataset = "brain_mri" if chapter.startswith("brain") else "ham10000"
        assert (target.parent / "outputs" / dataset / "evaluation.json").exists()
