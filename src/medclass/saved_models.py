"""A trained model read back from its folder: ``model.keras`` with its ``model.json``, checked.

First used in chapter "Brain MRI: evaluation" (notebooks/brain_03_evaluation.ipynb); the app
and ``python -m medclass.report`` read models through it too, so that each refuses the same
broken folder with the same words.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras

import medclass.models  # noqa: F401  (registers the custom preprocessing layer)
from medclass import records

# The largest model file's weights the app and the report will unpack: a 3 MB ``model.keras``
# whose weights inflate to gigabytes would take the memory of the machine first.
MAX_UNPACKED_BYTES = 2 * 2**30
OUTPUT_ACTIVATIONS = {"sigmoid", "softmax"}


class ModelFileError(records.RecordError):
    """A model folder whose ``model.keras`` cannot be served; the message says why and what to do."""


RETRAIN = "Run the training chapter (brain_02_training or skin_02_training) with the same output_dir."


def load_model(run_dir: str | Path) -> tuple[keras.Model, dict]:
    """Load a trained model (``safe_mode=True``) and its checked ``model.json`` from ``run_dir``.

    Refused with :class:`ModelFileError` (or ``FileNotFoundError`` when there is no model): no
    ``model.json``, a ``model.keras`` that is cut short, not a Keras file, or inflates past
    :data:`MAX_UNPACKED_BYTES`, and a model that does not give one probability per class
    (:func:`check_outputs`).
    """
    run_dir = Path(run_dir)
    model_path = run_dir / "model.keras"
    if not model_path.exists():
        raise FileNotFoundError(f"No trained model at {model_path}. {RETRAIN}")
    if not (run_dir / "model.json").is_file():
        raise ModelFileError(
            f"{run_dir} has model.keras but no model.json (its class names and image size). {RETRAIN}"
        )
    _check_archive(model_path)
    info = records.read_model_info(run_dir)
    try:
        model = keras.saving.load_model(model_path, safe_mode=True)
    except Exception as error:  # Keras raises many kinds for a foreign or broken file
        raise ModelFileError(
            f"Keras could not load {model_path} (safe mode): {type(error).__name__}: {error}. {RETRAIN}"
        ) from None
    check_outputs(model, info, run_dir)
    return model, info


def _check_archive(model_path: Path) -> None:
    try:
        with zipfile.ZipFile(model_path) as archive:
            unpacked = sum(item.file_size for item in archive.infolist())
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelFileError(
            f"{model_path} is not a whole Keras model file ({error}): cut short while it was copied or "
            f"written? {RETRAIN}"
        ) from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise ModelFileError(
            f"{model_path} unpacks to {unpacked / 2**30:.1f} GiB, more than the "
            f"{MAX_UNPACKED_BYTES / 2**30:.0f} GiB a model of this book needs; it is refused unread."
        )


def check_outputs(model: keras.Model, info: dict, where: Path) -> None:
    """Refuse a model that does not map one image of any size to one probability per class:
    several outputs, a fixed input size other than ``image_size``, an output count that does
    not match ``class_names`` (one sigmoid output for two classes), or an output layer without
    a sigmoid or softmax (its numbers would be shown as probabilities)."""
    names = info["class_names"]
    if len(model.outputs) != 1:
        raise ModelFileError(
            f"{where}: the model has {len(model.outputs)} outputs; one is expected. {RETRAIN}"
        )
    units = int(model.outputs[0].shape[-1])
    if not (units == len(names) or (units == 1 and len(names) == 2)):
        raise ModelFileError(
            f"{where}: the model gives {units} output(s) but model.json names {len(names)} classes "
            f"{names}. {RETRAIN}"
        )
    size = info.get("image_size")
    fixed = tuple(model.inputs[0].shape[1:3])
    if size is not None and None not in fixed and fixed != tuple(size):
        raise ModelFileError(
            f"{where}: the model takes {fixed[0]}x{fixed[1]} px images but model.json says "
            f"image_size {size}. {RETRAIN}"
        )
    activation = getattr(model.layers[-1], "activation", None)
    name = getattr(activation, "__name__", str(activation))
    if name not in OUTPUT_ACTIVATIONS:
        raise ModelFileError(
            f"{where}: the model's last layer ({model.layers[-1].name}) has activation {name!r}, so its "
            f"outputs are not probabilities (sigmoid or softmax expected). {RETRAIN}"
        )
