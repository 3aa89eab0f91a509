"""Leakage audit: exact and near-duplicate images, grouped so that a split keeps them together.

First used in chapter "Brain MRI: the data" (notebooks/brain_01_data.ipynb), section "Duplicates,
and why the split is grouped"; the skin-lesion data chapter uses it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from medclass import figures, images
from medclass.splits import join_frames

# Two images whose 256-bit perceptual hashes differ in at most this many bits are treated as
# copies of one another. Chosen from the data: on the Brain Tumor MRI dataset the distance from
# each image to its nearest neighbour is bimodal, copies at 0-10 bits, distinct slices mostly at
# 16-70, with the valley at 10-14 (the histogram in notebooks/brain_01_data.ipynb).
NEAR_DUPLICATE_BITS = 12

# Two thumbnails (32x32 greyscale) that correlate at least this much show the same slice: the
# threshold with which the shared data's README finds Br35H's near-copies in brain-tumor-mri.
# Used across datasets and within a second source, not within brain-tumor-mri, where adjacent
# slices of one patient reach it too and would chain hundreds of images into one group.
MIN_CORRELATION = 0.95

# Popcount of every byte value, to count differing bits between packed hashes.
_BIT_COUNTS = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def perceptual_hash(path: str, hash_size: int = 16) -> np.ndarray:
    """The DCT perceptual hash (imagehash.phash) of one image: ``hash_size**2`` bits, packed."""
    import imagehash

    with images.open_image(path) as image:
        bits = imagehash.phash(image.convert("L"), hash_size=hash_size).hash.flatten()
    return np.packbits(bits)


def perceptual_hashes(paths: Iterable[str], hash_size: int = 16) -> np.ndarray:
    """Perceptual hashes of many images, one packed row of uint8 per image."""
    return np.stack([perceptual_hash(path, hash_size) for path in paths])


def hamming_distances(hashes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Matrix of differing bits between each hash in ``hashes`` and each in ``others``."""
    xor = np.bitwise_xor(hashes[:, None, :], others[None, :, :])
    return _BIT_COUNTS[xor].sum(axis=-1, dtype=np.uint16)


def _distance_blocks(hashes: np.ndarray, chunk: int = 128):
    """Yield ``(start, block)``: rows ``start:start+chunk`` of the all-pairs distance matrix."""
    for start in range(0, len(hashes), chunk):
        yield start, hamming_distances(hashes[start : start + chunk], hashes)


def close_pairs(hashes: np.ndarray, max_distance: int) -> pd.DataFrame:
    """Every pair ``(first, second)``, first < second, at most ``max_distance`` bits apart."""
    firsts, seconds, distances = [], [], []
    for start, block in _distance_blocks(hashes):
        rows, columns = np.nonzero(block <= max_distance)
        keep = rows + start < columns
        firsts.append(rows[keep] + start)
        seconds.append(columns[keep])
        distances.append(block[rows[keep], columns[keep]])
    return pd.DataFrame(
        {
            "first": np.concatenate(firsts),
            "second": np.concatenate(seconds),
            "distance": np.concatenate(distances),
        }
    )


def nearest_neighbour_distances(hashes: np.ndarray) -> np.ndarray:
    """For each image, the Hamming distance to its most similar other image."""
    nearest = np.empty(len(hashes), dtype=np.uint16)
    for start, block in _distance_blocks(hashes):
        block[np.arange(len(block)), np.arange(start, start + len(block))] = np.iinfo(np.uint16).max
        nearest[start : start + len(block)] = block.min(axis=1)
    return nearest


