"""The book runner: papermill executes the notebooks, Jupyter Book renders the executed copies.

Used by ``make book``; see the README's "Profiles" section. Run ``python -m tools.book -h``.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import yaml

from medclass import case_studies, records
from tools.notebook_stderr import remove_startup_noise
from tools.page_parameters import show_values_once

ROOT = Path(__file__).resolve().parents[1]
PROFILES_DIR = ROOT / "notebooks" / "profiles"
PUBLISHED_DIR = ROOT / "book" / "published"
BOOK_FILES = ("_config.yml", "_toc.yml", "book")
# The datasets a chapter outside the case studies reads; else its `dataset` parameter.
CHAPTER_DATA = {"augmentation": ("brain_mri", "ham10000"), "concepts_02_resnet": ()}


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
    import nbformat

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


def read_profile(profile: str) -> dict:
    """The contents of ``notebooks/profiles/<profile>.yaml``: shared keys, and per-case sections."""
    path = PROFILES_DIR / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise SystemExit(f"No profile {profile!r} ({path} is missing); choose one of {known}.")
    profile = yaml.safe_load(path.read_text()) or {}
    problems = profile_problems(profile)
    if problems:
        raise SystemExit(
            f"{path} has key(s) no chapter reads, so they would be dropped and the chapters would run "
            "their defaults:\n  " + "\n  ".join(problems) + "\nCorrect or remove them."
        )
    return profile


def profile_problems(profile: dict) -> list[str]:
    """The keys of ``profile`` that no chapter declares: a shared key no chapter has, a
    section key that no chapter of the section has, a section no chapter's name starts with."""
    declared: dict[str, set] = {}
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        declared.setdefault(notebook.stem.split("_", 1)[0], set()).update(notebook_defaults(notebook))
    everywhere = set().union(*declared.values())
    problems = []
    for key, value in profile.items():
        if not isinstance(value, dict):
            if key not in everywhere:
                problems.append(_unknown_key(key, everywhere))
        elif key not in declared:
            problems.append(f"{key}: not a case study's section (sections: {sorted(declared)})")
        else:
            problems += [
                f"{key}: {_unknown_key(name, declared[key])}" for name in value if name not in declared[key]
            ]
    return problems


def _unknown_key(name: str, known: set) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1)
    return name + (f" (did you mean {close[0]!r}?)" if close else "")


def parameters_for(profile: dict, notebook: str) -> dict:
    """A notebook's parameters: the profile's shared keys, overridden by the section named by
    the notebook's prefix (``brain:`` for ``brain_02_training``), when there is one."""
    shared = {key: value for key, value in profile.items() if not isinstance(value, dict)}
    section = profile.get(notebook.split("_", 1)[0])
    return {**shared, **(section if isinstance(section, dict) else {})}


def chapter_settings(profile: dict, source: Path) -> dict:
    """What a profile gives one chapter: :func:`parameters_for`, kept to the parameters that
    chapter declares (each chapter's parameters cell holds only what it uses), so that papermill
    never warns of an unknown parameter."""
    return declared_only(source, parameters_for(profile, source.stem))


def declared_only(source: Path, values: dict) -> dict:
    """``values`` kept to the parameters the chapter ``source`` declares."""
    declared = notebook_defaults(source)
    return {key: value for key, value in values.items() if key in declared}


def chapter_parameters_file(profile_name: str, chapter: str) -> Path:
    """``notebooks/profiles/<profile>/<chapter>.yaml``: the parameters of one chapter under one
    profile, as papermill's ``-f`` reads them and as ``make book`` passes them."""
    return PROFILES_DIR / profile_name / f"{chapter}.yaml"


def write_chapter_parameters(profile_name: str) -> list[Path]:
    """Write (when changed) the per-chapter parameter files of a profile from its YAML, so that
    ``papermill ... -f notebooks/profiles/<profile>/<chapter>.yaml`` runs what ``make book`` runs."""
    written = []
    profile = read_profile(profile_name)
    for source in toc_notebooks():
        path = chapter_parameters_file(profile_name, source.stem)
        command = f"papermill {source.relative_to(ROOT)} out.ipynb -f {path.relative_to(ROOT)}"
        text = (
            f"# Generated from notebooks/profiles/{profile_name}.yaml by `make parameters` (and "
            f"`make book`);\n# edit that file, not this one. From the repository root: {command}\n"
            + yaml.safe_dump(chapter_settings(profile, source), sort_keys=False)
        )
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


