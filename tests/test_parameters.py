"""Notebook parameters are checked before any work starts, each mistake named with what the
chapter accepts (issue: bad runs, bad files and bad sidecars never pass silently)."""

from __future__ import annotations

import nbformat
import pandas as pd
import pytest

from medclass import parameters
from tests.test_notebooks import NOTEBOOKS, parameters_of
from tools import profiles


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("imbalance", "focall", "did you mean 'focal'"),
        ("epochs_frozen", "ten", "whole number"),
        ("epochs_frozen", 1.5, "whole number"),
        ("epochs_finetune", -1, "at least 0"),
        ("learning_rate", "1e-3", "in YAML write it with a dot"),
        ("learning_rate", 0, "above 0"),
        ("batch_size", 0, "at least 1"),
        ("backbone", "resnet5O", "did you mean 'resnet50'"),
        ("augmentation", "mild+sorce", "did you mean 'source'"),
        ("dataset", "brain", "one of"),
        ("standardise", "yes", "true or false"),
        ("max_images", 5, "at least 10, or None"),
        ("target_sensitivity", 98, "below 1"),
        ("unfreeze_blocks", [8, 4], "rising list"),
        ("weights", "imagenet21k", ".weights.h5"),
        ("image_size", "160", "whole number of pixels"),
        ("finetune_schedule", "cosin", "did you mean 'cosine'"),
        ("extra_seeds", [43, 43], "different whole numbers"),
        ("extra_seeds", 43, "a list"),
    ],
)
@pytest.mark.case(
    6,
    "imbalance: focall, epochs_frozen: ten or 1.5, learning_rate: 1e-3 (a string in YAML), batch_size: "
    "0, and 12 more typos",
    "refused before any work, naming the parameter and what it accepts",
)
def test_a_mistyped_parameter_is_named_with_what_it_accepts(name, value, message):
    with pytest.raises(parameters.ParameterError, match=message) as error:
        parameters.check({name: value})
    assert f"{name}={value!r}" in str(error.value)


@pytest.mark.case(
    6, "several mistakes at once; zero epochs in both phases", "all named in one error; 'nothing to train'"
)
def test_every_mistake_is_named_at_once_and_other_names_are_ignored():
    with pytest.raises(parameters.ParameterError) as error:
        parameters.check({"imbalance": "focall", "batch_size": 0, "Path": object, "frame": pd.DataFrame()})
    assert "imbalance=" in str(error.value) and "batch_size=" in str(error.value)
    with pytest.raises(parameters.ParameterError, match="nothing to train"):
        parameters.check({"epochs_frozen": 0, "epochs_finetune": 0})
    with pytest.raises(parameters.ParameterError, match="for a softmax over three or more"):
        parameters.check({"dataset": "brain_mri", "imbalance": "logit_adjusted"})
    with pytest.raises(parameters.ParameterError, match="repeats seed=42"):
        parameters.check({"seed": 42, "extra_seeds": [43, 42]})


@pytest.mark.parametrize("profile", ["demo", "cpu", "full"])
def test_every_profile_gives_every_chapter_parameters_that_pass(profile):
    settings = profiles.read_profile(profile)
    for path in NOTEBOOKS:
        defaults = parameters_of(nbformat.read(path, as_version=4))
        parameters.check({**defaults, **profiles.parameters_for(settings, path.stem)})


@pytest.mark.case(
    "32.3",
    "papermill -p epoch_frozen 1, or learnig_rate: in a profile (a parameter misspelled)",
    "refused before any work, with the parameter it resembles ('did you mean epochs_frozen?')",
)
def test_a_misspelled_parameter_name_stops_the_chapter():
    import math

    notebook_globals = {  # what a chapter's globals hold when it calls parameters.check
        "In": ["", "import math"],
        "Out": {},
        "math": math,
        "print_versions": print,
        "_i1": "import math",
        "epochs_frozen": 5,
        "epoch_frozen": 1,  # papermill's injected cell only warns about it
        "learnig_rate": 0.01,
    }
    with pytest.raises(parameters.ParameterError) as error:
        parameters.check(notebook_globals)
    message = str(error.value)
    assert "epoch_frozen: not a parameter of the chapters (did you mean 'epochs_frozen'?)" in message
    assert "did you mean 'learning_rate'" in message
    assert "In" not in message.split(":", 1)[1].replace("Fix them in", "")
    assert parameters.unknown_names({"In": [], "Out": {}, "math": math, "_": 1}) == []
    with pytest.raises(parameters.ParameterError, match="brain: not a parameter"):
        parameters.check({"seed": 1, "brain": {"epochs_frozen": 1}})  # papermill -f <the profile>


@pytest.mark.case(
    "32.8",
    "the README's papermill commands on a fresh clone (papermill does not make its output folder)",
    "each folder papermill writes into is made by a command before it",
)
def test_the_readme_makes_every_folder_papermill_writes_into():
    import re

    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    checked = 0
    for block in blocks:
        made = set(re.findall(r"mkdir -p (\S+)", block))
        for output in re.findall(r"papermill \S+\.ipynb (\S+)\.ipynb", block):
            folder = output.rsplit("/", 1)[0] if "/" in output else "."
            assert folder == "." or folder in made, f"papermill writes into {folder}/, which nothing makes"
            checked += 1
    assert checked >= 2


@pytest.mark.case(
    "32.3",
    "a profile with a misspelled key (epoch_frozen:, or learnig_rate: in a case's section)",
    "make book stops at once, naming the file, the key and the key it resembles",
)
def test_a_misspelled_profile_key_stops_the_build(tmp_path, monkeypatch):
    monkeypatch.setattr(profiles, "PROFILES_DIR", tmp_path)
    (tmp_path / "typo.yaml").write_text("epoch_frozen: 1\nbrain:\n  learnig_rate: 0.01\n")
    with pytest.raises(SystemExit) as error:
        profiles.read_profile("typo")
    message = str(error.value)
    assert "typo.yaml" in message
    assert "epoch_frozen (did you mean 'epochs_frozen'?)" in message
    assert "brain: learnig_rate (did you mean 'learning_rate'?)" in message
    (tmp_path / "sections.yaml").write_text("brian:\n  seed: 1\n")
    with pytest.raises(SystemExit, match="brian: not a case study's section"):
        profiles.read_profile("sections")
