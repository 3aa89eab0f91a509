"""Stratified, group-aware train/validation/test splits written as manifest files.

First used in chapter "Transfer learning" (notebooks/concepts_03_transfer.ipynb) (a quick split
of the phantoms); explained in chapter "Brain MRI: the data" (notebooks/brain_01_data.ipynb).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from medclass import files

SPLITS = ("train", "val", "test")
# Images of a second source, kept out of training: one half chooses between recipes, the other
# reports. "unused" marks a second source's images that a recipe leaves out of training.
EXTERNAL_SPLITS = ("external_val", "external_test")


def cap_images(frame: pd.DataFrame, max_images: int | None, seed: int) -> pd.DataFrame:
    """Keep at most ``max_images`` rows, sampled per label in proportion, reproducibly."""
    if max_images is None or max_images >= len(frame):
        return frame.reset_index(drop=True)
    if max_images < 10:
        raise ValueError(f"max_images={max_images} is too small to split; use at least 10 or None.")
    fraction = max_images / len(frame)
    sampled = frame.groupby("label", group_keys=False).sample(frac=fraction, random_state=seed)
    sampled.attrs = frame.attrs
    return sampled.sort_values("path").reset_index(drop=True)


def cap_groups(frame: pd.DataFrame, max_groups: int | None, seed: int) -> pd.DataFrame:
    """Keep every row of at most ``max_groups`` groups (patients), sampled reproducibly."""
    groups = frame["group"].drop_duplicates().sort_values()
    if max_groups is None or max_groups >= len(groups):
        return frame.reset_index(drop=True)
    kept = set(groups.sample(max_groups, random_state=seed))
    capped = frame[frame["group"].isin(kept)].reset_index(drop=True)
    capped.attrs = frame.attrs
    return capped


def _take_fold(frame: pd.DataFrame, n_folds: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    rest, fold = next(splitter.split(frame, frame["label"], groups=frame["group"]))
    return frame.iloc[rest], frame.iloc[fold]


def split_frame(
    frame: pd.DataFrame, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 42
) -> pd.DataFrame:
    """Add a ``split`` column: train/val/test, stratified by label, groups kept on one side.

    Fractions are met up to group granularity (one fold of a StratifiedGroupKFold).
    The same frame and seed always give the same split.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 0.5:
            raise ValueError(f"{name}={value} must lie strictly between 0 and 0.5.")
    frame = frame.sort_values("path").reset_index(drop=True)
    if "group" not in frame:
        frame = frame.assign(group=frame["path"])
    smallest = frame["label"].value_counts().min()
    n_test_folds = round(1 / test_fraction)
    if smallest < n_test_folds:
        raise ValueError(
            f"The rarest class has {smallest} images, too few for a {test_fraction:.0%} test "
            "split; add images or raise max_images."
        )
    rest, test = _take_fold(frame, n_test_folds, seed)
    n_val_folds = round(len(rest) / (val_fraction * len(frame)))
    train, val = _take_fold(rest, max(n_val_folds, 2), seed)
    split = pd.Series("train", index=frame.index)
    split[val.index] = "val"
    split[test.index] = "test"
    result = frame.assign(split=split)
    result.attrs = frame.attrs
    return result


def split_external(
    frame: pd.DataFrame, in_training: bool, seed: int = 42, val_fraction: float = 0.1
) -> pd.DataFrame:
    """Add a ``split`` column to a second source's images, whole groups at a time.

    Half the groups are held out, always the same half for a given ``seed``: a quarter of all
    groups become ``external_val`` (for choosing between recipes) and a quarter
    ``external_test`` (reported once). The other half joins training when ``in_training``
    (``train``, and ``val`` for about ``val_fraction`` of it), and is ``unused`` otherwise, so
    that recipes with and without it are judged on the same held-out images.
    """
    frame = frame.sort_values("path").reset_index(drop=True)
    groups = frame["group"].drop_duplicates().to_numpy()
    if len(groups) < 4:
        raise ValueError(
            f"The second source has {len(groups)} group(s) of images; split_external needs at least 4 "
            "(a quarter each for external_val and external_test). Add images or raise max_images."
        )
    order = np.random.default_rng(seed).permutation(len(groups))
    quarter = len(groups) // 4
    role = pd.Series("pool", index=groups[order])
    role.iloc[:quarter] = "external_val"
    role.iloc[quarter : 2 * quarter] = "external_test"
    pool = role.index[role == "pool"]
    n_val = int(round(len(pool) * val_fraction))
    role[pool] = "train" if in_training else "unused"
    if in_training:
        role[pool[:n_val]] = "val"
    result = frame.assign(split=frame["group"].map(role).to_numpy())
    result.attrs = frame.attrs
    return result


