"""Publishing: provenance recorded with each executed chapter, book/published/, the workflows."""

from __future__ import annotations

import ast
import datetime
import os
import re
import subprocess

import nbformat
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from tools import book, chapters, profiles, prose, provenance


def executed_copy(path, record: dict | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    document = nbformat.v4.new_notebook()
    document.cells = [nbformat.v4.new_markdown_cell("# A chapter"), nbformat.v4.new_code_cell("1 + 1")]
    if record is not None:
        document.metadata["medclass"] = record
    nbformat.write(document, path)
    return path


def test_provenance_records_profile_settings_data_machine_and_time():
    source = ROOT / "notebooks" / "brain_02_training.ipynb"
    started = datetime.datetime(2026, 11, 23, 8, 0, 0)
    record = provenance.provenance("cpu", source, {"backbone": "mobilenet_v2", "alpha": 0.35}, started, 421.4)
    assert record["parameters"]["backbone"] == "mobilenet_v2"
    assert record["parameters"]["epochs_frozen"] == chapters.notebook_defaults(source)["epochs_frozen"]
    assert record["uses_model"] and record["datasets"] == ["brain_mri", "br35h", "lgg"]
    assert re.match(r"\d+ CPU cores \(.+\), \d+ GiB memory, ", record["machine"])
    note = provenance.provenance_markdown(record)
    assert note.startswith("```{admonition} How the results on this page were produced")
    for fact in (
        "`cpu`",
        "real data: Brain Tumor MRI",
        "mobilenet_v2 (alpha 0.35)",
        "7 min 1 s",
        "2026-11-23 08:00:00",
    ):
        assert fact in note, fact


def test_publish_models_copies_complete_exports_and_skips_the_rest(tmp_path):
    from medclass import records

    outputs = tmp_path / "outputs"
    for dataset in ("brain_mri", "ham10000", "stale"):
        folder = outputs / dataset
        folder.mkdir(parents=True)
        (folder / "model.keras").write_text(f"{dataset} model.keras")
        (folder / "model_card.md").write_text(f"{dataset} card")
        records.write_json(folder / "model.json", {"class_names": ["Healthy", "Tumor"], "image_size": [8, 8]})
        digest = records.model_digest(folder / "model.keras")
        records.write_json(folder / "evaluation.json", {"temperature": 1.0, "model_sha256": digest})
    (outputs / "ham10000" / "evaluation.json").unlink()  # an export the evaluation never finished
    (outputs / "stale" / "model.keras").write_text("trained again, not evaluated")
    published = tmp_path / "published"
    copied = book.publish_models(outputs, ["brain_mri", "ham10000", "stale"], "cpu", published)
    assert copied == [published / "cpu" / "models" / "brain_mri"]
    assert (copied[0] / "model.keras").read_text() == "brain_mri model.keras"
    assert not (published / "cpu" / "models" / "ham10000").exists()
    assert not (published / "cpu" / "models" / "stale").exists(), "never beside another model's evaluation"
    assert not list(published.rglob("*.partial"))


def test_the_published_models_are_committed_and_load():
    """The cpu run's exports travel with the book: the app and the report need no training."""
    from medclass import serving

    for dataset in ("brain_mri",):
        folder = ROOT / "book" / "published" / "cpu" / "models" / dataset
        missing = [name for name in book.MODEL_FILES if not (folder / name).is_file()]
        assert not missing, f"{folder} lacks {missing}; run make book PROFILE=cpu DATA_DIR=... and commit it"
        bundle = serving.load_bundle(folder)
        assert bundle.class_names == ["Healthy", "Tumor"] and bundle.temperature > 0


def test_provenance_says_which_chapters_use_no_model_and_which_data():
    data_chapter = provenance.provenance(
        "demo", ROOT / "notebooks" / "skin_01_data.ipynb", {"synthetic": True}, datetime.datetime.now(), 3
    )
    assert not data_chapter["uses_model"] and "Backbone" not in provenance.provenance_markdown(data_chapter)
    assert "synthetic images" in provenance.provenance_markdown(data_chapter)
    augmentation = provenance.provenance(
        "cpu", ROOT / "notebooks" / "augmentation.ipynb", {"synthetic": False}, datetime.datetime.now(), 3
    )
    assert "Brain Tumor MRI" in provenance.provenance_markdown(augmentation)
    assert "HAM10000" in provenance.provenance_markdown(augmentation)
    digits = provenance.provenance(
        "cpu",
        ROOT / "notebooks" / "concepts_02_resnet.ipynb",
        {"synthetic": False},
        datetime.datetime.now(),
        3,
    )
    assert "digits (no medical data)" in provenance.provenance_markdown(digits)


def test_publish_copies_executed_chapters_whole(tmp_path):
    executed = [executed_copy(tmp_path / f"{name}.ipynb", {"profile": "cpu"}) for name in ("a", "b")]
    target = book.publish(executed, "cpu", tmp_path / "published")
    assert sorted(path.name for path in target.iterdir()) == ["a.ipynb", "b.ipynb"]
    assert nbformat.read(target / "a.ipynb", as_version=4).metadata["medclass"] == {"profile": "cpu"}


@pytest.mark.case(
    9,
    "--only brain_01_data on the cpu profile",
    "publishes nothing unless --publish is given; demo runs never publish",
)
def test_a_cpu_run_publishes_and_a_demo_run_does_not(tmp_path, monkeypatch):
    monkeypatch.setattr(book, "PUBLISHED_DIR", tmp_path / "published")
    monkeypatch.setattr(book, "write_chapter_parameters", lambda name: [])  # leave the checkout alone
    monkeypatch.setattr(book, "execute_notebook", lambda source, target, *_: executed_copy(target, {}))
    build = ["--build-dir", str(tmp_path / "build"), "--only", "brain_01_data", "--skip-html"]
    book.main(["--profile", "demo", *build])
    assert not (tmp_path / "published").exists()
    book.main(["--profile", "cpu", "--no-publish", *build])
    assert not (tmp_path / "published").exists()
    book.main(["--profile", "cpu", *build])
    assert not (tmp_path / "published").exists(), "a partial run publishes only when asked to"
    book.main(["--profile", "cpu", "--publish", *build])
    assert (tmp_path / "published" / "cpu" / "brain_01_data.ipynb").is_file()


def test_staging_puts_the_note_under_the_title_and_names_missing_chapters(tmp_path):
    executed = tmp_path / "executed"
    executed.mkdir()
    record = provenance.provenance(
        "cpu", ROOT / "notebooks" / "brain_01_data.ipynb", {"synthetic": False}, datetime.datetime.now(), 12
    )
    for source in chapters.toc_notebooks():
        executed_copy(executed / source.name, record)
    book.stage_book(executed, tmp_path / "stage")
    staged = nbformat.read(tmp_path / "stage" / "notebooks" / "brain_01_data.ipynb", as_version=4)
    assert staged.cells[0].source == "# A chapter"
    assert "How the results on this page were produced" in staged.cells[1].source
    assert not (tmp_path / "stage" / "book" / "published").exists(), "published copies are not staged twice"
    (executed / "skin_03_evaluation.ipynb").unlink()
    with pytest.raises(SystemExit, match="lacks executed copies of .*skin_03_evaluation"):
        book.stage_book(executed, tmp_path / "stage2")


def test_render_without_published_results_says_how_to_make_them(tmp_path):
    with pytest.raises(SystemExit, match="make book PROFILE=nothing"):
        book.main(["--render", "nothing", "--build-dir", str(tmp_path)])


def test_the_workflows_run_make_targets_that_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.M))
    pages = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    demo = yaml.safe_load((ROOT / ".github" / "workflows" / "pr-demo.yml").read_text())
    assert "pull_request" in demo[True] and "push" in pages[True]  # YAML 1.1 reads `on` as True
    for workflow in (pages, demo):
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                for command in re.findall(r"make ([a-z-]+)", step.get("run", "")):
                    assert command in targets, f"a workflow runs `make {command}`, which the Makefile lacks"
    uploads = [
        step for step in pages["jobs"]["build"]["steps"] if "upload-pages-artifact" in step.get("uses", "")
    ]
    assert uploads[0]["with"]["path"] == "_build/published/html", "Pages gets what `make published` writes"
    deploy = pages["jobs"]["deploy"]["steps"][0]["uses"]
    assert deploy.startswith("actions/deploy-pages")


