"""Loading: a dataset's folder becomes a DataFrame of paths and labels.

First used in chapter "Convolutional networks" (notebooks/concepts_01_cnn.ipynb) (the phantoms
it learns from); explained in chapter "Brain MRI: the data" (notebooks/brain_01_data.ipynb).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from medclass import figures, images

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
# What medclass.images decodes for training and the app, whatever the file is named.
DECODABLE_FORMATS = {"JPEG", "PNG", "BMP", "GIF"}
DATA_DIR_VARIABLE = "MEDCLASS_DATA_DIR"
SYNTHETIC_DATA_DIR = "synthetic_data"  # where synthetic=True writes its images without a data_dir
MIN_IMAGE_SIDE = images.MIN_IMAGE_SIDE


def dataset_info(dataset: str):
    """The registry's entry for ``dataset`` (:func:`medclass.datasets.get`)."""
    from medclass import datasets

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


def check_image(path: Path) -> str | None:
    """Return why an image file cannot be used, or None when it decodes cleanly."""
    try:
        with images.open_image(path) as image:
            image.load()
            width, height = image.size
            mode, file_format = image.mode, image.format
    except Image.DecompressionBombError as error:
        return f"too many pixels to decode safely ({error}); downscale it"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return f"not a readable image ({type(error).__name__}: {error})"
    if file_format not in DECODABLE_FORMATS:
        return f"{file_format} files are not supported; convert it to PNG or JPEG"
    if min(width, height) < MIN_IMAGE_SIDE:
        return f"too small ({width}x{height} px, need at least {MIN_IMAGE_SIDE} on each side)"
    if mode not in {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16"}:
        return f"unsupported colour mode {mode}"
    if file_format == "JPEG" and (damage := images.jpeg_damage(path.read_bytes())):
        return f"damaged JPEG data (libjpeg: {damage}); replace it with an undamaged copy"
    return None


def utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a byte that is not UTF-8, kept by Python as a lone surrogate
        return False
    return True


def printable_path(path: Path) -> str:
    """``path`` as text that any file or table can hold (undecodable bytes shown as U+FFFD)."""
    return os.fsencode(path).decode("utf-8", "replace")


def scan_folder(folder: Path) -> tuple[list[Path], list[dict]]:
    """The usable image files directly in ``folder``, sorted, and the skipped ones with why."""
    usable, skipped = [], []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if not utf8_name(str(path)):  # in the file's name or a folder above it
            skipped.append(
                {"path": printable_path(path), "reason": "the file name is not valid UTF-8; rename it"}
            )
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            problem = f"not an image suffix ({path.suffix})"
        else:
            problem = check_image(path)
        if problem:
            skipped.append({"path": str(path), "reason": problem})
        else:
            usable.append(path)
    return usable, skipped


def file_digest(path: Path) -> str:
    """SHA-1 of a file's bytes; byte-identical copies share it."""
    return hashlib.sha1(path.read_bytes()).hexdigest()


SUBSETS = ("Training", "Testing")  # Kaggle's layout: class folders under these, read as one


@dataclass
class ClassFolders:
    """What :func:`read_class_folders` found: ``images`` (path, label, class folder's own name,
    Kaggle subset), the ``skipped`` files with why, and the folders with images that name no
    class (``ignored``, each with its count), so that nothing is left out unsaid."""

    images: list[tuple[Path, str, str, str]] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _folders(root: Path):
    """Every folder under ``root`` (``root`` first), symbolic links followed, each real folder
    once (a link back to a folder above would loop, or read its images twice)."""
    seen = set()
    for folder, names, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            names[:] = []
            continue
        seen.add(real)
        names.sort()
        yield Path(folder)


def read_class_folders(root: Path, labels: dict[str, str]) -> ClassFolders:
    """The one reader of class folders, for the datasets and for ``medclass.report``.

    An image's class is named by the innermost folder between ``root`` and the image whose
    name (spaces around it and case aside) is a key of ``labels``, however deep the image lies
    (``Tumor/patient1/*.jpg`` is Tumor); ``Training/`` and ``Testing/`` (Kaggle's layout) are
    read beside any class folders at the top. Anything under ``masks/`` is a segmentation, not
    an image to classify. Folders holding images but naming no class are reported in
    ``ignored``, never read silently as a class or dropped silently.
    """
    found = ClassFolders()
    for folder in _folders(root):
        if not utf8_name(str(folder)):  # pandas cannot hold the name: report it, read nothing
            found.ignored.append(printable_path(folder) + " (a name that is not UTF-8; rename it)")
            continue
        parts = folder.relative_to(root).parts
        if "masks" in parts:
            continue
        named = [part for part in parts if part.strip().lower() in labels]
        if not named:
            images = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            if images:
                found.ignored.append(f"{folder} ({len(images)} image(s); its name is no class)")
            continue
        subset = next((part for part in parts if part in SUBSETS), "")
        usable, unusable = scan_folder(folder)
        found.skipped += unusable
        label = labels[named[-1].strip().lower()]
        found.images += [(path, label, named[-1], subset) for path in usable]
    return found


def require_every_class(frame: pd.DataFrame, info, root: Path) -> None:
    """Refuse a frame that lacks one of the dataset's classes."""
    for label in info.class_names:
        if not (frame["label"] == label).any():
            raise ValueError(
                f"No usable {label} images in {root}: its class folders are empty or every "
                "file in them was skipped. Check the folder, or point data_dir at the dataset."
            )


def load_class_folders(root: Path, info) -> pd.DataFrame:
    """Scan a dataset of class folders into a DataFrame; unreadable files are reported, not loaded.

    ``info.folder_labels`` names each folder's class (Kaggle's ``glioma`` is Tumor, PH2's
    ``melanoma`` is mel); ``source_class`` keeps the folder's own name and ``source`` the dataset's,
    so that frames of several datasets can be joined and told apart. ``group`` is the file's
    digest: byte-identical copies share it. Folders with images that name no class join the
    skipped files, with why (:func:`read_class_folders`).
    """
    found = read_class_folders(root, info.folder_labels)
    if not found.images:
        raise FileNotFoundError(
            f"No class folders found in {root}. {info.name} expects folders named "
            f"{', '.join(sorted(info.folder_labels))} (directly in it, or under Training/ and Testing/)"
            + (f"; these folders name no class: {found.ignored}" if found.ignored else "")
            + ". Check data_dir."
        )
    rows = [
        {
            "path": str(path),
            "label": label,
            "source_class": folder_name.strip(),
            "source_split": subset,
            "group": file_digest(path),
            "source": info.name,
        }
        for path, label, folder_name, subset in found.images
    ]
    columns = ["path", "label", "source_class", "source_split", "group", "source"]
    frame = pd.DataFrame(rows, columns=columns)
    require_every_class(frame, info, root)
    known = ", ".join(sorted(info.folder_labels))
    skipped = found.skipped + [
        {"path": folder, "reason": f"a folder that names no class of {info.name} ({known}); rename it"}
        for folder in found.ignored
    ]
    frame.attrs["skipped"] = pd.DataFrame(skipped, columns=["path", "reason"])
    return frame


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
