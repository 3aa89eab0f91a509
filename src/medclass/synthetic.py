"""Deterministic synthetic brain-MRI phantoms, the book's embedded default data.

First used in chapter "Brain MRI: the data" (notebooks/brain_01_data.ipynb).

Each image is an axial slice: a head outline, a bright skull ring, textured brain
tissue, two dark ventricles, a smooth bias field and noise. A "Tumor" slice also
carries one irregular mass of random size, contrast and position; the generator
returns its mask so that explanations (Grad-CAM) can be checked against it.

Like the real dataset, the phantoms carry a planted *source cue*: Healthy slices are saved as a
second "source" would save them (RGB, a lifted background with a faint warm tint, sizes that
vary), Tumor slices as greyscale squares, so the shortcut audit has something to find. A
synthetic Br35H (:func:`write_synthetic_br35h`) has tumour slices saved the Healthy way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from threadpoolctl import threadpool_limits

# The Kaggle folder names; synthetic Tumor slices are dealt round-robin into the three
# tumour folders so that the real loader reads the synthetic set unchanged.
TUMOR_FOLDERS = ("glioma", "meningioma", "pituitary")
HEALTHY_FOLDER = "notumor"


@dataclass(frozen=True)
class Phantom:
    """One synthetic slice: 8-bit grayscale image and boolean tumour mask."""

    image: np.ndarray
    mask: np.ndarray


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    blur = _gaussian_matrix(size, sigma)
    # One BLAS thread: two writers side by side (the book's chains, lone chapters) each
    # spinning threads on the same two cores ran three times slower than one thread each.
    with threadpool_limits(1, user_api="blas"):
        field = blur @ rng.standard_normal((size, size)) @ blur.T
    return field / (np.abs(field).max() + 1e-8)


@cache
def _gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """``ndimage.gaussian_filter1d`` along one axis of a ``size``-long signal, as a matrix:
    ``blur @ x @ blur.T`` is ``ndimage.gaussian_filter(x, sigma)`` for a square ``x`` (the
    same weights and reflected edges), in a millisecond where the filter takes 30 at the bias
    field's sigma of 64 pixels, most of the time it took to draw a phantom."""
    return ndimage.gaussian_filter1d(np.eye(size), sigma, axis=0)


def _ellipse(yy, xx, cy, cx, ry, rx, angle=0.0):
    cos, sin = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u = (dx * cos + dy * sin) / rx
    v = (-dx * sin + dy * cos) / ry
    return u**2 + v**2


def _irregular_mass(rng, yy, xx, brain, size):
    """A lobulated blob: a circle whose radius varies smoothly with angle."""
    radius = rng.uniform(0.04, 0.12) * size
    # Centre the mass where it fits inside the brain, clear of the skull.
    candidates = np.argwhere(ndimage.distance_transform_edt(brain) > radius * 1.2)
    cy, cx = candidates[rng.integers(len(candidates))]
    theta = np.arctan2(yy - cy, xx - cx)
    harmonics = sum(
        rng.uniform(0.05, 0.25) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in range(2, 6)
    )
    distance = np.hypot(yy - cy, xx - cx)
    return (distance < radius * (1 + harmonics)) & brain


