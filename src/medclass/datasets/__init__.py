"""The dataset registry: one module per dataset, and what the rest of medclass asks of them.

Chapters reach it through :func:`medclass.data.load_dataset` and
:func:`medclass.data.dataset_info`, from chapter "Convolutional networks"
(notebooks/concepts_01_cnn.ipynb) on.

Each module (``brain_mri``, ``br35h``, ``lgg``, ``ham10000``, ``ph2``) holds one :class:`Dataset`: where
it comes from and how to cite it, its classes, which of them count towards a risk score, what
each class means for the app, how its folder names map to classes, how to read it into a frame
and how to write a synthetic copy of it. Loading, the app, the report and the book's provenance
notes ask this registry; adding a dataset is a new module here and one line in ``MODULES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Dataset:
    """Everything medclass knows about one dataset."""

    name: str  # the registry key, as chapters and profiles spell it
    folder: str  # its folder under a data_dir that holds several datasets
    description: str  # one line: what it is, for error messages
    citation: str  # how the book's provenance notes name it
    class_names: tuple[str, ...]  # the labels its frame carries, in the models' output order
    write_synthetic: Callable[[Path], Path]  # writes a synthetic copy into the folder given
    # A resolved dataset folder -> one row per usable image; None: class folders named as in
    # ``folder_labels`` (medclass.data.load_class_folders).
    load: Callable[[Path], pd.DataFrame] | None = None
    kaggle_slug: str | None = None  # None: not on Kaggle; ``source_url`` says where it is
    source_url: str = ""
    risk_classes: tuple[str, ...] = ()  # classes (or source classes) a risk score adds up
    class_definitions: dict[str, str] = field(default_factory=dict)  # plain words, for the app
    folder_labels: dict[str, str] = field(default_factory=dict)  # folder name (lower case) -> class

    def read(self, root: Path) -> pd.DataFrame:
        """One row per usable image of this dataset at ``root``, by its own loader or, for a
        dataset of class folders, by :func:`medclass.data.load_class_folders`."""
        if self.load is not None:
            return self.load(root)
        from medclass import data

        return data.load_class_folders(root, self)


def _modules():
    from medclass.datasets import br35h, brain_mri, ham10000, lgg, ph2

    return (brain_mri, br35h, lgg, ham10000, ph2)


def registry() -> dict[str, Dataset]:
    """Every dataset by name."""
    return {module.DATASET.name: module.DATASET for module in _modules()}


def names() -> tuple[str, ...]:
    return tuple(registry())


def get(name: str) -> Dataset:
    """The dataset called ``name``, or an error naming the ones that exist."""
    known = registry()
    if name not in known:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(known)}.")
    return known[name]


def risk_classes() -> set[str]:
    """Every class, of any dataset, whose probability counts towards a risk score."""
    return {name for dataset in registry().values() for name in dataset.risk_classes}


def class_definitions() -> dict[str, str]:
    """What each class of every dataset means, in plain words."""
    return {name: text for dataset in registry().values() for name, text in dataset.class_definitions.items()}


def folder_labels_for(class_names) -> dict[str, str]:
    """Folder names (lower case) that the datasets labelled with ``class_names``' classes use for
    them: Kaggle's ``glioma`` is Tumor for a Healthy/Tumor model, PH2's ``melanoma`` is mel for a
    HAM10000 model."""
    wanted = set(class_names)
    labels = {}
    for dataset in registry().values():
        if set(dataset.class_names) <= wanted:
            labels.update(dataset.folder_labels)
    return labels


def class_orders() -> list[tuple[str, ...]]:
    """The class orders the registry's datasets give a model."""
    return [dataset.class_names for dataset in registry().values()]