def connected_groups(n_items: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Label each item with the smallest index of its connected component (union-find)."""
    parent = np.arange(n_items)

    def root(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for first, second in pairs:
        first_root, second_root = root(first), root(second)
        if first_root != second_root:
            parent[max(first_root, second_root)] = min(first_root, second_root)
    return np.array([root(item) for item in range(n_items)])


def duplicate_groups(
    frame: pd.DataFrame,
    hashes: np.ndarray,
    max_distance: int,
    extra_links: Sequence[tuple[int, int]] = (),
) -> pd.Series:
    """One group id per row: rows that share a ``group`` (exact copies), whose perceptual
    hashes differ in at most ``max_distance`` bits, or that ``extra_links`` joins (pairs of row
    positions), end up together, transitively."""
    frame = frame.reset_index(drop=True)
    pairs = close_pairs(hashes, max_distance)
    links = list(zip(pairs["first"], pairs["second"], strict=True)) + list(extra_links)
    for _, rows in frame.groupby("group").indices.items():
        links += [(rows[0], other) for other in rows[1:]]
    components = connected_groups(len(frame), links)
    return pd.Series(frame["group"].to_numpy()[components], name="duplicate_group")


def thumbnail_signatures(paths: Iterable[str], size: int = 32) -> np.ndarray:
    """Each image as a ``size``x``size`` greyscale thumbnail with zero mean and unit length, so
    that the dot product of two rows is their correlation, unchanged by brightness and contrast."""
    rows = []
    for path in paths:
        with images.open_image(path) as image:
            rows.append(
                np.asarray(image.convert("L").resize((size, size), Image.BILINEAR), np.float32).ravel()
            )
    signatures = np.stack(rows)
    signatures -= signatures.mean(axis=1, keepdims=True)
    return signatures / (np.linalg.norm(signatures, axis=1, keepdims=True) + 1e-6)


def correlated_pairs(
    signatures: np.ndarray, min_correlation: float = MIN_CORRELATION
) -> list[tuple[int, int]]:
    """Every pair ``(first, second)``, first < second, whose thumbnails correlate at least
    ``min_correlation``: the same slice re-windowed, which perceptual hashes can miss."""
    pairs = []
    for start in range(0, len(signatures), 1024):
        block = signatures[start : start + 1024] @ signatures.T
        rows, columns = np.nonzero(block >= min_correlation)
        keep = rows + start < columns
        pairs += list(zip((rows[keep] + start).tolist(), columns[keep].tolist(), strict=True))
    return pairs


def without_copies(
    frame: pd.DataFrame,
    hashes: np.ndarray,
    external: pd.DataFrame,
    external_hashes: np.ndarray,
    max_distance: int = NEAR_DUPLICATE_BITS,
    min_correlation: float = MIN_CORRELATION,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Join a second dataset to ``frame`` without counting any image twice.

    An image of ``external`` is a copy of one in ``frame`` when they share a duplicate group
    (:func:`duplicate_groups` over both datasets at once: a shared ``group`` id such as the file
    digest, or perceptual hashes at most ``max_distance`` bits apart, transitively), or when
    its thumbnail correlates at least ``min_correlation`` with one of ``frame``'s: the same
    slice exported with another window or contrast, which the hash misses. Copies are left
    out; the new images are grouped among themselves by both tests, so that a split keeps
    re-windowed copies together too. The groups are one partition of both datasets, so
    ``frame``'s groups can grow: two of its images that are copies of one external image, or of
    two external images that are copies of each other, end up in one group.

    Returns ``(frame, new, copies)``: ``frame`` with the joint groups, the new rows of
    ``external`` with theirs, and the rows of ``external`` left out as copies.
    """
    both = join_frames(frame, external)
    inside = len(frame)
    signatures = thumbnail_signatures(both["path"])
    best = np.full(len(external), -1.0)
    for start in range(0, len(external), 1024):
        block = signatures[inside + start : inside + start + 1024] @ signatures[:inside].T
        best[start : start + len(block)] = block.max(axis=1)
    links = [(inside + a, inside + b) for a, b in correlated_pairs(signatures[inside:], min_correlation)]
    groups = duplicate_groups(
        both, np.concatenate([hashes, external_hashes]), max_distance, extra_links=links
    ).to_numpy()
    # A copy taints its whole group: a re-windowed copy of a copy is a copy too.
    copied = set(groups[:inside]) | set(groups[inside:][best >= min_correlation])
    is_copy = np.isin(groups[inside:], list(copied))
    joined = frame.assign(group=groups[:inside])
    rest = external.reset_index(drop=True).assign(group=groups[inside:], best_correlation=best)
    joined.attrs, rest.attrs = frame.attrs, external.attrs
    return joined, rest[~is_copy].reset_index(drop=True), rest[is_copy].reset_index(drop=True)


def cross_split_leaks(
    frame: pd.DataFrame, split_column: str, group_column: str, test: str, train: str
) -> int:
    """How many ``test`` images have a member of their group on the ``train`` side."""
    train_groups = set(frame.loc[frame[split_column] == train, group_column])
    return int(frame.loc[frame[split_column] == test, group_column].isin(train_groups).sum())


def plot_nearest_neighbour_distances(
    hashes: np.ndarray, threshold: int = NEAR_DUPLICATE_BITS, title: str = ""
):
    """Histogram of each image's distance to its nearest neighbour, with the threshold marked."""
    import matplotlib.pyplot as plt

    nearest = nearest_neighbour_distances(hashes)
    figure, axis = plt.subplots(figsize=(figures.PAGE_WIDTH, 3.2), layout="constrained")
    axis.hist(nearest, bins=np.arange(0, nearest.max() + 3, 2) - 0.5, color="steelblue")
    axis.axvline(threshold + 0.5, color="crimson", linestyle="--", label=f"threshold: {threshold} bits")
    axis.set_xlabel(f"bits that differ from the nearest other image (of {hashes.shape[1] * 8})")
    axis.set_ylabel("images")
    axis.set_title(title or "Nearest-neighbour distance of perceptual hashes")
    axis.legend()
    return figure
