"""The ``tf.data`` input pipeline: decode, resize, cache, shuffle, batch, prefetch.

Defined in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def decode_and_resize(path: tf.Tensor, image_size: Sequence[int]) -> tf.Tensor:
    """Read one file (JPEG, PNG, BMP or GIF, whatever its name) as an RGB uint8 image."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    image = tf.image.resize(image, image_size, antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)


def label_indices(frame: pd.DataFrame, class_names: Sequence[str]) -> list[int]:
    """Map each row's label to its index in ``class_names``, naming any unknown label."""
    unknown = set(frame["label"]) - set(class_names)
    if unknown:
        raise ValueError(f"Labels {sorted(unknown)} are not among the class names {list(class_names)}.")
    return [list(class_names).index(label) for label in frame["label"]]


def make_dataset(
    frame: pd.DataFrame,
    class_names: Sequence[str],
    image_size: Sequence[int],
    batch_size: int,
    training: bool = False,
    augment: Callable | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of (float32 images in 0-255, labels) from a DataFrame of paths and labels.

    Decoded, resized images are cached in memory as uint8. Only a ``training`` dataset is
    shuffled and passed through ``augment``; validation and test data stay untouched.
    Binary tasks get float labels for a sigmoid output, multi-class tasks integer ones.
    """
    if frame.empty:
        raise ValueError("Cannot build a dataset from an empty DataFrame; check the split.")
    labels = label_indices(frame, class_names)
    label_dtype = tf.float32 if len(class_names) == 2 else tf.int32
    image_size = tuple(int(side) for side in image_size)
    dataset = tf.data.Dataset.from_tensor_slices(
        (frame["path"].astype(str).tolist(), tf.constant(labels, dtype=label_dtype))
    )
    dataset = dataset.map(
        lambda path, label: (decode_and_resize(path, image_size), label), num_parallel_calls=AUTOTUNE
    ).cache()
    if training:
        dataset = dataset.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(
        lambda images, labels: (tf.cast(images, tf.float32), labels), num_parallel_calls=AUTOTUNE
    )
    if training and augment is not None:
        dataset = dataset.map(
            lambda images, labels: (augment(images, training=True), labels),
            num_parallel_calls=AUTOTUNE,
        )
    return dataset.prefetch(AUTOTUNE)


def load_image(path: str, image_size: Sequence[int]) -> tf.Tensor:
    """One image as the pipeline sees it, as a float32 batch of one (for prediction)."""
    image = decode_and_resize(tf.constant(str(path)), tuple(image_size))
    return tf.cast(image, tf.float32)[tf.newaxis]
