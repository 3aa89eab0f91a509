"""Which files in a folder are usable images, and which class folder each one sits in.

The one reader of image folders: the datasets of class folders (:mod:`medclass.datasets`),
HAM10000's and LGG's loaders and ``medclass.report`` read through it, so that a file is accepted
or refused, with why, the same way everywhere. Explained in chapter "Brain MRI: the data"
(notebooks/brain_01_data.ipynb).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from medclass import images

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
# What medclass.images decodes for training and the app, whatever the file is named.
DECODABLE_FORMATS = {"JPEG", "PNG", "BMP", "GIF"}
MIN_IMAGE_SIDE = images.MIN_IMAGE_SIDE


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
