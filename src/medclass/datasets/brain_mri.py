"""The Brain Tumor MRI Dataset (Kaggle, masoudnickparvar): the brain case study's data.

Four Kaggle classes under ``Training/`` and ``Testing/`` (glioma, meningioma, notumor,
pituitary), read as two: notumor is Healthy, the other three are Tumor. Plain ``Healthy/`` and
``Tumor/`` folders are read too.
"""

from __future__ import annotations

from medclass import synthetic
from medclass.datasets.dataset import Dataset

FOLDER_LABELS = {
    "notumor": "Healthy",
    "no_tumor": "Healthy",
    "healthy": "Healthy",
    "glioma": "Tumor",
    "meningioma": "Tumor",
    "pituitary": "Tumor",
    "tumor": "Tumor",
}

HEALTHY = "No tumour visible on this MRI slice."
CLASS_DEFINITIONS = {
    "Healthy": HEALTHY,
    "notumor": HEALTHY,
    "Tumor": "A brain tumour is visible on the slice (in the source data a glioma, a meningioma "
    "or a pituitary tumour).",
    "glioma": "A tumour arising from the brain's glial (supporting) cells, often infiltrating.",
    "meningioma": "A tumour of the meninges, the membranes around the brain; usually benign.",
    "pituitary": "A tumour of the pituitary gland at the base of the brain; usually benign.",
}


DATASET = Dataset(
    name="brain_mri",
    folder="brain-tumor-mri",
    description="Brain Tumor MRI Dataset (Kaggle): glioma, meningioma and pituitary "
    "slices are Tumor, notumor slices are Healthy.",
    citation="Brain Tumor MRI (Kaggle, masoudnickparvar; Healthy = notumor, Tumor = the other three)",
    class_names=("Healthy", "Tumor"),
    write_synthetic=synthetic.write_synthetic_brain_mri,
    kaggle_slug="masoudnickparvar/brain-tumor-mri-dataset",
    source_url="https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset",
    risk_classes=("Tumor", "glioma", "meningioma", "pituitary"),
    class_definitions=CLASS_DEFINITIONS,
    folder_labels=FOLDER_LABELS,
)