def test_the_commit_hooks_leave_published_outputs_alone():
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    published = "book/published/cpu/brain_02_training.ipynb"
    assert re.match(hooks["exclude"], published), "nbstripout would strip the published outputs"
    assert not re.match(hooks["exclude"], "notebooks/brain_02_training.ipynb")


def tiny_notebook(path, code: str):
    """A notebook of a ``parameters`` cell (``x = 1``) and one cell of ``code``, written to ``path``."""
    document = nbformat.v4.new_notebook()
    document.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    document.cells = [
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(code),
    ]
    nbformat.write(document, path)
    return path


def test_figures_are_kept_when_the_environment_sets_a_matplotlib_backend(tmp_path, monkeypatch):
    """`import streamlit` (and many headless setups) set MPLBACKEND=Agg, which the kernel would
    inherit: plt.show() would then draw nothing and the book would lose every figure."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    source = tiny_notebook(
        tmp_path / "figure.ipynb", "import matplotlib.pyplot as plt\nplt.plot([0, 1], [x, 2])\nplt.show()"
    )
    monkeypatch.setattr(book, "ROOT", tmp_path)
    monkeypatch.setattr(provenance, "_commit", lambda: "test")
    book.execute_notebook(source, tmp_path / "out" / "figure.ipynb", {"x": 3})
    executed = nbformat.read(tmp_path / "out" / "figure.ipynb", as_version=4)
    outputs = [output for cell in executed.cells for output in cell.get("outputs", [])]
    assert any("image/png" in output.get("data", {}) for output in outputs), "the figure was lost"
    assert os.environ["MPLBACKEND"] == "Agg", "the caller's environment is restored"


@pytest.mark.case(
    10,
    "a notebook kernel killed (as the out-of-memory killer would)",
    "says the kernel died and to run the same command again; the previous executed copy kept, no "
    ".partial file left",
)
def test_a_kernel_that_dies_says_what_happened_and_how_to_resume(tmp_path, monkeypatch):
    source = tiny_notebook(
        tmp_path / "dies.ipynb", "import os\nos._exit(9)  # as the out-of-memory killer would"
    )
    target = tmp_path / "out" / "dies.ipynb"
    target.parent.mkdir()
    target.write_text("the previous good copy")
    monkeypatch.setattr(book, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match="died .* Run the same command again") as error:
        book.execute_notebook(source, target, {"x": 3})
    assert "dies.failed.ipynb" in str(error.value)
    assert target.read_text() == "the previous good copy"
    assert not target.with_suffix(".partial.ipynb").exists()


@pytest.mark.parametrize("profile", ["demo", "cpu", "full"])
def test_papermill_reads_from_the_chapter_files_what_make_book_injects(profile, monkeypatch):
    from papermill.iorw import read_yaml_file

    injected = {}
    monkeypatch.setattr(book, "write_chapter_parameters", lambda name: [])  # the committed files
    monkeypatch.setattr(
        book,
        "execute_notebook",
        lambda source, target, parameters, name: injected.update({source.stem: parameters}),
    )
    book.main(["--profile", profile, "--skip-html", "--no-publish"])
    settings = profiles.read_profile(profile)
    for source in chapters.toc_notebooks():
        path = profiles.chapter_parameters_file(profile, source.stem)
        from_file = read_yaml_file(str(path))  # what `papermill ... -f <path>` injects
        assert from_file == injected[source.stem], f"{path} differs from what make book runs"
        assert from_file == profiles.chapter_settings(settings, source), (
            f"{path} is stale: run `make parameters`"
        )
        unknown = set(from_file) - set(chapters.notebook_defaults(source))
        assert not unknown, f"papermill would warn 'Passed unknown parameter' for {unknown} in {source.name}"
    assert {path.stem for path in (profiles.PROFILES_DIR / profile).glob("*.yaml")} == set(injected)


def test_the_appendix_table_of_bad_input_cases_lists_every_marked_case():
    """``make cases`` writes the table; a case marked since (or changed) must be run into it."""
    marked = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "pytest.mark.case":
                        item, what, _ = (ast.literal_eval(argument) for argument in decorator.args)
                        marked.add((str(item), what, node.name))
    table = (ROOT / "book" / "generated" / "bad_input_cases.md").read_text()
    rows = [
        [cell.strip() for cell in line.split("|")]
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| item")
    ]
    listed = {(cells[1], cells[2], cells[4].strip("`").rsplit(" :: ", 1)[-1]) for cells in rows}
    assert marked and marked == listed, "run `make cases` to rewrite book/generated/bad_input_cases.md"
    assert [cells[5] for cells in rows] == ["passed"] * len(rows)


def test_chapters_run_side_by_side_in_chains_that_keep_the_case_studies_in_order():
    chains = [[source.stem for source in chain] for chain in book.chains(chapters.toc_notebooks())]
    assert len(chains) == 3
    for case in ("brain", "skin"):
        chain = [chain for chain in chains if f"{case}_01_data" in chain][0]
        assert chain == [f"{case}_01_data", f"{case}_02_training", f"{case}_03_evaluation"]
    assert sorted(sum(chains, [])) == sorted(source.stem for source in chapters.toc_notebooks())


def test_a_chapter_that_fails_stops_its_chain_and_the_run_while_the_others_finish(tmp_path, monkeypatch):
    ran = []

    def execute(source, target, parameters, name):
        if source.stem == "brain_02_training":
            raise SystemExit("brain_02_training failed")
        ran.append(source.stem)

    monkeypatch.setattr(book, "execute_notebook", execute)
    monkeypatch.setattr(book, "write_synthetic_data", lambda runs: None)
    runs = {source: {} for source in chapters.toc_notebooks()}
    with pytest.raises(SystemExit, match="brain_02_training failed"):
        book.execute_chains(runs, tmp_path, "demo", jobs=2)
    assert "brain_01_data" in ran and "brain_03_evaluation" not in ran
    assert {"skin_01_data", "skin_03_evaluation", "concepts_03_transfer", "augmentation"} <= set(ran)


def test_the_published_pages_prose_matches_their_runs():
    """Issue 18: no published page's prose names a profile, backbone or setting that differs
    from its provenance record, or binds itself to another run."""
    published = book.PUBLISHED_DIR / "cpu"
    problems = [
        problem
        for source in chapters.toc_notebooks()
        for problem in prose.prose_problems(published / source.name)
    ]
    assert problems == [], "run make book PROFILE=cpu DATA_DIR=../shared/data to re-execute the pages"


def test_the_appendix_tables_are_what_the_published_chapters_recorded():
    """``book/generated/published_results.md`` is what ``python -m tools.published_results``
    writes from the committed ``book/published/cpu/``: the appendix cannot quote another run."""
    from tools import chapters, published_results

    written = published_results.TARGET.read_text()
    assert written == published_results.markdown("cpu"), "run python -m tools.published_results"
    for chapter in chapters.toc_notebooks():
        assert f"| `{chapter.stem}` |" in written and f"| `{chapter.stem}` | not published" not in written
    headlines = published_results.headlines("cpu")
    assert set(headlines) == {"brain_mri", "ham10000"}
    for dataset, paragraph in headlines.items():
        assert published_results.headline_path(dataset).read_text() == paragraph, dataset
        page = (ROOT / "book" / ("brain_mri.md" if dataset == "brain_mri" else "skin_lesions.md")).read_text()
        assert f"generated/published_headline_{dataset}.md" in page, "the case study's page includes it"


def test_a_recorded_result_comes_back_as_the_table_it_was(tmp_path, monkeypatch):
    """:func:`medclass.runtime.show_result` shows the table rounded and records it whole, in
    the output's metadata, where :func:`tools.published_results.recorded_results` finds it."""
    import IPython.display
    import pandas as pd

    from medclass import runtime
    from tools import published_results

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda table, metadata: shown.append((table, metadata)))
    metrics = pd.DataFrame(
        {"value": [0.968705547, 0.5], "ci_low": [0.949, float("nan")], "ci_high": [0.985, float("nan")]},
        index=pd.Index(["accuracy", "ROC-AUC"], name="metric"),
    )
    split = pd.crosstab(
        [pd.Series(["a", "a", "b"], name="source"), pd.Series(["train", "test", "train"], name="split")],
        pd.Series(["Tumor", "Healthy", "Tumor"], name="label"),
        margins=True,
    )
    runtime.show_result("metrics", metrics)
    runtime.show_result("split", split)
    assert shown[0][0].loc["accuracy", "value"] == 0.969  # the page shows it rounded
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"text/plain": repr(table)}, metadata=metadata)
        for table, metadata in shown
    ]
    document = nbformat.v4.new_notebook()
    document.cells = [cell]
    nbformat.write(document, tmp_path / "chapter.ipynb")
    tables = published_results.recorded_results(tmp_path / "chapter.ipynb")
    assert tables["metrics"].loc["accuracy", "value"] == 0.968705547  # the appendix has it whole
    assert pd.isna(tables["metrics"].loc["ROC-AUC", "ci_low"])
    assert published_results.with_interval(tables["metrics"].loc["accuracy"]) == "0.969 [0.949, 0.985]"
    assert published_results.split_sizes(tables["split"]) == "train 2, test 1"
    by_label = pd.crosstab(
        pd.Series(["Tumor", "Healthy", "Tumor"], name="label"),
        pd.Series(["test", "train", "val"], name="split"),
        margins=True,
    )
    assert published_results.split_sizes(by_label) == "train 1, val 1, test 1"


