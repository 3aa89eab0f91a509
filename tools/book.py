"""The book runner: papermill executes the notebooks, Jupyter Book renders the executed copies.

Used by ``make book``; see the README's "Profiles" section. Run ``python -m tools.book -h``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat

from medclass import case_studies, data, records
from tools import published_results
from tools.chapters import PUBLISHED_DIR, ROOT, link_problems, notebook_defaults, toc_notebooks
from tools.notebook_stderr import remove_startup_noise
from tools.page_parameters import show_values_once
from tools.profiles import (
    PROFILES_DIR,
    chapter_parameters,
    declared_only,
    parameters_for,
    read_profile,
    write_chapter_parameters,
)
from tools.provenance import chapter_datasets, provenance, provenance_markdown

BOOK_FILES = ("_config.yml", "_toc.yml", "book")


def execute_notebook(source: Path, target: Path, parameters: dict, profile_name: str = "custom") -> None:
    """Execute ``source`` with papermill into ``target``, recording its provenance in the
    notebook's metadata (``medclass``); a failure keeps any previous ``target``."""
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
        studies = {case.name for case in case_studies.CASE_STUDIES}
        grouped.setdefault(prefix if prefix in studies else "other", []).append(source)
    return list(grouped.values())


def write_synthetic_data(runs: dict[Path, dict]) -> None:
    """Write every synthetic dataset the chapters will read before any of them starts, so that
    chapters running side by side never write the same files at once."""
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
