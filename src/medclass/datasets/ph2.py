"""PH2 (Mendonça et al. 2013, Hospital Pedro Hispano): the skin case study's external set.

200 dermoscopic images from another hospital, camera and time than HAM10000, in three folders:
``common_nevus/`` and ``atypical_nevus/`` (HAM10000's nv) and ``melanoma/`` (mel). Not on
Kaggle: download it from its authors' page and pass its folder as ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medclass import synthetic_skin
from medclass.datasets import ham10000
from medclass.datasets.dataset import Dataset

FOLDER_LABELS = {"common_nevus": "nv", "atypical_nevus": "nv", "melanoma": "mel"}


# PH2's three folders, the HAM10000 style each is drawn in, and how many a synthetic set holds:
# atypical nevi are drawn with more irregular borders and more texture than common ones.
NEVUS, MELANOMA = synthetic_skin.CLASS_STYLES["nv"], synthetic_skin.CLASS_STYLES["mel"]
PH2_FOLDERS = {
    "common_nevus": (NEVUS, 16),
    "atypical_nevus": ((NEVUS[0], 0.20, 0.15, *NEVUS[3:]), 16),
    "melanoma": (MELANOMA, 8),
}
# Another hospital's camera: warmer, and a little less blue, than the HAM10000-like images.
PH2_CAST = np.array([1.06, 0.98, 0.90], np.float32)


def write_synthetic(root: str | Path, seed: int = 2) -> Path:
    """Write a PH2-layout set (``common_nevus/``, ``atypical_nevus/``, ``melanoma/``) of lesions
    drawn as :func:`medclass.synthetic_skin.write_synthetic_ham10000` draws them, at 256 x 192 px
    and with another colour cast, as if from another hospital's camera."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    image_number = 1
    for folder, (style, count) in PH2_FOLDERS.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            pixels = synthetic_skin.make_lesion_image(
                rng, style, seed * 100_000 + image_number, size=(256, 192)
            )
            pixels = np.clip(pixels * PH2_CAST, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / folder / f"IMD{image_number:03d}.jpg", "JPEG", quality=92)
            image_number += 1
    (root / "SYNTHETIC.txt").write_text(
        f"Synthetic PH2-layout images written by medclass.datasets.ph2 ({image_number - 1} images, "
        f"seed={seed}). Not real patients.\n"
    )
    return root


DATASET = Dataset(
    name="ph2",
    folder="ph2",
    description="PH2 dermoscopic image database (Mendonça et al. 2013): common and atypical nevi "
    "(nv) and melanomas (mel), from another hospital than HAM10000.",
    citation="PH2 dermoscopy (Mendonça et al. 2013, Hospital Pedro Hispano; nevi as nv, melanomas as mel)",
    class_names=("mel", "nv"),
    write_synthetic=write_synthetic,
    source_url="https://www.fc.up.pt/addi/ph2%20database.html",
    risk_classes=("mel",),
    class_definitions={name: ham10000.CLASS_DEFINITIONS[name] for name in ("mel", "nv")},
    folder_labels=FOLDER_LABELS,
)