def test_the_readme_quotes_the_published_run_as_it_is():
    """The README cannot include a generated file, so its headline numbers are typed: each
    must be one the published run's generated tables hold."""
    readme = (ROOT / "README.md").read_text()
    quoted = readme.split("The published book shows a `cpu` run", 1)[1].split("The exported models", 1)[0]
    generated = "".join(path.read_text() for path in (ROOT / "book" / "generated").glob("published_*.md"))
    numbers = re.findall(r"\d\.\d{3}", quoted)
    assert len(numbers) >= 6, "the README states the published run's headline numbers"
    assert [number for number in numbers if number not in generated] == []


def test_the_skin_levers_table_is_what_its_benchmark_measured(tmp_path):
    """The appendix's lever table is written from benchmarks/results/skin_levers.csv, never typed;
    the frozen-feature probes come first, and a run without a time shows a dash."""
    from benchmarks import skin_levers

    written = skin_levers.write_table(tmp_path / "skin_levers.md")
    assert written.read_text() == (ROOT / "book" / "generated" / "skin_levers.md").read_text(), (
        "run `python benchmarks/skin_levers.py table`"
    )
    rows = [line.split(" | ") for line in written.read_text().splitlines()[2:]]
    kinds = [row[0].lstrip("| ") for row in rows]
    assert kinds[0] == "frozen features, logistic regression"
    assert kinds.index("head only, 2 epochs on the frozen backbone") > max(
        i for i, kind in enumerate(kinds) if kind.startswith("frozen")
    )
    assert len(rows) == len(pd.read_csv(skin_levers.RESULTS))


