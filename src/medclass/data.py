"""Loading: a dataset's folder becomes a DataFrame of paths and labels.

First used in chapter "Convolutional networks" (notebooks/concepts_01_cnn.ipynb) (the phantoms
it learns from); explained in chapter "Brain MRI: the data" (notebooks/brain_01_data.ipynb).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from medclass import datasets, figures, images
from medclass.folders import file_digest  # noqa: F401  (skin_01_data calls data.file_digest)

DATA_DIR_VARIABLE = "MEDCLASS_DATA_DIR"
SYNTHETIC_DATA_DIR = "synthetic_data"  # where synthetic=True writes its images without a data_dir


def dataset_info(dataset: str):
    """The registry's entry for ``dataset`` (:func:`medclass.datasets.get`)."""
    return datasets.get(dataset)


def resolve_data_dir(dataset: str, data_dir: str | Path | None, synthetic_data: bool = False) -> Path:
    """Find the dataset's folder: ``data_dir`` itself, its registry subfolder, or a download.

    ``data_dir`` may be the dataset folder or a folder that holds it under its registry name
    (``brain-tumor-mri/``). ``None`` falls back to ``$MEDCLASS_DATA_DIR`` and then to a
    kagglehub download. With ``synthetic_data=True`` the embedded synthetic images are written
    to ``data_dir/<registry folder>`` (if not already there) instead, ``data_dir`` defaulting to
    ``synthetic_data/`` in the working folder.
    """
    info = dataset_info(dataset)
    if synthetic_data:
        if data_dir is None:
            data_dir = Path(SYNTHETIC_DATA_DIR).resolve()
            if not (data_dir / info.folder / "SYNTHETIC.txt").exists():
                print(f"synthetic=True and no data_dir: the synthetic images go to {data_dir}.")
        root = Path(data_dir)
        if root.name != info.folder:
            root = root / info.folder  # one parent folder holds every synthetic dataset
        if not (root / "SYNTHETIC.txt").exists():
            info.write_synthetic(root)
        return root
    if data_dir is None and os.environ.get(DATA_DIR_VARIABLE):
        data_dir = os.environ[DATA_DIR_VARIABLE]
    if data_dir is None:
        return download(info)
    root = Path(data_dir).expanduser()
    if (root / info.folder).is_dir():
        root = root / info.folder
    if not root.is_dir():
        source = (
            f"(Kaggle: {info.kaggle_slug}), or data_dir=None to download it with kagglehub."
            if info.kaggle_slug
            else f"(download it from {info.source_url}; it is not on Kaggle)."
        )
        raise FileNotFoundError(
            f"Data folder {root} does not exist. Pass data_dir= the folder that holds the "
            f"{info.description.split(' (')[0]} {source}"
        )
    return root


KAGGLE_HELP = (
    "A public dataset often downloads without an account; if Kaggle asks for one, give kagglehub "
    "an API token (kaggle.com > Settings > API > Generate New Token): in Colab, add it as the secret "
    "KAGGLE_API_TOKEN (the key icon in the left bar) and allow this notebook to read it, or run "
    "`import kagglehub; kagglehub.login()`; elsewhere, set the environment variable "
    "KAGGLE_API_TOKEN or save the token in ~/.kaggle/access_token. A legacy key still works as "
    "KAGGLE_USERNAME and KAGGLE_KEY, or ~/.kaggle/kaggle.json "
    "(https://github.com/Kaggle/kagglehub#authenticate)."
)


def download(info) -> Path:
    """Download a dataset with kagglehub, or explain how to provide it by hand."""
    if info.kaggle_slug is None:
        raise RuntimeError(
            f"The {info.name} dataset is not on Kaggle, so medclass cannot download it: get it from "
            f"{info.source_url} and pass data_dir='/path/to/{info.folder}' (or set ${DATA_DIR_VARIABLE})."
        )
    try:
        import kagglehub

        return Path(kagglehub.dataset_download(info.kaggle_slug))
    except Exception as error:  # kagglehub raises many types: network, auth, HTTP.
        raise RuntimeError(
            f"Could not download the {info.name} dataset from Kaggle ({info.kaggle_slug}): "
            f"{type(error).__name__}: {error}. {KAGGLE_HELP} Or download it yourself and pass "
            f"data_dir='/path/to/{info.folder}' (or set ${DATA_DIR_VARIABLE})."
        ) from error


