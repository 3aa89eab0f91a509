"""Br35H :: Brain Tumor Detection 2020 (Kaggle, ahmedhamada0): the brain case study's external set.

``yes/`` tumour and ``no/`` healthy slices. Its ``no/`` folder is, in effect, the Brain Tumor MRI
Dataset's notumor class; its tumour slices that are not copies of that dataset's images are the
held-out test of where an image came from (chapter "Brain MRI: the data").
"""

from __future__ import annotations

from pathlib import Path

from medclass import synthetic
from medclass.datasets import brain_mri
from medclass.datasets.dataset import Dataset

FOLDER_LABELS = {"no": "Healthy", "yes": "Tumor", "healthy": "Healthy", "tumor": "Tumor"}


def write_synthetic(root: Path) -> Path:
    """A synthetic Br35H beside the synthetic Brain Tumor MRI set it copies from (written first
    when it is not there yet)."""
    brain_root = Path(root).parent / brain_mri.DATASET.folder
    if not (brain_root / "SYNTHETIC.txt").exists():
        brain_mri.DATASET.write_synthetic(brain_root)
    return synthetic.write_synthetic_br35h(root, brain_root)


DATASET = Dataset(
    name="br35h",
    folder="br35h",
    description="Br35H :: Brain Tumor Detection 2020 (Kaggle): yes/ tumour and no/ healthy "
    "slices. Its no/ folder is, in effect, the Brain Tumor MRI Dataset's notumor class.",
    citation="Br35H (Kaggle, ahmedhamada0; its tumour slices that are not copies of Brain Tumor MRI images)",
    class_names=("Healthy", "Tumor"),
    write_synthetic=write_synthetic,
    kaggle_slug="ahmedhamada0/brain-tumor-detection",
    source_url="https://www.kaggle.com/datasets/ahmedhamada0/brain-tumor-detection",
    risk_classes=("Tumor",),
    class_definitions={name: brain_mri.CLASS_DEFINITIONS[name] for name in ("Healthy", "Tumor")},
    folder_labels=FOLDER_LABELS,
)
