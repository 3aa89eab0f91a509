"""Deterministic synthetic dermatoscopy-like images in the HAM10000 layout, for the demo profile.

Defined in chapter "Skin lesions: the data" (notebooks/skin_01_data.ipynb). Seven classes differ
in colour, border irregularity, texture and size; each synthetic lesion is photographed several
times (rotated, shifted, relit), so that a split must group images by ``lesion_id`` as on the
real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

# Per class: lesion RGB colour, border irregularity, texture strength, radius range (share of
# the image), and how many lesions of each class a set of 70 holds (HAM10000 is imbalanced).
CLASS_STYLES = {
    "akiec": ((170, 95, 80), 0.30, 0.30, (0.18, 0.30), 4),
    "bcc": ((200, 150, 150), 0.20, 0.45, (0.15, 0.28), 6),
    "bkl": ((140, 100, 60), 0.25, 0.20, (0.20, 0.34), 9),
    "df": ((160, 110, 90), 0.08, 0.10, (0.10, 0.18), 3),
    "mel": ((60, 35, 30), 0.45, 0.35, (0.22, 0.38), 10),
    "nv": ((120, 80, 55), 0.06, 0.08, (0.14, 0.26), 35),
    "vasc": ((170, 40, 70), 0.12, 0.15, (0.10, 0.20), 3),
}


def make_lesion_image(rng: np.random.Generator, style: tuple, lesion_seed: int, size=(200, 150)):
    """One photograph of a lesion whose shape is fixed by ``lesion_seed``; pose and light vary."""
    colour, irregularity, texture, radius_range, _ = style
    shape_rng = np.random.default_rng(lesion_seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = shape_rng.uniform(*radius_range) * min(size)
    phases = shape_rng.uniform(0, 2 * np.pi, 4)
    amplitudes = shape_rng.uniform(0.2, 0.6, 4) * irregularity
    rotation = rng.uniform(0, 2 * np.pi)
    cy = height / 2 + rng.uniform(-0.1, 0.1) * height
    cx = width / 2 + rng.uniform(-0.1, 0.1) * width
    theta = np.arctan2(yy - cy, xx - cx) + rotation
    border = radius * (
        1
        + sum(
            a * np.cos((k + 2) * theta + p) for k, (a, p) in enumerate(zip(amplitudes, phases, strict=True))
        )
    )
    inside = np.clip((border - np.hypot(yy - cy, xx - cx)) / 3, 0, 1)

    skin = np.array([225, 180, 155], np.float32) * rng.uniform(0.85, 1.05)
    image = np.ones((height, width, 3), np.float32) * skin
    image += rng.normal(0, 4, image.shape)
    grain = ndimage.gaussian_filter(shape_rng.standard_normal((height, width)), 1.2)
    lesion = np.array(colour, np.float32)[None, None, :] * (1 + texture * grain[..., None])
    image = image * (1 - inside[..., None]) + lesion * inside[..., None]
    light = 1 + 0.15 * (xx / width - 0.5) * rng.uniform(-1, 1)
    vignette = 1 - 0.35 * (np.hypot((yy - height / 2) / height, (xx - width / 2) / width) ** 2)
    image *= (light * vignette)[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def write_synthetic_ham10000(root: str | Path, n_lesions: int = 140, seed: int = 0) -> Path:
    """Write a HAM10000-layout set: ``HAM10000_metadata.csv`` and two image-part folders."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    weights = np.array([style[-1] for style in CLASS_STYLES.values()], float)
    classes = rng.choice(list(CLASS_STYLES), size=n_lesions, p=weights / weights.sum())
    classes[: len(CLASS_STYLES)] = list(CLASS_STYLES)  # every class at least once
    rows, image_number = [], 24306
    for lesion_index, dx in enumerate(classes):
        for _ in range(rng.choice([1, 1, 2, 3])):
            image_id = f"ISIC_{image_number:07d}"
            part = "HAM10000_images_part_1" if image_number % 2 else "HAM10000_images_part_2"
            path = root / part / f"{image_id}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = make_lesion_image(rng, CLASS_STYLES[dx], seed * 100_000 + lesion_index)
            Image.fromarray(pixels).save(path, "JPEG", quality=90)
            rows.append(
                {
                    "lesion_id": f"HAM_{lesion_index:07d}",
                    "image_id": image_id,
                    "dx": dx,
                    "dx_type": rng.choice(["histo", "follow_up", "consensus"]),
                    "age": float(rng.integers(2, 17) * 5),
                    "sex": rng.choice(["male", "female"]),
                    "localization": rng.choice(
                        ["back", "lower extremity", "trunk", "face", "upper extremity"]
                    ),
                }
            )
            image_number += 1
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    (root / "SYNTHETIC.txt").write_text(
        f"Synthetic dermatoscopy-like images written by medclass.synthetic_skin "
        f"({n_lesions} lesions, {len(rows)} images, seed={seed}). Not real patients.\n"
    )
    return root
