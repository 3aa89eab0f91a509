"""Notebook set-up helpers: seeding, library versions, and what a run is.

First used in chapter "Convolutional networks" (notebooks/concepts_01_cnn.ipynb).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from pathlib import Path


def seed_everything(seed: int, repeatable_ops: bool = True) -> None:
    """Seed Python, NumPy and the Keras backend so that a run can be repeated, and, with
    ``repeatable_ops``, make TensorFlow's ops deterministic where that is safe
    (:func:`make_ops_repeatable`)."""
    import keras

    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    if repeatable_ops:
        make_ops_repeatable(seed)


def tpu_named_in_environment() -> bool:
    """Whether the environment names a TPU (Colab's, which TensorFlow lists no device for)."""
    return bool(os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME"))


def make_ops_repeatable(seed: int) -> bool:
    """Turn TensorFlow's op determinism on when every device is a CPU, with TensorFlow's global
    random generator seeded by ``seed``; return whether it is on.

    Seeds alone do not repeat a fine-tuning run on a multi-threaded CPU: TensorFlow's default
    kernels may add in another order each run, and ``benchmarks/repeatability.py`` measured
    three runs from one seed that parted during fine-tuning. On a GPU or TPU it stays off: some
    of TensorFlow's kernels there have no deterministic version and would raise in the middle
    of training. JAX and PyTorch are left as they are. Keras does not XLA-compile a model while
    it is on (``jit_compile=True`` falls back to False), which on a CPU is Keras's default.
    The global generator must be set first: keras-cv's augmentation layers made without a seed
    draw from it, and TensorFlow refuses to make one when determinism is on.
    """
    import keras

    if keras.backend.backend() != "tensorflow" or tpu_named_in_environment():
        return False
    import tensorflow as tf

    if any(device.device_type != "CPU" for device in tf.config.list_physical_devices()):
        return False
    tf.random.set_global_generator(tf.random.Generator.from_seed(seed))
    tf.config.experimental.enable_op_determinism()
    return True


def library_versions(names=("medclass", "keras", "tensorflow", "numpy", "pandas", "scikit-learn")) -> dict:
    """Installed versions of the libraries a result depends on."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def print_versions() -> None:
    """Print the versions above and the Keras backend on one line."""
    import keras

    versions = library_versions()
    versions["keras"] += f" ({keras.backend.backend()} backend)"
    print("Versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()))


class FolderBusy(RuntimeError):
    """Another process holds the lock of a folder this one needs alone."""


@contextlib.contextmanager
def folder_lock(lock_path: str | Path, wait: bool, what: str):
    """Hold an exclusive lock on ``lock_path`` (an OS file lock, released when the process
    ends, even by a crash). ``wait=False`` raises :class:`FolderBusy` at once when another
    process holds it, naming ``what`` it protects; ``wait=True`` waits for it. Where the OS
    has no ``fcntl`` (Windows), nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise FolderBusy(
                f"{what} is in use by {holder}. Wait for that run to finish, or give this one another "
                "output_dir."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {platform.node()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def describe_weights(weights: str | None) -> str:
    """Where a backbone's weights come from, in words: the provenance note of every executed
    chapter and the training chapters' model cells say it the same way."""
    if not weights:
        return "random initialisation (not pretrained)"
    if weights == "imagenet":
        return "ImageNet weights (Keras download)"
    return f"ImageNet weights from the file `{Path(str(weights)).name}`"


def what_the_numbers_show(weights: str | None, synthetic: bool) -> str:
    """A note, made from a run's own parameters, on what its numbers can show. The training
    chapters display it beside the model they build, so that a page never describes another
    run than the one that produced it."""
    if not weights:
        start = (
            "This run's backbone is **not pretrained** (`weights=None`): phase 1 trains a head on "
            "random features, so results near chance are the expected outcome. The run shows "
            "the pipeline's mechanics, not the value of transfer learning."
        )
    else:
        start = (
            f"This run's backbone starts from {describe_weights(weights)}: phase 1 trains a "
            "head on features learned from photographs, the transfer this book is about."
        )
    data = (
        "Its images are **synthetic**: the numbers below say nothing clinical."
        if synthetic
        else "Its images are the real dataset's."
    )
    return f"> **Note.** {start} {data}"  # a quotation renders alike in the book, Jupyter and Colab


RESULT_KEY = "medclass_result"  # the output metadata that names a recorded result


def show_result(name: str, table, digits: int = 3):
    """Display ``table`` (a DataFrame) rounded to ``digits``, and record it, unrounded, in the
    output's metadata under ``name``: the book's appendix of published results
    (``python -m tools.published_results``) reads its tables from there, so that they cannot
    drift from the chapters. The metadata is invisible in the book, Jupyter and Colab."""
    import json

    from IPython.display import display

    record = {
        "name": name,
        "table": json.loads(table.to_json(orient="split", double_precision=15)),
        "index_names": [str(level) if level is not None else "" for level in table.index.names],
    }
    display(table.round(digits), metadata={RESULT_KEY: record})
