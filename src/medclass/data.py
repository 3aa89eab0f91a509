"""Dataset registry and loaders: a folder of images becomes a DataFrame of paths and labels.

First used in chapter "Convolutional networks" (notebooks/concepts_01_cnn.ipynb) (the phantoms
it learns from); explained in chapter "Brain MRI: the data" (notebooks/brain_01_data.ipynb).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from medclass import images, synthetic, synthetic_skin

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
# What medclass.images decodes for training and the app, whatever the file is named.
DECODABLE_FORMATS = {"JPEG", "PNG", "BMP", "GIF"}
DATA_DIR_VARIABLE = "MEDCLASS_DATA_DIR"
# Smaller than this on either side, an image carries too little to classify.
MIN_IMAGE_SIDE = 32


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows about one dataset."""

    name: str
    kaggle_slug: str
    folder: str
    class_names: tuple[str, ...]
    description: str


DATASETS = {
    "brain_mri": DatasetInfo(
        name="brain_mri",
        kaggle_slug="masoudnickparvar/brain-tumor-mri-dataset",
        folder="brain-tumor-mri",
        class_names=("Healthy", "Tumor"),
        description="Brain Tumor MRI Dataset (Kaggle): glioma, meningioma and pituitary "
        "slices are Tumor, notumor slices are Healthy.",
    ),
    "br35h": DatasetInfo(
        name="br35h",
        kaggle_slug="ahmedhamada0/brain-tumor-detection",
        folder="br35h",
        class_names=("Healthy", "Tumor"),
        description="Br35H :: Brain Tumor Detection 2020 (Kaggle): yes/ tumour and no/ healthy "
        "slices. Its no/ folder is, in effect, the Brain Tumor MRI Dataset's notumor class.",
    ),
    "ham10000": DatasetInfo(
        name="ham10000",
        kaggle_slug="kmader/skin-cancer-mnist-ham10000",
        folder="ham10000",
        class_names=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"),
        description="HAM10000 (Kaggle: Skin Cancer MNIST): 10,015 dermatoscopic images of "
        "7,470 lesions in seven diagnostic classes.",
    ),
}

# The seven HAM10000 diagnoses, as Tschandl et al. (2018) name them.
HAM10000_CLASS_NAMES = {
    "akiec": "Actinic keratoses and intraepithelial carcinoma (Bowen's disease)",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesions",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevi",
    "vasc": "Vascular lesions",
}

# Kaggle's four folders mapped to the book's two classes; plain Healthy/Tumor folders map to
# themselves.
BRAIN_FOLDER_LABELS = {
    "notumor": "Healthy",
    "no_tumor": "Healthy",
    "healthy": "Healthy",
    "glioma": "Tumor",
    "meningioma": "Tumor",
    "pituitary": "Tumor",
    "tumor": "Tumor",
    "no": "Healthy",  # Br35H
    "yes": "Tumor",
}


def dataset_info(dataset: str) -> DatasetInfo:
    """Return the registry entry for ``dataset``, or name the ones that exist."""
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}.")
    return DATASETS[dataset]


def resolve_data_dir(dataset: str, data_dir: str | Path | None, synthetic_data: bool = False) -> Path:
    """Find the dataset's folder: ``data_dir`` itself, its registry subfolder, or a download.

    ``data_dir`` may be the dataset folder or a folder that holds it under its registry name
    (``brain-tumor-mri/``). ``None`` falls back to ``$MEDCLASS_DATA_DIR`` and then to a
    kagglehub download. With ``synthetic_data=True`` the embedded synthetic images are written
    to ``data_dir/<registry folder>`` (if not already there) instead.
    """
    info = dataset_info(dataset)
    if synthetic_data:
        if data_dir is None:
            raise ValueError("synthetic=True needs a data_dir to write the synthetic images to.")
        root = Path(data_dir)
        if root.name != info.folder:
            root = root / info.folder  # one parent folder holds every synthetic dataset
        if not (root / "SYNTHETIC.txt").exists():
            writers = {
                "brain_mri": synthetic.write_synthetic_brain_mri,
                "br35h": lambda folder: synthetic.write_synthetic_br35h(
                    folder, resolve_data_dir("brain_mri", folder.parent, synthetic_data=True)
                ),
                "ham10000": synthetic_skin.write_synthetic_ham10000,
            }
            writers[dataset](root)
        return root
    if data_dir is None and os.environ.get(DATA_DIR_VARIABLE):
        data_dir = os.environ[DATA_DIR_VARIABLE]
    if data_dir is None:
        return download(info)
    root = Path(data_dir).expanduser()
    if (root / info.folder).is_dir():
        root = root / info.folder
    if not root.is_dir():
        raise FileNotFoundError(
            f"Data folder {root} does not exist. Pass data_dir= the folder that holds the "
            f"{info.description.split(' (')[0]} (Kaggle: {info.kaggle_slug}), or data_dir=None "
            "to download it with kagglehub."
        )
    return root