def balance_source(
    train: pd.DataFrame, source: str, label: str, match_label: str, seed: int = 42
) -> pd.DataFrame:
    """Repeat the training rows of ``source`` with ``label`` until they are as many as the rows
    with ``match_label``, so that in training that source no longer predicts the label.

    Brain MRI: brain-tumor-mri's Healthy slices are Br35H's ``no/`` images, so Br35H's tumour
    slices in training are repeated to match them (``balance_source(train, "br35h", "Tumor",
    "Healthy")``). Whole copies first, then a reproducible sample of the rows for the remainder;
    a frame without that source, or with enough of its rows already, is returned as it is.
    """
    if "source" not in train:
        return train
    rows = train[(train["source"] == source) & (train["label"] == label)]
    target = int((train["label"] == match_label).sum())
    if rows.empty or len(rows) >= target:
        return train
    rows = rows.copy()
    rows.attrs = {}  # the training frame's attrs (skipped files) are counted once
    whole, remainder = divmod(target - len(rows), len(rows))
    extra = [rows] * whole + [rows.sample(remainder, random_state=seed)]
    return join_frames(train, *extra)


def balance_strata(train: pd.DataFrame, columns, seed: int = 42) -> pd.DataFrame:
    """Repeat the training rows of every cell of ``columns`` (say source, sequence and label)
    until each cell holds as many rows as the largest, so that no source or sequence, nor its
    mix of labels, outweighs another in training. A missing value (a dataset that records no
    sequence) is a cell of its own. Whole copies first, then a reproducible sample."""
    # Built from plain arrays: the frame's attrs (tables of skipped files) would make pandas
    # compare them between columns and fail.
    values = [
        ["not recorded" if pd.isna(value) else str(value) for value in train[column].to_numpy()]
        for column in columns
    ]
    keys = pd.Series([" / ".join(parts) for parts in zip(*values, strict=True)], index=train.index)
    target = int(keys.value_counts().max())
    extra = []
    for key in sorted(keys.unique()):
        rows = train[keys == key].copy()
        rows.attrs = {}
        whole, remainder = divmod(target - len(rows), len(rows))
        extra += [rows] * whole + ([rows.sample(remainder, random_state=seed)] if remainder else [])
    return join_frames(train, *extra) if extra else train


def join_frames(*frames: pd.DataFrame) -> pd.DataFrame:
    """Stack frames of several datasets into one (``pd.concat`` cannot compare their attrs):
    the first frame's attrs, with every frame's skipped files listed."""
    plain = []
    for frame in frames:
        copy = frame.copy()
        copy.attrs = {}
        plain.append(copy)
    joined = pd.concat(plain, ignore_index=True)
    joined.attrs = dict(frames[0].attrs)
    skipped = [frame.attrs["skipped"] for frame in frames if frame.attrs.get("skipped") is not None]
    if skipped:
        joined.attrs["skipped"] = pd.concat(skipped, ignore_index=True)
    return joined


def check_split(frame: pd.DataFrame) -> None:
    """Raise if a group appears in more than one split, or a split lacks a class."""
    sides = frame.groupby("group")["split"].nunique()
    leaking = sides[sides > 1]
    if len(leaking):
        raise ValueError(f"{len(leaking)} group(s) span several splits, e.g. {leaking.index[0]}.")
    for name in SPLITS:
        labels = set(frame.loc[frame["split"] == name, "label"])
        missing = set(frame["label"]) - labels
        if missing:
            raise ValueError(f"The {name} split has no {sorted(missing)} images.")


KNOWN_SPLITS = (*SPLITS, *EXTERNAL_SPLITS, "unused")


class ManifestError(ValueError):
    """A manifest that cannot be trusted; the message names the file, the rows and the fix."""


