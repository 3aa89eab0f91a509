"""Notebook hygiene and skeleton, profiles, links, and the book built end to end (slow)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from medclass import parameters
from tests.conftest import ROOT
from tests.test_chapter_code import WRITTEN_ON_THE_PAGE
from tools import book, chapters, profiles, prose

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
VOCABULARY = {
    "dataset",
    "data_dir",
    "ph2_dir",
    "image_size",
    "batch_size",
    "backbone",
    "weights",
    "epochs_frozen",
    "epochs_finetune",
    "learning_rate",
    "seed",
    "max_images",
    "output_dir",
    # case-study extras
    "synthetic",
    "alpha",
    "augmentation",
    "unfreeze_blocks",
    "imbalance",
    "cache_features",
    "finetune_schedule",
    "extra_seeds",
    "standardise",
    "br35h_in_training",
    "lgg_in_training",
    # evaluation
    "tta",
    "target_sensitivity",
}


def parameters_of(notebook: nbformat.NotebookNode) -> dict:
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    values = {}
    for node in ast.parse(cell.source).body:
        if not isinstance(node, ast.Assign):
            raise AssertionError(f"parameters cell holds a {type(node).__name__}, only assignments allowed")
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


@pytest.fixture(params=NOTEBOOKS, ids=lambda path: path.stem)
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 3


def test_source_notebook_is_clean(notebook):
    path, document = notebook
    for index, cell in enumerate(document.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name} cell {index} has outputs: run `make format`"
            assert cell.execution_count is None, f"{path.name} cell {index} has an execution count"
    tagged = [c for c in document.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"


def test_skeleton(notebook):
    path, document = notebook
    cells = document.cells
    code = [c for c in cells if c.cell_type == "code"]
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert "colab-badge.svg" in cells[0].source
    assert 'if "google.colab" in sys.modules' in code[0].source, "first code cell installs on Colab only"
    assert code[1].source.rstrip().endswith("print_versions()"), "imports end with the printed versions"
    assert "parameters" in code[2].metadata.get("tags", [])
    assert code[3].source.startswith("parameters.check(globals())"), "parameters checked before any work"
    rest = code[4:]
    if rest[0].source.startswith("# Colab only: keep_on_drive"):  # chapters that write to output_dir
        assert 'if keep_on_drive and "google.colab" in sys.modules' in rest[0].source
        rest = rest[1:]
    assert rest[0].source.startswith("seed_everything(seed)")
    setup = [code[0], code[3], *code[4 : code.index(rest[0])]]  # install, check, Drive
    assert all("hide-cell" in cell.metadata.get("tags", []) for cell in setup), "setup folded in the book"
    assert any(re.search(r"^## Summary", c.source, re.M) for c in cells if c.cell_type == "markdown")
    taught = {name for chapter, _, name in WRITTEN_ON_THE_PAGE if chapter == path.stem}
    for cell in code:
        for defined in re.findall(r"^def (\w+)\(", cell.source, re.M):
            assert defined in taught, (
                f"{path.name} defines {defined}: a chapter writes out only what it teaches, kept "
                "identical in src/ and listed in tests/test_chapter_code.py; plumbing belongs in src/"
            )


def test_notebook_code_is_formatted_to_the_page_width():
    """`make format` formats the chapters' code at 88 characters, the width a book page shows
    (notebooks/ruff.toml, which plain `ruff format` and the commit hook read too)."""
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run(
        [str(ruff), "format", "--check", "notebooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for path in NOTEBOOKS:  # strings and comments too, which the formatter leaves as they are
        cells = nbformat.read(path, as_version=4).cells
        long = [line for cell in cells if cell.cell_type == "code" for line in cell.source.splitlines()]
        long = [line for line in long if len(line) > 88]
        assert not long, f"{path.name}: {len(long)} code lines over 88 characters, first {long[0]!r}"


def test_each_chapter_ends_with_exercises_and_folded_solutions(notebook):
    path, document = notebook
    last = document.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Exercises"), path.name
    questions = re.findall(r"^\d+\. ", last.source, re.M)
    solutions = re.findall(r"^```\{admonition\} Solution\n:class: dropdown\n", last.source, re.M)
    assert 2 <= len(questions) <= 4 and len(solutions) == len(questions), path.name


def test_parameters_are_literals_from_the_vocabulary(notebook):
    path, document = notebook
    values = parameters_of(document)
    assert set(values) <= VOCABULARY, f"{path.name}: unknown parameters {set(values) - VOCABULARY}"
    assert set(values) <= set(parameters.CHECKS), "every parameter has a check in medclass.parameters"
    assert values.get("weights", "imagenet") == "imagenet", "defaults are the real recipe"
    assert values.get("data_dir") is None, "defaults are the real data"


def names_read(document: nbformat.NotebookNode) -> tuple[set[str], bool]:
    """The names a chapter's code reads outside its parameters cell, and whether it hands all of
    its parameters on (``parameters.values(globals())``, as the evaluation chapters do for the
    model they may have to train)."""
    read, hands_on = set(), False
    for cell in document.cells:
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
            continue
        tree = ast.parse(
            "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
        )
        read |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        hands_on |= "parameters.values(globals())" in cell.source
    return read, hands_on


def test_each_chapter_declares_the_parameters_it_uses_and_no_others(notebook):
    path, document = notebook
    declared = set(parameters_of(document))
    read, hands_on = names_read(document)
    assert (read & VOCABULARY) <= declared, (
        f"{path.name} reads {sorted((read & VOCABULARY) - declared)} undeclared"
    )
    if not hands_on:
        assert declared <= read, f"{path.name} declares {sorted(declared - read)} and never uses them"


def test_links_agree_with_config(notebook):
    path, _ = notebook
    assert chapters.link_problems(path) == []


def test_links_are_derived_from_config():
    url, branch = chapters.repository()
    colab, install = chapters.expected_links(ROOT / "notebooks" / "brain_01_data.ipynb")
    assert colab.endswith(f"/blob/{branch}/notebooks/brain_01_data.ipynb")
    assert install == f"medclass[book] @ git+{url}@{branch}"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["launch_buttons"]["colab_url"] and config["launch_buttons"]["binderhub_url"]


def test_profiles_only_set_known_parameters():
    known = set().union(*(parameters_of(nbformat.read(path, as_version=4)) for path in NOTEBOOKS))
    prefixes = {path.stem.split("_", 1)[0] for path in NOTEBOOKS}
    for profile in (ROOT / "notebooks" / "profiles").glob("*.yaml"):
        values = yaml.safe_load(profile.read_text())
        sections = {key for key, value in values.items() if isinstance(value, dict)}
        assert sections <= prefixes, f"{profile.name}: sections {sections - prefixes} match no notebook"
        for section in [values, *(values[name] for name in sections)]:
            keys = set(section) - sections
            assert keys <= known, f"{profile.name}: {keys - known}"
    assert {p.stem for p in (ROOT / "notebooks" / "profiles").glob("*.yaml")} >= {"demo", "cpu", "full"}


def test_case_study_sections_override_shared_keys():
    profile = {"seed": 1, "backbone": "resnet50", "skin": {"backbone": "efficientnet_b0", "seed": 2}}
    assert profiles.parameters_for(profile, "skin_02_training") == {"seed": 2, "backbone": "efficientnet_b0"}
    assert profiles.parameters_for(profile, "brain_02_training") == {"seed": 1, "backbone": "resnet50"}
    assert profiles.parameters_for(profile, "augmentation") == {"seed": 1, "backbone": "resnet50"}


def test_toc_lists_existing_files_and_every_notebook():
    entries = chapters.toc_files()
    for entry in entries:
        assert any((ROOT / f"{entry}{suffix}").exists() for suffix in (".md", ".ipynb")), entry
    assert {p.stem for p in NOTEBOOKS} <= {Path(e).name for e in entries}


def test_a_failing_notebook_names_itself_and_the_cell(tmp_path, monkeypatch):
    failing = nbformat.v4.new_notebook()
    failing.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    failing.cells = [
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('boom')"),
    ]
    source = tmp_path / "failing.ipynb"
    nbformat.write(failing, source)
    target = tmp_path / "out" / "failing.ipynb"
    target.parent.mkdir()
    target.write_text("previous good copy")
    monkeypatch.setattr(book, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match=r"failing.ipynb failed in cell 1 .*ValueError: boom"):
        book.execute_notebook(source, target, {})
    assert target.read_text() == "previous good copy"
    assert (tmp_path / "out" / "failing.failed.ipynb").exists()


@pytest.mark.slow
def test_every_notebook_executes_in_the_demo_profile(demo_book):
    build_dir, _ = demo_book
    for source in chapters.toc_notebooks():
        executed = nbformat.read(build_dir / "executed" / "demo" / source.name, as_version=4)
        errors = [
            o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
        ]
        assert not errors, f"{source.name}: {errors[:1]}"
        injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected, f"{source.name}: papermill injected no parameters"


@pytest.mark.slow
def test_demo_results_are_labelled_synthetic(demo_book):
    build_dir, _ = demo_book
    executed = nbformat.read(build_dir / "executed" / "demo" / "brain_03_evaluation.ipynb", as_version=4)
    text = json.dumps([c.outputs for c in executed.cells if c.cell_type == "code"])
    assert "Test results on synthetic phantoms" in text
    assert "ROC-AUC" in text and "ci_low" in text


@pytest.mark.slow
def test_book_builds_without_warnings_and_shows_the_parts(demo_book):
    build_dir, log = demo_book
    assert "book built" in log
    assert "book/intro.html" in (build_dir / "html" / "index.html").read_text()
    index = (build_dir / "html" / "book" / "intro.html").read_text()
    for caption in ("Introduction", "Concepts", "Case study 1 — brain MRI", "Appendix"):
        assert caption in index
    for name in ("brain_01_data", "brain_02_training", "brain_03_evaluation", "skin_01_data", "augmentation"):
        page = (build_dir / "html" / "notebooks" / f"{name}.html").read_text()
        assert 'src="../_images/' in page, f"{name} has no figure"
        colab, _ = chapters.expected_links(ROOT / "notebooks" / f"{name}.ipynb")
        assert colab in page, "the Colab badge and launch button point at this notebook"
        assert "mybinder.org/v2/gh/" in page and "btn-download-source-button" in page
    references = (build_dir / "html" / "book" / "references.html").read_text().lower()
    assert "deep residual learning for image recognition" in references
    assert "Deployment" in index and (build_dir / "html" / "book" / "deployment.html").is_file()


@pytest.mark.slow
def test_every_chapter_says_how_its_results_were_produced(demo_book):
    build_dir, _ = demo_book
    for source in chapters.toc_notebooks():
        page = (build_dir / "html" / "notebooks" / f"{source.stem}.html").read_text()
        assert "How the results on this page were produced" in page, source.stem
        assert "demo" in page and "Run time" in page, source.stem
        # The residual-network chapter learns scikit-learn's digits; it takes no `synthetic`.
        data = "synthetic images generated" if "synthetic" in chapters.notebook_defaults(source) else "digits"
        assert data in page, f"{source.stem}: the note should name {data!r}"
    training = (build_dir / "html" / "notebooks" / "brain_02_training.html").read_text()
    assert "Backbone" in training and "resnet50" in training and "random initialisation" in training
    data_chapter = (build_dir / "html" / "notebooks" / "brain_01_data.html").read_text()
    assert "Backbone" not in data_chapter.split("How the results on this page were produced")[1][:2000]


def test_chapter_prose_binds_to_no_run_and_agrees_with_the_profiles():
    """The markdown is shared by every profile's pages (issue 18, item 1)."""
    assert [problem for source in NOTEBOOKS for problem in prose.prose_problems(source)] == []