def test_the_brain_remedies_tables_are_what_their_benchmark_measured(tmp_path):
    """The appendix's remedies and seed tables are written from the benchmark's CSVs, never
    typed; every variant measured on LGG has its row in the LGG table."""
    import csv

    from benchmarks import brain_shortcut

    results = ROOT / "benchmarks" / "results"
    rows = list(csv.DictReader((results / "brain_shortcut.csv").open()))
    written = brain_shortcut.write_table(rows, tmp_path / "brain_shortcut.md").read_text()
    assert written == (ROOT / "book" / "generated" / "brain_shortcut.md").read_text(), (
        "run `python benchmarks/brain_shortcut.py --table-only`"
    )
    measured = [row["variant"] for row in rows if row.get("LGG test ROC-AUC FLAIR")]
    assert measured and all(f"| {name} | " in written.split("same patients")[1] for name in measured)
    seeds = brain_shortcut.write_seed_table(results, tmp_path / "seeds.md").read_text()
    assert seeds == (ROOT / "book" / "generated" / "brain_shortcut_seeds.md").read_text()


def test_startup_noise_leaves_the_notebook_and_anything_else_on_stderr_stays():
    import nbformat

    from tools.notebook_stderr import remove_startup_noise

    probe = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796610451.063054   13174 cudart_stub.cc:31] Could not find cuda drivers on your "
        "machine, GPU will not be used.\n"
    )
    cuinit = "E0000 00:00:1796610455.164132   13174 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
    tqdm = (
        "/x/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please "
        "update jupyter and ipywidgets.\n  from .autonotebook import tqdm as notebook_tqdm\n"
    )
    real = "/x/medclass/training.py:12: UserWarning: the learning rate is 0\n"
    document = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                outputs=[nbformat.v4.new_output("stream", name="stderr", text=probe + tqdm)]
            ),
            nbformat.v4.new_code_cell(
                outputs=[
                    nbformat.v4.new_output("stream", name="stderr", text=cuinit + real),
                    nbformat.v4.new_output("stream", name="stdout", text=probe),
                ]
            ),
        ]
    )
    assert remove_startup_noise(document) == 5
    assert document.cells[0].outputs == []
    assert [output["text"] for output in document.cells[1].outputs] == [real, probe], (
        "a warning of the run's own, and stdout, are kept"
    )