def write_manifest(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the split as a CSV manifest (path, label, group, split, ...), atomically.

    The image paths are stored relative to the folder that holds them all (``root`` in the
    JSON sidecar, ``manifest.json``), so moving the data and running the data chapter again
    writes the same manifest, with the same hash, and an interrupted training run still resumes.
    The sidecar also records where the data came from, whether it is synthetic, the settings
    the split was made with (``frame.attrs["settings"]``) and the CSV's digest; it is written
    after the CSV, so that a write cut short between the two leaves a pair that
    :func:`read_manifest` refuses.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    absolute = [os.path.abspath(value) for value in frame["path"]]
    root = os.path.commonpath([os.path.dirname(value) for value in absolute]) if absolute else ""
    relative = frame.assign(path=[Path(os.path.relpath(value, root)).as_posix() for value in absolute])
    content = relative.to_csv(index=False).encode("utf-8")
    source = {
        "root": root,
        "data_dir": frame.attrs.get("data_dir"),
        "synthetic": bool(frame.attrs.get("synthetic", False)),
        "skipped_files": int(len(frame.attrs.get("skipped", []))),
        "images": int(len(frame)),
        "settings": frame.attrs.get("settings"),
        "manifest_sha256": files.digest(content),
    }
    files.write_bytes_atomically(path, content)
    files.write_text_atomically(path.with_suffix(".json"), json.dumps(source, indent=2))
    return path


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`, naming the notebook that writes it.
    The ``path`` column comes back as full paths under the sidecar's ``root``. A manifest that
    does not hold together is refused (:class:`ManifestError`): a CSV that is not the one its
    sidecar describes, an unknown split, an image listed twice, a group in two splits, a path
    that leaves the data folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No split manifest at {path}. Run the data notebook (brain_01_data) with the same "
            "output_dir first."
        )
    sidecar = path.with_suffix(".json")
    attrs = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    recorded = attrs.get("manifest_sha256")  # absent in manifests written before it was recorded
    if recorded is not None and recorded != manifest_hash(path):
        raise ManifestError(
            f"{path} is not the manifest {sidecar.name} describes (edited by hand, or a write cut "
            f"short between the two?). {REMAKE}"
        )
    frame = pd.read_csv(path)
    frame.attrs.update(attrs)
    missing = {"path", "label", "split"} - set(frame.columns)
    if missing:
        raise ManifestError(f"Manifest {path} lacks the column(s) {sorted(missing)}. {REMAKE}")
    _check_rows(frame, path)
    root = frame.attrs.get("root")
    if root is None:  # written before paths were relative: they are absolute already
        return frame
    if not Path(root).is_dir():
        raise FileNotFoundError(
            f"The images of {path} were under {root}, which does not exist now. If the data "
            "moved, run the data notebook again with data_dir pointing at its new place: the "
            "split and its hash stay the same, so training resumes."
        )
    _check_inside_root(frame, path)
    frame["path"] = [os.path.join(root, value) for value in frame["path"]]
    return frame


REMAKE = "Run the data chapter (brain_01_data or skin_01_data) again to write the split afresh."


def _check_rows(frame: pd.DataFrame, path: Path) -> None:
    unknown = sorted(set(frame["split"].astype(str)) - set(KNOWN_SPLITS))
    if unknown:
        raise ManifestError(
            f"{path}: unknown split(s) {unknown}; a split is one of {list(KNOWN_SPLITS)}. {REMAKE}"
        )
    twice = frame["path"][frame["path"].duplicated()]
    if len(twice):
        raise ManifestError(
            f"{path}: {len(twice)} image(s) listed more than once, e.g. {twice.iloc[0]}. {REMAKE}"
        )
    if "group" in frame.columns:
        sides = frame.groupby("group")["split"].unique()
        leaking = sides[sides.map(len) > 1]
        if len(leaking):
            raise ManifestError(
                f"{path}: {len(leaking)} group(s) of related images lie in more than one split (e.g. "
                f"group {leaking.index[0]} in {sorted(leaking.iloc[0])}), which would leak test images "
                f"into training. {REMAKE}"
            )


def _check_inside_root(frame: pd.DataFrame, path: Path) -> None:
    outside = [
        value
        for value in frame["path"].astype(str)
        if os.path.isabs(value) or ".." in Path(value.split("#", 1)[0]).parts
    ]
    if outside:
        raise ManifestError(
            f"{path}: {len(outside)} path(s) lead outside the data folder {frame.attrs['root']} (e.g. "
            f"{outside[0]}); a manifest lists images under its root only. {REMAKE}"
        )


def manifest_hash(path: str | Path) -> str:
    """Short SHA-256 of a manifest file, to trace a result to the exact images it saw."""
    return files.file_digest(path)