def chapter_parameters(profile_name: str, chapter: str) -> dict:
    """What papermill reads from :func:`chapter_parameters_file` (PyYAML's safe loader, as its ``-f``)."""
    return yaml.safe_load(chapter_parameters_file(profile_name, chapter).read_text()) or {}


def notebook_defaults(notebook: Path) -> dict:
    """The literal values of a notebook's ``parameters`` cell (what papermill overrides)."""
    import nbformat

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


RUN_BOUND = re.compile(r"you are reading|builds? this book|built this book|which built|this page was", re.I)
PROFILE_CLAIM = re.compile(r"`(demo|cpu|full)` profile")
SETTING_CLAIM = re.compile(r"`(\w+) ?= ?([^`]+)`")
RUN_NOTE = "This run's backbone"


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def prose_problems(notebook: Path) -> list[str]:
    """Sentences of a chapter's prose that can be untrue of the run printed beside them.

    A chapter's markdown is the same under every profile, so it may not bind itself to one run
    ("the profile which built the pages you are reading"); a sentence that gives one profile's
    setting ("with `cache_features=True` (the `cpu` profile)") must agree with that profile's
    file. In an executed chapter, the notes its run wrote about itself
    (:func:`medclass.runtime.what_the_numbers_show`) must agree with its provenance record.
    """
    import nbformat

    document = nbformat.read(notebook, as_version=4)
    chapter = notebook.name.removesuffix(".ipynb")
    defaults = notebook_defaults(notebook)
    claimed: dict[str, dict] = {}  # profile -> the chapter's settings under it, read once
    problems = []
    for index, cell in enumerate(document.cells):
        if cell.cell_type != "markdown":
            continue
        for sentence in re.split(r"(?<=\.)\s+", " ".join(cell.source.split())):
            if RUN_BOUND.search(sentence):
                problems.append(f"{chapter} cell {index} binds the prose to one run: {sentence!r}")
            profiles = set(PROFILE_CLAIM.findall(sentence))
            if len(profiles) != 1:
                continue
            (profile,) = profiles
            if profile not in claimed:
                claimed[profile] = {**defaults, **parameters_for(read_profile(profile), chapter)}
            settings = claimed[profile]
            for key, value in SETTING_CLAIM.findall(sentence):
                if key in settings and settings[key] != _literal(value):
                    problems.append(
                        f"{chapter} cell {index} says `{key}={value}` of the `{profile}` profile, "
                        f"whose value is {settings[key]!r}: {sentence!r}"
                    )
    record = document.metadata.get("medclass")
    if record:
        run = record["parameters"]
        notes = [
            text
            for cell in document.cells
            for output in cell.get("outputs", [])
            if RUN_NOTE in (text := "".join(output.get("data", {}).get("text/markdown", "")))
        ]
        weights, synthetic = run.get("weights"), bool(run.get("synthetic"))
        for note in notes:
            if ("not pretrained" in note) != (not weights):
                problems.append(f"{chapter}: its run's note misstates the weights, {weights!r}")
            if ("**synthetic**" in note) != synthetic:
                problems.append(f"{chapter}: its run's note misstates the data, synthetic={synthetic}")
    return problems


def uses_model(notebook: Path) -> bool:
    """Whether a chapter's code (not its parameters cell) builds or loads the profile's backbone."""
    import nbformat

    document = nbformat.read(notebook, as_version=4)
    code = [
        c.source
        for c in document.cells
        if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
    ]
    return bool(re.search(r"\bbackbone\b", "\n".join(code)))


