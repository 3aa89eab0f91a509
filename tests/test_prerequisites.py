"""A chapter opened alone makes what the chapters before it make: the split, and the model."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from medclass import case_studies, prerequisites, splits
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
        **{name: settings[name] for name in case_studies.for_dataset(dataset).split_settings},
    )
    written_by_the_chapter = ROOT / settings["output_dir"] / dataset / "manifest.csv"
    assert made.read_bytes() == written_by_the_chapter.read_bytes()


def a_made_split(folder, **settings):
    frame = pd.DataFrame({"path": [str(folder / "data" / "a.jpg")], "label": ["Tumor"], "split": ["train"]})
    (folder / "data").mkdir(parents=True)
    frame.attrs.update(synthetic=True, settings=settings)
    return splits.write_manifest(frame, folder / "run" / "manifest.csv")


SETTINGS = {"seed": 1, "max_images": None, "br35h_in_training": True, "lgg_in_training": True}


def split_for(folder, **changes):
    asked = {"synthetic": True, **SETTINGS, **changes}
    return prerequisites.split_for("brain_mri", folder, data_dir=None, **asked)


def test_a_split_that_is_there_is_used_not_made_again(tmp_path, capsys):
    manifest = a_made_split(tmp_path, **SETTINGS)
    assert split_for(tmp_path / "run") == manifest and capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="No case study trains on 'br35h'"):
        prerequisites.split_for(
            "br35h",
            tmp_path / "x",
            data_dir=None,
            synthetic=True,
            seed=1,
            max_images=None,
            br35h_in_training=True,
        )


def test_a_split_setting_of_another_case_study_is_refused_not_dropped(tmp_path):
    asked = {"data_dir": None, "synthetic": True, "seed": 1, "max_images": None}
    with pytest.raises(TypeError, match=r"split_for\('ham10000'\) takes the split settings \[\]"):
        prerequisites.split_for("ham10000", tmp_path, **asked, lgg_in_training=True)
    with pytest.raises(TypeError, match=r"it was given \['br35h_in_training'\]"):
        prerequisites.split_for("brain_mri", tmp_path, **asked, br35h_in_training=True)
    assert not (tmp_path / "manifest.csv").exists()


@pytest.mark.case(
    "32.3",
    "a chapter asking for real data and seed 7 where output_dir holds a synthetic split made with seed 1",
    "refused, naming each setting that differs and the data chapter to run again",
)
def test_a_split_made_with_other_settings_is_refused(tmp_path):
    a_made_split(tmp_path, **SETTINGS)
    with pytest.raises(
        ValueError, match=r"synthetic=True \(this chapter: False\), seed=1 \(this chapter: 7\)"
    ):
        split_for(tmp_path / "run", synthetic=False, seed=7)
    with pytest.raises(ValueError, match="lgg_in_training=True .*Run brain_01_data"):
        split_for(tmp_path / "run", lgg_in_training=False)


# The Colab rehearsal (issue 15, item 4) -------------------------------------------------------
# Each chapter alone, as a Colab badge opens it: a fresh runtime with what the install cell
# installs, an empty working directory, the demo profile's parameters with only sizes changed
# (one epoch a phase, at most 250 images, at most 64 px) and the network sources pointed at
# local files.

CHAPTERS = [path.stem for path in sorted((ROOT / "notebooks").glob("*.ipynb"))]
DEPENDS_ON_EARLIER = {"brain_02_training", "brain_03_evaluation", "skin_02_training", "skin_03_evaluation"}


def build_colab_environment(folder: Path) -> Path:
    """A fresh virtual environment in ``folder`` holding exactly what a chapter's install cell
    installs, ``medclass[book]`` (from this checkout instead of the Git URL, so the package is
    what this commit builds), plus ipykernel, which Colab's runtime has; ``requirements.txt``
    holds the versions, as Colab's preinstalled packages hold a user's. Returns its Python."""
    import shutil
    import subprocess
    import sys

    from tools import chapters

    # What pip builds from the repository, copied out so that the build leaves the checkout alone.
    package = folder / "package"
    shutil.copytree(ROOT / "src", package / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, package / name)
    _, install = chapters.expected_links(ROOT / "notebooks" / "brain_01_data.ipynb")
    spec = install.split(" @ ", 1)[0] + " @ " + package.as_uri()  # medclass[book] @ file:///...
    venv = folder / "venv"
    python = venv / "bin" / "python"
    pip = [python, "-m", "pip", "install", "--quiet", "--progress-bar", "off"]
    pip += ["--no-compile"]  # a third faster; the kernels compile what they import
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [*pip, "-c", str(ROOT / "requirements.txt"), spec, "ipykernel"],
        [python, "-m", "ipykernel", "install", "--prefix", str(venv), "--name", "colab-rehearsal"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, step))} failed:\n{done.stderr[-4000:]}")
    return python


ENVIRONMENT: dict = {}  # the build of the session's environment: its folder and its future


def start_colab_environment() -> None:
    """Start building the rehearsal's environment in a background thread. Called when the
    session is collected (tests/conftest.py), so that the install, a minute or two of one
    core's work and the disk's, overlaps the tests that run before the rehearsal."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    folder = Path(tempfile.mkdtemp(prefix="colab-rehearsal-"))
    pool = ThreadPoolExecutor(max_workers=1)
    ENVIRONMENT.update(folder=folder, future=pool.submit(build_colab_environment, folder))
    pool.shutdown(wait=False)


