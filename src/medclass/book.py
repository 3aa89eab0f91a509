"""The book runner: papermill executes the notebooks, Jupyter Book renders the executed copies.

Used by ``make book``; see the README's "Profiles" section. Run ``python -m medclass.book -h``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROFILES_DIR = ROOT / "notebooks" / "profiles"
BOOK_FILES = ("_config.yml", "_toc.yml", "book")


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
INSTALL_SPEC = re.compile(r"medclass @ git\+[^\s\"']+")


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
        f"medclass @ git+{url}@{branch}",
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
    return yaml.safe_load(path.read_text()) or {}


def parameters_for(profile: dict, notebook: str) -> dict:
    """A notebook's parameters: the profile's shared keys, overridden by the section named by
    the notebook's prefix (``brain:`` for ``brain_02_training``), when there is one."""
    shared = {key: value for key, value in profile.items() if not isinstance(value, dict)}
    section = profile.get(notebook.split("_", 1)[0])
    return {**shared, **(section if isinstance(section, dict) else {})}


def execute_notebook(source: Path, target: Path, parameters: dict) -> None:
    """Execute ``source`` with papermill into ``target``; a failure keeps any previous ``target``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.ipynb")
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(partial),
            parameters=parameters,
            kernel_name="python3",
            progress_bar=True,
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
    partial.replace(target)
    print(f"executed {source.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s", flush=True)


def stage_book(executed_dir: Path, stage_dir: Path) -> None:
    """Lay out the book's sources with the executed notebooks in place of the clean ones."""
    shutil.rmtree(stage_dir, ignore_errors=True)
    stage_dir.mkdir(parents=True)
    for name in BOOK_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, stage_dir / name)
        else:
            shutil.copy2(source, stage_dir / name)
    shutil.copytree(
        executed_dir,
        stage_dir / "notebooks",
        ignore=shutil.ignore_patterns("*.failed.ipynb", "*.partial.ipynb"),
    )


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="demo", help="a file in notebooks/profiles/, without .yaml")
    parser.add_argument("--data-dir", help="folder of the real data (overrides the profile's data_dir)")
    parser.add_argument(
        "--build-dir", default=str(ROOT / "_build"), help="where executed notebooks and HTML go"
    )
    parser.add_argument("--only", nargs="*", help="execute only these notebooks (file stems)")
    parser.add_argument("--skip-html", action="store_true", help="execute the notebooks, do not build HTML")
    parser.add_argument(
        "--sync-links", action="store_true", help="rewrite Colab badges and install cells, then stop"
    )
    args = parser.parse_args(argv)
    if args.sync_links:
        for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
            for problem in link_problems(notebook, fix=True):
                print("fixed", problem)
        return

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    profile = read_profile(args.profile)
    if args.data_dir:
        profile["data_dir"] = str(Path(args.data_dir).resolve())
    build_dir = Path(args.build_dir).resolve()
    executed_dir = build_dir / "executed" / args.profile
    print(f"profile {args.profile}: {profile}", flush=True)
    started = time.perf_counter()
    for source in toc_notebooks():
        if args.only and source.stem not in args.only:
            continue
        execute_notebook(source, executed_dir / source.name, parameters_for(profile, source.stem))
    print(f"executed all notebooks in {time.perf_counter() - started:.0f} s", flush=True)
    if not args.skip_html:
        stage_book(executed_dir, build_dir / "stage" / args.profile)
        build_html(build_dir / "stage" / args.profile, build_dir / "html")
        print(f"book built in {time.perf_counter() - started:.0f} s: {build_dir / 'html' / 'index.html'}")


if __name__ == "__main__":
    main()
