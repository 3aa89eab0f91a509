"""What medclass knows about one dataset (each module of :mod:`medclass.datasets` holds one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from medclass import folders


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
    # ``folder_labels`` (medclass.folders.load_class_folders).
    load: Callable[[Path], pd.DataFrame] | None = None
    # Whether a folder is laid out as this dataset's own loader reads it (not class folders):
    # the report then reads an external folder by that loader. None: class folders only.
    recognise: Callable[[Path], bool] | None = None
    kaggle_slug: str | None = None  # None: not on Kaggle; ``source_url`` says where it is
    source_url: str = ""
    risk_classes: tuple[str, ...] = ()  # classes (or source classes) a risk score adds up
    class_definitions: dict[str, str] = field(default_factory=dict)  # plain words, for the app
    folder_labels: dict[str, str] = field(default_factory=dict)  # folder name (lower case) -> class

    def read(self, root: Path) -> pd.DataFrame:
        """One row per usable image of this dataset at ``root``, by its own loader or, for a
        dataset of class folders, by :func:`medclass.folders.load_class_folders`."""
        if self.load is not None:
            return self.load(root)
        return folders.load_class_folders(root, self)