def remove_colab_environment() -> None:
    """Wait for the build, if one was started, and remove its folder (3 GB)."""
    import shutil

    if ENVIRONMENT:
        ENVIRONMENT["future"].exception()  # waits; a failure is reported by colab_kernel
        shutil.rmtree(ENVIRONMENT.pop("folder"), ignore_errors=True)
        ENVIRONMENT.clear()


@pytest.fixture(scope="module")
def colab_kernel():
    """The fresh environment's kernel, registered where Jupyter looks; yields its name and
    its Python."""
    import os

    if not ENVIRONMENT:  # not started at collection: under xdist, or called on its own
        start_colab_environment()
    try:
        python = ENVIRONMENT["future"].result()
        venv = python.parents[1]
        earlier = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = str(venv / "share" / "jupyter")
        try:
            yield "colab-rehearsal", python
        finally:
            if earlier is None:
                del os.environ["JUPYTER_PATH"]
            else:
                os.environ["JUPYTER_PATH"] = earlier
    finally:
        remove_colab_environment()


ALONE_MAX_IMAGES = 250
ALONE_IMAGE_SIZE = 64


def alone_parameters(chapter: str) -> dict:
    """The demo profile's parameters for ``chapter``, with the folders of an empty working
    directory (each chapter writes the synthetic data it reads, as a Colab user's runtime
    would), one epoch a phase (a stage, for progressive unfreezing), smaller sizes (what a
    lone run must show is that the chapter finds or makes everything it needs, not its
    numbers), and a weights file given by an absolute path, as a Colab user's uploaded file
    would be."""
    from tools import chapters

    settings = demo_parameters(chapter)
    folders = {"output_dir": "outputs", "data_dir": "data"}
    settings |= {key: value for key, value in folders.items() if key in settings}
    if settings.get("epochs_frozen"):
        settings["epochs_frozen"] = 1
    if settings.get("epochs_finetune"):
        stages = settings.get("unfreeze_blocks", 1)
        settings["epochs_finetune"] = len(stages) if isinstance(stages, list) else 1
    if "max_images" in settings:  # 250 of the synthetic brain set's 416; all 243 skin images
        settings["max_images"] = ALONE_MAX_IMAGES
    if settings.get("image_size", 0) > ALONE_IMAGE_SIZE:
        settings["image_size"] = ALONE_IMAGE_SIZE
    declared = chapters.notebook_defaults(ROOT / "notebooks" / f"{chapter}.ipynb")
    assert set(settings) <= set(declared), "papermill would warn of an unknown parameter"
    if isinstance(settings.get("weights"), str) and settings["weights"].endswith(".h5"):
        weights = (ROOT / settings["weights"]).resolve()
        if not weights.exists():
            pytest.skip(f"{chapter} needs the pretrained backbone file, not found at {weights}")
        settings["weights"] = str(weights)
    return settings


def run_alone(chapter: str, parameters: dict, kernel: str, workdir):
    """Execute ``chapter`` with papermill in the empty folder ``workdir``, on ``kernel``; return
    the finished process and the executed notebook's path."""
    import subprocess
    import sys

    target = workdir / f"{chapter}.ipynb"
    parameters_file = workdir.parent / "parameters.yaml"
    parameters_file.write_text(yaml.safe_dump(parameters))
    command = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / f"{chapter}.ipynb"), str(target)]
    command += ["-f", str(parameters_file), "-k", kernel, "--cwd", str(workdir), "--no-progress-bar"]
    return subprocess.run(command, capture_output=True, text=True), target


