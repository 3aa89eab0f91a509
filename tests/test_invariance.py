"""The published brain model answers about the slice, not about the file it came in.

The same slice saved as greyscale or RGB, as JPEG or PNG, at 256 or 512 px, must get nearly the
same P(Tumor) from the exported model (book/published/cpu/models/brain_mri), read the way the
evaluation chapter and ``python -m medclass.report`` read images. The bound below is about
twice the largest change measured on these slices when the test was written.
"""

from __future__ import annotations

import io
from itertools import product

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from medclass import pipeline, saved_models, synthetic
from tests.conftest import REAL_BRAIN, ROOT

MODEL = ROOT / "book" / "published" / "cpu" / "models" / "brain_mri"
# Largest |change in P(Tumor)| allowed between two files of one slice. Measured with the model
# published on 2026-12-01 on the 12 real slices below: 0.024 at worst, median 0.001.
MAX_CHANGE = 0.05
MODES, FORMATS, SIDES = ("L", "RGB"), ("JPEG", "PNG"), (256, 512)


def slices(n: int = 12) -> list[np.ndarray]:
    """Greyscale slices: real ones (half Healthy, half Tumor) when the data is here, else phantoms."""
    if REAL_BRAIN.is_dir():
        paths = sorted((REAL_BRAIN / "Testing" / "notumor").glob("*.jpg"))[: n // 2]
        paths += sorted((REAL_BRAIN / "Testing" / "glioma").glob("*.jpg"))[: n // 4]
        paths += sorted((REAL_BRAIN / "Testing" / "meningioma").glob("*.jpg"))[: n - len(paths)]
        return [np.asarray(Image.open(path).convert("L")) for path in paths]
    rng = np.random.default_rng(0)
    return [synthetic.make_phantom(rng, tumor=index % 2 == 1).image for index in range(n)]


def encoded(pixels: np.ndarray, mode: str, file_format: str, side: int) -> bytes:
    image = Image.fromarray(pixels).resize((side, side), Image.LANCZOS).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, file_format, **({"quality": 92} if file_format == "JPEG" else {}))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_and_size():
    if not (MODEL / "model.keras").is_file():
        pytest.fail(f"No published model at {MODEL}: run make book PROFILE=cpu DATA_DIR=... and commit it.")
    model, info = saved_models.load_model(MODEL)
    return model, tuple(info["image_size"])


def test_the_same_slice_in_another_file_gets_the_same_probability(model_and_size, tmp_path):
    model, size = model_and_size
    variants = list(product(MODES, FORMATS, SIDES))
    changes = []
    for index, pixels in enumerate(slices()):
        batch = []
        for mode, file_format, side in variants:
            path = tmp_path / f"{index}_{mode}_{side}.{file_format.lower()}"
            path.write_bytes(encoded(pixels, mode, file_format, side))
            batch.append(pipeline.decode_and_resize(tf.constant(str(path)), size))
        probabilities = np.asarray(model.predict_on_batch(tf.cast(tf.stack(batch), tf.float32)))[:, 0]
        changes.append(probabilities.max() - probabilities.min())
    worst = float(max(changes))
    print(
        f"largest change of P(Tumor) across {len(variants)} files of one slice: {worst:.4f} "
        f"(median over slices {float(np.median(changes)):.4f})"
    )
    assert worst <= MAX_CHANGE