KAGGLE_HELP = (
    "A public dataset often downloads without an account; if Kaggle asks for one, give kagglehub "
    "your API token (kaggle.com > Settings > API > Create New Token): in Colab, add KAGGLE_USERNAME "
    "and KAGGLE_KEY as secrets (the key icon in the left bar) and allow this notebook to read them, "
    "or run `import kagglehub; kagglehub.login()`; elsewhere, put kaggle.json in ~/.kaggle/ or set "
    "both environment variables (https://github.com/Kaggle/kagglehub#authenticate)."
)


def download(info: DatasetInfo) -> Path:
    """Download a dataset with kagglehub, or explain how to provide it by hand."""
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
        with Image.open(path) as image:
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


def _brain_folders(root: Path) -> list[tuple[Path, str, str]]:
    """(class folder, label, original subset) for the Kaggle layout, Br35H's yes/no, or plain
    Healthy/Tumor folders."""
    subsets = [name for name in ("Training", "Testing") if (root / name).is_dir()]
    parents = [(root / name, name) for name in subsets] or [(root, "")]
    folders = []
    for parent, subset in parents:
        for folder in sorted(p for p in parent.iterdir() if p.is_dir()):
            label = BRAIN_FOLDER_LABELS.get(folder.name.lower())
            if label is not None:
                folders.append((folder, label, subset))
    if not folders:
        raise FileNotFoundError(
            f"No class folders found in {root}. Expected the Kaggle layout "
            "(Training/ and Testing/ with glioma, meningioma, notumor, pituitary), Br35H's yes/ "
            "and no/, or plain Healthy/ and Tumor/ folders."
        )
    return folders


def _require_every_class(frame: pd.DataFrame, dataset: str, root: Path) -> None:
    for label in DATASETS[dataset].class_names:
        if not (frame["label"] == label).any():
            raise ValueError(
                f"No usable {label} images in {root}: its class folders are empty or every "
                "file in them was skipped. Check the folder, or point data_dir at the dataset."
            )


def load_brain_mri(root: Path, dataset: str = "brain_mri") -> pd.DataFrame:
    """Scan a brain-MRI folder into a DataFrame; unreadable files are reported, not loaded.

    Reads the Brain Tumor MRI Dataset and Br35H alike; ``source`` names the dataset each row
    came from, so that frames of both can be joined and told apart.
    """
    rows, skipped = [], []
    for folder, label, subset in _brain_folders(root):
        usable, unusable = scan_folder(folder)
        skipped += unusable
        for path in usable:
            rows.append(
                {
                    "path": str(path),
                    "label": label,
                    "source_class": folder.name,
                    "source_split": subset,
                    "group": file_digest(path),
                    "source": dataset,
                }
            )
    columns = ["path", "label", "source_class", "source_split", "group", "source"]
    frame = pd.DataFrame(rows, columns=columns)
    _require_every_class(frame, dataset, root)
    frame.attrs["skipped"] = pd.DataFrame(skipped, columns=["path", "reason"])
    return frame


def read_ham10000_metadata(path: Path) -> pd.DataFrame:
    """``HAM10000_metadata.csv``, refused with the rows named when a split could not trust it:
    an empty ``image_id``, ``dx`` or ``lesion_id``, an unknown ``dx``, or one image listed twice
    with different labels or lesions. Rows repeated exactly are read once."""
    metadata = pd.read_csv(path, dtype={"image_id": str, "lesion_id": str, "dx": str})
    required = ["lesion_id", "image_id", "dx"]
    missing_columns = set(required) - set(metadata.columns)
    if missing_columns:
        raise ValueError(f"{path} lacks the column(s) {sorted(missing_columns)}.")
    for column in required:
        empty = metadata.index[metadata[column].isna() | (metadata[column].str.strip() == "")]
        if len(empty):
            lines = ", ".join(str(index + 2) for index in empty[:5])  # header is line 1
            raise ValueError(
                f"{path}: empty {column} on line(s) {lines}{' ...' if len(empty) > 5 else ''}; fill them in."
            )
    unknown = set(metadata["dx"]) - set(HAM10000_CLASS_NAMES)
    if unknown:
        raise ValueError(
            f"{path} has unknown dx value(s) {sorted(unknown)}; use {list(HAM10000_CLASS_NAMES)}."
        )
    labels = metadata.drop_duplicates(["image_id", "dx", "lesion_id"])
    conflicting = labels[labels["image_id"].duplicated(keep=False)].sort_values("image_id")
    if len(conflicting):
        listed = "; ".join(
            f"{image_id}: " + ", ".join(f"{row.dx}/{row.lesion_id}" for row in rows.itertuples())
            for image_id, rows in list(conflicting.groupby("image_id"))[:3]
        )
        raise ValueError(
            f"{path} lists {conflicting['image_id'].nunique()} image(s) more than once with different "
            f"dx or lesion_id ({listed}). An image needs one label and one lesion; fix the metadata."
        )
    return metadata.drop_duplicates("image_id").reset_index(drop=True)


