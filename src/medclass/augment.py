"""Augmentation stacks, applied to training batches only.

Defined in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb).
"""

from __future__ import annotations

import keras
from keras import layers


def mild_augmentation(seed: int, rotation: float = 0.03, zoom: float = 0.1) -> keras.Sequential:
    """Small rotations, zooms and shifts: plausible patient positioning, no anatomy flips."""
    return keras.Sequential(
        [
            layers.RandomRotation(rotation, fill_mode="constant", seed=seed),
            layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 1),
            layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed + 2),
        ],
        name="mild_augmentation",
    )
