"""The book's two case studies, and what each one is made of: the dataset its model learns, the
sets held out to check it elsewhere, its split and what the split is grouped by, the settings
that make the split and those its ``model.json`` records, and its chapters.

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb), through
:mod:`medclass.prerequisites`. The data chapters write their split out in their cells; the
functions here are those cells, for a chapter opened alone (``tests/test_prerequisites.py``
checks that the two make the same split byte for byte). Nothing outside
:mod:`medclass.datasets` and this module asks which dataset it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from medclass import audit, data, splits


def brain_frames(data_dir, synthetic: bool) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """brain-tumor-mri, Br35H's tumour slices that are not copies of its images (grouped with
    them into one partition of duplicates), and LGG's slices, one row per sequence, grouped by
    patient: the brain data chapter's sections on copies, on Br35H and on LGG."""
    frame = data.load_dataset("brain_mri", data_dir, synthetic_data=synthetic)
    external = data.load_dataset("br35h", data_dir, synthetic_data=synthetic)
    hashes = audit.perceptual_hashes(frame["path"])
    external_hashes = audit.perceptual_hashes(external["path"])
    frame, new_images, _ = audit.without_copies(frame, hashes, external, external_hashes)
    lgg = data.load_dataset("lgg", data_dir, synthetic_data=synthetic)
    return frame, new_images[new_images["label"] == "Tumor"], lgg


def brain_split(
    frame, new_tumours, lgg, *, seed: int, max_images, br35h_in_training: bool, lgg_in_training: bool
) -> pd.DataFrame:
    """brain-tumor-mri 80/10/10 by duplicate group; Br35H's new tumours and LGG's patients held
    out, a quarter each for ``external_val`` and ``external_test`` (the other half in training
    when ``br35h_in_training``, ``lgg_in_training``): the brain data chapter's last step."""
    frame = splits.cap_images(frame, max_images, seed)
    new_tumours = splits.cap_images(new_tumours, max_images and max(10, max_images // 5), seed)
    lgg = splits.cap_groups(lgg, max_images and max(8, max_images // 20), seed)
    internal = splits.split_frame(frame, val_fraction=0.1, test_fraction=0.1, seed=seed)
    held_out = splits.split_external(new_tumours, in_training=br35h_in_training, seed=seed)
    patients = splits.split_external(lgg, in_training=lgg_in_training, seed=seed)
    joined = splits.join_frames(internal, held_out, patients)
    splits.check_split(joined)
    joined.attrs["settings"] = {
        "seed": seed,
        "max_images": max_images,
        "br35h_in_training": br35h_in_training,
        "lgg_in_training": lgg_in_training,
    }
    return joined


def skin_frame(data_dir, synthetic: bool) -> pd.DataFrame:
    """HAM10000 with lesions joined to their near-copies (the skin data chapter's duplicate section)."""
    frame = data.load_dataset("ham10000", data_dir, synthetic_data=synthetic)
    hashes = audit.perceptual_hashes(frame["path"])
    return frame.assign(group=audit.duplicate_groups(frame, hashes, audit.NEAR_DUPLICATE_BITS).to_numpy())


def skin_split(frame, *, seed: int, max_images) -> pd.DataFrame:
    """70/15/15 by lesion group: the skin data chapter's last step."""
    frame = splits.cap_images(frame, max_images, seed)
    frame = splits.split_frame(frame, val_fraction=0.15, test_fraction=0.15, seed=seed)
    splits.check_split(frame)
    frame.attrs["settings"] = {"seed": seed, "max_images": max_images}
    return frame


@dataclass(frozen=True)
class CaseStudy:
    """One case study of the book."""

    name: str  # the prefix of its chapters: "brain", "skin"
    dataset: str  # the dataset its model learns (a name of medclass.datasets)
    split_datasets: tuple[str, ...]  # the datasets its split is made of (held-out parts included)
    external: tuple[str, ...]  # the datasets its evaluation reads besides the split, whole
    frames: Callable[..., tuple]  # (data_dir, synthetic) -> the frames ``split`` takes
    split: Callable[..., pd.DataFrame]  # (*frames, seed=, max_images=, **split settings) -> split
    split_settings: tuple[str, ...]  # chapter parameters besides seed and max_images that make it
    recorded_settings: tuple[str, ...]  # chapter parameters model.json records besides the common
    builder_settings: tuple[str, ...]  # chapter parameters models.build_classifier takes
    threshold: float | None  # model.json's first threshold on P(positive class); None: argmax
    synthetic_kind: str  # how model.json names its synthetic data
    interval_unit: str  # what its evaluation's intervals resample

    def chapter(self, step: str) -> str:
        """Its chapter for ``step``: "data", "training" or "evaluation"."""
        number = {"data": "01", "training": "02", "evaluation": "03"}[step]
        return f"{self.name}_{number}_{step}"

    def make_split(self, data_dir, synthetic: bool, *, seed: int, max_images, **settings) -> pd.DataFrame:
        """The data chapter's split, from ``settings`` (the chapter's parameters)."""
        chosen = {name: settings[name] for name in self.split_settings}
        return self.split(*self.frames(data_dir, synthetic), seed=seed, max_images=max_images, **chosen)


BRAIN = CaseStudy(
    name="brain",
    dataset="brain_mri",
    split_datasets=("brain_mri", "br35h", "lgg"),
    external=(),
    frames=brain_frames,
    split=brain_split,
    split_settings=("br35h_in_training", "lgg_in_training"),
    recorded_settings=("standardise", "br35h_in_training", "lgg_in_training"),
    builder_settings=("standardise",),
    threshold=0.5,
    synthetic_kind="synthetic phantoms",
    interval_unit="duplicate groups",
)
SKIN = CaseStudy(
    name="skin",
    dataset="ham10000",
    split_datasets=("ham10000",),
    external=("ph2",),
    frames=lambda data_dir, synthetic: (skin_frame(data_dir, synthetic),),
    split=skin_split,
    split_settings=(),
    recorded_settings=(),
    builder_settings=(),
    threshold=None,
    synthetic_kind="synthetic images",
    interval_unit="lesions (PH2: over images)",
)
CASE_STUDIES = (BRAIN, SKIN)


def for_dataset(dataset: str) -> CaseStudy:
    """The case study whose model learns ``dataset``, or an error naming those there are."""
    for case in CASE_STUDIES:
        if case.dataset == dataset:
            return case
    known = [case.dataset for case in CASE_STUDIES]
    raise ValueError(f"No case study trains on {dataset!r}; the chapters train on {known}.")


def chapter_datasets(chapter: str) -> tuple[str, ...] | None:
    """The datasets a case study's chapter reads (its evaluation also its external sets); None
    for a chapter of no case study."""
    for case in CASE_STUDIES:
        if chapter == case.chapter("evaluation"):
            return case.split_datasets + case.external
        if chapter in (case.chapter("data"), case.chapter("training")):
            return case.split_datasets
    return None