def machine() -> str:
    """This machine in one line: CPU cores and model, memory, GPUs."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0
    gpus = []
    if shutil.which("nvidia-smi"):
        query = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        )
        gpus = [line.strip() for line in query.stdout.splitlines() if line.strip()]
    return f"{cores} CPU cores ({cpu}), {memory:.0f} GiB memory, " + (", ".join(gpus) if gpus else "no GPU")


def _commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" (with uncommitted changes)" if dirty else "")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def chapter_datasets(source: Path, settings: dict) -> list[str]:
    """The datasets a chapter reads with ``settings`` (its defaults and parameters joined)."""
    case_study = case_studies.chapter_datasets(source.stem)
    if case_study is not None:
        return list(case_study)
    return list(CHAPTER_DATA.get(source.stem, (settings.get("dataset"),)))


def provenance(
    profile_name: str, source: Path, parameters: dict, started: datetime.datetime, seconds: float
) -> dict:
    """What produced an executed chapter: profile, settings, data, machine, time, code version."""
    settings = {**notebook_defaults(source), **parameters}
    return {
        "profile": profile_name,
        "chapter": source.stem,
        "parameters": settings,
        "uses_model": uses_model(source),
        "datasets": chapter_datasets(source, settings),
        "machine": machine(),
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "commit": _commit(),
        "versions": {name: _version(name) for name in ("tensorflow", "keras", "keras-cv")},
    }


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    )


def _citation(name: str) -> str:
    from medclass import datasets

    return datasets.get(name).citation if name in datasets.names() else str(name)


def provenance_markdown(record: dict) -> str:
    """The note at the top of an executed chapter that says how its results were produced."""
    from medclass import runtime

    settings = record["parameters"]
    if settings.get("synthetic"):
        data = "synthetic images generated by `medclass` (no patients: the numbers say nothing clinical)"
    elif record["datasets"]:
        data = "real data: " + "; ".join(_citation(name) for name in record["datasets"])
        if settings.get("max_images"):
            data += f", at most {settings['max_images']} images"
    else:
        data = "scikit-learn's bundled digits (no medical data)"
    lines = [
        f"- **Profile**: `{record['profile']}` (`notebooks/profiles/{record['profile']}.yaml`)",
        f"- **Data**: {data}",
    ]
    if record["uses_model"]:
        backbone = settings.get("backbone", "?")
        if settings.get("alpha") and str(backbone).startswith("mobilenet"):
            backbone += f" (alpha {settings['alpha']})"
        size = settings.get("image_size")
        lines.append(
            f"- **Backbone**: {backbone}, {runtime.describe_weights(settings.get('weights'))}"
            + (f", {size} px" if size else "")
        )
    versions = ", ".join(f"{name} {version}" for name, version in record["versions"].items())
    lines += [
        f"- **Hardware**: {record['machine']}",
        f"- **Run time**: {_duration(record['seconds'])}, started {record['started'].replace('T', ' ')} UTC",
        f"- **Code**: commit {record['commit']}; {versions}",
    ]
    return (
        "```{admonition} How the results on this page were produced\n:class: note\n"
        + "\n".join(lines)
        + "\n```"
    )


def execute_notebook(source: Path, target: Path, parameters: dict, profile_name: str = "custom") -> None:
    """Execute ``source`` with papermill into ``target``, recording its provenance in the
    notebook's metadata (``medclass``); a failure keeps any previous ``target``."""
    import nbformat
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.ipynb")
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    # The kernel inherits this process's environment; an MPLBACKEND such as "Agg" (set by
    # headless setups, and by `import streamlit`) would replace the inline backend, and every
    # figure would vanish from the book without an error.
    inherited_backend = os.environ.pop("MPLBACKEND", None)
    try:
        papermill.execute_notebook(
            str(source),
            str(partial),
            parameters=parameters,
            kernel_name="python3",
            progress_bar=threading.current_thread() is threading.main_thread(),  # none in chains
            cwd=str(ROOT),
            request_save_on_cell_execute=True,
        )
    except PapermillExecutionError as error:
        failed = target.with_suffix(".failed.ipynb")
        partial.replace(failed)
        raise SystemExit(
            f"\nNotebook {source.relative_to(ROOT)} failed in cell {error.cell_index} "
            f"(execution count {error.exec_count}): {error.ename}: {error.evalue}\n"
            f"The executed copy with the traceback is {failed}."
        ) from None
    except DeadKernelError:
        failed = target.with_suffix(".failed.ipynb")
        finished = ""
        if partial.exists():
            partial.replace(failed)
            finished = f" The cells it finished are in {failed}."
        raise SystemExit(
            f"\nThe kernel running {source.relative_to(ROOT)} died (most often: out of memory; try a "
            f"smaller batch_size or image_size).{finished} Run the same command again: a training "
            "chapter resumes from its last epoch backup, and the previous good copy, if any, is still "
            f"{target}."
        ) from None
    finally:
        if inherited_backend is not None:
            os.environ["MPLBACKEND"] = inherited_backend
    seconds = time.perf_counter() - started
    document = nbformat.read(partial, as_version=4)
    document.metadata["medclass"] = provenance(profile_name, source, parameters, started_at, seconds)
    document.metadata["medclass"]["startup_stderr_lines_removed"] = remove_startup_noise(document)
    nbformat.write(document, partial)
    partial.replace(target)
    print(f"executed {source.relative_to(ROOT)} in {seconds:.0f} s", flush=True)