def test_prose_that_cannot_be_true_of_every_run_is_found(tmp_path):
    document = nbformat.v4.new_notebook()
    parameters_cell = nbformat.v4.new_code_cell("weights = None\nsynthetic = True")
    parameters_cell.metadata["tags"] = ["parameters"]
    run_note = nbformat.v4.new_code_cell("")
    run_note.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"text/markdown": "This run's backbone is **not pretrained**. Its images are **synthetic**"},
        )
    ]
    document.cells = [
        parameters_cell,
        nbformat.v4.new_markdown_cell(
            "With `weights=None` (the `demo` profile, which built the pages you are reading) "
            "the backbone is\nnot pretrained. The `demo` profile keeps `synthetic=True`."
        ),
        nbformat.v4.new_markdown_cell("The `cpu` profile fine-tunes for `epochs_finetune=4` epochs."),
        run_note,
    ]
    document.metadata["medclass"] = {"parameters": {"weights": "backbone.weights.h5", "synthetic": False}}
    path = tmp_path / "brain_02_training.ipynb"
    nbformat.write(document, path)
    problems = prose.prose_problems(path)
    assert len(problems) == 4, problems
    assert "cell 1 binds the prose to one run" in problems[0]
    value = profiles.chapter_parameters("cpu", "brain_02_training")["epochs_finetune"]
    assert value != 4, "the check needs a value the profile does not hold"
    assert f"cell 2 says `epochs_finetune=4` of the `cpu` profile, whose value is {value}" in problems[1]
    assert problems[2:] == [
        "brain_02_training: its run's note misstates the weights, 'backbone.weights.h5'",
        "brain_02_training: its run's note misstates the data, synthetic=False",
    ]


