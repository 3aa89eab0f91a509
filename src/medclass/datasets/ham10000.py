"""HAM10000 (Tschandl et al. 2018; Kaggle: Skin Cancer MNIST): the skin case study's data.

10,015 dermatoscopic images of 7,470 lesions in seven diagnostic classes, read from
``HAM10000_metadata.csv`` and the image folders beside it. ``group`` is the ``lesion_id``:
several images show the same lesion, and a split must keep them together.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medclass import folders, synthetic_skin
from medclass.datasets.dataset import Dataset

# The seven diagnoses, as Tschandl et al. (2018) name them.
DIAGNOSES = {
    "akiec": "Actinic keratoses and intraepithelial carcinoma (Bowen's disease)",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesions",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevi",
    "vasc": "Vascular lesions",
}

CLASS_DEFINITIONS = {
    "akiec": "Actinic keratosis or intraepithelial carcinoma (Bowen's disease): sun-damaged, "
    "pre-cancerous or early squamous-cell cancer of the skin.",
    "bcc": "Basal cell carcinoma: the commonest skin cancer; grows locally and rarely spreads.",
    "bkl": "Benign keratosis-like lesion: seborrhoeic keratosis, solar lentigo or "
    "lichen-planus-like keratosis.",
    "df": "Dermatofibroma: a benign fibrous nodule of the skin.",
    "mel": "Melanoma: a cancer of the pigment cells that can spread; caught early, excision cures it.",
    "nv": "Melanocytic nevus: a common mole, benign.",
    "vasc": "Vascular lesion: cherry angioma, angiokeratoma, pyogenic granuloma or haemorrhage.",
}


def read_metadata(path: Path) -> pd.DataFrame:
    """``HAM10000_metadata.csv``, refused with the rows named when a split could not trust it:
    an empty ``image_id``, ``dx`` or ``lesion_id``, an unknown ``dx``, or one image listed twice
    with different labels or lesions. Rows repeated exactly are read once."""
    try:
        metadata = pd.read_csv(path, dtype={"image_id": str, "lesion_id": str, "dx": str}, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty; download HAM10000_metadata.csv again.") from None
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8 (Latin-1 "
            "and Windows code pages are not read, so that no name is read wrongly)."
        ) from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{path} is not a readable CSV file ({error}).") from None
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
    suffixed = metadata["image_id"][metadata["image_id"].str.lower().str.endswith((".jpg", ".jpeg"))]
    if len(suffixed):
        raise ValueError(
            f"{path}: image_id {suffixed.iloc[0]!r} (and {len(suffixed) - 1} more) ends in a file suffix; "
            "an image_id is the file's name without it (ISIC_0027419), as the images are found by it."
        )
    unknown = set(metadata["dx"]) - set(DIAGNOSES)
    if unknown:
        raise ValueError(f"{path} has unknown dx value(s) {sorted(unknown)}; use {list(DIAGNOSES)}.")
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


def load(root: Path) -> pd.DataFrame:
    """Read ``HAM10000_metadata.csv`` and find each ``image_id`` wherever it lies under ``root``.
    Rows whose image is missing or unreadable are reported, not loaded."""
    metadata_path = root / "HAM10000_metadata.csv"
    if not metadata_path.exists():
        raise FileNotFoundError(
            f"{metadata_path} not found. data_dir must hold HAM10000_metadata.csv and the image "
            "folders (HAM10000_images_part_1/ and _part_2/), as in the Kaggle download."
        )
    metadata = read_metadata(metadata_path)
    # The Kaggle download holds each image twice (upper- and lower-case folders): first wins.
    image_paths = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg"):
            image_paths.setdefault(path.stem, path)
    rows, skipped = [], []
    for record in metadata.itertuples(index=False):
        path = image_paths.get(record.image_id)
        problem = "image file not found under data_dir" if path is None else folders.check_image(path)
        if problem:
            skipped.append({"path": str(path or root / f"{record.image_id}.jpg"), "reason": problem})
            continue
        rows.append({"path": str(path), "label": record.dx, "group": record.lesion_id, **record._asdict()})
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ValueError(f"No usable HAM10000 images under {root}; check data_dir.")
    folders.require_every_class(frame, DATASET, root)
    frame["diagnosis"] = frame["label"].map(DIAGNOSES)
    frame.attrs["skipped"] = pd.DataFrame(skipped, columns=["path", "reason"])
    return frame


DATASET = Dataset(
    name="ham10000",
    folder="ham10000",
    description="HAM10000 (Kaggle: Skin Cancer MNIST): 10,015 dermatoscopic images of "
    "7,470 lesions in seven diagnostic classes.",
    citation="HAM10000 dermatoscopy (Tschandl et al. 2018; 7 classes)",
    class_names=tuple(DIAGNOSES),
    load=load,
    write_synthetic=synthetic_skin.write_synthetic_ham10000,
    kaggle_slug="kmader/skin-cancer-mnist-ham10000",
    source_url="https://doi.org/10.7910/DVN/DBW86T",
    risk_classes=("mel", "bcc", "akiec"),
    class_definitions=CLASS_DEFINITIONS,
)
