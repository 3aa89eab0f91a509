"""Augmentation policies: each changes images, label mixing mixes labels, seeds repeat."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from medclass import augment, pipeline
from tests.conftest import write_image


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    # Structured images (an off-centre bright square on a gradient), so that flips and shifts show.
    images = np.stack([np.stack([xx * 2 + 40 * i, yy * 3, (xx > 40) * 200], -1) for i in range(6)])
    images = images + rng.uniform(0, 10, images.shape)
    return tf.constant(images.astype("float32")), tf.constant([0, 1, 2, 3, 4, 5])


@pytest.mark.parametrize("policy", [p for p in augment.POLICIES if p not in augment.LABEL_MIXING])
def test_every_image_policy_changes_images_and_keeps_labels(batch, policy):
    images, labels = batch
    transform = augment.make_augmentation(policy, seed=1, num_classes=6)
    changed, same_labels = transform(images, labels)
    assert changed.shape == images.shape
    assert np.abs(changed.numpy() - images.numpy()).mean() > 0.5, policy
    assert same_labels.numpy().tolist() == labels.numpy().tolist()
    assert changed.numpy().min() >= 0 and changed.numpy().max() <= 255


@pytest.mark.parametrize("policy", sorted(augment.LABEL_MIXING))
def test_mixup_and_cutmix_mix_labels(batch, policy):
    images, labels = batch
    mixed_images, mixed_labels = augment.make_augmentation(policy, seed=1, num_classes=6)(images, labels)
    mixed_labels = mixed_labels.numpy()
    assert mixed_labels.shape == (6, 6)
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1, atol=1e-5)
    assert (np.count_nonzero(mixed_labels > 1e-6, axis=1) == 2).any(), "some labels mix two classes"
    assert not np.allclose(mixed_images.numpy(), images.numpy())


def test_label_mixing_refuses_binary_tasks_and_unknown_policies():
    with pytest.raises(ValueError, match="multi-class"):
        augment.make_augmentation("mixup", seed=0, num_classes=2)
    with pytest.raises(ValueError, match="Unknown augmentation policy 'autoaugment'"):
        augment.make_augmentation("autoaugment", seed=0, num_classes=2)


def test_policies_compose_with_mixing_last(batch):
    images, labels = batch
    mixed_images, mixed_labels = augment.make_augmentation("flips+cutmix", seed=1, num_classes=6)(
        images, labels
    )
    assert mixed_labels.shape == (6, 6)
    one_hot = tf.one_hot(labels, 6)
    _, from_one_hot = augment.make_augmentation("mild+mixup", seed=1, num_classes=6)(images, one_hot)
    np.testing.assert_allclose(from_one_hot.numpy().sum(axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="as the last policy"):
        augment.make_augmentation("mixup+flips", seed=0, num_classes=6)
    with pytest.raises(ValueError, match="at most one"):
        augment.make_augmentation("mixup+cutmix", seed=0, num_classes=6)


def test_every_keras_cv_layer_has_a_keras_equivalent():
    import inspect

    used = set()
    for name in dir(augment.keras_cv.layers):
        if f"keras_cv.layers.{name}(" in inspect.getsource(augment):
            used.add(f"keras_cv.layers.{name}")
    assert used and used <= set(augment.KERAS_EQUIVALENTS)


@pytest.mark.parametrize("policy", augment.POLICIES)
def test_every_policy_runs_inside_a_training_pipeline(tmp_path, policy):
    paths = [write_image(tmp_path / f"{i}.png", mode="RGB", fmt="PNG", seed=i) for i in range(8)]
    classes = ["a", "b", "c"]
    frame = pd.DataFrame({"path": [str(p) for p in paths], "label": [classes[i % 3] for i in range(8)]})
    transform = augment.make_augmentation(policy, seed=0, num_classes=3)
    train_ds = pipeline.make_dataset(frame, classes, (32, 32), 4, training=True, augment=transform)
    val_ds = pipeline.make_dataset(frame, classes, (32, 32), 4, augment=transform)
    train_images, train_labels = next(iter(train_ds))
    val_images, val_labels = next(iter(val_ds))
    assert train_images.shape == (4, 32, 32, 3)
    assert train_labels.shape == val_labels.shape == (4, 3), "multi-class labels are one-hot rows"
    np.testing.assert_array_equal(
        np.sort(val_labels.numpy(), axis=1)[:, -1], 1, "validation data is never mixed"
    )
    plain = next(iter(pipeline.make_dataset(frame, classes, (32, 32), 4)))[0]
    np.testing.assert_array_equal(val_images.numpy(), plain.numpy())


def test_the_colour_policy_turns_colours_but_leaves_grey_alone_without_gain():
    grey = tf.fill([4, 8, 8, 3], 120.0)
    np.testing.assert_allclose(augment.random_colour(grey, seed=3, gain=0.0).numpy(), 120.0, atol=0.5)
    red = tf.concat([tf.fill([4, 8, 8, 1], 200.0), tf.fill([4, 8, 8, 2], 60.0)], axis=-1)
    turned = augment.random_colour(red, seed=3, gain=0.0).numpy()
    assert not np.allclose(turned, red.numpy(), atol=1.0)
    assert (turned[..., 0] > turned[..., 1]).all(), "a small turn keeps red red"
