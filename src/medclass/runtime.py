"""Notebook set-up helpers: seeding and library versions.

Defined in chapter "Brain MRI: the data" (notebooks/brain_01_data.ipynb).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend so that a run can be repeated."""
    import keras

    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)


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
    """Print the versions above and the Keras backend, one per line."""
    import keras

    for name, version in library_versions().items():
        print(f"{name:>14}: {version}")
    print(f"{'keras backend':>14}: {keras.backend.backend()}")
