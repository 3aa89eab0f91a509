"""The profiles of ``make book`` (``notebooks/profiles/<profile>.yaml``): read and checked, and
turned into each chapter's parameters, as papermill's ``-f`` reads them.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from tools.chapters import ROOT, notebook_defaults, toc_notebooks

PROFILES_DIR = ROOT / "notebooks" / "profiles"


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
