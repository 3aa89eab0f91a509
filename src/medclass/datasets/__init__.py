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

from pathlib import Path

from medclass.datasets import br35h, brain_mri, ham10000, lgg, ph2
from medclass.datasets.dataset import Dataset

MODULES = (brain_mri, br35h, lgg, ham10000, ph2)
__all__ = ["Dataset", "MODULES"]


def registry() -> dict[str, Dataset]:
    """Every dataset by name."""
    return {module.DATASET.name: module.DATASET for module in MODULES}


def names() -> tuple[str, ...]:
    return tuple(registry())


def get(name: str) -> Dataset:
    """The dataset called ``name``, or an error naming the ones that exist."""
    known = registry()
    if name not in known:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(known)}.")
    return known[name]


def laid_out_as(root: Path) -> Dataset | None:
    """The dataset whose own layout (not class folders) the folder at ``root`` has, if any."""
    for dataset in registry().values():
        if dataset.recognise is not None and dataset.recognise(Path(root)):
            return dataset
    return None


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