def chains(sources: list[Path]) -> list[list[Path]]:
    """The chapters in chains that can run side by side: each case study's chapters in reading
    order (a training chapter reads its data chapter's split, an evaluation chapter its model),
    and the other chapters, which read nothing another chapter writes."""
    grouped: dict[str, list[Path]] = {}
    for source in sources:
        prefix = source.stem.split("_", 1)[0]
        grouped.setdefault(prefix if prefix in ("brain", "skin") else "other", []).append(source)
    return list(grouped.values())


def write_synthetic_data(runs: dict[Path, dict]) -> None:
    """Write every synthetic dataset the chapters will read before any of them starts, so that
    chapters running side by side never write the same files at once."""
    from medclass import data

    for source, parameters in runs.items():
        settings = {**notebook_defaults(source), **parameters}
        if not settings.get("synthetic"):
            continue
        for dataset in chapter_datasets(source, settings):
            data.resolve_data_dir(dataset, ROOT / settings["data_dir"], synthetic_data=True)


def execute_chains(runs: dict[Path, dict], executed_dir: Path, profile_name: str, jobs: int) -> None:
    """Execute every chapter of ``runs`` (source -> parameters) into ``executed_dir``: in
    reading order with ``jobs=1``, else :func:`chains` side by side, ``jobs`` at a time. A chain
    stops at its first failure; the others finish, and the first failure is raised."""
    from concurrent.futures import ThreadPoolExecutor

    side_by_side = chains(list(runs))
    if jobs <= 1 or len(side_by_side) == 1:
        for source, parameters in runs.items():
            execute_notebook(source, executed_dir / source.name, parameters, profile_name)
        return
    write_synthetic_data(runs)

    def run_chain(chain):
        for source in chain:
            execute_notebook(source, executed_dir / source.name, runs[source], profile_name)

    inherited_backend = os.environ.pop("MPLBACKEND", None)  # see execute_notebook; once, not per thread
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_chain, chain) for chain in side_by_side]
        failures = [future.exception() for future in futures if future.exception() is not None]
    finally:
        if inherited_backend is not None:
            os.environ["MPLBACKEND"] = inherited_backend
    if failures:
        raise failures[0]


def stage_book(executed_dir: Path, stage_dir: Path) -> None:
    """Lay out the book's sources with the executed notebooks in place of the clean ones, each
    with a note of how it was produced (from its ``medclass`` metadata) under its title."""
    import nbformat

    missing = [source.name for source in toc_notebooks() if not (executed_dir / source.name).exists()]
    if missing:
        raise SystemExit(
            f"{executed_dir} lacks executed copies of {missing}; execute them first "
            "(python -m tools.book --profile ... --only ...)."
        )
    shutil.rmtree(stage_dir, ignore_errors=True)
    stage_dir.mkdir(parents=True)
    for name in BOOK_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, stage_dir / name, ignore=shutil.ignore_patterns("published"))
        else:
            shutil.copy2(source, stage_dir / name)
    (stage_dir / "notebooks").mkdir()
    for source in toc_notebooks():
        document = nbformat.read(executed_dir / source.name, as_version=4)
        show_values_once(document)
        if "medclass" in document.metadata:
            note = nbformat.v4.new_markdown_cell(provenance_markdown(document.metadata["medclass"]))
            document.cells.insert(1, note)
        nbformat.write(document, stage_dir / "notebooks" / source.name)