@pytest.fixture(scope="module")
def lone_runs(request, colab_kernel, tmp_path_factory):
    """Every chapter this session selected, each started alone in an empty working directory,
    two at a time: most of a lone run is one core's work (starting a kernel, importing
    TensorFlow, tracing a model), so two chapters side by side take little more than one.
    Each writes the synthetic data it reads inside its own working directory. Maps each
    chapter to its run (a future) or to the reason it is skipped."""
    from concurrent.futures import ThreadPoolExecutor

    kernel, _ = colab_kernel
    selected = [
        item.callspec.params["chapter"]
        for item in request.session.items
        if item.originalname == "test_each_chapter_runs_alone_in_a_fresh_environment"
    ]
    runs, parameters = {}, {}
    for chapter in selected:  # every chapter's parameters checked before any chapter starts
        try:
            parameters[chapter] = alone_parameters(chapter)
        except pytest.skip.Exception as skip:
            runs[chapter] = skip.msg
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        for chapter, settings in parameters.items():
            workdir = tmp_path_factory.mktemp(chapter) / "run"
            workdir.mkdir()
            runs[chapter] = pool.submit(run_alone, chapter, settings, kernel, workdir)
        yield runs
    finally:  # the running chapters finish before colab_kernel removes their environment
        pool.shutdown(cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_runs_alone_in_a_fresh_environment(chapter, colab_kernel, lone_runs):
    from jupyter_client.kernelspec import KernelSpecManager

    kernel, python = colab_kernel
    assert KernelSpecManager().get_kernel_spec(kernel).argv[0] == str(python), "the fresh environment runs it"
    if isinstance(lone_runs[chapter], str):
        pytest.skip(lone_runs[chapter])
    process, target = lone_runs[chapter].result()
    assert process.returncode == 0, f"{chapter} failed alone:\n{process.stderr[-4000:]}"
    executed = nbformat.read(target, as_version=4)
    text = json.dumps([cell.get("outputs", []) for cell in executed.cells])
    if chapter in DEPENDS_ON_EARLIER:
        assert "No split in outputs/" in text, "the split is made, and said so"
    if chapter.endswith("_evaluation"):
        assert "No model in outputs/" in text, "the model is trained, and said so"
        dataset = "brain_mri" if chapter.startswith("brain") else "ham10000"
        assert (target.parent / "outputs" / dataset / "evaluation.json").exists()


@pytest.mark.parametrize("chapter", ["brain_01_data", "skin_01_data"])
def test_the_data_chapters_record_the_settings_the_later_chapters_check(chapter):
    """A manifest without settings is used as it is, unchecked (and the page said "an older
    medclass"): the data chapter records the same settings as the split the later chapters
    would make themselves."""
    import ast

    notebook = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4)
    cell = next(cell.source for cell in notebook.cells if "splits.write_manifest(" in cell.source)
    recorded = next(
        node.value
        for node in ast.walk(ast.parse(cell))
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "frame.attrs['settings']"
    )
    keys = {key.value for key in recorded.keys}
    dataset = "brain_mri" if chapter.startswith("brain") else "ham10000"
    expected = {"seed", "max_images"} | (
        {"br35h_in_training", "lgg_in_training"} if dataset == "brain_mri" else set()
    )
    assert keys == expected


def test_model_json_records_the_dataset_the_recipe_and_what_the_app_shows(tmp_path):
    """model.json is written by one function for the chapters and prerequisites.train alike."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,split\n")
    settings = {"alpha": 1.0, **demo_parameters("skin_02_training")}  # alpha: the chapter's default
    case = case_studies.for_dataset("ham10000")
    recipe = prerequisites.recipe_for(
        settings, pd.Series(["nv", "mel"]), ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"], False
    )
    names = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    info = prerequisites.model_metadata(settings, names, (96, 96), True, case, manifest, recipe)
    assert info["dataset"] == "ham10000" and info["data"] == "synthetic images"
    assert info["risk_classes"] == ["akiec", "bcc", "mel"]
    assert set(info["class_definitions"]) == set(names) and all(info["class_definitions"].values())
    assert info["recipe"]["epochs_frozen"] == settings["epochs_frozen"]
    assert info["manifest_sha256"] == splits.manifest_hash(manifest)
    json.dumps(info)  # written as JSON


def test_the_training_chapters_write_model_json_through_the_one_function():
    for chapter in ("brain_02_training", "skin_02_training"):
        source = "\n".join(
            cell.source
            for cell in nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4).cells
            if cell.cell_type == "code"
        )
        assert "prerequisites.model_metadata(" in source and '"class_names": class_names' not in source
