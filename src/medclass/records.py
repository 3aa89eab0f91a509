"""What a run writes beside its model and reads back: ``model.json`` and ``evaluation.json``.

One place for their fields, their version and their checks, so that a broken, hand-edited or
stale file is refused with what to do, instead of changing what the app shows:

- ``model.json`` (written by the training chapter): ``class_names`` (at least two distinct
  names, in the order of the model's outputs), ``image_size`` (two positive integers), what
  the run was (backbone, weights, augmentation, ...), and ``model_sha256``, the digest of the
  ``model.keras`` exported with it (refused beside another model).
- ``evaluation.json`` (written by the evaluation chapter): the ``temperature`` fitted on
  validation (a positive number), the ``operating_class`` and ``operating_threshold`` (between
  0 and 1), ``tta``, the test metrics, and ``model_sha256``: the digest of the ``model.keras``
  it evaluated, so that a model trained again is never served with another model's calibration.

Both carry ``schema``: files of a newer schema are refused; ``model.json`` files from before
versioning (no ``schema``) are read when their fields pass the checks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from medclass import datasets, files

SCHEMA = 1
# Sanity bounds on what the app reads from the sidecars: fitted temperatures are near 1, the
# operating thresholds of the published models 0.09 to 0.13, the images a few hundred pixels.
TEMPERATURE_RANGE = (0.05, 20.0)
MIN_THRESHOLD = 0.001
MAX_IMAGE_SIDE = 2048


class RecordError(ValueError):
    """A ``model.json`` or ``evaluation.json`` that cannot be trusted; the message says why and
    what to do."""


def model_digest(model_path: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of a ``model.keras`` file, as the manifest's hash is taken."""
    return files.file_digest(model_path)


def write_json(path: str | Path, record: dict) -> Path:
    """Write ``record`` with the current ``schema``, atomically (a failed write keeps the old file)."""
    return files.write_text_atomically(path, json.dumps({**record, "schema": SCHEMA}, indent=2))


def _read(path: Path, rerun: str) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RecordError(f"{path} is unreadable ({error}). {rerun}") from None
    if not isinstance(record, dict):
        raise RecordError(f"{path} holds a {type(record).__name__}, not an object of named fields. {rerun}")
    schema = record.get("schema", SCHEMA)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise RecordError(f"{path}: schema must be a whole number from 1, not {schema!r}. {rerun}")
    if schema > SCHEMA:
        raise RecordError(
            f"{path} has schema {schema!r}; this medclass reads schema {SCHEMA} and older. Update medclass "
            f"(git pull in its checkout, or pip install the newer version you trained with), or "
            f"{rerun[0].lower()}{rerun[1:]}"
        )
    return record


def _known_orders() -> list[tuple[str, ...]]:
    return datasets.class_orders()


def check_model_info(info: dict, where: str | Path = "model.json") -> dict:
    """Raise :class:`RecordError` unless ``info`` has usable ``class_names`` (and ``image_size``
    when present); return it."""
    rerun = "Export the model again with the training chapter."
    names = info.get("class_names")
    if (
        not isinstance(names, list)
        or len(names) < 2
        or not all(isinstance(name, str) and name for name in names)
        or len(set(names)) != len(names)
    ):
        raise RecordError(
            f"{where}: class_names must list two or more distinct names, not {names!r}. {rerun}"
        )
    for order in _known_orders():
        if set(names) == set(order) and tuple(names) != order:
            raise RecordError(
                f"{where}: class_names {names} are {list(order)} in another order; the model's outputs "
                f"follow {list(order)}, so every prediction would be named wrongly. {rerun}"
            )
    size = info.get("image_size", [1, 1])
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(
            isinstance(side, int) and not isinstance(side, bool) and 0 < side <= MAX_IMAGE_SIDE
            for side in size
        )
    ):
        raise RecordError(
            f"{where}: image_size must be two whole numbers from 1 to {MAX_IMAGE_SIDE}, not {size!r}. {rerun}"
        )
    _check_recorded_words(info, names, where, rerun)
    _check_risk_order(names, where, rerun, info.get("risk_classes"))
    return info


def _check_recorded_words(info: dict, names: list[str], where, rerun: str) -> None:
    """``risk_classes``: distinct class names (each counted once in the risk score);
    ``class_definitions``: words for class names."""
    risky = info.get("risk_classes", [])
    if (
        not isinstance(risky, list)
        or not all(isinstance(name, str) and name in names for name in risky)
        or len(set(risky)) != len(risky)
    ):
        raise RecordError(f"{where}: risk_classes {risky!r} must be distinct class_names {names}. {rerun}")
    words = info.get("class_definitions", {})
    if not isinstance(words, dict) or not all(
        isinstance(key, str) and isinstance(text, str) for key, text in words.items()
    ):
        raise RecordError(f"{where}: class_definitions must map class names to text, not {words!r}. {rerun}")


