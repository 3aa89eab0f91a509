"""Controlled colour shifts and the robustness curve (issue 17, item 4)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from medclass import colour

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(20, 235, size=(4, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize("kind", sorted(colour.SHIFTS))
def test_no_shift_at_zero_and_a_change_at_every_amount(kind):
    assert np.allclose(colour.shift(IMAGES, kind, 0.0), IMAGES, atol=0.05)
    for amount in colour.SHIFTS[kind][1]:
        shifted = np.asarray(colour.shift(IMAGES, kind, amount))
        assert shifted.shape == IMAGES.shape and 0 <= shifted.min() and shifted.max() <= 255.01
        assert np.abs(shifted - IMAGES).mean() > 1.0, (kind, amount)


def test_each_shift_does_what_its_name_says():
    grey = np.asarray(colour.shift(IMAGES, "saturation", -1.0))
    assert np.allclose(grey[..., 0], grey[..., 1], atol=1e-3) and np.allclose(
        grey[..., 1], grey[..., 2], atol=1e-3
    )
    warm = np.asarray(colour.shift(IMAGES, "white balance", 0.1))
    assert (warm[..., 0] >= IMAGES[..., 0]).all() and (warm[..., 2] < IMAGES[..., 2]).all()
    assert np.allclose(warm[..., 1], IMAGES[..., 1])
    darker = np.asarray(colour.shift(IMAGES, "gamma", 0.5))
    assert (darker <= IMAGES + 1e-3).all()
    turned = colour.shift(colour.shift(IMAGES, "hue", 0.05), "hue", -0.05)
    assert np.allclose(turned, IMAGES, atol=1.0)


def test_an_unknown_shift_is_named():
    with pytest.raises(ValueError, match="Unknown colour shift 'blur'"):
        colour.shift(IMAGES, "blur", 0.1)


def test_the_curve_measures_every_shift_on_the_same_images():
    labels = np.array([0, 1, 0, 1])
    dataset = tf.data.Dataset.from_tensor_slices((IMAGES, labels)).batch(2)

    def predict(batches):
        images, truth = zip(*((np.asarray(x), np.asarray(y)) for x, y in batches), strict=True)
        return np.concatenate(truth), np.concatenate(images)

    def score(truth, images):
        return {"images": len(truth), "red minus blue": float(images[..., 0].mean() - images[..., 2].mean())}

    curve = colour.robustness_curve(dataset, predict, score)
    assert len(curve) == 1 + sum(len(amounts) for _, amounts in colour.SHIFTS.values())
    assert (curve["images"] == 4).all()
    red = curve.set_index(["shift", "amount"])["red minus blue"]
    # each point is its own shift: warmer light raises red over blue, cooler lowers it
    assert red[("white balance", 0.15)] > red[("white balance", 0.075)] > red[("none", 0.0)]
    assert red[("white balance", -0.15)] < red[("none", 0.0)]


def test_the_curve_sample_keeps_every_image_of_a_kept_class_and_caps_the_others():
    import pandas as pd

    frame = pd.DataFrame(
        {"label": ["nv"] * 50 + ["mel"] * 30 + ["df"] * 3, "path": [f"{i}.jpg" for i in range(83)]}
    )
    sample = colour.curve_sample(frame, per_class=10, keep=["mel"], seed=0)
    assert sample["label"].value_counts().to_dict() == {"mel": 30, "nv": 10, "df": 3}
    assert sample.equals(colour.curve_sample(frame, per_class=10, keep=["mel"], seed=0))
    assert not sample.equals(colour.curve_sample(frame, per_class=10, keep=["mel"], seed=1))
