"""LGG MRI segmentation (Buda et al. 2019; Kaggle: mateuszbuda/lgg-mri-segmentation): slices with
and without tumour from the same patients, scanners and sequences.

``kaggle_3m/<patient>/<patient>_<n>.tif`` holds one axial slice in three channels (0: T1
pre-contrast, 1: FLAIR, 2: T1 post-contrast) and ``<patient>_<n>_mask.tif`` its tumour mask
(the FLAIR abnormality). The frame has **one row per slice and sequence**: each channel is a
greyscale image, read through a channel path (:func:`medclass.images.channel_path`). In some
patients a sequence is missing and the dataset copies FLAIR into its channel; those copies are
recognised per patient and left out (``frame.attrs["copied_sequences"]``), not counted twice.
``group`` is the patient: a split keeps a patient's slices, every sequence of them, on one side.

Columns beyond the usual: ``patient``, ``sequence``, ``slice_index``, ``slice_position`` (0 at
the patient's first slice, 1 at the last), ``brain_area`` (share of the slice whose FLAIR is
brighter than 20 of 255) and ``tumour_area`` (share of the slice inside the mask); the mask
of a row is :func:`read_mask` of its path.

First used in chapter "Brain MRI: the data" (notebooks/brain_01_data.ipynb).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from medclass import folders, images, synthetic
from medclass.datasets import brain_mri
from medclass.datasets.dataset import Dataset

SEQUENCES = ("T1 pre-contrast", "FLAIR", "T1 post-contrast")  # channel order of the files
FLAIR = 1
# A slice pixel counts as brain (not background) when its FLAIR value is above this.
BRAIN_LEVEL = 20
# A channel whose mean absolute difference from FLAIR over a patient's slices is below this many
# grey levels is the dataset's copy of FLAIR (exactly 0 in the staged and the original files).
COPY_TOLERANCE = 0.5
SLICE_NAME = re.compile(r"^(?P<case>.+)_(?P<slice>\d+)\.tiff?$", re.IGNORECASE)


def slice_files(root: Path) -> tuple[list[tuple[str, Path, Path, int]], list[dict]]:
    """``(patient, image, mask, slice index)`` for every slice under ``root``'s patient folders,
    and the files left out with why (an image without its mask)."""
    found, skipped = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            match = SLICE_NAME.match(path.name)
            if not match or path.stem.lower().endswith("_mask"):
                continue
            mask = path.with_name(f"{path.stem}_mask{path.suffix}")
            if not mask.exists():
                skipped.append({"path": str(path), "reason": f"no mask beside it ({mask.name})"})
                continue
            found.append((folder.name, path, mask, int(match["slice"])))
    return found, skipped


def slice_measures(image: Path, mask: Path) -> dict | str:
    """Per-channel pixels and the areas of one slice, or why it cannot be used."""
    try:
        with Image.open(image) as picture, Image.open(mask) as outline:
            pixels = np.asarray(picture.convert("RGB"), dtype=np.float32)
            mask_pixels = np.asarray(outline.convert("L")) > 127
    except (OSError, ValueError, SyntaxError) as error:
        return f"not a readable image ({type(error).__name__}: {error})"
    if pixels.shape[:2] != mask_pixels.shape:
        image_size, mask_size = pixels.shape[1::-1], mask_pixels.shape[::-1]
        return f"image {image_size[0]}x{image_size[1]} and mask {mask_size[0]}x{mask_size[1]} differ in size"
    return {
        "pixels": pixels,
        "brain_area": float(np.mean(pixels[..., FLAIR] > BRAIN_LEVEL)),
        "tumour_area": float(mask_pixels.mean()),
    }


def copied_sequences(differences: pd.DataFrame) -> pd.DataFrame:
    """The (patient, sequence) pairs whose channel is a copy of FLAIR, from one row per slice
    with each channel's mean absolute difference from FLAIR."""
    means = differences.groupby("patient")[list(SEQUENCES)].mean()
    copies = [
        {"patient": patient, "sequence": sequence, "copy_of": "FLAIR"}
        for patient, row in means.iterrows()
        for sequence in SEQUENCES
        if sequence != "FLAIR" and row[sequence] < COPY_TOLERANCE
    ]
    return pd.DataFrame(copies, columns=["patient", "sequence", "copy_of"])


def find_root(root: Path) -> Path:
    """The folder of patient folders: ``root`` itself, or its ``kaggle_3m/`` (also one level
    down, as kagglehub unpacks the Kaggle download)."""
    for candidate in (root / "kaggle_3m", *sorted(root.glob("*/kaggle_3m"))):
        if candidate.is_dir():
            return candidate
    return root


def holds_lgg(root: Path) -> bool:
    """Whether ``root`` holds the LGG set: patient folders with ``*_mask.tif`` files."""
    folder = find_root(Path(root))
    return folder.is_dir() and any(folder.glob("*/*_mask.tif"))