def make_phantom(rng: np.random.Generator, tumor: bool, size: int = 256) -> Phantom:
    """Draw one axial slice; with ``tumor=True`` plant an irregular mass in the brain."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy = size / 2 + rng.uniform(-0.04, 0.04) * size
    cx = size / 2 + rng.uniform(-0.04, 0.04) * size
    ry, rx = rng.uniform(0.36, 0.44) * size, rng.uniform(0.30, 0.37) * size
    angle = rng.uniform(-0.15, 0.15)
    head = _ellipse(yy, xx, cy, cx, ry, rx, angle)
    skull_width = rng.uniform(0.05, 0.09)
    brain = head < (1 - skull_width) ** 2
    skull = (head < 1) & ~brain

    image = np.zeros((size, size), np.float32)
    image[skull] = rng.uniform(0.75, 0.95)
    tissue = 0.45 + 0.08 * _smooth_noise(rng, size, 2.0) + 0.05 * _smooth_noise(rng, size, 8.0)
    image[brain] = tissue[brain]

    # Two ventricles, mirror images about the midline, dark as cerebrospinal fluid.
    vent_ry, vent_rx = rng.uniform(0.08, 0.14) * size, rng.uniform(0.025, 0.045) * size
    offset = rng.uniform(0.04, 0.07) * size
    for side in (-1, 1):
        ventricle = _ellipse(yy, xx, cy, cx + side * offset, vent_ry, vent_rx, angle + side * 0.3) < 1
        image[ventricle & brain] = rng.uniform(0.12, 0.22)

    mask = np.zeros((size, size), bool)
    if tumor:
        mask = _irregular_mass(rng, yy, xx, brain, size)
        contrast = rng.choice([-1, 1]) * rng.uniform(0.18, 0.4)
        texture = 0.06 * _smooth_noise(rng, size, 1.5)
        image[mask] = np.clip(tissue[mask] + contrast + texture[mask], 0.05, 1.0)

    image = ndimage.gaussian_filter(image, 0.8)
    bias = 1 + 0.25 * _smooth_noise(rng, size, size / 4)
    image = image * bias * rng.uniform(0.7, 1.1)
    image += rng.normal(0, rng.uniform(0.01, 0.04), image.shape)
    return Phantom(np.clip(image * 255, 0, 255).astype(np.uint8), mask)


def in_healthy_source_style(phantom: Phantom, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """A phantom saved the way the Healthy images' source saves a slice: a loose frame of
    background around the head, RGB, a lifted background with a warm tint, and a size that
    varies between 80% and 100% per side. Returns the picture and its mask, framed alike."""
    height, width = phantom.image.shape
    top, bottom, left, right = (int(side * rng.uniform(0.0, 0.3)) for side in (height, height, width, width))
    padding = ((top, bottom), (left, right))  # this source frames the head loosely
    lifted = 18 + np.pad(phantom.image, padding).astype(np.float32) * (237 / 255)
    rgb = np.stack([lifted + 6, lifted, lifted - 6], axis=-1)
    picture = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    mask = Image.fromarray(np.pad(phantom.mask, padding).astype(np.uint8) * 255)
    new_size = (int(width * rng.uniform(0.8, 1.0)), int(height * rng.uniform(0.8, 1.0)))
    return picture.resize(new_size, Image.LANCZOS), mask.resize(new_size, Image.NEAREST)


def write_synthetic_brain_mri(
    root: str | Path,
    n_images: int = 400,
    seed: int = 0,
    size: int = 256,
    duplicate_share: float = 0.04,
    source_cue: bool = True,
) -> Path:
    """Write ``n_images`` phantoms in the Kaggle Brain Tumor MRI layout under ``root``.

    Half are Healthy (``notumor``), half Tumor; about 80% go to ``Training/`` and 20% to
    ``Testing/``, as on Kaggle. Like the real dataset, the set also holds copies: a
    ``duplicate_share`` of the images reappear under another name in the other subset, half as
    byte-identical files and half resized and re-compressed, so that the leakage audit has
    something to find. Masks go to ``root/masks/`` with the same relative paths. The same
    ``seed`` always gives the same files. With ``source_cue`` (the default) Healthy slices are
    saved in the style of another source (:func:`in_healthy_source_style`), as in the real data.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    written = []
    for index in range(n_images):
        tumor = index % 2 == 1
        folder = TUMOR_FOLDERS[(index // 2) % 3] if tumor else HEALTHY_FOLDER
        subset = "Testing" if index % 5 == 4 else "Training"
        relpath = Path(subset) / folder / f"synthetic_{index:05d}.jpg"
        phantom = make_phantom(rng, tumor, size)
        picture, mask = Image.fromarray(phantom.image), Image.fromarray(phantom.mask.astype(np.uint8) * 255)
        if source_cue and not tumor:
            picture, mask = in_healthy_source_style(phantom, rng)
        _save(root, relpath, picture, mask)
        written.append(relpath)
    n_copies = int(round(duplicate_share * n_images))
    for copy_index, source_index in enumerate(rng.choice(n_images, n_copies, replace=False)):
        source = written[source_index]
        other_subset = "Training" if source.parts[0] == "Testing" else "Testing"
        relpath = Path(other_subset) / source.parts[1] / f"copy_{copy_index:03d}_of_{source.stem}.jpg"
        with (
            Image.open(root / source) as image,
            Image.open(root / "masks" / source.with_suffix(".png")) as mask,
        ):
            if copy_index % 2 == 0:
                _save(root, relpath, None, mask)  # creates the folders first
                (root / relpath).write_bytes((root / source).read_bytes())
            else:
                smaller = (int(image.width * 0.8), int(image.height * 0.8))
                resized = image.resize(smaller, Image.LANCZOS)
                _save(root, relpath, resized, mask.resize(smaller, Image.NEAREST), quality=80)
    (root / "SYNTHETIC.txt").write_text(
        f"Synthetic brain-MRI phantoms written by medclass.synthetic (n={n_images}, seed={seed}, "
        f"{n_copies} planted copies).\n"
        "Not real patients. Every number computed on these images is a synthetic result.\n"
    )
    return root


def write_synthetic_br35h(
    root: str | Path, brain_root: str | Path, n_tumours: int = 240, seed: int = 1
) -> Path:
    """Write a synthetic Br35H under ``root`` that relates to the synthetic Brain Tumor MRI set
    at ``brain_root`` as the real ones do: ``no/`` holds byte-identical copies of its Healthy
    slices; ``yes/`` holds ``n_tumours`` new Tumor slices saved in the Healthy source's style,
    plus a few byte-identical copies of its Tumor slices. Tumour masks go to ``root/masks/``.
    """
    root, brain_root = Path(root), Path(brain_root)
    rng = np.random.default_rng(seed)
    healthy = sorted(brain_root.glob(f"*/{HEALTHY_FOLDER}/*.jpg"))
    tumours = sorted(p for folder in TUMOR_FOLDERS for p in brain_root.glob(f"*/{folder}/*.jpg"))
    (root / "no").mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(healthy):
        (root / "no" / f"no{index}.jpg").write_bytes(path.read_bytes())
    for index in range(n_tumours):
        picture, mask = in_healthy_source_style(make_phantom(rng, tumor=True, size=256), rng)
        _save(root, Path("yes") / f"y{index}.jpg", picture, mask)
    n_copies = max(1, n_tumours // 20)
    for copy_index, source_index in enumerate(rng.choice(len(tumours), n_copies, replace=False)):
        (root / "yes" / f"y{n_tumours + copy_index}.jpg").write_bytes(tumours[source_index].read_bytes())
    (root / "SYNTHETIC.txt").write_text(
        f"Synthetic Br35H written by medclass.synthetic (seed={seed}): no/ copies the synthetic "
        f"Healthy slices of {brain_root.name}, yes/ holds {n_tumours} new tumour phantoms in the "
        f"Healthy slices' style and {n_copies} copies of its Tumor slices.\n"
        "Not real patients. Every number computed on these images is a synthetic result.\n"
    )
    return root


def _save(root: Path, relpath: Path, image: Image.Image | None, mask: Image.Image, quality: int = 92) -> None:
    """Save an image (JPEG) and its mask (PNG) under ``root`` and ``root/masks``."""
    mask_path = root / "masks" / relpath.with_suffix(".png")
    for path in (root / relpath, mask_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    if image is not None:
        image.save(root / relpath, "JPEG", quality=quality)
    mask.save(mask_path, "PNG")


def read_mask(root: str | Path, image_path: str | Path) -> np.ndarray:
    """Return the boolean tumour mask that belongs to a synthetic image under ``root``."""
    root, image_path = Path(root).resolve(), Path(image_path)
    relpath = image_path.resolve().relative_to(root) if image_path.is_absolute() else image_path
    return np.asarray(Image.open(root / "masks" / relpath.with_suffix(".png"))) > 127
