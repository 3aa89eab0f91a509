"""Augmentation policies, applied to training batches only.

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb) (the mild and
source policies); the policies are compared in chapter "Augmentation"
(notebooks/augmentation.ipynb).

Each policy is a function ``(images, labels) -> (images, labels)`` on a batch, for
``tf.data.Dataset.map``. The layers come from keras-cv, as the book's design asks; keras-cv is
in maintenance mode (its successor, keras-hub, carries models rather than these layers), so
``KERAS_EQUIVALENTS`` names the Keras 3 core layer that does the same job for each one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras_cv
import tensorflow as tf

from medclass import figures

VALUE_RANGE = (0, 255)

# keras-cv layer -> the Keras 3 core layer that replaces it.
KERAS_EQUIVALENTS = {
    "keras_cv.layers.RandomFlip": "keras.layers.RandomFlip",
    "keras_cv.layers.RandomRotation": "keras.layers.RandomRotation",
    "keras_cv.layers.RandomZoom": "keras.layers.RandomZoom",
    "keras_cv.layers.RandomTranslation": "keras.layers.RandomTranslation",
    "keras_cv.layers.RandomBrightness": "keras.layers.RandomBrightness",
    "keras_cv.layers.RandomContrast": "keras.layers.RandomContrast",
    "keras_cv.layers.RandAugment": "keras.layers.RandAugment (Keras >= 3.6)",
    "keras_cv.layers.MixUp": "keras.layers.MixUp (Keras >= 3.6)",
    "keras_cv.layers.CutMix": "keras.layers.CutMix (Keras >= 3.8)",
}

# "mild" is this module's own fused affine transform (random_affine), the equivalent of Keras's
# RandomRotation + RandomZoom + RandomTranslation in one pass.
# "source" is this module's own too (random_acquisition): what differs between scanners and
# sources that preprocessing does not remove (contrast curve, resolution, noise).
# "colour" is this module's own too (random_colour): what another camera, light or white
# balance changes in a dermatoscopic photograph (saturation, hue, the gain of each channel).
POLICIES = ("mild", "flips", "geometric", "photometric", "colour", "source", "randaugment", "mixup", "cutmix")
LABEL_MIXING = {"mixup", "cutmix"}


def random_affine(images, seed: int, rotation: float = 0.03, zoom: float = 0.1, translation: float = 0.05):
    """Rotate, zoom and shift each image of a batch in one resampling pass.

    ``rotation`` is a fraction of a full turn, ``zoom`` and ``translation`` fractions of the
    image size, as in Keras's RandomRotation, RandomZoom and RandomTranslation. One fused
    projective transform costs a third of those three layers applied one after another.
    """
    shape = tf.shape(images)
    batch = shape[0]
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    angle = tf.random.uniform([batch], -rotation, rotation, seed=seed) * 2 * math.pi
    scale = tf.random.uniform([batch], 1 - zoom, 1 + zoom, seed=seed + 1)
    shift_x = tf.random.uniform([batch], -translation, translation, seed=seed + 2) * width
    shift_y = tf.random.uniform([batch], -translation, translation, seed=seed + 3) * height
    center_x, center_y = (width - 1) / 2, (height - 1) / 2
    # Output pixel (x, y) samples input pixel M (x - c) + c + shift, M = scale * rotation.
    a0, a1 = scale * tf.cos(angle), -scale * tf.sin(angle)
    b0, b1 = scale * tf.sin(angle), scale * tf.cos(angle)
    a2 = center_x - a0 * center_x - a1 * center_y + shift_x
    b2 = center_y - b0 * center_x - b1 * center_y + shift_y
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def random_acquisition(images, seed: int, gamma: float = 0.35, min_scale: float = 0.4, noise: float = 6.0):
    """Vary what a scanner and a source's export change, one draw per image of a batch:
    the contrast curve (gamma in ``exp(±gamma)``), the resolution (down to ``min_scale`` of the
    size and back up, blurring as a smaller original does) and Gaussian noise (up to ``noise``
    grey levels). Pixels stay in 0-255.

    Defined in chapter "Brain MRI: the data" (the shortcut audit): it aims at the source cues that
    :class:`medclass.models.SliceStandardisation` leaves.
    """
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    seed += 10  # random_affine draws with seed to seed + 3: "mild+source" must not reuse them
    exponent = tf.exp(tf.random.uniform([batch, 1, 1, 1], -gamma, gamma, seed=seed))
    images = 255.0 * tf.pow(tf.clip_by_value(images, 0.0, 255.0) / 255.0, exponent)
    scale = tf.random.uniform([], min_scale, 1.0, seed=seed + 1)  # one per batch: resize needs one size
    small = tf.maximum(tf.cast(tf.round(tf.cast(tf.stack([height, width]), tf.float32) * scale), tf.int32), 1)
    images = tf.image.resize(tf.image.resize(images, small, antialias=True), [height, width])
    sigma = tf.random.uniform([batch, 1, 1, 1], 0.0, noise, seed=seed + 2)
    images = images + sigma * tf.random.normal(tf.shape(images), seed=seed + 3)
    return tf.clip_by_value(images, 0.0, 255.0)


def random_colour(images, seed: int, saturation: float = 0.3, hue: float = 0.03, gain: float = 0.1):
    """Change each image's colours as another camera, lamp or white balance would: saturation
    times ``1 ± saturation``, hue turned by up to ``hue`` of a full turn, and each channel times
    ``1 ± gain``. One draw per image of a batch; pixels stay in 0-255.

    Defined in chapter "Skin lesions: training"; ``medclass.colour`` measures the same four
    kinds of shift on the test split.
    """
    batch = tf.shape(images)[0]
    seed += 20  # "mild" and "source" draw with seed to seed + 13
    hsv = tf.image.rgb_to_hsv(tf.clip_by_value(images, 0.0, 255.0) / 255.0)
    turn = tf.random.uniform([batch, 1, 1], -hue, hue, seed=seed)
    scale = tf.random.uniform([batch, 1, 1], 1 - saturation, 1 + saturation, seed=seed + 1)
    hsv = tf.stack(
        [
            tf.math.floormod(hsv[..., 0] + turn, 1.0),
            tf.clip_by_value(hsv[..., 1] * scale, 0.0, 1.0),
            hsv[..., 2],
        ],
        axis=-1,
    )
    gains = tf.random.uniform([batch, 1, 1, 3], 1 - gain, 1 + gain, seed=seed + 2)
    return tf.clip_by_value(tf.image.hsv_to_rgb(hsv) * 255.0 * gains, 0.0, 255.0)


def _image_layers(policy: str, seed: int) -> list:
    if policy == "colour":
        return [lambda images, training: random_colour(images, seed)]
    if policy == "mild":
        return [lambda images, training: random_affine(images, seed)]
    if policy == "source":
        return [lambda images, training: random_acquisition(images, seed)]
    if policy == "flips":
        return [keras_cv.layers.RandomFlip("horizontal_and_vertical", seed=seed)]
    if policy == "geometric":
        return [
            keras_cv.layers.RandomFlip("horizontal", seed=seed),
            keras_cv.layers.RandomRotation(0.08, fill_mode="constant", seed=seed + 1),
            keras_cv.layers.RandomZoom(0.15, fill_mode="constant", seed=seed + 2),
            keras_cv.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=seed + 3),
        ]
    if policy == "photometric":
        return [
            keras_cv.layers.RandomBrightness(0.15, value_range=VALUE_RANGE, seed=seed),
            keras_cv.layers.RandomContrast(value_range=VALUE_RANGE, factor=0.25, seed=seed + 1),
        ]
    if policy == "randaugment":
        return [
            keras_cv.layers.RandAugment(
                value_range=VALUE_RANGE, augmentations_per_image=2, magnitude=0.3, seed=seed
            )
        ]
    return []


def make_augmentation(policy: str, seed: int, num_classes: int) -> Callable:
    """The batch function for ``policy``: one name of ``POLICIES``, or several joined by "+"
    and applied in order ("flips+cutmix"). MixUp and CutMix, which must come last, turn labels
    into mixed one-hots."""
    names = policy.split("+")
    for name in names:
        if name not in POLICIES:
            raise ValueError(f"Unknown augmentation policy {name!r}; choose from {POLICIES}, joined by '+'.")
    mixing = [name for name in names if name in LABEL_MIXING]
    if mixing and (len(mixing) > 1 or names[-1] not in LABEL_MIXING):
        raise ValueError(f"In {policy!r}, use at most one of {sorted(LABEL_MIXING)}, as the last policy.")
    if mixing and num_classes < 3:
        raise ValueError(f"{mixing[0]} mixes class labels; use it for multi-class tasks, not binary ones.")
    stack = [layer for name in names if name not in LABEL_MIXING for layer in _image_layers(name, seed)]
    mixer = None
    if mixing:
        mixer = (
            keras_cv.layers.MixUp(seed=seed) if mixing[0] == "mixup" else keras_cv.layers.CutMix(seed=seed)
        )

    def transform(images, labels):
        for layer in stack:
            images = layer(images, training=True)
        images = tf.clip_by_value(images, *VALUE_RANGE)
        if mixer is not None:
            if labels.shape.rank == 1:
                labels = tf.one_hot(tf.cast(labels, tf.int32), num_classes)
            mixed = mixer({"images": images, "labels": tf.cast(labels, tf.float32)}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        return images, labels

    return _built(transform)


def _built(transform: Callable) -> Callable:
    """Call ``transform`` once eagerly, so that keras-cv layers create their random-generator
    variables now: ``tf.data`` traces its map functions, and variables cannot be created there."""
    transform(tf.zeros([2, 16, 16, 3]), tf.constant([0, 1]))
    return transform


def plot_policies(images, labels, policies, seed: int, num_classes: int, class_names=None):
    """One row per policy (the originals first), one column per image of the batch."""
    import numpy as np

    rows = [("original", images, None)]
    for policy in policies:
        changed, mixed = make_augmentation(policy, seed, num_classes)(images, labels)
        rows.append((policy, changed, mixed if policy.split("+")[-1] in LABEL_MIXING else None))
    n_images = images.shape[0]
    figure, axes = figures.grid(len(rows), n_images, cell=(1.9, 2.0))
    for row, (policy, batch, mixed) in enumerate(rows):
        for column in range(n_images):
            axis = axes[row, column]
            axis.imshow(np.clip(np.asarray(batch[column]), 0, 255).astype("uint8"))
            axis.set_xticks([])
            axis.set_yticks([])
            if mixed is not None and class_names is not None:
                shares = np.asarray(mixed[column])
                top = shares.argsort()[::-1][:2]
                axis.set_title(
                    " + ".join(f"{shares[i]:.2f} {class_names[i]}" for i in top if shares[i] > 0.005),
                    fontsize=7,
                )
        axes[row, 0].set_ylabel(policy, fontsize=9)
    return figure