def load(root: Path) -> pd.DataFrame:
    """One row per usable slice and sequence of the LGG set at ``root`` (see the module's text)."""
    folder = find_root(Path(root))
    found, skipped = slice_files(folder)
    if not found:
        raise FileNotFoundError(
            f"No LGG slices found in {folder}: expected patient folders of <case>_<n>.tif images, "
            "each with its <case>_<n>_mask.tif (the Kaggle layout, kaggle_3m/). Check data_dir."
        )
    slices, differences = [], []
    for patient, image, mask, index in found:
        measures = slice_measures(image, mask)
        if isinstance(measures, str):
            skipped.append({"path": str(image), "reason": measures})
            continue
        pixels = measures.pop("pixels")
        flair = pixels[..., FLAIR]
        differences.append(
            {
                "patient": patient,
                **{name: float(np.abs(pixels[..., c] - flair).mean()) for c, name in enumerate(SEQUENCES)},
            }
        )
        slices.append({"patient": patient, "image": image, "mask": mask, "slice_index": index, **measures})
    slices = pd.DataFrame(slices)
    counts = slices.groupby("patient")["slice_index"].agg(["min", "max"])
    span = (counts["max"] - counts["min"]).clip(lower=1)
    slices["slice_position"] = (slices["slice_index"] - slices["patient"].map(counts["min"])) / slices[
        "patient"
    ].map(span)
    copies = copied_sequences(pd.DataFrame(differences))
    copied = set(zip(copies["patient"], copies["sequence"], strict=True))
    rows = [
        {
            "path": images.channel_path(row.image, channel),
            "label": "Tumor" if row.tumour_area > 0 else "Healthy",
            "source_class": sequence,
            "source_split": "",
            "group": row.patient,
            "source": "lgg",
            "patient": row.patient,
            "sequence": sequence,
            "slice_index": row.slice_index,
            "slice_position": round(float(row.slice_position), 4),
            "brain_area": round(row.brain_area, 4),
            "tumour_area": round(row.tumour_area, 5),
        }
        for row in slices.itertuples()
        for channel, sequence in enumerate(SEQUENCES)
        if (row.patient, sequence) not in copied
    ]
    frame = pd.DataFrame(rows)
    folders.require_every_class(frame, DATASET, folder)
    frame.attrs["skipped"] = pd.DataFrame(skipped, columns=["path", "reason"])
    frame.attrs["copied_sequences"] = copies
    return frame


def mask_file(path) -> Path:
    """The mask file beside a slice, from the slice's path or channel path."""
    file = Path(images.split_channel(path)[0])
    return file.with_name(f"{file.stem}_mask{file.suffix}")


def read_mask(path) -> np.ndarray:
    """The boolean tumour mask of the slice at ``path`` (a path of :func:`load`'s frame)."""
    with Image.open(mask_file(path)) as mask:
        return np.asarray(mask.convert("L")) > 127


def write_synthetic(root: Path, patients: int = 8, slices: int = 12, seed: int = 3) -> Path:
    """A synthetic LGG set under ``root`` in the Kaggle layout: ``patients`` phantom patients of
    ``slices`` slices, a third of them with tumour (higher or lower in the head by patient), three
    channels that differ in contrast, the last patient's T1 post-contrast channel a copy of FLAIR
    (as in ten real patients)."""
    root = Path(root)
    folder = root / "kaggle_3m"
    rng = np.random.default_rng(seed)
    for number in range(patients):
        patient = f"TCGA_SY_{number:04d}_20000101"
        (folder / patient).mkdir(parents=True, exist_ok=True)
        for index in range(1, slices + 1):
            start = 2 + number % (slices // 3)  # tumours higher or lower in the head, by patient
            tumour = start <= index < start + slices // 3
            phantom = synthetic.make_phantom(rng, tumour, size=128)
            base = phantom.image.astype(np.float32)
            channels = [base * 0.8, np.where(phantom.mask, base * 1.3, base), base * 0.9 + 10]
            if number == patients - 1:
                channels[2] = channels[1]
            image = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
            Image.fromarray(image, "RGB").save(folder / patient / f"{patient}_{index}.tif")
            mask = Image.fromarray(phantom.mask.astype(np.uint8) * 255)
            mask.save(folder / patient / f"{patient}_{index}_mask.tif")
    (root / "SYNTHETIC.txt").write_text(
        f"Synthetic LGG written by medclass.datasets.lgg (seed={seed}, {patients} patients of "
        f"{slices} slices).\nNot real patients. Every number computed on these images is a synthetic "
        "result.\n"
    )
    return root


DATASET = Dataset(
    name="lgg",
    folder="lgg",
    description="LGG MRI segmentation (Kaggle): TCGA lower-grade-glioma patients, slices with and "
    "without tumour, three sequences per slice, tumour masks.",
    citation="LGG MRI segmentation (Buda et al. 2019, TCGA-LGG via TCIA; Kaggle, mateuszbuda)",
    class_names=("Healthy", "Tumor"),
    write_synthetic=write_synthetic,
    load=load,
    recognise=holds_lgg,
    kaggle_slug="mateuszbuda/lgg-mri-segmentation",
    source_url="https://www.kaggle.com/datasets/mateuszbuda/lgg-mri-segmentation",
    risk_classes=("Tumor",),
    class_definitions={name: brain_mri.CLASS_DEFINITIONS[name] for name in ("Healthy", "Tumor")},
    folder_labels={},
)
