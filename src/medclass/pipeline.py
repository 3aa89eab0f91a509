"""The ``tf.data`` input pipeline: decode, resize, cache, shuffle, batch, prefetch.

First used in chapter "Transfer learning" (notebooks/concepts_03_transfer.ipynb); explained in
chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import tensorflow as tf

from medclass.images import read_rgb

AUTOTUNE = tf.data.AUTOTUNE
# Decoded uint8 images up to this size are cached in memory; larger sets go to a disk cache.
MEMORY_CACHE_LIMIT = 3 * 2**30


def cache_location(frame: pd.DataFrame, image_size: Sequence[int], cache_dir: str | Path | None) -> str:
    """Where ``tf.data`` caches decoded images: "" (memory) or a file under ``cache_dir``.

    Memory when the decoded uint8 images fit in ``MEMORY_CACHE_LIMIT`` or no ``cache_dir`` is
    given; otherwise a file named by a hash of the paths and size, so a different split or size
    never reads a stale cache.
    """
    height, width = image_size
    if cache_dir is None or len(frame) * height * width * 3 <= MEMORY_CACHE_LIMIT:
        return ""
    key = hashlib.sha256(("\n".join(frame["path"].astype(str)) + f"{height}x{width}").encode()).hexdigest()[
        :16
    ]
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return str(Path(cache_dir) / f"images-{height}x{width}-{key}")


def resize_image(image, image_size: Sequence[int]) -> tf.Tensor:
    """Resize RGB pixels (one image or a batch) as training does: antialiased, rounded to uint8.

    The model's own ``Resizing`` layer is bilinear without antialiasing, the variant XLA can
    compile; images far larger than the model's input should come through this function first
    (the pipeline's images already do), so that downscaling does not alias.
    """
    image = tf.image.resize(tf.convert_to_tensor(image), image_size, antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)


def decode_and_resize(path: tf.Tensor, image_size: Sequence[int]) -> tf.Tensor:
    """Read one file (JPEG, PNG, BMP or GIF, whatever its name) as RGB uint8 pixels with
    :func:`medclass.images.read_rgb`, the decoder the app uses too, and resize it."""
    image = tf.numpy_function(read_rgb, [path], tf.uint8, stateful=False)
    image.set_shape([None, None, 3])
    return resize_image(image, image_size)


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
    cache_dir: str | Path | None = None,
) -> tf.data.Dataset:
    """Batches of (float32 images in 0-255, labels) from a DataFrame of paths and labels.

    Decoded, resized images are cached as uint8, in memory or, for sets too large for it, in
    ``cache_dir`` (see :func:`cache_location`). Only a ``training`` dataset is
    shuffled and passed through ``augment``, a batch function ``(images, labels) -> (images,
    labels)`` from :func:`medclass.augment.make_augmentation`; validation and test data stay
    untouched.
    Binary tasks get float 0/1 labels for a sigmoid output, multi-class tasks one-hot float
    rows for a softmax (what MixUp, CutMix and the focal loss need).
    """
    if frame.empty:
        raise ValueError("Cannot build a dataset from an empty DataFrame; check the split.")
    labels = label_indices(frame, class_names)
    if len(class_names) == 2:
        labels = tf.constant(labels, dtype=tf.float32)
    else:
        labels = tf.one_hot(labels, len(class_names), dtype=tf.float32)
    image_size = tuple(int(side) for side in image_size)
    dataset = tf.data.Dataset.from_tensor_slices((frame["path"].astype(str).tolist(), labels))
    dataset = dataset.map(
        lambda path, label: (decode_and_resize(path, image_size), label), num_parallel_calls=AUTOTUNE
    ).cache(cache_location(frame, image_size, cache_dir))
    if training:
        dataset = dataset.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    # A training set drops its last partial batch (it is reshuffled every epoch, so no image is
    # left out for good): split over several replicas, a batch of one leaves a replica empty,
    # which BatchNormalization under MirroredStrategy does not survive.
    dataset = dataset.batch(batch_size, drop_remainder=training and len(frame) > batch_size).map(
        lambda images, labels: (tf.cast(images, tf.float32), labels), num_parallel_calls=AUTOTUNE
    )
    if training and augment is not None:
        dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
