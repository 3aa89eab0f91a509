"""Leakage audit: hashes, near-duplicate grouping, and leak counting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclass import audit, synthetic


def test_hamming_distance_counts_differing_bits():
    hashes = np.array([[0b00000000, 0], [0b00000111, 0], [0b11111111, 255]], dtype=np.uint8)
    distances = audit.hamming_distances(hashes, hashes)
    assert distances.tolist() == [[0, 3, 16], [3, 0, 13], [16, 13, 0]]


def test_resized_and_recompressed_copies_are_near_distinct_slices_are_far(tmp_path):
    rng = np.random.default_rng(0)
    first, second = (synthetic.make_phantom(rng, tumor=True).image for _ in range(2))
    Image.fromarray(first).save(tmp_path / "first.png")
    Image.fromarray(first).resize((180, 180), Image.LANCZOS).save(tmp_path / "copy.jpg", quality=75)
    Image.fromarray(second).save(tmp_path / "second.png")
    hashes = audit.perceptual_hashes([tmp_path / "first.png", tmp_path / "copy.jpg", tmp_path / "second.png"])
    distances = audit.hamming_distances(hashes, hashes)
    assert distances[0, 1] <= audit.NEAR_DUPLICATE_BITS < distances[0, 2]


def test_groups_are_transitive_and_include_exact_copies():
    frame = pd.DataFrame({"group": ["a", "b", "c", "d", "a"]})
    hashes = np.array([[0, 0], [0, 3], [0, 15], [255, 255], [0, 0]], dtype=np.uint8)
    groups = audit.duplicate_groups(frame, hashes, max_distance=2)
    # 0~1 (2 bits), 1~2 (2 bits), 0 == 4 by content: one group; 3 alone.
    assert groups.nunique() == 2
    assert len(set(groups[[0, 1, 2, 4]])) == 1 and groups[3] not in set(groups[[0, 1, 2]])


def test_nearest_neighbour_ignores_itself():
    hashes = np.array([[0], [1], [255]], dtype=np.uint8)
    assert audit.nearest_neighbour_distances(hashes).tolist() == [1, 1, 7]


def test_cross_split_leaks():
    frame = pd.DataFrame({"split": ["train", "train", "test", "test"], "g": ["x", "y", "x", "z"]})
    assert audit.cross_split_leaks(frame, "split", "g", test="test", train="train") == 1


def test_audit_finds_the_copies_planted_in_the_synthetic_set(synthetic_dir):
    from medclass import data, splits

    frame = data.load_dataset("brain_mri", synthetic_dir)
    hashes = audit.perceptual_hashes(frame["path"])
    frame["group"] = audit.duplicate_groups(frame, hashes, audit.NEAR_DUPLICATE_BITS).to_numpy()
    sizes = frame.groupby("group").size()
    assert (sizes > 1).sum() == frame["path"].str.contains("copy_").sum() == 2
    split = splits.split_frame(frame, seed=0)
    splits.check_split(split)
    assert audit.cross_split_leaks(split, "split", "group", test="test", train="train") == 0


@pytest.mark.slow
def test_real_data_audit_and_grouped_split(real_brain_frame):
    from medclass import splits

    frame = real_brain_frame.copy()
    hashes = audit.perceptual_hashes(frame["path"])
    frame["group"] = audit.duplicate_groups(frame, hashes, audit.NEAR_DUPLICATE_BITS).to_numpy()
    # Kaggle's own Training/Testing split leaks: many test images have a copy in training.
    assert audit.cross_split_leaks(frame, "source_split", "group", test="Testing", train="Training") > 100
    split = splits.split_frame(frame, seed=42)
    splits.check_split(split)
    assert audit.cross_split_leaks(split, "split", "group", test="test", train="train") == 0
    assert audit.cross_split_leaks(split, "split", "group", test="val", train="train") == 0