def load_dataset(
    dataset: str, data_dir: str | Path | None = None, synthetic_data: bool = False
) -> pd.DataFrame:
    """Return one row per usable image: ``path``, ``label`` and, where it has one, ``group``.

    Files that cannot be used are listed with the reason in ``frame.attrs["skipped"]``.
    Byte-identical files share a ``group`` so that a split keeps them on one side.
    """
    root = resolve_data_dir(dataset, data_dir, synthetic_data).resolve()
    frame = dataset_info(dataset).read(root)
    frame.attrs["data_dir"] = str(root)
    frame.attrs["synthetic"] = (root / "SYNTHETIC.txt").exists()
    return frame


def report_skipped(frame: pd.DataFrame) -> str:
    """One line per skipped file, or a line saying none were skipped."""
    skipped = frame.attrs.get("skipped")
    if skipped is None or skipped.empty:
        return "No files skipped: every image decoded."
    lines = [f"Skipped {len(skipped)} file(s):"]
    lines += [f"  {row.path}: {row.reason}" for row in skipped.itertuples()]
    return "\n".join(lines)


def plot_samples(frame: pd.DataFrame, per_class: int = 6, seed: int = 0):
    """A grid of random images, one row per label, titled with each image's size and mode."""

    labels = sorted(frame["label"].unique())
    figure, axes = figures.grid(len(labels), per_class, cell=(2.0, 2.3))
    for row, label in enumerate(labels):
        rows = frame[frame["label"] == label]
        picks = rows.sample(min(per_class, len(rows)), random_state=seed)
        for column, axis in enumerate(axes[row]):
            axis.axis("off")
            if column >= len(picks):
                continue
            with images.open_image(picks.iloc[column]["path"]) as image:
                axis.imshow(image.convert("RGB"))
                axis.set_title(f"{label}\n{image.width}x{image.height} {image.mode}", fontsize=8)
    return figure


def plot_image_properties(properties: pd.DataFrame, title: str = ""):
    """Image sizes, colour modes and mean intensity per class, side by side, from
    :func:`medclass.shortcuts.file_properties` with a ``label`` column."""

    figure, axes = figures.panels(3, height=3.0)
    for label, rows in properties.groupby("label"):
        axes[0].scatter(rows["width"], rows["height"], s=8, alpha=0.4, label=label)
        axes[2].hist(rows["mean"], bins=40, alpha=0.5, label=label)
    axes[0].set(xlabel="width (px)", ylabel="height (px)", title="Image sizes")
    pd.crosstab(properties["mode"], properties["label"]).plot.bar(ax=axes[1], rot=0)
    axes[1].set(xlabel="colour mode", ylabel="images", title="Colour modes")
    axes[2].set(xlabel="mean intensity (0-255)", ylabel="images", title="Brightness")
    for axis in axes:
        axis.legend(fontsize=7)
    figure.suptitle(title)
    return figure


def plot_metadata(frame: pd.DataFrame, title: str = ""):
    """HAM10000's metadata: diagnosis, age, sex, body site and how the diagnosis was confirmed."""

    figure, axes = figures.panels(2, height=9.0, rows=3)
    frame["label"].value_counts().plot.bar(ax=axes[0, 0], rot=0, title="Images per diagnosis")
    frame.groupby("group").size().value_counts().sort_index().plot.bar(
        ax=axes[0, 1], rot=0, title="Images per lesion"
    )
    frame["age"].plot.hist(ax=axes[1, 0], bins=18, title="Age (years)")
    pd.crosstab(frame["label"], frame["sex"]).plot.bar(ax=axes[1, 1], rot=0, title="Sex per diagnosis")
    frame["localization"].value_counts().head(12).plot.barh(ax=axes[2, 0], title="Body site (top 12)")
    pd.crosstab(frame["label"], frame["dx_type"]).plot.bar(
        ax=axes[2, 1], rot=0, stacked=True, title="How the diagnosis was confirmed"
    )
    for axis in axes.flat:
        axis.set_ylabel("")
        if axis.get_legend() is not None:
            axis.legend(fontsize=8)
    figure.suptitle(title)
    return figure
