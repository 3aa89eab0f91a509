"""Sentences of a chapter's prose that can be untrue of the run printed beside them (used by the
tests of the published and demo books)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat

from tools.chapters import notebook_defaults
from tools.profiles import parameters_for, read_profile

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