def load_ham10000(root: Path) -> pd.DataFrame:
    """Read ``HAM10000_metadata.csv`` and find each ``image_id`` wherever it lies under ``root``.

    ``group`` is the ``lesion_id``: several images show the same lesion, and a split must keep
    them together. Rows whose image is missing or unreadable are reported, not loaded.
    """
    metadata_path = root / "HAM10000_metadata.csv"
    if not metadata_path.exists():
        raise FileNotFoundError(
            f"{metadata_path} not found. data_dir must hold HAM10000_metadata.csv and the image "
            "folders (HAM10000_images_part_1/ and _part_2/), as in the Kaggle download."
        )
    metadata = read_ham10000_metadata(metadata_path)
    # The Kaggle download holds each image twice (upper- and lower-case folders): first wins.
    image_paths = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg"):
            image_paths.setdefault(path.stem, path)
    rows, skipped = [], []
    for record in metadata.itertuples(index=False):
        path = image_paths.get(record.image_id)
        problem = "image file not found under data_dir" if path is None else check_image(path)
        if problem:
            skipped.append({"path": str(path or root / f"{record.image_id}.jpg"), "reason": problem})
            continue
        rows.append({"path": str(path), "label": record.dx, "group": record.lesion_id, **record._asdict()})
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ValueError(f"No usable HAM10000 images under {root}; check data_dir.")
    _require_every_class(frame, "ham10000", root)
    frame["diagnosis"] = frame["label"].map(HAM10000_CLASS_NAMES)
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
    loaders = {
        "brain_mri": load_brain_mri,
        "br35h": lambda folder: load_brain_mri(folder, "br35h"),
        "ham10000": load_ham10000,
    }
    frame = loaders[dataset](root)
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
    import matplotlib.pyplot as plt

    labels = sorted(frame["label"].unique())
    figure, axes = plt.subplots(
        len(labels), per_class, figsize=(2.2 * per_class, 2.4 * len(labels)), squeeze=False
    )
    for row, label in enumerate(labels):
        rows = frame[frame["label"] == label]
        picks = rows.sample(min(per_class, len(rows)), random_state=seed)
        for column, axis in enumerate(axes[row]):
            axis.axis("off")
            if column >= len(picks):
                continue
            with Image.open(picks.iloc[column]["path"]) as image:
                axis.imshow(image.convert("RGB"))
                axis.set_title(f"{label}\n{image.width}x{image.height} {image.mode}", fontsize=8)
    figure.tight_layout()
    return figure


def plot_image_properties(properties: pd.DataFrame, title: str = ""):
    """Image sizes, colour modes and mean intensity per class, side by side, from
    :func:`medclass.shortcuts.file_properties` with a ``label`` column."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for label, rows in properties.groupby("label"):
        axes[0].scatter(rows["width"], rows["height"], s=8, alpha=0.4, label=label)
        axes[2].hist(rows["mean"], bins=40, alpha=0.5, label=label)
    axes[0].set(xlabel="width (px)", ylabel="height (px)", title="Image sizes")
    pd.crosstab(properties["mode"], properties["label"]).plot.bar(ax=axes[1], rot=0)
    axes[1].set(xlabel="colour mode", ylabel="images", title="Colour modes")
    axes[2].set(xlabel="mean intensity (0-255)", ylabel="images", title="Brightness")
    for axis in (axes[0], axes[2]):
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_metadata(frame: pd.DataFrame, title: str = ""):
    """HAM10000's metadata: diagnosis, age, sex, body site and how the diagnosis was confirmed."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(14, 7))
    frame["label"].value_counts().plot.bar(ax=axes[0, 0], rot=0, title="Images per diagnosis")
    frame.groupby("group").size().value_counts().sort_index().plot.bar(
        ax=axes[0, 1], rot=0, title="Images per lesion"
    )
    frame["age"].plot.hist(ax=axes[0, 2], bins=18, title="Age (years)")
    pd.crosstab(frame["label"], frame["sex"]).plot.bar(ax=axes[1, 0], rot=0, title="Sex per diagnosis")
    frame["localization"].value_counts().head(12).plot.barh(ax=axes[1, 1], title="Body site (top 12)")
    pd.crosstab(frame["label"], frame["dx_type"]).plot.bar(
        ax=axes[1, 2], rot=0, stacked=True, title="How the diagnosis was confirmed"
    )
    figure.suptitle(title)
    figure.tight_layout()
    return figure