def _published_chapters():
    import nbformat

    return {
        source.stem: nbformat.read(book.PUBLISHED_DIR / "cpu" / source.name, as_version=4)
        for source in chapters.toc_notebooks()
    }


def test_no_published_chapter_shows_stderr():
    """Issue 33: GitHub and the book show stderr as red boxes; what is left there after the
    start-up noise is removed (tools/notebook_stderr.py) is a warning to fix at its cause."""
    shown = [
        f"{chapter} cell {index}: {output['text'][:120]!r}"
        for chapter, document in _published_chapters().items()
        for index, cell in enumerate(document.cells)
        for output in cell.get("outputs", [])
        if output.get("name") == "stderr"
    ]
    assert shown == [], "\n".join(shown)


def test_the_published_book_ran_at_one_commit_with_the_chapters_as_they_are_now():
    """Issue 33: every published chapter ran at the same commit, from a clean tree, and no
    chapter's source has changed since (else the page would show another notebook's run)."""
    commits = {
        chapter: document.metadata["medclass"]["commit"]
        for chapter, document in _published_chapters().items()
    }
    assert len(set(commits.values())) == 1, commits
    commit = next(iter(commits.values()))
    assert "uncommitted" not in commit and commit != "unknown", commit
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True)
    if known.returncode:
        pytest.skip(f"commit {commit} is not in this clone's history (a shallow clone?)")
    changed = subprocess.run(
        ["git", "diff", "--name-only", commit, "--", "notebooks/*.ipynb", "notebooks/profiles"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    changed = [
        path
        for path in changed
        if not path.endswith(".ipynb") or _what_runs(_at(commit, path)) != _what_runs(_now(path))
    ]
    assert changed == [], f"changed since the published run at {commit}: {changed}; run make book PROFILE=cpu"


def _now(path: str) -> str:
    return (ROOT / path).read_text() if (ROOT / path).is_file() else ""


def _at(commit: str, path: str) -> str:
    shown = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else ""


def _what_runs(text: str) -> list | None:
    """A notebook's cells as they run and render: type, source and metadata (tags), not the
    cell ids that nbstripout renumbers. None for a notebook that is not there."""
    if not text:
        return None
    cells = nbformat.reads(text, as_version=4).cells
    return [(cell.cell_type, cell.source, dict(cell.metadata)) for cell in cells]


def test_renumbered_cell_ids_are_no_change_to_a_chapter_but_a_changed_line_is():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    notebook.cells[0].id = "6280c404"
    before = nbformat.writes(notebook)
    notebook.cells[0].id = "16"
    assert _what_runs(nbformat.writes(notebook)) == _what_runs(before)
    notebook.cells[0].source = "x = 2"
    assert _what_runs(nbformat.writes(notebook)) != _what_runs(before)


def test_the_rendered_page_shows_the_values_its_run_used_once():
    """Issue 33: papermill leaves the defaults and the injected values in two cells; the page
    shows one cell, with the run's values, each changed one naming its default."""
    from tools.page_parameters import show_values_once

    defaults = (
        "# Parameters: sized for a free Colab GPU; profiles override them.\n"
        'backbone = "resnet50"\nunfreeze_blocks = (\n    3  # top blocks trained in phase 2\n)\nseed = 42'
    )
    document = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(defaults, metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(
                '# Parameters\nbackbone = "mobilenet_v2"\nunfreeze_blocks = 6\nseed = 42\n',
                metadata={"tags": ["injected-parameters"]},
            ),
            nbformat.v4.new_code_cell("print(backbone)"),
        ]
    )
    assert show_values_once(document)
    assert [cell.source for cell in document.cells] == [
        "# Parameters of this run: the profile's values in place of the chapter's defaults.\n"
        'backbone = "mobilenet_v2"  # [default: "resnet50"]\n'
        "unfreeze_blocks = 6  # top blocks trained in phase 2 [default: 3]\n"
        "seed = 42",
        "print(backbone)",
    ]
    assert not show_values_once(document), "nothing injected: the page is left as it is"


def test_a_rewritten_parameter_too_wide_for_the_page_keeps_its_comment_above_it():
    """The rendered page cuts code wider than tools.page_parameters.WIDTH (CI's browser test
    found the one-line form cut on every chapter): the comment then goes above the assignment."""
    from tools.page_parameters import WIDTH, show_values_once

    comment = "how many of the backbone's top blocks phase 2 trains, counted from the classifier head"
    document = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                f"# Parameters\nunfreeze_blocks = 3  # {comment}", metadata={"tags": ["parameters"]}
            ),
            nbformat.v4.new_code_cell(
                "# Parameters\nunfreeze_blocks = 6\n", metadata={"tags": ["injected-parameters"]}
            ),
        ]
    )
    assert show_values_once(document)
    lines = document.cells[0].source.splitlines()
    assert max(map(len, lines)) <= WIDTH
    assert lines[-1] == "unfreeze_blocks = 6"
    assert " ".join(line.removeprefix("# ") for line in lines[1:-1]) == f"{comment} [default: 3]"