def publish(executed: list[Path], profile_name: str, published_dir: Path | None = None) -> Path:
    """Copy executed chapters (with their figures and provenance) into ``book/published/<profile>/``,
    the results the published book renders; each file is replaced only by a complete copy."""
    target_dir = (published_dir or PUBLISHED_DIR) / profile_name
    target_dir.mkdir(parents=True, exist_ok=True)
    for notebook in executed:
        partial = target_dir / f"{notebook.stem}.partial.ipynb"
        shutil.copy2(notebook, partial)
        partial.replace(target_dir / notebook.name)
    return target_dir


MODEL_FILES = ("model.keras", "model.json", "evaluation.json", "model_card.md")


def publish_models(
    output_dir: Path, datasets: list[str], profile_name: str, published_dir: Path | None = None
) -> list[Path]:
    """Copy each evaluated model's export (``MODEL_FILES``) from ``output_dir/<dataset>/`` to
    ``book/published/<profile>/models/<dataset>/``, so the app and ``medclass.report`` work on a
    fresh clone without training. A dataset is copied only when all its files are there, and
    each file is replaced only by a complete copy."""
    copied = []
    for dataset in datasets:
        source = Path(output_dir) / dataset
        if not all((source / name).is_file() for name in MODEL_FILES):
            print(f"not publishing the {dataset} model: {source} lacks one of {MODEL_FILES}")
            continue
        try:  # an evaluation.json written for another model.keras is never published with it
            records.read_evaluation(source, records.read_model_info(source)["class_names"])
        except records.RecordError as error:
            print(f"not publishing the {dataset} model: {error}")
            continue
        target = (published_dir or PUBLISHED_DIR) / profile_name / "models" / dataset
        target.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            partial = target / f"{name}.partial"
            shutil.copy2(source / name, partial)
            partial.replace(target / name)
        copied.append(target)
    return copied


def build_html(stage_dir: Path, html_dir: Path) -> None:
    """Build the HTML book, failing on any Sphinx warning; replace ``html_dir`` only on success."""
    shutil.rmtree(stage_dir / "_build", ignore_errors=True)
    jupyter_book = "import sys; from jupyter_book.cli.main import main; sys.exit(main())"
    command = [
        sys.executable,
        "-c",
        jupyter_book,
        "build",
        str(stage_dir),
        "--warningiserror",
        "--keep-going",
    ]
    result = subprocess.run(command, cwd=stage_dir)
    if result.returncode:
        raise SystemExit(f"jupyter-book build failed (exit {result.returncode}); see the warnings above.")
    shutil.rmtree(html_dir, ignore_errors=True)
    shutil.copytree(stage_dir / "_build" / "html", html_dir)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="demo", help="a file in notebooks/profiles/, without .yaml")
    parser.add_argument("--data-dir", help="folder of the real data (overrides the profile's data_dir)")
    parser.add_argument(
        "--build-dir", default=str(ROOT / "_build"), help="where executed notebooks and HTML go"
    )
    parser.add_argument("--only", nargs="*", help="execute only these notebooks (file stems)")
    parser.add_argument("--skip-html", action="store_true", help="execute the notebooks, do not build HTML")
    parser.add_argument(
        "--jobs",
        type=int,
        help="chains of chapters executed side by side (default: 2 for the demo profile, whose "
        "chapters are mostly one core's work; 1 for cpu and full, which use every core and more memory)",
    )
    parser.add_argument(
        "--no-publish",
        action="store_true",
        help="keep a cpu/full run's notebooks out of book/published/ (the published results)",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="with --only: publish the chapters that ran (a whole cpu/full run publishes without it); "
        "a model is published only with its evaluation chapter",
    )
    parser.add_argument(
        "--render",
        metavar="PROFILE",
        help="build the book from book/published/PROFILE into <build-dir>/published/html; execute nothing",
    )
    parser.add_argument(
        "--sync-links", action="store_true", help="rewrite Colab badges and install cells, then stop"
    )
    parser.add_argument(
        "--write-parameters",
        action="store_true",
        help="write notebooks/profiles/<profile>/<chapter>.yaml for every profile, then stop",
    )
    return parser.parse_args(argv)


