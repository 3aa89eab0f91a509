"""The notebooks' parameters, checked before any work starts.

First used in chapter "Convolutional networks" (notebooks/concepts_01_cnn.ipynb).

Every chapter calls :func:`check` right after its ``parameters`` cell, so that a typo in a
profile or a ``papermill -p`` (``imbalance: focall``, ``epochs_frozen: ten``, ``batch_size: 0``,
``learning_rate: 1e-3``, which YAML reads as text) stops the run at once with the parameter
named and what it accepts, instead of training without class weights or failing an hour later.
"""

from __future__ import annotations

import difflib
import math

from medclass import datasets

IMBALANCE = ("class_weight", "focal", "logit_adjusted", "none")
MOBILENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


class ParameterError(ValueError):
    """A notebook parameter with a value the chapters cannot use."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _one_of(choices):
    def check(value):
        if value in choices:
            return None
        close = difflib.get_close_matches(str(value), [str(choice) for choice in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"one of {list(choices)}{hint}"

    return check


def _boolean(value):
    return None if isinstance(value, bool) else "true or false"


def _integer(low, optional=False):
    def check(value):
        if optional and value is None:
            return None
        if _is_int(value) and value >= low:
            return None
        return f"a whole number of at least {low}" + (", or None" if optional else "")

    return check


def _number(low, high=math.inf):
    def check(value):
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                pass
            else:  # PyYAML reads 1e-3 (no dot) as text
                return f"a number, not the text {value!r}; in YAML write it with a dot: 1.0e-3, or 0.001"
        if _is_number(value) and low < value < high:
            return None
        return f"a number above {low}" + (f" and below {high}" if high < math.inf else "")

    return check


def _text(optional=False):
    def check(value):
        if isinstance(value, str) and value or (optional and value is None):
            return None
        return "a path or name" + (", or None" if optional else "")

    return check


def _dataset(value):
    return _one_of(datasets.names())(value)


def _classes(dataset) -> int | None:
    """How many classes ``dataset`` has; None for a name of no dataset (refused elsewhere)."""
    return len(datasets.get(dataset).class_names) if dataset in datasets.names() else None


def _backbone(value):
    from medclass.models import BACKBONES

    return _one_of(tuple(BACKBONES))(value)


def _image_size(value):
    if value is None or _is_int(value) and value >= 32:
        return None
    return "a whole number of pixels of at least 32, or None (the backbone's own size)"


def _weights(value):
    if value in ("imagenet", None) or isinstance(value, str) and value.endswith(".weights.h5"):
        return None
    return "'imagenet', None, or the path of a .weights.h5 file"


def _augmentation(value):
    from medclass.augment import POLICIES

    if not isinstance(value, str):
        return f"policies of {list(POLICIES)} joined by '+'"
    for name in value.split("+"):
        problem = _one_of(POLICIES)(name)
        if problem:
            return f"policies joined by '+', each {problem}"
    return None


def _unfreeze_blocks(value):
    if _is_int(value) and value >= 0:
        return None
    if (
        isinstance(value, list)
        and value
        and all(_is_int(n) and n > 0 for n in value)
        and value == sorted(value)
    ):
        return None
    return "a whole number of blocks, or a rising list of them for progressive unfreezing ([4, 8])"


def _schedule(value):
    from medclass.recipe import SCHEDULES

    return _one_of(SCHEDULES)(value)


def _seeds(value):
    if (
        isinstance(value, list)
        and all(_is_int(n) and n >= 0 for n in value)
        and len(set(value)) == len(value)
    ):
        return None
    return "a list of different whole numbers ([] for none)"


CHECKS = {
    "dataset": _dataset,
    "data_dir": _text(optional=True),
    "ph2_dir": _text(optional=True),
    "synthetic": _boolean,
    "image_size": _image_size,
    "batch_size": _integer(1),
    "backbone": _backbone,
    "alpha": _one_of(MOBILENET_ALPHAS),
    "weights": _weights,
    "augmentation": _augmentation,
    "standardise": _boolean,
    "br35h_in_training": _boolean,
    "lgg_in_training": _boolean,
    "balance_sources": _boolean,
    "epochs_frozen": _integer(0),
    "epochs_finetune": _integer(0),
    "learning_rate": _number(0, 1),
    "unfreeze_blocks": _unfreeze_blocks,
    "imbalance": _one_of(IMBALANCE),
    "cache_features": _boolean,
    "seed": _integer(0),
    "extra_seeds": _seeds,
    "finetune_schedule": _schedule,
    "max_images": _integer(10, optional=True),
    "output_dir": _text(),
    "tta": _boolean,
    "target_sensitivity": _number(0, 1),
}


# Plain values a notebook's globals hold before ``check`` that are not parameters (IPython's).
NOT_PARAMETERS = {"In", "Out", "exit", "quit"}
PLAIN = (bool, int, float, str, list, dict, tuple, type(None))


def unknown_names(namespace: dict) -> list[str]:
    """Plain values of ``namespace`` that are no parameter: a misspelled profile key or
    ``papermill -p epoch_frozen 1``, which papermill only warns about, so that the chapter would
    run its defaults. Modules, functions and names starting with ``_`` are not looked at."""
    return sorted(
        name
        for name, value in namespace.items()
        if not name.startswith("_")
        and name not in CHECKS
        and name not in NOT_PARAMETERS
        and isinstance(value, PLAIN)
    )


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, list(CHECKS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{name}: not a parameter of the chapters{hint}"


def check(namespace: dict) -> None:
    """Raise :class:`ParameterError` naming every parameter of ``namespace`` (a notebook's
    ``globals()`` right after its parameters, or a dict of settings) whose value the chapters
    cannot use, and every plain value that is no parameter at all (:func:`unknown_names`)."""
    problems = [_unknown(name) for name in unknown_names(namespace)]
    for name, check_value in CHECKS.items():
        if name in namespace:
            expected = check_value(namespace[name])
            if expected:
                problems.append(f"{name}={namespace[name]!r}: expected {expected}")
    dataset = namespace.get("dataset")
    if namespace.get("imbalance") == "logit_adjusted" and _classes(dataset) == 2:
        problems.append(
            f"imbalance='logit_adjusted' with dataset={dataset!r}: logit adjustment is for a softmax over "
            "three or more classes; use 'class_weight'"
        )
    extra_seeds = namespace.get("extra_seeds")
    if isinstance(extra_seeds, list) and namespace.get("seed") in extra_seeds:
        problems.append(f"extra_seeds={namespace['extra_seeds']!r} repeats seed={namespace['seed']!r}")
    if namespace.get("epochs_frozen") == 0 and namespace.get("epochs_finetune") == 0:
        problems.append("epochs_frozen=0 and epochs_finetune=0: nothing to train")
    if problems:
        raise ParameterError(
            "Bad parameter(s), nothing was run:\n  "
            + "\n  ".join(problems)
            + "\nFix them in the profile (notebooks/profiles/), the papermill -p option, or the "
            "parameters cell."
        )


def values(namespace: dict) -> dict:
    """The parameters in ``namespace`` (a notebook's ``globals()``), by name."""
    return {name: namespace[name] for name in CHECKS if name in namespace}