@pytest.mark.slow
def test_the_demo_pages_say_what_their_runs_did(demo_book):
    build_dir, _ = demo_book
    executed = build_dir / "executed" / "demo"
    assert [problem for source in NOTEBOOKS for problem in prose.prose_problems(executed / source.name)] == []
    for chapter in ("brain_02_training", "skin_02_training"):
        text = json.dumps(nbformat.read(executed / f"{chapter}.ipynb", as_version=4).cells)
        assert "This run's backbone is **not pretrained**" in text, chapter
        assert "Its images are **synthetic**" in text, chapter


@pytest.mark.slow
def test_both_case_studies_export_a_model_that_loads_safely(demo_book):
    from mlflow.tracking import MlflowClient

    from medclass import saved_models, tracking

    outputs = ROOT / profiles.parameters_for(profiles.read_profile("demo"), "brain")["output_dir"]
    image = np.random.default_rng(0).uniform(0, 255, (1, 90, 120, 3)).astype("float32")
    for dataset, width in (("brain_mri", 1), ("ham10000", 7)):
        model, info = saved_models.load_model(outputs / dataset)
        assert {"class_names", "image_size", "backbone", "threshold", "manifest_sha256"} <= set(info)
        assert model(image).shape == (1, width), "any image size in, probabilities out"
        run = MlflowClient(tracking.tracking_uri(outputs)).get_run(info["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert "test_accuracy" in run.data.metrics, "the evaluation chapter logged to the training run"
    executed = nbformat.read(demo_book[0] / "executed" / "demo" / "skin_03_evaluation.ipynb", as_version=4)
    text = json.dumps([c.outputs for c in executed.cells if c.cell_type == "code"])
    assert "Test results on synthetic images" in text and "macro-F1" in text


@pytest.mark.slow
def test_evaluation_chapters_show_the_model_card_and_write_their_record(demo_book):
    build_dir, _ = demo_book
    outputs = ROOT / profiles.parameters_for(profiles.read_profile("demo"), "brain")["output_dir"]
    for name, dataset, operating, figures in (
        ("brain_03_evaluation", "brain_mri", "Operating point", 10),
        ("skin_03_evaluation", "ham10000", "Melanoma operating point", 9),
    ):
        page = (build_dir / "html" / "notebooks" / f"{name}.html").read_text()
        for heading in ("Model card:", operating, "Calibration", "Intended use", "Limits"):
            assert heading in page, f"{name}: the rendered model card lacks {heading!r}"
        assert "not a medical device" in page
        assert "|---|" not in page and "|—|" not in page, f"{name}: the card's tables were not rendered"
        assert page.count('src="../_images/') >= figures, f"{name}: figures missing"
        card = (outputs / dataset / "model_card.md").read_text()
        assert card.startswith("# Model card:") and "95% interval" in card
        record = json.loads((outputs / dataset / "evaluation.json").read_text())
        assert {"temperature", "operating_threshold", "test", "test_at_operating_point"} <= set(record)
        assert 0 <= record["operating_threshold"] <= 1
    external = json.loads((outputs / "brain_mri" / "evaluation.json").read_text())["external"]
    assert external["dataset"] == "br35h" and external["images"] > 0
    assert 0 <= external["sensitivity_at_operating_point"]["sensitivity"] <= 1
    brain = (build_dir / "html" / "notebooks" / "brain_03_evaluation.html").read_text()
    assert "External evaluation" in brain and "Br35H held-out tumour slices" in brain


@pytest.mark.slow
def test_the_brain_data_chapter_audits_shortcuts_before_any_training(demo_book):
    build_dir, _ = demo_book
    page = (build_dir / "html" / "notebooks" / "brain_01_data.html").read_text()
    for heading in (
        "Shortcuts: what the files give away",
        "A second source: Br35H",
        "Can a model tell the sources apart?",
    ):
        assert heading in page, heading
    assert "file (format, mode, size)" in page and "after SliceStandardisation" in page
    manifest = pd.read_csv(
        ROOT
        / profiles.parameters_for(profiles.read_profile("demo"), "brain")["output_dir"]
        / "brain_mri"
        / "manifest.csv"
    )
    assert set(manifest["split"]) >= {"train", "val", "test", "external_val", "external_test"}
    assert set(manifest.loc[manifest["split"].str.startswith("external"), "source"]) == {"br35h", "lgg"}
    assert (manifest.groupby("group")["split"].nunique() == 1).all()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_the_opening_cell_reads_in_colab_without_myst_roles(path):
    """Colab shows {doc}, {ref} and {cite} roles as literal text: a chapter's opening cell, the
    first thing a reader of a Colab badge sees, uses plain Markdown links and citations."""
    opening = nbformat.read(path, as_version=4).cells[0].source
    assert not re.findall(r"\{[\w:]+\}`", opening), path.name