def _render(name: str, build_dir: Path) -> None:
    """``--render``: the book from ``book/published/<name>``, executing nothing."""
    source = PUBLISHED_DIR / name
    if not source.is_dir():
        raise SystemExit(
            f"No published results at {source}; run make book PROFILE={name} DATA_DIR=... first."
        )
    stage_book(source, build_dir / "stage" / f"published-{name}")
    build_html(build_dir / "stage" / f"published-{name}", build_dir / "published" / "html")
    print(f"published book built: {build_dir / 'published' / 'html' / 'index.html'}")


def _execute(args: argparse.Namespace, profile: dict, build_dir: Path) -> list[Path]:
    """Execute the chosen chapters of ``args.profile`` into ``build_dir/executed/<profile>``."""
    for path in write_chapter_parameters(args.profile):
        print(f"updated {path.relative_to(ROOT)} from the profile", flush=True)
    overrides = {"data_dir": str(Path(args.data_dir).resolve())} if args.data_dir else {}
    executed_dir = build_dir / "executed" / args.profile
    print(f"profile {args.profile}: {profile}", flush=True)
    started = time.perf_counter()
    chosen = [source for source in toc_notebooks() if not args.only or source.stem in args.only]
    runs = {
        source: {**chapter_parameters(args.profile, source.stem), **declared_only(source, overrides)}
        for source in chosen
    }
    jobs = args.jobs or (2 if args.profile == "demo" else 1)
    execute_chains(runs, executed_dir, args.profile, jobs)
    print(f"executed all notebooks in {time.perf_counter() - started:.0f} s", flush=True)
    return [executed_dir / source.name for source in chosen]


def _publish_run(args: argparse.Namespace, profile: dict, executed: list[Path]) -> None:
    """A cpu or full run's chapters and models into ``book/published/``, unless asked not to."""
    partial = args.only is not None and len(executed) < len(toc_notebooks())
    if args.profile == "demo" or args.no_publish:
        return
    if partial and not args.publish:
        print(
            f"not publishing: --only ran {len(executed)} of {len(toc_notebooks())} chapters. Add --publish "
            f"to replace just those in {PUBLISHED_DIR / args.profile} (each chapter keeps its own note of "
            "the commit and run that produced it).",
            flush=True,
        )
        return
    print(f"published {len(executed)} chapters to {publish(executed, args.profile)}", flush=True)
    evaluated = [
        parameters_for(profile, path.stem).get("dataset")
        or notebook_defaults(ROOT / "notebooks" / path.name)["dataset"]
        for path in executed
        if path.stem.endswith("_evaluation")
    ]
    output_dir = ROOT / parameters_for(profile, "brain")["output_dir"]
    for target in publish_models(output_dir, evaluated, args.profile):
        print(f"published the exported model to {target}", flush=True)
    if args.profile == "cpu":  # the performance appendix quotes this run's tables
        from tools import published_results

        generated = PUBLISHED_DIR.parent / "generated" / "published_results.md"
        published_results.main(["--profile", args.profile, "--output", str(generated)])


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    if args.write_parameters:
        for name in sorted(path.stem for path in PROFILES_DIR.glob("*.yaml")):
            for path in write_chapter_parameters(name):
                print("wrote", path.relative_to(ROOT))
        return
    if args.sync_links:
        for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
            for problem in link_problems(notebook, fix=True):
                print("fixed", problem)
        return
    build_dir = Path(args.build_dir).resolve()
    if args.render:
        _render(args.render, build_dir)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    profile = read_profile(args.profile)
    started = time.perf_counter()
    executed = _execute(args, profile, build_dir)
    _publish_run(args, profile, executed)
    if not args.skip_html:
        executed_dir = build_dir / "executed" / args.profile
        stage_book(executed_dir, build_dir / "stage" / args.profile)
        build_html(build_dir / "stage" / args.profile, build_dir / "html")
        print(f"book built in {time.perf_counter() - started:.0f} s: {build_dir / 'html' / 'index.html'}")


if __name__ == "__main__":
    main()
