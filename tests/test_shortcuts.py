"""The shortcut audit, the source standardisation inside the model, and Br35H joined without
counting a copy twice (issue: the brain model learned where an image came from)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclass import audit, augment, data, models, shortcuts, splits, synthetic
from tests.conftest import REAL_BRAIN, SHARED

REAL_BR35H = SHARED / "data" / "br35h"


@pytest.fixture(scope="module")
def joined_synthetic(tmp_path_factory):
    """The synthetic brain set (planted source cue) and its synthetic Br35H, joined."""
    root = tmp_path_factory.mktemp("sources")
    brain = synthetic.write_synthetic_brain_mri(root / "brain-tumor-mri", n_images=80, seed=5, size=128)
    synthetic.write_synthetic_br35h(root / "br35h", brain, n_tumours=60, seed=6)
    frame = data.load_dataset("brain_mri", root)
    external = data.load_dataset("br35h", root)
    hashes = audit.perceptual_hashes(frame["path"])
    external_hashes = audit.perceptual_hashes(external["path"])
    return (frame, external, *audit.without_copies(frame, hashes, external, external_hashes))


def test_br35h_is_in_the_registry_and_loads_its_yes_no_layout(joined_synthetic):
    _, external, *_ = joined_synthetic
    assert data.dataset_info("br35h").class_names == ("Healthy", "Tumor")
    assert set(external["source_class"]) == {"yes", "no"}
    assert set(external["source"]) == {"br35h"}
    assert dict(zip(external["source_class"], external["label"], strict=True)) == {
        "yes": "Tumor",
        "no": "Healthy",
    }


def test_no_br35h_copy_of_a_brain_tumor_mri_image_is_counted_twice(joined_synthetic):
    frame, external, joined, new, copies = joined_synthetic
    assert len(new) + len(copies) == len(external)
    # Every no/ slice is a byte copy of a Healthy slice; three yes/ slices copy Tumor slices.
    assert (copies["source_class"] == "no").sum() == (external["source_class"] == "no").sum()
    copied_tumours = copies.loc[copies["source_class"] == "yes", "path"].map(
        lambda p: int(p.split("/y")[-1][:-4])
    )
    assert set(range(60, 63)) <= set(copied_tumours), "the planted byte copies are found"
    assert not set(new["group"]) & set(joined["group"]), "new images share no group with the dataset"
    assert (new["label"] == "Tumor").all() and len(new) > 10


def test_a_rewindowed_copy_is_caught_by_correlation_where_the_hash_misses_it(tmp_path):
    rng = np.random.default_rng(0)
    slice_ = synthetic.make_phantom(rng, tumor=True, size=128).image
    other = synthetic.make_phantom(rng, tumor=True, size=128).image
    rewindowed = np.clip((slice_.astype(float) - 40) * 1.6, 0, 255).astype(np.uint8)  # another window
    paths = []
    for name, pixels in (("a", slice_), ("b", other), ("c", rewindowed)):
        paths.append(str(tmp_path / f"{name}.png"))
        Image.fromarray(pixels).save(paths[-1])
    frame = pd.DataFrame({"path": paths[:2], "label": "Tumor", "group": ["a", "b"]})
    external = pd.DataFrame({"path": paths[2:], "label": "Tumor", "group": ["c"]})
    hashes, external_hashes = (
        audit.perceptual_hashes(frame["path"]),
        audit.perceptual_hashes(external["path"]),
    )
    distance = audit.hamming_distances(hashes[:1], external_hashes)[0, 0]
    _, new, copies = audit.without_copies(
        frame, hashes, external, external_hashes, max_distance=int(distance) - 1
    )
    assert len(copies) == 1 and new.empty
    assert copies["best_correlation"].iloc[0] >= audit.MIN_CORRELATION


def test_split_external_holds_out_the_same_half_whatever_the_recipe(joined_synthetic):
    *_, new, _ = joined_synthetic
    with_pool = splits.split_external(new, in_training=True, seed=1)
    without = splits.split_external(new, in_training=False, seed=1)
    for name in splits.EXTERNAL_SPLITS:
        assert set(with_pool.loc[with_pool.split == name, "path"]) == set(
            without.loc[without.split == name, "path"]
        )
    assert set(without["split"]) == {"external_val", "external_test", "unused"}
    assert {"train", "val"} <= set(with_pool["split"])
    assert (with_pool.groupby("group")["split"].nunique() == 1).all(), "a group is never split"
    held_out = with_pool["split"].isin(splits.EXTERNAL_SPLITS).mean()
    assert 0.3 < held_out < 0.7


def test_balance_source_makes_the_healthy_source_label_balanced_in_training():
    train = pd.DataFrame(
        {
            "path": [f"h{i}" for i in range(10)] + [f"f{i}" for i in range(20)] + [f"b{i}" for i in range(4)],
            "label": ["Healthy"] * 10 + ["Tumor"] * 24,
            "source": ["brain_mri"] * 30 + ["br35h"] * 4,
        }
    )
    train.attrs = {"skipped": pd.DataFrame({"path": ["bad.jpg"]}), "synthetic": True}  # as loaded
    balanced = splits.balance_source(train, "br35h", "Tumor", "Healthy", seed=3)
    br35h_tumours = balanced[(balanced.source == "br35h") & (balanced.label == "Tumor")]
    assert len(br35h_tumours) == 10, "as many Br35H tumour rows as Healthy rows"
    assert br35h_tumours["path"].value_counts().max() - br35h_tumours["path"].value_counts().min() <= 1
    assert balanced[balanced.source != "br35h"].equals(train[train.source != "br35h"]), "others untouched"
    assert balanced.equals(splits.balance_source(train, "br35h", "Tumor", "Healthy", seed=3))
    assert balanced.attrs["synthetic"] and len(balanced.attrs["skipped"]) == 1
    assert splits.balance_source(train.drop(columns="source"), "br35h", "Tumor", "Healthy") is not None
    skin = train[train.source != "br35h"]
    assert splits.balance_source(skin, "br35h", "Tumor", "Healthy").equals(skin), "no such source: unchanged"


def test_the_planted_source_cue_is_found_and_shuffled_labels_find_nothing(joined_synthetic):
    _, _, frame, *_ = joined_synthetic
    properties = shortcuts.file_properties(frame)
    scores = shortcuts.shortcut_scores(properties, frame["label"], frame["group"], seed=0)
    assert (scores["ROC-AUC"] > 0.95).all(), scores
    # Control: with the labels shuffled the same properties carry no information. One
    # shuffle of 80 images can reach 0.6 by chance, so the average of five is asserted.
    rng = np.random.default_rng(0)
    chance = [
        shortcuts.shortcut_scores(
            properties, rng.permutation(frame["label"].to_numpy()), frame["group"], seed=0
        )["ROC-AUC"].mean()
        for _ in range(5)
    ]
    assert 0.35 < np.mean(chance) < 0.62, chance


def test_standardisation_makes_the_sources_harder_to_tell_apart(joined_synthetic):
    _, _, frame, new, _ = joined_synthetic
    tumours = splits.join_frames(frame[frame["label"] == "Tumor"], new)
    raw, standardised = (
        shortcuts.source_separability(
            shortcuts.thumbnails(tumours, standardise=standardise), tumours["source"], tumours["group"]
        )[("ROC-AUC", "value")]
        for standardise in (False, True)
    )
    assert raw > 0.95
    assert standardised < raw - 0.05


def test_slice_standardisation_removes_colour_border_and_brightness():
    rng = np.random.default_rng(1)
    grey = synthetic.make_phantom(rng, tumor=True, size=128).image.astype("float32")
    as_rgb = np.repeat(grey[..., None], 3, axis=-1)
    tinted = np.clip(as_rgb * 0.6 + [12.0, 0.0, -12.0], 0, 255)  # darker, with a colour cast
    framed = np.zeros((128, 128, 3), "float32")  # the same head smaller, inside a black border
    framed[16:112, 16:112] = np.asarray(Image.fromarray(grey.astype("uint8")).resize((96, 96)))[..., None]
    layer = models.SliceStandardisation()
    outputs = np.asarray(layer(np.stack([as_rgb, tinted, framed])))
    assert np.allclose(outputs[..., 0], outputs[..., 1]) and np.allclose(outputs[..., 0], outputs[..., 2])
    assert np.abs(outputs[0] - outputs[1]).mean() < 3, "brightness and tint are gone"
    assert np.abs(outputs[0] - outputs[2]).mean() < 8, "the border is cropped away"
    assert np.abs(as_rgb - framed).mean() > 4 * np.abs(outputs[0] - outputs[2]).mean()
    assert models.SliceStandardisation.from_config(layer.get_config()).get_config() == layer.get_config()


def test_a_standardised_model_saves_and_loads_in_safe_mode(tmp_path):
    import keras

    model, _ = models.build_classifier("mobilenet_v2", None, (48, 48), 2, alpha=0.35, standardise=True)
    assert model.get_layer("standardise")
    images = np.random.default_rng(0).uniform(0, 255, (2, 60, 70, 3)).astype("float32")
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict_on_batch(images), model.predict_on_batch(images), atol=1e-5)


def test_source_augmentation_varies_contrast_resolution_and_noise():
    import tensorflow as tf

    ramp = np.linspace(0, 255, 32, dtype="float32")
    images = tf.constant(np.broadcast_to(ramp[None, None, :, None], (4, 32, 32, 3)).copy())
    changed = augment.random_acquisition(images, seed=3).numpy()
    assert changed.shape == tuple(images.shape)
    assert changed.min() >= 0 and changed.max() <= 255
    assert np.abs(changed - images.numpy()).mean() > 2
    assert len({round(float(image.mean()), 1) for image in changed}) > 1, "one draw per image"
    # Inside tf.data, ops with equal seeds draw equal numbers: combined with "mild", the gamma
    # would follow the rotation angle. Both drawn in one map function must differ.
    ones = tf.data.Dataset.from_tensors(tf.ones([4, 8, 8, 3]) * 127.5)
    angle, gamma = next(
        iter(
            ones.map(
                lambda x: (
                    tf.random.uniform([4, 1, 1, 1], -0.35, 0.35, seed=3),  # random_affine's first draw
                    tf.math.log(
                        tf.math.log(
                            augment.random_acquisition(x, 3, min_scale=1.0, noise=0.0)[:, :1, :1, :1] / 255
                        )
                        / tf.math.log(0.5)
                    ),
                )
            )
        )
    )
    assert not np.allclose(angle.numpy(), gamma.numpy(), atol=1e-4)
    batch, labels = augment.make_augmentation("mild+source", 0, num_classes=2)(images, tf.zeros(4))
    assert batch.shape == images.shape and labels.shape == (4,)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_BR35H.is_dir(), reason=f"Br35H not found at {REAL_BR35H}")
def test_real_br35h_copies_of_brain_tumor_mri_are_all_left_out(real_brain_frame):
    """The shared data's README lists which Br35H files have a byte-identical original or a
    near-copy (thumbnail correlation >= 0.95) in brain-tumor-mri: the join must find them all."""
    external = data.load_dataset("br35h", REAL_BR35H)
    frame, new, copies = audit.without_copies(
        real_brain_frame,
        audit.perceptual_hashes(real_brain_frame["path"]),
        external,
        audit.perceptual_hashes(external["path"]),
    )
    overlap = pd.read_csv(REAL_BR35H / "OVERLAP_WITH_BRAIN_TUMOR_MRI.csv")
    known = overlap[overlap["exact_match_in_b"].notna() | (overlap["corr32"] >= 0.95)]
    root = REAL_BR35H.resolve()  # load_dataset reads the resolved folder (../shared may be a link)
    left_out = {str(Path(path).relative_to(root)) for path in copies["path"]}
    assert set(known["a_relpath"]) <= left_out
    assert (copies["source_class"] == "no").sum() == 1500
    assert 1300 < len(new) <= 1405 and (new["label"] == "Tumor").all()
    assert not set(new["group"]) & set(frame["group"])
    assert REAL_BRAIN.is_dir()