def _check_risk_order(names: list[str], where, rerun: str, risky: list[str] | None = None) -> None:
    """A binary model's one output is the probability of its second class, and the book puts the
    finding second (Healthy, Tumor). Names that put a finding first and a non-finding second
    (``["Tumor", "Normal"]``) would show every tumour in the colours of its opposite."""
    risky = datasets.risk_classes() if risky is None else set(risky)  # None: the registry's
    if len(names) == 2 and names[0] in risky and names[1] not in risky:
        raise RecordError(
            f"{where}: class_names {names} put the finding {names[0]!r} first; the model's one output is "
            f"the probability of the second class, so every {names[0]} would be shown as {names[1]}. "
            f"{rerun}"
        )


def read_model_info(model_dir: str | Path) -> dict:
    """The checked ``model.json`` of ``model_dir``."""
    path = Path(model_dir) / "model.json"
    info = check_model_info(_read(path, "Export the model again with the training chapter."), path)
    model = path.with_name("model.keras")
    digest = info.get("model_sha256")  # absent in sidecars written before it was recorded
    if digest is not None and model.is_file() and digest != model_digest(model):
        raise RecordError(
            f"{path} was written for another model.keras than the one beside it (a training run "
            "stopped while it exported its files?). Run the training chapter again with the same "
            "output_dir; it writes both."
        )
    return info


def check_evaluation(evaluation: dict, class_names: list[str], where: str | Path = "evaluation.json") -> dict:
    """Raise :class:`RecordError` unless the numbers the app uses are usable; return ``evaluation``."""
    rerun = (
        "Run the evaluation chapter again, or delete the file to serve the model with uncalibrated "
        "probabilities and default thresholds."
    )

    def number(name):
        value = evaluation.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RecordError(f"{where}: {name} must be a number, not {value!r}. {rerun}")
        return value

    low, high = TEMPERATURE_RANGE
    if not low <= number("temperature") <= high:
        raise RecordError(
            f"{where}: temperature {evaluation['temperature']} lies outside {low} to {high}: a negative "
            "one turns probabilities around, a tiny one makes every answer certain, a huge one makes "
            f"every answer a coin toss. {rerun}"
        )
    if "operating_class" in evaluation or "operating_threshold" in evaluation:
        if evaluation.get("operating_class") not in class_names:
            raise RecordError(
                f"{where}: operating_class {evaluation.get('operating_class')!r} is not one of the "
                f"model's classes {class_names}. {rerun}"
            )
        if not MIN_THRESHOLD <= number("operating_threshold") <= 1:  # 1: validation scores saturated
            raise RecordError(
                f"{where}: operating_threshold {evaluation['operating_threshold']} must lie between "
                f"{MIN_THRESHOLD} and 1 (below it, every image would be called "
                f"{evaluation['operating_class']}). {rerun}"
            )
    for split in ("test", "test_at_operating_point"):
        metrics = evaluation.get(split, {})
        if not isinstance(metrics, dict) or not all(
            isinstance(value, int | float) and not isinstance(value, bool) for value in metrics.values()
        ):
            raise RecordError(f"{where}: {split} must map metric names to numbers, not {metrics!r}. {rerun}")
    chosen = evaluation.get("explanation")
    if chosen is not None and (
        not isinstance(chosen, dict)
        or chosen.get("method") not in ("gradcam", "gradcam++")
        or not isinstance(chosen.get("layer"), str)
    ):
        raise RecordError(
            f"{where}: explanation must name a layer and a method ('gradcam' or 'gradcam++'), not "
            f"{chosen!r}. {rerun}"
        )
    if not isinstance(evaluation.get("tta", False), bool):
        raise RecordError(f"{where}: tta must be true or false, not {evaluation['tta']!r}. {rerun}")
    return evaluation


def read_evaluation(model_dir: str | Path, class_names: list[str]) -> dict:
    """The checked ``evaluation.json`` of ``model_dir`` ({} when there is none), refused when it
    was written for another ``model.keras`` than the one beside it."""
    model_dir = Path(model_dir)
    path = model_dir / "evaluation.json"
    if not path.is_file():
        return {}
    rerun = "Run the evaluation chapter again, or delete the file to serve the model uncalibrated."
    evaluation = check_evaluation(_read(path, rerun), class_names, path)
    digest = evaluation.get("model_sha256")
    if digest != model_digest(model_dir / "model.keras"):
        said = (
            "does not say which model.keras it evaluated (it was written before medclass recorded it)"
            if digest is None
            else "was written for another model.keras than the one beside it (trained again since?)"
        )
        raise RecordError(f"{path} {said}: its temperature and threshold may not fit. {rerun}")
    return evaluation
